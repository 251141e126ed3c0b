//! OTA progress over the embedded broker, with a device whose answers are the runtime
//! session's (a wire: the test chooses what firmware it reports and whether the session sees
//! a notify, and so acks it): a notify acked and then another version reported is failed
//! and re-notified, up to the task's limit, after which reports bring no notify until the
//! task is set again; a device silent past the deadline after acking is failed; an unacked
//! notify is failed and not repeated while it is awaited; the target reported after acking
//! is success, also late. The progress is in the API and the store.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::wire::{Incoming, Wire};
use common::{Api, plug, plug_device, wait_for};
use serde_json::{Value, json};
use x_protocol::payload::OtaNotify;
use x_protocol::{DeviceIdentity, HeaderCtrl, TopicKind};
use x_sim::platform::ota::{NOT_ACKED, SILENT_AFTER_ACK, reported_instead};
use x_sim::platform::{OtaProgress, OtaState};
use x_sim::sim::{Sim, SimConfig};

const PRODUCT: &str = "AA30C505";

/// How long a device that acked has to report the target version (in these tests).
const DEADLINE: Duration = Duration::from_millis(400);
/// How long the platform waits for an ack (in these tests).
const ACK_TIMEOUT: Duration = Duration::from_millis(500);

/// The platform with a store and a firmware server, short OTA deadlines, image 1.0.2 of the
/// smart plug uploaded and made its task.
async fn start(dir: &std::path::Path) -> Sim {
    let toml = [common::plug_product(), plug_device("PLUG0001", "")].concat();
    let mut config = SimConfig::local(common::registry(&toml));
    config.data_dir = Some(dir.to_path_buf());
    config.platform.ota_deadline = DEADLINE;
    config.platform.command_timeout = ACK_TIMEOUT;
    let sim = Sim::start(config).await.unwrap();
    let firmware = sim.platform().firmware().unwrap();
    firmware
        .upload(PRODUCT, "default", "1.0.2", "plug.bin", &[7u8; 2048])
        .unwrap();
    firmware.set_task(PRODUCT, "default", "1.0.2").unwrap();
    sim
}

/// The device reports firmware `version` of the default module; the platform acks it.
async fn report(wire: &mut Wire, version: &str) {
    let topic = wire.topic(TopicKind::FirmwareReport);
    let payload = json!({"HardVer": "h1", "SoftVer": version, "Type": 2});
    let ack = wire
        .acked(&topic, HeaderCtrl::FirmwareReport, payload)
        .await;
    assert_eq!(ack.code.as_str(), "200", "{ack:?}");
}

/// The next message, which must be an OTA notify.
async fn notified(wire: &mut Wire) -> (Incoming, OtaNotify) {
    let m = wire
        .expect(TopicKind::OtaNotify, HeaderCtrl::OtaNotify)
        .await;
    let notify = m.frame.payload_as().unwrap();
    (m, notify)
}

/// The session takes the notify: it acks it with its DownID.
async fn ack(wire: &mut Wire, m: &Incoming) {
    wire.deliver(m).await;
}

fn progress(sim: &Sim, device: &DeviceIdentity) -> OtaProgress {
    sim.platform().ota_progress(device, None).unwrap()
}

async fn until_status(sim: &Sim, device: &DeviceIdentity, status: &str) -> OtaProgress {
    wait_for(&format!("OTA {status}"), || {
        sim.platform()
            .ota_progress(device, None)
            .is_some_and(|p| p.to_value()["status"] == status)
    })
    .await;
    progress(sim, device)
}

