//! What happens to what the device sends and is sent, against x-sim: the window of un-acked
//! messages holds the next one back until an ack frees a place (without and with an
//! outbox); a report the platform refuses ("4001") reaches its `Delivery` as `Rejected`
//! with the platform's reason; the application's property-set veto answers "4001" with its
//! reason and leaves the state alone.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::json;
use x_sdk::protocol::{DeviceIdentity, TopicKind};
use x_sdk::runtime::{BackoffConfig, DeliveryError, Device, DeviceBuilder, Request};
use x_sim::platform::{Command, Platform};
use x_sim::sim::Sim;

use crate::plug::{OverheatAction, OverheatEvent, SmartPlug, SmartPlugReport, SmartPlugService};
use crate::support::{WAIT, sim, wait_for};

fn plug(
    sim: &Sim,
    product_id: &str,
    product_key: &str,
    node_eui: &str,
) -> DeviceBuilder<SmartPlug, SmartPlugService> {
    let id = DeviceIdentity::parse("7ED01E2A", product_id, node_eui).unwrap();
    Device::<SmartPlug, SmartPlugService>::builder(id, product_key.parse().unwrap())
        .broker(&format!("mqtt://{}", sim.mqtt_addr().unwrap()))
        .unwrap()
        .backoff(BackoffConfig {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
            jitter: 1.0,
        })
        .ack_timeout(Duration::from_secs(10))
        .time_sync(false)
}

/// How many property reports x-sim has received from `id`.
fn reports(p: &Platform, id: &DeviceIdentity) -> usize {
    p.received_from(id)
        .iter()
        .filter(|r| r.kind == TopicKind::PropertyReport)
        .count()
}

/// How many history uploads x-sim has received from `id`.
fn histories(p: &Platform, id: &DeviceIdentity) -> usize {
    p.received_from(id)
        .iter()
        .filter(|r| r.kind == TopicKind::HistoryReport)
        .count()
}

fn countdown(n: i32) -> SmartPlugReport {
    SmartPlugReport::default().with_countdown(n)
}

