//! Faults in the middle of a stream of reports, against x-sim in-process: the connection is
//! dropped while pipelined reports wait for their acks, twice; every report is acked once
//! and x-sim holds each exactly once. (The platform process killed and restarted under a
//! live device is x-sim's `restart` test, with `x-sim serve --data` as a child process.)
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use x_sdk::protocol::DeviceIdentity;
use x_sdk::runtime::{BackoffConfig, Device};

use crate::plug::{SmartPlug, SmartPlugReport, SmartPlugService};
use crate::support::{WAIT, sim};

#[tokio::test]
async fn a_connection_dropped_under_pipelined_reports_loses_none_and_doubles_none() {
    const REPORTS: u64 = 60;
    let sim = sim().await;
    let p = sim.platform();
    let id = sim.device("AA30C505", "PLUG0001").unwrap();
    let dir = std::env::temp_dir().join(format!("x-sdk-midstream-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let device = Device::<SmartPlug, SmartPlugService>::builder(
        DeviceIdentity::parse("7ED01E2A", "AA30C505", "PLUG0001").unwrap(),
        "DB6FACEF35BEBA0517712F0E4BE32936".parse().unwrap(),
    )
    .broker(&format!("mqtt://{}", sim.mqtt_addr().unwrap()))
    .unwrap()
    .state_dir(&dir)
    .window(8)
    .backoff(BackoffConfig {
        base: Duration::from_millis(100),
        cap: Duration::from_millis(500),
        jitter: 0.5,
    })
    .ack_timeout(Duration::from_secs(3))
    .connect()
    .await
    .unwrap();
    // Acks come 200 ms late, so that reports are in flight when the connection drops.
    p.faults().set_delay(Duration::from_millis(200));
    let mut deliveries = Vec::new();
    for n in 0..REPORTS {
        if n == 20 || n == 40 {
            device.wait_online_for(WAIT).await.unwrap();
            assert!(device.waiting_upload() > 0, "nothing in flight to drop");
            assert!(p.drop_device(&id));
        }
        let report = SmartPlugReport::default().with_energy(n as f64);
        deliveries.push(device.report(report).await.unwrap());
    }
    for (n, d) in deliveries.into_iter().enumerate() {
        tokio::time::timeout(2 * WAIT, d)
            .await
            .unwrap_or_else(|_| panic!("report {n}: no outcome"))
            .unwrap_or_else(|e| panic!("report {n}: {e}"));
    }
    p.faults().set_delay(Duration::ZERO);

    // x-sim holds every value exactly once, whatever was sent again after the drops.
    let mut held: BTreeMap<u64, usize> = BTreeMap::new();
    for (_, timed) in p.property_history(&id, Some("energy")) {
        *held
            .entry(timed.value.as_f64().unwrap() as u64)
            .or_default() += 1;
    }
    let expected: BTreeMap<u64, usize> = (0..REPORTS).map(|n| (n, 1)).collect();
    assert_eq!(held, expected);
    let counters = device.counters().session;
    assert_eq!(counters.reconnects, 2, "{counters:?}");
    assert_eq!(device.waiting_upload(), 0);
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
