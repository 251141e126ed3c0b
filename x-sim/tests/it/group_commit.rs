//! With a store, acks wait for the data to be durable, and the messages that arrive while
//! a commit is being written share the next one (group commit): a device pipelining
//! reports gets every one acked and stored in fewer commits than messages.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::wire::{Mqtt, Wire};
use common::{PLUG_SECRET, plug, plug_device};
use serde_json::{Value, json};
use x_protocol::{ConnectType, Frame, HeaderCtrl, MessageId, MqttLogin, Topic, TopicKind};
use x_sim::sim::{Sim, SimConfig};

/// x-sim with a store in `dir`, and PLUG0001 logged in over a bare MQTT connection,
/// subscribed to its property report acks.
struct Stored {
    sim: Sim,
    store: x_sim::store::Store,
    mqtt: Mqtt,
    report_topic: String,
    ack_topic: Topic,
}

async fn stored_plug(dir: &std::path::Path) -> Stored {
    let secret = format!("device_secret = \"{PLUG_SECRET}\"");
    let registry = [common::plug_product(), plug_device("PLUG0001", &secret)].concat();
    let mut config = SimConfig::local(common::registry(&registry));
    config.data_dir = Some(dir.to_path_buf());
    let sim = Sim::start(config).await.unwrap();
    let store = sim.platform().store().unwrap().clone();
    let params = plug();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let login = MqttLogin::connect(
        &params.id,
        &params.product_key,
        &PLUG_SECRET.parse().unwrap(),
        ConnectType::Unchecked,
        now,
    );
    let mut mqtt = Mqtt::open(sim.mqtt_addr().unwrap(), &login).await.unwrap();
    let ack_topic = Topic::new(params.id.clone(), TopicKind::PropertyReportAck).unwrap();
    mqtt.subscribe(&[ack_topic.to_string()]).await;
    let report_topic = Topic::new(params.id.clone(), TopicKind::PropertyReport)
        .unwrap()
        .to_string();
    Stored {
        sim,
        store,
        mqtt,
        report_topic,
        ack_topic,
    }
}

/// How many reports the device pipelines.
const REPORTS: u32 = 200;

#[tokio::test]
async fn pipelined_reports_share_commits_and_are_acked_once_stored() {
    let dir = tempfile::tempdir().unwrap();
    let Stored {
        sim: _sim,
        store,
        mut mqtt,
        report_topic,
        ack_topic,
    } = stored_plug(dir.path()).await;

    let before = store.commits();
    for n in 1..=REPORTS {
        let frame = Frame::new(
            MessageId::Number(n.into()),
            HeaderCtrl::PropertyReport,
            json!({ "power": f64::from(n) }),
        );
        mqtt.publish(&report_topic, frame.encode()).await;
    }
    let mut acked = 0;
    while acked < REPORTS {
        let (topic, bytes) = mqtt.next().await;
        assert_eq!(topic, ack_topic.to_string());
        let ack = Frame::decode(&bytes).unwrap();
        let code = ack.payload["Code"].to_string();
        assert_eq!(code.trim_matches('"'), "200", "{:?}", ack.payload);
        // Acked only once stored: the store has at least this message.
        let MessageId::Number(id) = &ack.message_id else {
            panic!("{:?}", ack.message_id);
        };
        let id = *id;
        assert!(
            store.received_count().unwrap() >= id,
            "message {id} acked before it was stored"
        );
        acked += 1;
    }
    let commits = store.commits() - before;
    assert_eq!(store.received_count().unwrap(), u64::from(REPORTS));
    assert!(
        commits < u64::from(REPORTS),
        "{commits} commits for {REPORTS} messages"
    );
    eprintln!("{REPORTS} pipelined reports stored in {commits} commits");
    let stored: Vec<Value> = store
        .received(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(_, v)| v["payload"]["power"].clone())
        .collect();
    assert_eq!(stored.len(), REPORTS as usize);
}

/// How long each commit of the slowed store waits (a slow disk).
const SLOW_COMMIT: Duration = Duration::from_millis(1500);

