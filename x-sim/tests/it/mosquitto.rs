//! The platform as an MQTT client of a real Mosquitto (the Debian package: `apt-get install
//! -y mosquitto`), in-process (`Sim::start` with `Mqtt::External`) and as `x-sim serve
//! --broker mqtt://HOST:PORT`, with the SDK's runtime as the device (and a wire for a
//! report the model refuses): the auth phase for a plain and an encrypted product, the
//! firmware report, time sync, a property report, an event, a platform command, the
//! platform rejoining a restarted broker, and a dropped platform leaving it.
//!
//! Mosquitto does not apply the platform's login rules (with an external broker they are the
//! broker's: this one allows anonymous clients), so devices log in with their usual
//! credentials and nothing is refused. MQTT 3.1.1 has no "no local": the platform, subscribed
//! to `/sys/#`, receives its own publishes and must ignore them; devices subscribe exact
//! topics. The broker is `x_sim::mosquitto`'s, a Mosquitto of the test's own.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::wire::Wire;
use common::{PLUG_SECRET, Params, Plug, Serve, WAIT, online, plug_device};
use serde_json::{Value, json};
use x_protocol::{DeviceIdentity, DeviceSecret, HeaderCtrl, derive_session_key};
use x_sim::mosquitto::Mosquitto;
use x_sim::platform::Command as PlatformCommand;
use x_sim::sim::{Mqtt, Sim, SimConfig};

/// A Mosquitto of the test's own on a free loopback port; killed when dropped.
fn mosquitto() -> Mosquitto {
    Mosquitto::start().unwrap_or_else(|e| panic!("{e}"))
}

fn addr(broker: &Mosquitto) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], broker.port()))
}

