//! Store-and-forward against x-sim over a real Mosquitto: reports made while the broker is
//! gone are kept in the outbox (a real redb file in the state directory) and arrive once
//! each, with their original observation times, as history after it is back; data recorded
//! for later goes as history; what the device process left in its outbox is sent after a
//! restart; a report or upload whose ack was lost is sent again and held once; a history
//! "4001" drops exactly the entries it names, and one naming none drops nothing; uploads
//! arrive oldest first; a HEX product replays its queue as HEX reports; a damaged store
//! file is set aside and a fresh one started.
#![allow(clippy::unwrap_used)]

/// The smart plug's bindings, as x-codegen generates them from models/smart-plug.json.
use crate::plug;

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use plug::{OverheatAction, OverheatEvent, SmartPlug, SmartPlugReport, SmartPlugService};
use serde_json::json;
use support::{WAIT, wait_for};
use x_sdk::protocol::{DeviceIdentity, TopicKind};
use x_sdk::runtime::{BackoffConfig, ConnectionState, Device, DeviceBuilder};
use x_sim::mosquitto::Mosquitto;
use x_sim::sim::Sim;

fn plug(broker: &Mosquitto, dir: &std::path::Path) -> DeviceBuilder<SmartPlug, SmartPlugService> {
    plug_at(&broker.url(), dir)
}