/// Acks come this late while the window is tested.
const ACK_DELAY: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn the_window_holds_the_next_report_until_an_ack_frees_a_place() {
    let sim = sim().await;
    let p = sim.platform();
    let id = sim.device("AA30C505", "PLUG0001").unwrap();
    // No state directory: reports wait for a window place in report() itself.
    let device = plug(
        &sim,
        "AA30C505",
        "DB6FACEF35BEBA0517712F0E4BE32936",
        "PLUG0001",
    )
    .window(2)
    .connect()
    .await
    .unwrap();
    wait_for(|| p.state("firmware", &format!("{id}/default")).is_some()).await;
    p.faults().set_delay(ACK_DELAY);
    let first = device.report(countdown(1)).await.unwrap();
    let second = device.report(countdown(2)).await.unwrap();
    let third = device.report(countdown(3));
    tokio::pin!(third);
    // Two un-acked: the third waits for a place, and nothing more goes out.
    assert!(
        tokio::time::timeout(ACK_DELAY / 2, &mut third)
            .await
            .is_err(),
        "the third report was sent with two un-acked in a window of 2"
    );
    assert_eq!(reports(p, &id), 2);
    // The first ack frees a place: the third goes.
    first.await.unwrap();
    let third = tokio::time::timeout(WAIT, third)
        .await
        .expect("a place once the first ack came")
        .unwrap();
    second.await.unwrap();
    third.await.unwrap();
    assert_eq!(reports(p, &id), 3);
    assert_eq!(p.latest_properties(&id)["countdown"].value, json!(3));
    p.faults().set_delay(Duration::ZERO);
    device.shutdown().await;

    // With an outbox, report() returns once the entry is stored; the session sends no more
    // than the window either.
    let dir = std::env::temp_dir().join(format!("x-sdk-window-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let device = plug(
        &sim,
        "AA30C505",
        "DB6FACEF35BEBA0517712F0E4BE32936",
        "PLUG0001",
    )
    .window(2)
    .state_dir(&dir)
    .connect()
    .await
    .unwrap();
    let before = reports(p, &id);
    p.faults().set_delay(ACK_DELAY);
    let mut deliveries = Vec::new();
    for n in 10..13 {
        deliveries.push(device.report(countdown(n)).await.unwrap());
    }
    tokio::time::sleep(ACK_DELAY / 2).await;
    assert_eq!(
        reports(p, &id) - before,
        2,
        "stored, but only the window sent"
    );
    assert_eq!(histories(p, &id), 0);
    for d in deliveries {
        d.await.unwrap();
    }
    // The third was stored while the window was full, so it goes up as a history upload
    // (with its observation time) once a place is free.
    assert_eq!(reports(p, &id) - before, 2);
    assert_eq!(histories(p, &id), 1);
    let history = p
        .received_from(&id)
        .into_iter()
        .find(|r| r.kind == TopicKind::HistoryReport)
        .unwrap();
    let values: Vec<_> = history
        .properties()
        .into_iter()
        .map(|(property, timed)| (property, timed.value))
        .collect();
    assert_eq!(values, [("countdown".to_owned(), json!(12))]);
    p.faults().set_delay(Duration::ZERO);
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_report_the_platform_refuses_resolves_its_delivery_as_rejected_with_the_reason() {
    let sim = sim().await;
    let p = sim.platform();
    // The platform's model for this product is the environment sensor's: it has no "power"
    // and no "overheat" event, so x-sim acks the plug's report and event "4001".
    let id = sim.device("E5E5E5E5", "PLUGOLD1").unwrap();
    let builder = || {
        plug(
            &sim,
            "E5E5E5E5",
            "C1C2C3C4C5C6C7C8C9CACBCCCDCECFC0",
            "PLUGOLD1",
        )
    };
    let device = builder().connect().await.unwrap();
    let refused = device
        .report(SmartPlugReport::default().with_power(12.5))
        .await
        .unwrap()
        .await
        .unwrap_err();
    let DeliveryError::Rejected { code, reason } = &refused else {
        panic!("{refused:?}")
    };
    assert_eq!(code, "4001");
    assert!(reason.contains("power"), "{reason}");
    let refused = device
        .event(&OverheatEvent {
            temperature: 95.0,
            action: OverheatAction::PowerCut,
        })
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, DeliveryError::Rejected { code, reason } if code == "4001" && reason.contains("overheat")),
        "{refused:?}"
    );
    let counters = device.counters().session;
    assert_eq!((counters.rejected, counters.acked), (2, 0), "{counters:?}");
    // The device carries on.
    assert!(device.is_online());
    device.shutdown().await;

    // Through the outbox the same: the refused entry is dropped and its Delivery says why.
    let dir = std::env::temp_dir().join(format!("x-sdk-rejected-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let device = builder().state_dir(&dir).connect().await.unwrap();
    let refused = device
        .report(SmartPlugReport::default().with_power(13.5))
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, DeliveryError::Rejected { code, reason } if code == "4001" && reason.contains("power")),
        "{refused:?}"
    );
    assert_eq!(device.waiting_upload(), 0);
    assert_eq!(device.counters().session.outbox_refused, 1);
    assert!(!p.latest_properties(&id).contains_key("power"));
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_property_set_veto_answers_4001_with_its_reason_and_leaves_the_state() {
    let sim = sim().await;
    let p = sim.platform();
    let id = sim.device("AA30C505", "PLUG0001").unwrap();
    let device = plug(
        &sim,
        "AA30C505",
        "DB6FACEF35BEBA0517712F0E4BE32936",
        "PLUG0001",
    )
    .on_property_set(|state: &SmartPlug, set| {
        if state.child_lock && set.switch.is_some() {
            return Err("the child lock is on".into());
        }
        match set.countdown {
            Some(s) if s > 3600 => {
                Err(format!("countdown {s} s: this plug counts an hour at most"))
            }
            _ => Ok(()),
        }
    })
    .connect()
    .await
    .unwrap();
    let set = |params| Command::SetProperties(params);

    // Allowed: applied, acked with the applied values, told to the application.
    let answer = p
        .send_command(&id, set(json!({"countdown": 600, "childLock": 1})), None)
        .await
        .unwrap();
    let ack = answer.ack().unwrap();
    assert!(ack.code.is_success(), "{answer:?}");
    assert_eq!(ack.data, Some(json!({"childLock": 1, "countdown": 600})));
    assert_eq!(
        (device.state().countdown, device.state().child_lock),
        (600, true)
    );

    // Vetoed by the state (child lock) and by the values: 4001 with the hook's reason.
    for (params, why) in [
        (json!({"switch": 1}), "the child lock is on"),
        (
            json!({"countdown": 7200}),
            "countdown 7200 s: this plug counts an hour at most",
        ),
    ] {
        let answer = p.send_command(&id, set(params), None).await.unwrap();
        let ack = answer.ack().unwrap();
        assert_eq!((ack.code.as_str(), ack.msg.as_str()), ("4001", why));
    }
    let state = device.state();
    assert_eq!((state.switch, state.countdown), (false, 600));
    assert_eq!(device.counters().session.refused_commands, 2);

    // The application saw the allowed set only.
    let mut sets = Vec::new();
    while let Ok(Some(request)) =
        tokio::time::timeout(Duration::from_millis(300), device.next_request()).await
    {
        if let Request::PropertiesSet(s) = request {
            sets.push(s);
        }
    }
    assert_eq!(sets.len(), 1, "{sets:?}");
    assert_eq!(sets[0].countdown, Some(600));
    device.shutdown().await;
}