#[tokio::test]
async fn another_version_after_acking_fails_and_renotifies_up_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path()).await;
    let device = sim.device(PRODUCT, "PLUG0001").unwrap();
    let mut wire = Wire::online(sim.mqtt_addr().unwrap(), &plug()).await;
    let failed = reported_instead("1.0.1", "1.0.2");
    let task = sim
        .platform()
        .firmware()
        .unwrap()
        .task(PRODUCT, "default")
        .unwrap();

    let mut down_ids = Vec::new();
    report(&mut wire, "1.0.1").await;
    for n in 1..=3 {
        let (m, notify) = notified(&mut wire).await;
        assert_eq!(notify.soft_ver, "1.0.2");
        let p = progress(&sim, &device);
        assert!(matches!(p.state, OtaState::Notified { .. }), "{p:?}");
        assert_eq!(
            (p.notifies, p.max_notifies, p.task),
            (n, 3, Some(task.serial))
        );
        assert_eq!(p.down_id, notify.down_id);
        // The failures so far: one per notify before this one.
        assert_eq!(
            p.failures,
            vec![failed.clone(); usize::try_from(n - 1).unwrap()]
        );
        down_ids.push(notify.down_id.clone());
        ack(&mut wire, &m).await;
        let p = until_status(&sim, &device, "acked").await;
        assert!(p.acked_at_ms.is_some() && p.deadline_ms.is_some(), "{p:?}");
        // Installed nothing: it reports the old version again. That fails this notify, and
        // (while notifies are left) brings the next at once.
        report(&mut wire, "1.0.1").await;
    }
    // Three notifies: used up. The report that failed the third brings no fourth, nor do
    // later ones.
    let p = until_status(&sim, &device, "failed").await;
    assert!(
        matches!(&p.state, OtaState::Failed { reason, .. } if *reason == failed),
        "{p:?}"
    );
    assert!(wire.quiet_for(Duration::from_millis(300)).await);
    report(&mut wire, "1.0.1").await;
    report(&mut wire, "1.0.0").await;
    assert!(wire.quiet_for(Duration::from_millis(300)).await);
    let p = progress(&sim, &device);
    assert!(p.is_final(), "{p:?}");
    assert_eq!(p.notifies, 3);
    assert_eq!(p.failures, [failed.clone(), failed.clone(), failed.clone()]);
    let mut unique = down_ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 3, "{down_ids:?}");

    // The API shows it, and the store holds it.
    let api = Api::new(&sim);
    let state = api.ok("/api/devices/AA30C505/PLUG0001").await;
    let ota = &state["ota"]["default"];
    assert_eq!(
        (
            &ota["status"],
            &ota["reason"],
            &ota["notifies"],
            &ota["SoftVer"]
        ),
        (&json!("failed"), &json!(failed), &json!(3), &json!("1.0.2"))
    );
    let stored: Vec<(String, Value)> = sim.platform().store().unwrap().state("ota").unwrap();
    assert_eq!(
        stored,
        [("7ED01E2A/AA30C505/PLUG0001/default".to_owned(), ota.clone())]
    );

    // The task set again (the same version): the progress starts over.
    let (status, body) = api
        .send(
            api.put("/api/ota/AA30C505/default")
                .json(&json!({"version": "1.0.2"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["serial"].as_u64().unwrap() > task.serial, "{body}");
    report(&mut wire, "1.0.1").await;
    let (m, _) = notified(&mut wire).await;
    let p = progress(&sim, &device);
    assert_eq!((p.notifies, p.failures.len()), (1, 0), "{p:?}");
    ack(&mut wire, &m).await;
    until_status(&sim, &device, "acked").await;
    // This time it installs and reports the target: success, and no notify.
    report(&mut wire, "1.0.2").await;
    let p = until_status(&sim, &device, "succeeded").await;
    assert_eq!(
        p.state,
        OtaState::Succeeded {
            version: "1.0.2".into(),
            at_ms: match p.state {
                OtaState::Succeeded { at_ms, .. } => at_ms,
                _ => unreachable!(),
            }
        }
    );
    assert_eq!(p.deadline_ms, None);
    report(&mut wire, "1.0.2").await;
    assert!(wire.quiet_for(Duration::from_millis(200)).await);
    assert_eq!(sim.platform().violation_count(&device), 0);
}

#[tokio::test]
async fn silent_past_the_deadline_after_acking_fails() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path()).await;
    let device = sim.device(PRODUCT, "PLUG0001").unwrap();
    let mut wire = Wire::online(sim.mqtt_addr().unwrap(), &plug()).await;

    report(&mut wire, "1.0.1").await;
    let (m, _) = notified(&mut wire).await;
    ack(&mut wire, &m).await;
    let acked = until_status(&sim, &device, "acked").await;
    let acked_at = acked.acked_at_ms.unwrap();
    // Nothing more from the device: failed once the deadline passed, not before.
    let p = until_status(&sim, &device, "failed").await;
    let OtaState::Failed { reason, at_ms } = &p.state else {
        panic!("{p:?}")
    };
    assert_eq!(reason, SILENT_AFTER_ACK);
    let deadline_ms = i64::try_from(DEADLINE.as_millis()).unwrap();
    assert!(*at_ms >= acked_at + deadline_ms, "{p:?}");
    assert!(*at_ms < acked_at + deadline_ms + 1000, "{p:?}");

    // It comes back with the old version: notified again (2 of 3).
    report(&mut wire, "1.0.1").await;
    let (m, _) = notified(&mut wire).await;
    assert_eq!(progress(&sim, &device).notifies, 2);
    ack(&mut wire, &m).await;
    until_status(&sim, &device, "acked").await;
    until_status(&sim, &device, "failed").await;
    // And then it reports the target after all (it did update, late): success.
    report(&mut wire, "1.0.2").await;
    let p = until_status(&sim, &device, "succeeded").await;
    assert_eq!(p.failures, [SILENT_AFTER_ACK, SILENT_AFTER_ACK]);
    assert!(wire.quiet_for(Duration::from_millis(200)).await);
}