fn plug_at(url: &str, dir: &std::path::Path) -> DeviceBuilder<SmartPlug, SmartPlugService> {
    let id = DeviceIdentity::parse("7ED01E2A", "AA30C505", "PLUG0001").unwrap();
    Device::<SmartPlug, SmartPlugService>::builder(
        id,
        "DB6FACEF35BEBA0517712F0E4BE32936".parse().unwrap(),
    )
    .broker(url)
    .unwrap()
    .state_dir(dir)
    .history_batch(8)
    .backoff(BackoffConfig {
        base: Duration::from_millis(100),
        cap: Duration::from_millis(500),
        jitter: 0.5,
    })
    .ack_timeout(Duration::from_secs(3))
}

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("x-sdk-outbox-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Every power value x-sim holds for the device, with its time, by value.
fn powers(sim: &Sim, id: &DeviceIdentity) -> BTreeMap<String, Vec<i64>> {
    let mut by_value: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (_, timed) in sim.platform().property_history(id, Some("power")) {
        by_value
            .entry(timed.value.to_string())
            .or_default()
            .push(timed.time);
    }
    by_value
}

#[tokio::test]
async fn reports_made_offline_arrive_once_with_their_times_after_the_broker_is_back() {
    support::tracing();
    let mut broker = Mosquitto::start().unwrap();
    let sim = support::sim_on(&broker).await;
    let dir = temp("offline");
    let device = plug(&broker, &dir).connect().await.unwrap();
    let id = sim.device("AA30C505", "PLUG0001").unwrap();
    device
        .report(SmartPlugReport::default().with_power(1.0))
        .await
        .unwrap()
        .await
        .unwrap();

    broker.kill();
    let mut states = device.connection();
    tokio::time::timeout(WAIT, async {
        while !matches!(*states.borrow_and_update(), ConnectionState::Offline { .. }) {
            states.changed().await.unwrap();
        }
    })
    .await
    .unwrap();
    // Offline: each report is durable when the call returns, and waits.
    let mut deliveries = Vec::new();
    let mut times = Vec::new();
    for i in 0..30u16 {
        let before = x_sdk::model::Date::now().millis();
        let report = SmartPlugReport::default().with_power(100.0 + f32::from(i));
        deliveries.push(device.report(report).await.unwrap());
        times.push(before);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let event = OverheatEvent {
        temperature: 91.0,
        action: OverheatAction::PowerCut,
    };
    deliveries.push(device.event(&event).await.unwrap());
    assert_eq!(device.waiting_upload(), 31);

    broker.restart().unwrap();
    support::platform_subscribed(&broker).await;
    for d in deliveries {
        tokio::time::timeout(WAIT, d).await.unwrap().unwrap();
    }
    assert_eq!(device.waiting_upload(), 0);
    let held = powers(&sim, &id);
    for (i, before) in times.iter().enumerate() {
        let value = json!(100.0 + i as f64).to_string();
        let at = held
            .get(&value)
            .unwrap_or_else(|| panic!("{value} missing: {held:?}"));
        assert_eq!(at.len(), 1, "{value} arrived {} times", at.len());
        // Its original observation time, not the upload's (on the platform clock from the
        // time sync, so within a little of the device's own).
        assert!(
            (at[0] - before).abs() < 1000,
            "{value}: {} vs {before}",
            at[0]
        );
    }
    let uploads = sim
        .platform()
        .received_from(&id)
        .iter()
        .filter(|r| r.kind == TopicKind::HistoryReport)
        .count();
    assert!((4..=31).contains(&uploads), "{uploads} history uploads");
    assert!(
        sim.platform()
            .events(&id)
            .iter()
            .any(|e| e.identifier == "overheat")
    );
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn recorded_samples_go_as_history_and_a_restarted_device_sends_what_it_left() {
    support::tracing();
    let broker = Mosquitto::start().unwrap();
    let sim = support::sim_on(&broker).await;
    let dir = temp("restart");
    let id = sim
        .device("AA30C505", "PLUG0001")
        .unwrap_or_else(|| DeviceIdentity::parse("7ED01E2A", "AA30C505", "PLUG0001").unwrap());
    // Sampled locally an hour ago, uploaded now: history with the sample's time.
    let device = plug(&broker, &dir).connect().await.unwrap();
    let hour_ago = x_sdk::model::Date::now().millis() - 3_600_000;
    device
        .record(SmartPlugReport::default().with_power(7.5), hour_ago)
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(powers(&sim, &id)[&json!(7.5).to_string()], vec![hour_ago]);

    // Entries left in the outbox by a device that stopped before they were sent.
    let offline = plug(&broker, &dir).broker("mqtt://127.0.0.1:1").unwrap();
    device.shutdown().await;
    drop(device);
    let stranded = offline.start().unwrap();
    for i in 0..5u16 {
        let report = SmartPlugReport::default().with_power(200.0 + f32::from(i));
        drop(stranded.report(report).await.unwrap());
    }
    assert_eq!(stranded.waiting_upload(), 5);
    stranded.shutdown().await;
    drop(stranded);
    let again = plug(&broker, &dir).connect().await.unwrap();
    wait_for(|| again.waiting_upload() == 0).await;
    wait_for(|| powers(&sim, &id).contains_key(&json!(204.0).to_string())).await;
    let held = powers(&sim, &id);
    for i in 0..5 {
        assert_eq!(held[&json!(200.0 + f64::from(i)).to_string()].len(), 1);
    }
    again.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// x-sim on its embedded broker, and the plug online against it with a short ack timeout.
async fn silent_sim_and_plug(
    name: &str,
) -> (Sim, Device<SmartPlug, SmartPlugService>, std::path::PathBuf) {
    let sim = support::sim().await;
    let dir = temp(name);
    let url = format!("mqtt://{}", sim.mqtt_addr().unwrap());
    let device = plug_at(&url, &dir)
        .ack_timeout(Duration::from_millis(400))
        .connect()
        .await
        .unwrap();
    (sim, device, dir)
}

#[tokio::test]
async fn a_live_report_whose_ack_is_lost_is_sent_again_under_its_id_and_held_once() {
    let (sim, device, dir) = silent_sim_and_plug("lost-ack").await;
    let id = sim.device("AA30C505", "PLUG0001").unwrap();
    // The platform takes the report but its ack never comes: the device sends it again
    // (as a one-entry history upload under the same MessageId) until one is acked.
    sim.platform().faults().set_silent(true);
    let delivery = device
        .report(SmartPlugReport::default().with_power(42.0))
        .await
        .unwrap();
    wait_for(|| powers(&sim, &id).contains_key(&json!(42.0).to_string())).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sim.platform().faults().set_silent(false);
    tokio::time::timeout(WAIT, delivery).await.unwrap().unwrap();

    assert_eq!(powers(&sim, &id)[&json!(42.0).to_string()].len(), 1);
    let live: Vec<_> = sim
        .platform()
        .received_from(&id)
        .into_iter()
        .filter(|r| r.kind == TopicKind::PropertyReport && r.payload == json!({"power": 42.0}))
        .collect();
    assert_eq!(live.len(), 1, "the live report is the one kept");
    assert_eq!(
        sim.platform()
            .received_from(&id)
            .iter()
            .filter(|r| r.kind == TopicKind::HistoryReport)
            .count(),
        0,
        "its re-sends were recognised, not recorded"
    );
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_history_upload_whose_ack_is_lost_is_sent_again_and_its_entries_held_once() {
    let (sim, device, dir) = silent_sim_and_plug("lost-history-ack").await;
    let id = sim.device("AA30C505", "PLUG0001").unwrap();
    sim.platform().faults().set_silent(true);
    let hour_ago = x_sdk::model::Date::now().millis() - 3_600_000;
    let mut deliveries = Vec::new();
    for i in 0..5 {
        let report = SmartPlugReport::default().with_power(300.0 + f32::from(i as u8));
        deliveries.push(device.record(report, hour_ago + i).await.unwrap());
    }
    wait_for(|| powers(&sim, &id).contains_key(&json!(304.0).to_string())).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sim.platform().faults().set_silent(false);
    for d in deliveries {
        tokio::time::timeout(WAIT, d).await.unwrap().unwrap();
    }
    let held = powers(&sim, &id);
    for i in 0..5 {
        assert_eq!(
            held[&json!(300.0 + f64::from(i)).to_string()],
            vec![hour_ago + i64::from(i)],
            "each sample once, with its own time"
        );
    }
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_full_outbox_drops_the_oldest_visibly_or_refuses_new_entries_by_policy() {
    use x_sdk::runtime::DeliveryError;
    use x_sdk::runtime::outbox::{FullPolicy, OutboxLimits};
    let dir = temp("full");
    let limits = |policy| OutboxLimits {
        max_entries: 5,
        max_bytes: 1024 * 1024,
        policy,
    };
    // Offline (nothing listens on port 1), room for 5: the 3 oldest of 8 make room.
    let offline = plug_at("mqtt://127.0.0.1:1", &dir)
        .outbox(Some(limits(FullPolicy::DropOldest)))
        .start()
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..8u8 {
        let report = SmartPlugReport::default().with_power(500.0 + f32::from(i));
        deliveries.push(offline.report(report).await.unwrap());
    }
    assert_eq!(offline.waiting_upload(), 5);
    let mut results = Vec::new();
    for d in deliveries.drain(..3) {
        results.push(tokio::time::timeout(WAIT, d).await.unwrap());
    }
    assert!(
        results.iter().all(|r| *r == Err(DeliveryError::Dropped)),
        "{results:?}"
    );
    assert_eq!(offline.counters().session.outbox_dropped, 3);
    offline.shutdown().await;
    drop(offline);

    // Online: the 5 kept arrive; the dropped never do.
    let (sim, online, _) = {
        let sim = support::sim().await;
        let url = format!("mqtt://{}", sim.mqtt_addr().unwrap());
        let device = plug_at(&url, &dir)
            .outbox(Some(limits(FullPolicy::DropOldest)))
            .connect()
            .await
            .unwrap();
        (sim, device, ())
    };
    let id = sim.device("AA30C505", "PLUG0001").unwrap();
    wait_for(|| online.waiting_upload() == 0 && powers(&sim, &id).len() == 5).await;
    let held: Vec<String> = powers(&sim, &id).into_keys().collect();
    let kept: Vec<String> = (3..8)
        .map(|i| json!(500.0 + f64::from(i)).to_string())
        .collect();
    assert_eq!(held, kept);
    online.shutdown().await;
    drop(online);

    // Refusing new entries instead: the sixth is refused and the caller is told.
    let _ = std::fs::remove_dir_all(&dir);
    let refusing = plug_at("mqtt://127.0.0.1:1", &dir)
        .outbox(Some(limits(FullPolicy::RefuseNew)))
        .start()
        .unwrap();
    for i in 0..5u8 {
        drop(
            refusing
                .report(SmartPlugReport::default().with_power(f32::from(i)))
                .await
                .unwrap(),
        );
    }
    let refused = refusing
        .report(SmartPlugReport::default().with_power(9.0))
        .await;
    match refused {
        Err(e @ DeliveryError::OutboxFull { entries: 5, .. }) => {
            assert!(e.to_string().contains("full"), "{e}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(refusing.waiting_upload(), 5);
    // The refused report never reached the property state: the last stored one did.
    assert_eq!(refusing.state().power, 4.0);
    refusing.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn entries_the_platform_refuses_in_a_history_batch_are_dropped_and_the_rest_kept() {
    use x_sdk::runtime::outbox::{Entry, EntryKind, Outbox, OutboxLimits};
    let dir = temp("refused-entries");
    // An outbox left with 12 entries of which two the platform will refuse (above the
    // model's maximum power, 3500: written straight to the store, as an older firmware
    // with another model might have).
    {
        let (mut outbox, _) = Outbox::open(&dir, OutboxLimits::default(), 0).unwrap();
        let entries: Vec<Entry> = (0..12)
            .map(|i| {
                let power = if i == 3 || i == 8 {
                    9000.0 + f64::from(i)
                } else {
                    600.0 + f64::from(i)
                };
                Entry::new(
                    EntryKind::Report,
                    json!({ "power": power }),
                    1_700_000_000_000 + i64::from(i),
                )
            })
            .collect();
        outbox.commit(&entries, &[]).unwrap();
    }
    let sim = support::sim().await;
    let url = format!("mqtt://{}", sim.mqtt_addr().unwrap());
    let device = plug_at(&url, &dir)
        .history_batch(12)
        .connect()
        .await
        .unwrap();
    let id = sim.device("AA30C505", "PLUG0001").unwrap();
    wait_for(|| device.counters().session.outbox_refused == 2 && device.waiting_upload() == 0)
        .await;
    wait_for(|| powers(&sim, &id).len() == 10).await;
    let held = powers(&sim, &id);
    for i in (0..12).filter(|i| *i != 3 && *i != 8) {
        let value = json!(600.0 + f64::from(i)).to_string();
        assert_eq!(
            held[&value],
            vec![1_700_000_000_000 + i64::from(i)],
            "{value}"
        );
    }
    device.shutdown().await;
    drop(device);
    // Gone from the store too: a restart has nothing left to send.
    let (outbox, _) = Outbox::open(&dir, OutboxLimits::default(), 0).unwrap();
    assert!(outbox.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_encrypted_product_stores_plain_and_encrypts_each_send_under_the_key_current_then() {
    use x_sdk::protocol::RegistrationType;
    use x_sdk::runtime::outbox::{Outbox, OutboxLimits};
    let dir = temp("encrypted");
    let enc = |url: &str| {
        let id = DeviceIdentity::parse("7ED01E2A", "5E7A0B32", "ENCOUT01").unwrap();
        Device::<SmartPlug, SmartPlugService>::builder(
            id,
            "00112233445566778899AABBCCDDEEFF".parse().unwrap(),
        )
        .broker(url)
        .unwrap()
        .registration(RegistrationType::ProductSecretUnregistered)
        .encrypted(true)
        .state_dir(&dir)
        .ack_timeout(Duration::from_millis(400))
    };
    // Made before the device ever logged in: no key exists yet, and the store holds plain
    // JSON.
    let offline = enc("mqtt://127.0.0.1:1").start().unwrap();
    for i in 0..5u8 {
        let report = SmartPlugReport::default().with_power(700.0 + f32::from(i));
        drop(offline.report(report).await.unwrap());
    }
    offline.shutdown().await;
    drop(offline);
    {
        let (outbox, _) = Outbox::open(&dir, OutboxLimits::default(), 0).unwrap();
        let held = outbox.oldest(10).unwrap();
        assert_eq!(held.len(), 5);
        assert_eq!(held[0].1.payload, json!({ "power": 700.0 }));
    }

    let sim = support::sim().await;
    let url = format!("mqtt://{}", sim.mqtt_addr().unwrap());
    let device = enc(&url).connect().await.unwrap();
    let id = sim.device("5E7A0B32", "ENCOUT01").unwrap();
    // x-sim refuses plaintext from an encrypted product (4001): all five held means each
    // went encrypted under the session's key.
    wait_for(|| device.waiting_upload() == 0 && powers(&sim, &id).len() == 5).await;

    // Sent, not acked, and the key rotates before the re-send: the re-send goes under the
    // new key, and x-sim still holds each report once.
    sim.platform().faults().set_silent(true);
    let mut deliveries = Vec::new();
    for i in 0..5u8 {
        let report = SmartPlugReport::default().with_power(800.0 + f32::from(i));
        deliveries.push(device.report(report).await.unwrap());
    }
    wait_for(|| powers(&sim, &id).len() == 10).await;
    sim.platform().rotate_key(&id).unwrap();
    wait_for(|| device.counters().session.rotations == 1).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    sim.platform().faults().set_silent(false);
    for d in deliveries {
        tokio::time::timeout(WAIT, d).await.unwrap().unwrap();
    }
    let held = powers(&sim, &id);
    assert_eq!(held.len(), 10, "{held:?}");
    assert!(held.values().all(|times| times.len() == 1), "{held:?}");
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn live_reports_keep_flowing_while_an_outage_drains() {
    use x_sdk::runtime::outbox::{Entry, EntryKind, Outbox, OutboxLimits};
    let dir = temp("flowing");
    {
        let (mut outbox, _) = Outbox::open(&dir, OutboxLimits::default(), 0).unwrap();
        let entries: Vec<Entry> = (0..400)
            .map(|i| {
                Entry::new(
                    EntryKind::Report,
                    json!({ "power": f64::from(i) }),
                    1_700_000_000_000 + i64::from(i),
                )
            })
            .collect();
        outbox.commit(&entries, &[]).unwrap();
    }
    let sim = support::sim().await;
    // A slow platform: every ack 40 ms late, so the backlog (5 per upload, half of a window
    // of 4 for it) takes seconds.
    sim.platform().faults().set_delay(Duration::from_millis(40));
    let url = format!("mqtt://{}", sim.mqtt_addr().unwrap());
    let device = plug_at(&url, &dir)
        .history_batch(5)
        .window(4)
        .connect()
        .await
        .unwrap();
    let id = sim.device("AA30C505", "PLUG0001").unwrap();
    wait_for(|| device.waiting_upload() < 400).await;
    let live = device
        .report(SmartPlugReport::default().with_power(3333.0))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(2), live)
        .await
        .expect("the live report is acked within 2 s")
        .unwrap();
    let left = device.waiting_upload();
    assert!(left > 100, "the backlog was still draining ({left} left)");
    assert!(
        sim.platform()
            .received_from(&id)
            .iter()
            .any(|r| r.kind == TopicKind::PropertyReport && r.payload == json!({"power": 3333.0})),
        "it went live, not behind the backlog"
    );
    sim.platform().faults().set_delay(Duration::ZERO);
    wait_for(|| device.waiting_upload() == 0 && powers(&sim, &id).len() == 401).await;
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The outbox of `dir` holding reports of these powers, observed 1 ms apart.
fn stranded(dir: &std::path::Path, powers: &[f64]) -> Vec<i64> {
    use x_sdk::runtime::outbox::{Entry, EntryKind, Outbox, OutboxLimits};
    let (mut outbox, _) = Outbox::open(dir, OutboxLimits::default(), 0).unwrap();
    let times: Vec<i64> = (0..powers.len() as i64)
        .map(|i| 1_700_000_000_000 + i)
        .collect();
    let entries: Vec<Entry> = powers
        .iter()
        .zip(&times)
        .map(|(p, t)| Entry::new(EntryKind::Report, json!({ "power": p }), *t))
        .collect();
    outbox.commit(&entries, &[]).unwrap();
    times
}

/// The requests of a device until `done` says enough, within the wait.
async fn requests_until(
    device: &Device<SmartPlug, SmartPlugService>,
    done: impl Fn(&[x_sdk::runtime::Request<SmartPlug, SmartPlugService>]) -> bool,
) -> Vec<x_sdk::runtime::Request<SmartPlug, SmartPlugService>> {
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, async {
        while !done(&seen) {
            match device.next_request().await {
                Some(r) => seen.push(r),
                None => return,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not within the wait: {seen:?}"));
    seen
}

#[tokio::test]
async fn a_history_4001_naming_entries_drops_those_tells_the_application_and_sends_the_rest() {
    use x_sdk::runtime::Request;
    let dir = temp("refused-named");
    // 9000 and 9005 are above the model's maximum power (3500): x-sim refuses them by
    // position, params[2] and params[5] of the first upload.
    let times = stranded(&dir, &[10.0, 11.0, 9000.0, 13.0, 14.0, 9005.0, 16.0]);
    let sim = support::sim().await;
    let url = format!("mqtt://{}", sim.mqtt_addr().unwrap());
    let device = plug_at(&url, &dir)
        .history_batch(20)
        .connect()
        .await
        .unwrap();
    let id = sim.device("AA30C505", "PLUG0001").unwrap();
    let requests = requests_until(&device, |seen| {
        seen.iter()
            .filter(|r| matches!(r, Request::EntryRefused { .. }))
            .count()
            == 2
    })
    .await;
    let refused: Vec<(serde_json::Value, String)> = requests
        .into_iter()
        .filter_map(|r| match r {
            Request::EntryRefused { entry, reason } => Some((entry.payload, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(refused[0].0, json!({"power": 9000.0}));
    assert!(
        refused[0]
            .1
            .starts_with("params[2].properties.power: 9000 is above the maximum 3500"),
        "{}",
        refused[0].1
    );
    assert_eq!(refused[1].0, json!({"power": 9005.0}));
    assert!(
        refused[1].1.starts_with("params[5].properties.power"),
        "{}",
        refused[1].1
    );
    wait_for(|| device.waiting_upload() == 0 && powers(&sim, &id).len() == 5).await;
    let held = powers(&sim, &id);
    for (p, t) in [10.0, 11.0, 13.0, 14.0, 16.0].iter().zip([0, 1, 3, 4, 6]) {
        assert_eq!(held[&json!(p).to_string()], vec![times[t]], "{p}");
    }
    // The rest went in one upload after the refusal, not halved and re-halved.
    let uploads = sim
        .platform()
        .received_from(&id)
        .iter()
        .filter(|r| r.kind == TopicKind::HistoryReport)
        .count();
    assert_eq!(uploads, 1);
    let counters = device.counters().session;
    assert_eq!(counters.outbox_refused, 2);
    assert_eq!(counters.uploads_refused, 0);
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_history_4001_naming_no_entry_keeps_every_entry_backs_off_and_sends_them_later() {
    use x_sdk::runtime::Request;
    let dir = temp("refused-none");
    let times = stranded(&dir, &[20.0, 21.0, 22.0, 23.0]);
    let sim = support::sim().await;
    // A platform policy refuses history for now: a 4001 about no entry.
    sim.platform()
        .faults()
        .set_refuse_history(Some("history uploads are paused for this tenant".into()));
    let url = format!("mqtt://{}", sim.mqtt_addr().unwrap());
    let device = plug_at(&url, &dir).connect().await.unwrap();
    let id = sim.device("AA30C505", "PLUG0001").unwrap();
    let requests = requests_until(&device, |seen| {
        seen.iter()
            .any(|r| matches!(r, Request::UploadRefused { .. }))
    })
    .await;
    assert!(
        requests.iter().any(|r| matches!(
            r,
            Request::UploadRefused { reason, entries: 4, .. }
                if reason == "history uploads are paused for this tenant"
        )),
        "{requests:?}"
    );
    // For three seconds it stays refused: nothing dropped, tried again with backoff (the
    // device's backoff here: 100 ms doubling to 500 ms), not stormed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let refusals = device.counters().session.uploads_refused;
    assert!(
        (2..=20).contains(&refusals),
        "{refusals} refused uploads in 3 s"
    );
    assert_eq!(device.counters().session.outbox_refused, 0);
    assert_eq!(device.waiting_upload(), 4);
    assert!(powers(&sim, &id).is_empty());
    assert_eq!(
        sim.platform().violation_count(&id),
        0,
        "a policy refusal is not the device's fault"
    );

    sim.platform().faults().set_refuse_history(None);
    wait_for(|| device.waiting_upload() == 0 && powers(&sim, &id).len() == 4).await;
    let held = powers(&sim, &id);
    for (i, p) in [20.0, 21.0, 22.0, 23.0].iter().enumerate() {
        assert_eq!(held[&json!(p).to_string()], vec![times[i]], "{p}");
    }
    assert_eq!(device.counters().session.outbox_refused, 0);
    device.shutdown().await;
    drop(device);
    let (outbox, _) = x_sdk::runtime::outbox::Outbox::open(&dir, Default::default(), 0).unwrap();
    assert!(outbox.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_hex_products_queued_reports_are_replayed_as_hex_reports_and_arrive_once() {
    use crate::meter::{MeterHex, MeterHexService};
    support::tracing();
    let mut broker = Mosquitto::start().unwrap();
    let sim = support::sim_on(&broker).await;
    let dir = temp("hex-replay");
    let id = DeviceIdentity::parse("7ED01E2A", "4D455445", "MTR00001").unwrap();
    let device = Device::<MeterHex, MeterHexService>::builder(
        id.clone(),
        "0F1E2D3C4B5A69788796A5B4C3D2E1F0".parse().unwrap(),
    )
    .broker(&broker.url())
    .unwrap()
    .hex(false)
    .state(MeterHex {
        voltage: 220.5,
        frequency: 50.0,
        meter_no: "000123456789".into(),
        report_period: 900,
        ..MeterHex::default()
    })
    .state_dir(&dir)
    .backoff(BackoffConfig {
        base: Duration::from_millis(100),
        cap: Duration::from_millis(500),
        jitter: 0.5,
    })
    .ack_timeout(Duration::from_secs(3))
    .connect()
    .await
    .unwrap();
    device.report_all().await.unwrap().await.unwrap();

    broker.kill();
    let mut states = device.connection();
    tokio::time::timeout(WAIT, async {
        while !matches!(*states.borrow_and_update(), ConnectionState::Offline { .. }) {
            states.changed().await.unwrap();
        }
    })
    .await
    .unwrap();
    // Offline: each HEX report is durable when the call returns, and waits.
    let mut deliveries = Vec::new();
    for i in 0..12 {
        device.update(|s| s.report_period = 1000 + i);
        deliveries.push(device.report_all().await.unwrap());
    }
    assert_eq!(device.waiting_upload(), 12);

    broker.restart().unwrap();
    support::platform_subscribed(&broker).await;
    for d in deliveries {
        tokio::time::timeout(WAIT, d).await.unwrap().unwrap();
    }
    assert_eq!(device.waiting_upload(), 0);
    let received = sim.platform().received_from(&id);
    // No history: the protocol has none for HEX. Each queued report came as a HEX report
    // (18), decoded by the product's script, once.
    assert!(
        received.iter().all(|r| r.kind != TopicKind::HistoryReport),
        "a HEX product uploaded history"
    );
    let mut periods: BTreeMap<i64, usize> = BTreeMap::new();
    for r in received.iter().filter(|r| r.kind == TopicKind::HexReport) {
        assert_eq!(
            r.header_ctrl,
            x_sdk::protocol::HeaderCtrl::HexPropertyReport
        );
        assert!(r.raw.is_some(), "the hex as it came");
        if let Some(p) = r.payload["Payload"]["reportPeriod"].as_i64() {
            *periods.entry(p).or_default() += 1;
        }
    }
    for i in 0..12 {
        assert_eq!(
            periods.get(&(1000 + i)),
            Some(&1),
            "reportPeriod {}: {periods:?}",
            1000 + i
        );
    }
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn history_uploads_arrive_oldest_first() {
    let dir = temp("oldest-first");
    let values: Vec<f64> = (0..40).map(|i| 100.0 + f64::from(i)).collect();
    let times = stranded(&dir, &values);
    let sim = support::sim().await;
    let url = format!("mqtt://{}", sim.mqtt_addr().unwrap());
    // Batches of 4, up to 4 uploads in flight at once (half a window of 8).
    let device = plug_at(&url, &dir)
        .history_batch(4)
        .window(8)
        .connect()
        .await
        .unwrap();
    let id = sim.device("AA30C505", "PLUG0001").unwrap();
    wait_for(|| device.waiting_upload() == 0 && powers(&sim, &id).len() == 40).await;
    let mut uploads: Vec<_> = sim
        .platform()
        .received_from(&id)
        .into_iter()
        .filter(|r| r.kind == TopicKind::HistoryReport)
        .collect();
    uploads.sort_by_key(|r| r.seq);
    assert_eq!(uploads.len(), 10);
    // In the order x-sim took them, entry by entry: the outbox's order, oldest first.
    let arrived: Vec<i64> = uploads
        .iter()
        .flat_map(|r| {
            r.payload["params"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["properties"][0]["power"]["time"].as_i64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(arrived, times);
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_truncated_or_corrupt_store_is_set_aside_and_the_device_starts_afresh() {
    let src = temp("recover-source");
    let values: Vec<f64> = (0..200).map(f64::from).collect();
    stranded(&src, &values);
    let store = std::fs::read(src.join("outbox.redb")).unwrap();
    let len = store.len();
    let mut damaged: Vec<(String, Vec<u8>)> =
        [1, 100, 4096, len / 3, len / 2, len * 9 / 10, len - 1]
            .into_iter()
            .map(|cut| (format!("cut-{cut}"), store[..cut].to_vec()))
            .collect();
    let mut garbage = store.clone();
    for b in garbage.iter_mut().step_by(7) {
        *b ^= 0x5A;
    }
    damaged.push((
        "garbage".into(),
        b"this is not a redb file at all".repeat(100),
    ));
    damaged.push(("scrambled".into(), garbage));

    let sim = support::sim().await;
    let url = format!("mqtt://{}", sim.mqtt_addr().unwrap());
    let id = DeviceIdentity::parse("7ED01E2A", "AA30C505", "PLUG0001").unwrap();
    for (n, (name, bytes)) in damaged.into_iter().enumerate() {
        let dir = temp(&format!("recover-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("outbox.redb"), &bytes).unwrap();
        // Never a panic, never a refusal to start: the device comes up.
        let device = plug_at(&url, &dir).connect().await.unwrap();
        let recovered = device
            .outbox_recovered()
            .cloned()
            .unwrap_or_else(|| panic!("{name}: the damage was not noticed"));
        assert!(!recovered.reason.is_empty(), "{name}: a reason");
        assert_eq!(recovered.moved_to.parent(), Some(dir.as_path()), "{name}");
        let file = recovered.moved_to.file_name().unwrap().to_string_lossy();
        assert!(file.starts_with("outbox.redb.corrupt-"), "{name}: {file}");
        assert_eq!(
            std::fs::read(&recovered.moved_to).unwrap(),
            bytes,
            "{name}: set aside as it was, for whoever wants to look"
        );
        // A fresh store that works: a report is stored, sent and acked.
        assert_eq!(device.waiting_upload(), 0);
        let power = 3000.0 + n as f32;
        device
            .report(SmartPlugReport::default().with_power(power))
            .await
            .unwrap()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(powers(&sim, &id).contains_key(&json!(f64::from(power)).to_string()));
        device.shutdown().await;
        drop(device);
        // The next start finds a sound store.
        let again = plug_at(&url, &dir).connect().await.unwrap();
        assert!(again.outbox_recovered().is_none(), "{name}");
        again.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&src);
}
