//! Crash safety of store-and-forward with a real process and a real kill: a device process
//! (this test binary re-run as `crash_child`) reports a counter as fast as the outbox takes
//! it and is SIGKILLed at 24 points spread over buffering (broker down), uploading (just
//! back) and live sending, restarted each time on the same state directory. At the end
//! x-sim holds every report the process was told was queued, each exactly once.
#![allow(clippy::unwrap_used)]

/// The smart plug's bindings, as x-codegen generates them from models/smart-plug.json.
use crate::plug;

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plug::{SmartPlug, SmartPlugReport, SmartPlugService};
use x_sdk::protocol::DeviceIdentity;
use x_sdk::runtime::{BackoffConfig, Device, DeviceBuilder};
use x_sim::mosquitto::Mosquitto;

/// Environment of the child: broker URL, state directory, first counter value.
const CHILD_ENV: &str = "X_CRASH_CHILD";
/// Each run counts in its own range, so that a report made durable but not yet printed by
/// a killed run can never look like a report of the next one.
const RANGE: u64 = 1_000_000;

fn plug(url: &str, dir: &std::path::Path) -> DeviceBuilder<SmartPlug, SmartPlugService> {
    let id = DeviceIdentity::parse("7ED01E2A", "AA30C505", "PLUG0001").unwrap();
    Device::<SmartPlug, SmartPlugService>::builder(
        id,
        "DB6FACEF35BEBA0517712F0E4BE32936".parse().unwrap(),
    )
    .broker(url)
    .unwrap()
    .state_dir(dir)
    .history_batch(50)
    .backoff(BackoffConfig {
        base: Duration::from_millis(50),
        cap: Duration::from_millis(200),
        jitter: 0.5,
    })
    .ack_timeout(Duration::from_secs(2))
}

/// The device process: reports `energy` = first, first + 1, ... and prints `queued N` once
/// each report is durable. Runs until killed.
#[test]
#[ignore = "the device process of the crash test; that test starts it"]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split('|');
    let (url, dir, first) = (
        parts.next().unwrap().to_owned(),
        std::path::PathBuf::from(parts.next().unwrap()),
        parts.next().unwrap().parse::<u64>().unwrap(),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let device = plug(&url, &dir).start().unwrap();
        for n in first.. {
            let report = SmartPlugReport::default().with_energy(n as f64);
            // Waiting for the ack is not what is tested: durable is enough.
            drop(device.report(report).await.unwrap());
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "queued {n}").unwrap();
            out.flush().unwrap();
        }
    });
}

/// One run of the device process until it is killed `after` its start.
fn run_child(url: &str, dir: &std::path::Path, first: u64, after: Duration) -> Vec<u64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "crash::crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{url}|{}|{first}", dir.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let queued = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let queued = queued.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(n) = line.strip_prefix("queued ") {
                    queued.lock().unwrap().push(n.parse::<u64>().unwrap());
                }
            }
        })
    };
    std::thread::sleep(after);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    std::mem::take(&mut *queued.lock().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_killed_at_24_points_loses_nothing_and_x_sim_holds_each_report_once() {
    let mut broker = Mosquitto::start().unwrap();
    let sim = support::sim_on(&broker).await;
    let dir = std::env::temp_dir().join(format!("x-sdk-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let url = broker.url();
    let started = std::time::Instant::now();
    let mut queued = BTreeSet::new();
    let mut broker_up = true;
    // A fixed spread of kill delays (a small linear congruential walk), 60..420 ms.
    let mut walk = 7u64;
    for run in 0..24u64 {
        walk = (walk * 1_103_515_245 + 12_345) % 2_147_483_648;
        let jitter = walk % 240;
        let after = match run % 3 {
            // Buffering: the broker is down for the whole run.
            0 => {
                if broker_up {
                    broker.kill();
                    broker_up = false;
                }
                Duration::from_millis(180 + jitter)
            }
            // Uploading: the broker is back; killed while the backlog drains.
            1 => {
                broker.restart().unwrap();
                broker_up = true;
                support::platform_subscribed(&broker).await;
                Duration::from_millis(60 + jitter / 2)
            }
            // Live, with what is left of the backlog.
            _ => Duration::from_millis(200 + jitter),
        };
        let url = url.clone();
        let dir2 = dir.clone();
        let got = tokio::task::spawn_blocking(move || run_child(&url, &dir2, run * RANGE, after))
            .await
            .unwrap();
        eprintln!("run {run}: killed after {after:?}, {} queued", got.len());
        queued.extend(got);
    }
    eprintln!("runs done at {:?}", started.elapsed());
    assert!(queued.len() > 200, "only {} reports queued", queued.len());

    // Back for good: the same state directory, in this process, sends what is left.
    if !broker_up {
        broker.restart().unwrap();
        support::platform_subscribed(&broker).await;
    }
    let device = plug(&url, &dir).connect().await.unwrap();
    let id = sim.device("AA30C505", "PLUG0001").unwrap();
    let held = || {
        let mut by_value: BTreeMap<u64, usize> = BTreeMap::new();
        for (_, timed) in sim.platform().property_history(&id, Some("energy")) {
            if let Some(v) = timed.value.as_f64() {
                *by_value.entry(v as u64).or_default() += 1;
            }
        }
        by_value
    };
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let held = held();
        let missing: Vec<_> = queued.iter().filter(|n| !held.contains_key(n)).collect();
        if device.waiting_upload() == 0 && missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "not drained: {} waiting upload, {:?}, {} missing, first {:?}",
            device.waiting_upload(),
            device.counters(),
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held = held();
    let missing: Vec<_> = queued.iter().filter(|n| !held.contains_key(n)).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    let twice: Vec<_> = held.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "held more than once: {twice:?}");
    // Durable but killed before it could say so: allowed, and also held once.
    let unprinted = held.keys().filter(|n| !queued.contains(n)).count();
    eprintln!(
        "{} reports queued over 24 kills, {} held ({unprinted} made durable just before a kill)",
        queued.len(),
        held.len()
    );
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