/// On a slow disk, neither a report's ack (Code 200) nor a refusal (4001, its violation
/// recorded) leaves before the commit that stores it: for as long as the writer holds the
/// commit, the device hears nothing, and when the answer comes, the store has what it
/// answers for.
#[tokio::test]
async fn no_answer_leaves_before_its_commit() {
    let dir = tempfile::tempdir().unwrap();
    let Stored {
        sim: _sim,
        store,
        mut mqtt,
        report_topic,
        ack_topic,
    } = stored_plug(dir.path()).await;

    store.set_commit_delay(SLOW_COMMIT);
    // (payload, the Code it is answered with)
    let cases = [
        (json!({ "power": 12.5 }), "200"),
        (json!({ "no_such_property": 1 }), "4001"),
    ];
    for (n, (payload, code)) in cases.into_iter().enumerate() {
        let (received, violations) = (
            store.received_count().unwrap(),
            store.violations().unwrap().len(),
        );
        let id = u32::try_from(n).unwrap() + 1;
        let frame = Frame::new(MessageId::from(id), HeaderCtrl::PropertyReport, payload);
        let sent = Instant::now();
        mqtt.publish(&report_topic, frame.encode()).await;
        // Generous against a loaded machine: an ack sent without waiting for the commit
        // would come within milliseconds.
        assert!(
            mqtt.quiet_for(SLOW_COMMIT * 2 / 3).await,
            "report {id} (Code {code}) was answered while its commit was held"
        );
        let (topic, bytes) = mqtt.next().await;
        let waited = sent.elapsed();
        assert_eq!(topic, ack_topic.to_string());
        let ack = Frame::decode(&bytes).unwrap();
        assert_eq!(ack.message_id, MessageId::from(id));
        assert_eq!(
            ack.payload["Code"].as_str(),
            Some(code),
            "{:?}",
            ack.payload
        );
        assert!(waited >= SLOW_COMMIT, "answered after {waited:?}");
        // What the answer is about is in the store by now.
        if code == "200" {
            assert_eq!(store.received_count().unwrap(), received + 1);
        } else {
            let stored = store.violations().unwrap();
            assert_eq!(stored.len(), violations + 1);
            assert_eq!(stored.last().unwrap().2["rule"], json!("thing_model"));
        }
    }
}

/// On a slow disk, what x-sim writes without answering (a refused subscription's
/// violation, a disconnect's offline time) holds up no async worker: while those commits
/// are held, another device logs in and subscribes, and the HTTP API answers, at once. The
/// test runs on one thread, so a worker waiting for the disk would stall all of it.
#[tokio::test]
async fn a_slow_disk_holds_up_no_worker() {
    let dir = tempfile::tempdir().unwrap();
    let secret = format!("device_secret = \"{PLUG_SECRET}\"");
    let registry = [
        common::plug_product(),
        plug_device("PLUG0001", &secret),
        plug_device("PLUG0002", &secret),
    ]
    .concat();
    let mut config = SimConfig::local(common::registry(&registry));
    config.data_dir = Some(dir.path().to_path_buf());
    let sim = Sim::start(config).await.unwrap();
    let store = sim.platform().store().unwrap().clone();
    let api = common::Api::new(&sim);
    store.set_commit_delay(SLOW_COMMIT * 2);

    let first = plug();
    let mut wire = Wire::online(sim.mqtt_addr().unwrap(), &first).await;
    let started = Instant::now();
    let other = format!("{}/#", common::plug_named("PLUG0002").id.topic_prefix());
    let codes = wire.mqtt().subscribe(&[other]).await;
    assert_eq!(codes, [rumqttc::SubscribeReasonCode::Failure]);
    wire.disconnect().await;
    assert!(store.waiting() > 0, "the writes were committed already");

    let second = common::plug_named("PLUG0002");
    let mut wire = Wire::online(sim.mqtt_addr().unwrap(), &second).await;
    let codes = wire.subscribe(&[TopicKind::PropertyReportAck]).await;
    assert_eq!(codes, [true]);
    let (status, devices) = api.send(api.get("/api/devices")).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let took = started.elapsed();
    assert!(
        took < SLOW_COMMIT,
        "a login, a subscription and an HTTP answer took {took:?} behind commits of {:?}",
        SLOW_COMMIT * 2
    );
    // In memory already: the violation counted, the first device offline.
    let first_json = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["node_eui"] == json!("PLUG0001"))
        .unwrap()
        .clone();
    assert_eq!(first_json["violations"], json!(1));
    assert_eq!(first_json["online"], json!(false));
    // And in the store once the commits land.
    let until = Instant::now() + Duration::from_secs(30);
    while store.waiting() > 0 {
        assert!(
            Instant::now() < until,
            "{} writes still wait",
            store.waiting()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.violations().unwrap().len(), 1);
    let offline = store.last_offline().unwrap();
    assert!(
        offline.iter().any(|(d, _)| d.ends_with("/PLUG0001")),
        "{offline:?}"
    );
}
