//! With a store, acks wait for the data to be durable, and the messages that arrive while
//! a commit is being written share the next one (group commit): a device pipelining
//! reports gets every one acked and stored in fewer commits than messages.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::wire::Mqtt;
use common::{PLUG_SECRET, plug, plug_device};
use serde_json::{Value, json};
use x_protocol::{ConnectType, Frame, HeaderCtrl, MessageId, MqttLogin, Topic, TopicKind};
use x_sim::sim::{Sim, SimConfig};

/// How many reports the device pipelines.
const REPORTS: u32 = 200;

#[tokio::test]
async fn pipelined_reports_share_commits_and_are_acked_once_stored() {
    let dir = tempfile::tempdir().unwrap();
    let secret = format!("device_secret = \"{PLUG_SECRET}\"");
    let registry = [common::plug_product(), plug_device("PLUG0001", &secret)].concat();
    let mut config = SimConfig::local(common::registry(&registry));
    config.data_dir = Some(dir.path().to_path_buf());
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