#[tokio::test]
async fn an_unacked_notify_fails_and_is_not_repeated_while_awaited() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path()).await;
    let device = sim.device(PRODUCT, "PLUG0001").unwrap();
    let mut wire = Wire::online(sim.mqtt_addr().unwrap(), &plug()).await;

    report(&mut wire, "1.0.1").await;
    // The notify arrives, and the session does not see it (yet): no ack.
    let (first_message, first) = notified(&mut wire).await;
    // Reports while its ack is awaited bring no second notify.
    report(&mut wire, "1.0.1").await;
    report(&mut wire, "1.0.1").await;
    let p = progress(&sim, &device);
    assert!(matches!(p.state, OtaState::Notified { .. }), "{p:?}");
    assert_eq!(p.notifies, 1);
    let p = until_status(&sim, &device, "failed").await;
    assert!(
        matches!(&p.state, OtaState::Failed { reason, .. } if reason == NOT_ACKED),
        "{p:?}"
    );
    // The target reported without any ack is no success of this OTA.
    report(&mut wire, "1.0.2").await;
    assert!(matches!(
        progress(&sim, &device).state,
        OtaState::Failed { .. }
    ));
    // The old version again: a second notify, with a new DownID; this one is acked.
    report(&mut wire, "1.0.1").await;
    let (m, second) = notified(&mut wire).await;
    assert_ne!(second.down_id, first.down_id);
    // A late ack of the first notify changes nothing.
    ack(&mut wire, &first_message).await;
    assert!(wire.quiet_for(Duration::from_millis(100)).await);
    let p = progress(&sim, &device);
    assert!(matches!(p.state, OtaState::Notified { .. }), "{p:?}");
    ack(&mut wire, &m).await;
    let p = until_status(&sim, &device, "acked").await;
    assert_eq!(
        (p.notifies, p.down_id.as_str()),
        (2, second.down_id.as_str())
    );
}

/// A notify pushed by hand counts among the task's notifies, and is sent even once they are
/// used up; one for a version that is not the task's has a progress of its own.
#[tokio::test]
async fn pushed_notifies() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path()).await;
    let device = sim.device(PRODUCT, "PLUG0001").unwrap();
    let mut wire = Wire::online(sim.mqtt_addr().unwrap(), &plug()).await;
    let platform = sim.platform().clone();

    for n in 1..=4 {
        let notify = platform.ota_notify_for(&device, None).unwrap();
        let push = {
            let platform = platform.clone();
            let device = device.clone();
            tokio::spawn(async move { platform.send_ota(&device, notify, None).await })
        };
        let (m, _) = notified(&mut wire).await;
        ack(&mut wire, &m).await;
        push.await.unwrap().unwrap();
        let p = progress(&sim, &device);
        assert!(matches!(p.state, OtaState::Acked { .. }), "{p:?}");
        assert_eq!(p.notifies, n);
    }
    // Used up for firmware reports: another version reported fails it and brings none.
    report(&mut wire, "1.0.1").await;
    assert!(wire.quiet_for(Duration::from_millis(300)).await);
    assert!(progress(&sim, &device).is_final());

    // A notify of another version than the task's (none set now): a progress of its own.
    let mut other = platform.ota_notify_for(&device, None).unwrap();
    other.soft_ver = "9.9.9".into();
    let firmware = platform.firmware().unwrap();
    firmware.remove_task(PRODUCT, "default").unwrap();
    let push = {
        let platform = platform.clone();
        let device = device.clone();
        tokio::spawn(async move { platform.send_ota(&device, other, None).await })
    };
    let (m, _) = notified(&mut wire).await;
    ack(&mut wire, &m).await;
    push.await.unwrap().unwrap();
    let p = progress(&sim, &device);
    assert_eq!((p.target.as_str(), p.task, p.notifies), ("9.9.9", None, 1));
    report(&mut wire, "9.9.9").await;
    until_status(&sim, &device, "succeeded").await;
    // No task: no notify for any report.
    report(&mut wire, "1.0.1").await;
    assert!(wire.quiet_for(Duration::from_millis(200)).await);
}
