//! A message is the platform's once the broker has acknowledged it: a device that publishes a
//! QoS 1 report, gets its PUBACK and disconnects at once (cleanly, or by vanishing from the
//! network) has its report recorded, also while the platform is behind on other devices'
//! messages and handles the report only after the connection is gone. The broker hands the
//! platform the sender's login with each message, so handling it does not depend on the
//! connection still being there.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::HashSet;

use common::wire::Wire;
use common::{PLUG_SECRET, Params, plug_device, plug_named, wait_for};
use serde_json::json;
use x_protocol::{Frame, HeaderCtrl, MessageId, TopicKind};
use x_runtime::Persisted;
use x_sim::sim::{Sim, SimConfig};

/// How many times the race is run.
const ROUNDS: usize = 20;
/// How many reports the busy neighbour sends right before each round's report, so that the
/// platform (which stores each message, fsync'd) is behind when that report reaches it.
const BACKLOG: usize = 30;

fn registry() -> String {
    let secret = format!("device_secret = \"{PLUG_SECRET}\"");
    [
        common::plug_product(),
        plug_device("PLUG0001", &secret),
        plug_device("BUSY0001", ""),
    ]
    .concat()
}

/// A wire of PLUG0001 that knows its DeviceSecret: straight to the V2 login, no auth phase.
async fn logged_in(addr: std::net::SocketAddr, params: &Params) -> Wire {
    let persisted = Persisted {
        device_secret: Some(x_protocol::SecretString::new(PLUG_SECRET.to_owned())),
        ..Persisted::default()
    };
    Wire::resume(addr, params, persisted).await
}

/// A loaded machine: two workers, and a platform with a store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_acked_by_the_broker_is_recorded_after_the_sender_left() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SimConfig::local(common::registry(&registry()));
    config.data_dir = Some(dir.path().to_path_buf());
    let sim = Sim::start(config).await.unwrap();
    let addr = sim.mqtt_addr().unwrap();
    let plug = plug_named("PLUG0001");
    let device = sim.device("AA30C505", "PLUG0001").unwrap();
    let mut busy = Wire::online(addr, &plug_named("BUSY0001")).await;
    let busy_topic = busy.topic(TopicKind::PropertyReport);

    let mut sent: Vec<MessageId> = Vec::new();
    for round in 0..ROUNDS {
        let mut wire = logged_in(addr, &plug).await;
        let topic = wire.topic(TopicKind::PropertyReport);
        // The platform falls behind: a burst from the neighbour, not waited for.
        for _ in 0..BACKLOG {
            let frame = Frame::new(
                busy.next_id(),
                HeaderCtrl::PropertyReport,
                json!({"power": 1.0}),
            );
            busy.send(&busy_topic, frame).await;
        }
        // A MessageId of its own per round (each login's wire counts from 1000).
        let id = MessageId::Number(u64::try_from(10_000 + round).unwrap());
        let frame = Frame::new(
            id.clone(),
            HeaderCtrl::PropertyReport,
            json!({"power": f64::from(u32::try_from(round).unwrap())}),
        );
        wire.send_acked(&topic, frame).await;
        // PUBACK in hand: gone at once, half the time cleanly, half the time without a word.
        if round % 2 == 0 {
            wire.disconnect().await;
        } else {
            wire.vanish();
        }
        sent.push(id);
    }

    // Once the platform has caught up with the neighbour (still connected), it has handled
    // every report of the rounds too.
    let busy_device = busy.id().clone();
    wait_for("the neighbour's reports handled", || {
        sim.platform().received_from(&busy_device).len() == ROUNDS * BACKLOG
    })
    .await;
    let recorded: HashSet<MessageId> = sim
        .platform()
        .received_from(&device)
        .into_iter()
        .map(|r| r.message_id)
        .collect();
    let dropped: Vec<&MessageId> = sent.iter().filter(|id| !recorded.contains(id)).collect();
    assert!(
        dropped.is_empty(),
        "{} of {ROUNDS} reports acked by the broker were dropped: {dropped:?}",
        dropped.len()
    );
    assert_eq!(recorded.len(), ROUNDS);
    // Nothing about it was a violation.
    assert_eq!(sim.platform().violation_count(&device), 0);
}