/// Waits (up to [`WAIT`]) for the current run's log to contain `text`, letting the test's
/// runtime (and an in-process platform on it) run meanwhile.
async fn wait_log(broker: &Mosquitto, text: &str) -> bool {
    let until = Instant::now() + WAIT;
    while Instant::now() < until {
        if broker.log().contains(text) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Waits (up to [`WAIT`]) for the platform's client `me` to subscribe to `/sys/#`; fails
/// with the log.
async fn expect_platform_subscribed(broker: &Mosquitto, me: &str) {
    assert!(
        wait_log(broker, &format!("{me} 1 /sys/#")).await,
        "{me} did not subscribe to /sys/#: {}",
        broker.log()
    );
}

/// One plain type-1 product (its device pre-registered with a secret) and one encrypted
/// type-0 product (its devices register at auth), both on the smart-plug model.
fn registry_toml() -> String {
    let secret = format!("device_secret = \"{PLUG_SECRET}\"");
    [
        common::plug_product(),
        plug_device("PLUG0001", &secret),
        common::encrypted_product(),
    ]
    .concat()
}

/// A device online: the auth phase (Code 0 with the DeviceSecret, and SessionID and Nonce
/// for the encrypted product, which the platform holds), then the V2 login; its state
/// directory in `dir`.
async fn online_device(sim: &Sim, broker: SocketAddr, p: &Params, dir: &Path) -> Plug {
    let device = online(p.plug(broker).state_dir(dir)).await;
    let kept = device.persisted().unwrap().unwrap();
    let secret: DeviceSecret = kept.device_secret.unwrap().expose().parse().unwrap();
    if !p.encrypted {
        assert_eq!(secret, PLUG_SECRET.parse::<DeviceSecret>().unwrap());
    }
    assert_eq!(kept.session.is_some(), p.encrypted, "{:?}", kept.session);
    if let Some(g) = kept.session {
        let key = derive_session_key(&p.product_key, &g.session_id, g.nonce).unwrap();
        assert_eq!(sim.platform().session_key(&p.id), Some(key));
    }
    device
}

/// The firmware report and time sync of the login, a property report and an event: each
/// resolves on its ack (on its ack topic, with the request's MessageId and HeaderCtrl),
/// and no frame arrives that the device cannot use (an ack twice: the platform answering its
/// own publishes).
async fn device_rows(device: &Plug) {
    common::wait_for("time synced", || device.platform_time().is_some()).await;
    assert!(device.platform_time().unwrap() > 1_700_000_000_000);
    common::report_and_event(device).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counters = device.counters().session;
    assert_eq!(counters.bad_frames, 0, "{counters:?}");
}

/// A report the model refuses, from a wire with the device's state (no auth phase): acked
/// 4001, once.
async fn refused_report(broker: SocketAddr, p: &Params, device: &Plug) {
    let kept = device.persisted().unwrap().unwrap();
    let mut wire = Wire::resume(broker, p, kept).await;
    common::refused_report(&mut wire).await;
    assert!(wire.quiet_for(Duration::from_millis(300)).await);
    wire.disconnect().await;
}

/// A property set from the platform, answered by the device with the applied values.
async fn property_set(sim: &Sim, device: &Plug, id: &DeviceIdentity, switch: i64) {
    let answer = sim
        .platform()
        .send_command(
            id,
            PlatformCommand::SetProperties(json!({"switch": switch})),
            None,
        )
        .await
        .unwrap();
    assert_eq!(answer.ack().unwrap().data, Some(json!({"switch": switch})));
    assert_eq!(device.state().switch, switch == 1);
}

/// What the platform recorded from a device: only the device's own messages, once each.
fn received(sim: &Sim, id: &DeviceIdentity) -> Vec<(HeaderCtrl, Value)> {
    sim.platform()
        .received_from(id)
        .into_iter()
        .map(|r| (r.header_ctrl, r.payload))
        .collect()
}

async fn external_sim(broker: &Mosquitto) -> Sim {
    let mut config = SimConfig::local(common::registry(&registry_toml()));
    config.mqtt = Mqtt::External {
        host: "127.0.0.1".into(),
        port: broker.port(),
    };
    config.http = None;
    Sim::start(config).await.unwrap()
}

#[tokio::test]
async fn in_process_platform_over_mosquitto() {
    let broker = mosquitto();
    let sim = external_sim(&broker).await;
    assert!(sim.broker().is_none() && sim.mqtt_addr().is_none());
    // Joined as its own client, subscribed to /sys/#.
    let me = sim.client_id().unwrap().to_owned();
    expect_platform_subscribed(&broker, &me).await;

    for p in [common::plug(), common::encrypted("ENC00001")] {
        let dir = tempfile::tempdir().unwrap();
        let device = online_device(&sim, addr(&broker), &p, dir.path()).await;
        device_rows(&device).await;
        property_set(&sim, &device, &p.id, 0).await;
        device.shutdown().await;
        refused_report(addr(&broker), &p, &device).await;

        let latest = sim.platform().latest_properties(&p.id);
        assert_eq!(
            (&latest["switch"].value, &latest["power"].value),
            (&json!(1), &json!(12.5))
        );
        let ctrls: Vec<HeaderCtrl> = received(&sim, &p.id).into_iter().map(|r| r.0).collect();
        assert_eq!(
            ctrls,
            // (The report the model refused is not kept.)
            [
                HeaderCtrl::FirmwareReport,
                HeaderCtrl::TimeSync,
                HeaderCtrl::PropertyReport,
                HeaderCtrl::EventReport,
                HeaderCtrl::PropertySet,
            ],
            "{}",
            p.id
        );
        // The encrypted device's frames travelled encrypted; the platform keeps them plain.
        assert_eq!(
            received(&sim, &p.id)[2].1,
            json!({"switch": 1, "power": 12.5})
        );
    }
}

#[tokio::test]
async fn platform_rejoins_a_restarted_mosquitto() {
    let mut broker = mosquitto();
    let sim = external_sim(&broker).await;
    let me = sim.client_id().unwrap().to_owned();
    let p = common::encrypted("ENC00002");
    let dir = tempfile::tempdir().unwrap();
    let device = online_device(&sim, addr(&broker), &p, dir.path()).await;
    property_set(&sim, &device, &p.id, 1).await;
    device.shutdown().await;

    broker.restart().unwrap();
    // The platform reconnects on its own and subscribes again.
    expect_platform_subscribed(&broker, &me).await;
    let dir = tempfile::tempdir().unwrap();
    let device = online_device(&sim, addr(&broker), &p, dir.path()).await;
    device_rows(&device).await;
    property_set(&sim, &device, &p.id, 0).await;
}

#[tokio::test]
async fn serve_with_broker_flag_over_mosquitto() {
    let broker = mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let config = common::registry_file(dir.path(), &registry_toml());
    let url = broker.url();
    let serve = Serve::start(&[
        "--config",
        config.to_str().unwrap(),
        "--broker",
        &url,
        "--http",
        "off",
    ]);
    assert!(serve.mqtt.is_none() && serve.http.is_none());
    let me = format!("x-sim-platform-{}-0", serve.child.id());
    expect_platform_subscribed(&broker, &me).await;

    for p in [common::plug(), common::encrypted("ENC00003")] {
        let dir = tempfile::tempdir().unwrap();
        let device = online(p.plug(addr(&broker)).state_dir(dir.path())).await;
        let counters = device.counters().session;
        assert_eq!(counters.bad_frames, 0, "{counters:?}");
        common::report_and_event(&device).await;
        device.shutdown().await;
        refused_report(addr(&broker), &p, &device).await;
        let prefix = p.id.topic_prefix();
        assert!(serve.wait_log(&format!("<- {prefix}/update_time")));
        // It logs what it received and what it sent, and did not take its own acks for
        // device messages.
        let log = serve.log();
        let count = |text: &str| log.iter().filter(|l| l.contains(text)).count();
        assert_eq!(
            count(&format!("<- {prefix}/model/property/report ")),
            2,
            "{log:#?}"
        );
        assert_eq!(count(&format!("-> {prefix}/model/property/report_ack ")), 2);
        assert_eq!(count(&format!("<- {prefix}/model/property/report_ack")), 0);
        assert_eq!(count(&format!("<- {prefix}/downlink")), 0);
    }
    // One auth phase per device (the wires log in with what the devices kept).
    assert_eq!(
        serve
            .log()
            .iter()
            .filter(|l| l.contains("<- /sys/device/auth"))
            .count(),
        2
    );
}

/// A dropped platform leaves the broker instead of reconnecting for ever.
#[tokio::test]
async fn a_dropped_platform_leaves_the_broker() {
    let broker = mosquitto();
    let first = external_sim(&broker).await;
    let me = first.client_id().unwrap().to_owned();
    drop(first);
    assert!(
        wait_log(&broker, &format!("Client {me} closed its connection")).await,
        "{}",
        broker.log()
    );
    let sim = external_sim(&broker).await;
    let p = common::plug();
    let dir = tempfile::tempdir().unwrap();
    let device = online_device(&sim, addr(&broker), &p, dir.path()).await;
    device_rows(&device).await;
    property_set(&sim, &device, &p.id, 1).await;
    assert!(
        !broker.log().contains("already connected"),
        "{}",
        broker.log()
    );
}
