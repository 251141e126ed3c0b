//! What store-and-forward costs, as ratios against baselines measured in the same run:
//!
//! 1. durable reports per second into the outbox (`Device::report` of a device that is
//!    offline, returning once the report is committed to `outbox.redb`), one caller at a
//!    time and 16 callers at once (the group commit takes what waits), against the same
//!    number of plain redb inserts of the same bytes with one commit each and with one
//!    commit per 16;
//! 2. the time to drain an outage of 100,000 reports through x-sim in memory (history
//!    uploads of 50, window 32), against the same device sending live reports with the same
//!    outbox, window-pipelined.
//!
//! `cargo bench --bench outbox`; `-- --quick` for a smaller run.

#[path = "../tests/runtime/support/mod.rs"]
mod support;

#[rustfmt::skip]
#[path = "../tests/golden/smart_plug.rs"]
#[allow(dead_code, missing_docs)]
mod plug;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use plug::{SmartPlug, SmartPlugReport, SmartPlugService};
use redb::{Database, TableDefinition};
use serde_json::json;
use x_sdk::protocol::DeviceIdentity;
use x_sdk::runtime::outbox::{Entry, EntryKind, Outbox, OutboxLimits};
use x_sdk::runtime::{Device, DeviceBuilder};

const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (n, rounds, outage) = if quick {
        (500, 1, 20_000)
    } else {
        (2_000, 3, 100_000)
    };

    println!("## 1. durable appends, {n} per round, {rounds} rounds, interleaved");
    let mut results: [Vec<f64>; 4] = Default::default();
    for round in 0..rounds {
        results[0].push(plain_redb(&temp(&format!("redb-each-{round}")), n, 1));
        results[1].push(plain_redb(&temp(&format!("redb-16-{round}")), n, 16));
        results[2].push(rt.block_on(outbox_reports(&temp(&format!("ob-1-{round}")), n, 1)));
        results[3].push(rt.block_on(outbox_reports(&temp(&format!("ob-16-{round}")), n, 16)));
    }
    let [each, batch, seq, conc] = results.map(|mut v| median(&mut v));
    println!("plain redb, one commit per insert:   {each:>8.0} inserts/s");
    println!("plain redb, one commit per 16:       {batch:>8.0} inserts/s");
    println!("outbox, one caller:                  {seq:>8.0} reports/s");
    println!("outbox, 16 callers:                  {conc:>8.0} reports/s");
    println!(
        "ratio outbox one caller / redb commit each: {:.2}",
        seq / each
    );
    println!(
        "ratio outbox 16 callers / redb commit each: {:.2}",
        conc / each
    );
    println!(
        "ratio outbox 16 callers / redb commit per 16: {:.2}",
        conc / batch
    );

    println!("\n## 2. an outage of {outage} reports drained through x-sim in memory");
    let live_n = outage / 10;
    let live = rt.block_on(live_through_sim(&temp("live"), live_n));
    let (drain_s, drained) = rt.block_on(drain(&temp("drain"), outage));
    println!("live reports with the outbox, window 32: {live:.0} acked/s ({live_n} reports)");
    println!(
        "drain of {outage}: {drain_s:.2} s, {:.0} entries/s ({drained} held by x-sim)",
        outage as f64 / drain_s
    );
    println!(
        "ratio drain rate / live rate: {:.2}",
        outage as f64 / drain_s / live
    );
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn temp(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("x-sdk-bench-outbox-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn entry(i: usize) -> Entry {
    Entry::new(
        EntryKind::Report,
        json!({ "power": (i % 3000) as f64 }),
        1_700_000_000_000 + i as i64,
    )
}

/// `n` inserts of outbox-sized entries into a plain redb table, `per_commit` per commit.
fn plain_redb(dir: &Path, n: usize, per_commit: usize) -> f64 {
    let db = Database::create(dir.join("plain.redb")).expect("redb");
    let bytes: Vec<Vec<u8>> = (0..n)
        .map(|i| serde_json::to_vec(&entry(i)).expect("json"))
        .collect();
    let start = Instant::now();
    for (chunk_at, chunk) in bytes.chunks(per_commit).enumerate() {
        let tx = db.begin_write().expect("tx");
        {
            let mut table = tx.open_table(TABLE).expect("table");
            for (i, b) in chunk.iter().enumerate() {
                let key = (chunk_at * per_commit + i) as u64;
                table.insert(key, b.as_slice()).expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(dir);
    rate
}

fn plug(url: &str, dir: &Path) -> DeviceBuilder<SmartPlug, SmartPlugService> {
    let id = DeviceIdentity::parse("7ED01E2A", "AA30C505", "PLUG0001").expect("id");
    Device::<SmartPlug, SmartPlugService>::builder(
        id,
        "DB6FACEF35BEBA0517712F0E4BE32936".parse().expect("key"),
    )
    .broker(url)
    .expect("broker")
    .state_dir(dir)
    .outbox(Some(OutboxLimits {
        max_entries: 200_000,
        max_bytes: 256 * 1024 * 1024,
        ..OutboxLimits::default()
    }))
}

/// `n` reports of a device that is offline (nothing listens on port 1), each returning once
/// durable, from `callers` tasks at once.
async fn outbox_reports(dir: &Path, n: usize, callers: usize) -> f64 {
    let device = plug("mqtt://127.0.0.1:1", dir).start().expect("device");
    let device = std::sync::Arc::new(device);
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let device = device.clone();
            tokio::spawn(async move {
                for i in (c..n).step_by(callers) {
                    let report = SmartPlugReport::default().with_power((i % 3000) as f32);
                    drop(device.report(report).await.expect("durable"));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
    rate
}

/// Live reports through x-sim with the outbox, window-pipelined: acked reports per second.
async fn live_through_sim(dir: &Path, n: usize) -> f64 {
    let sim = support::sim().await;
    let url = format!("mqtt://{}", sim.mqtt_addr().expect("addr"));
    let device = plug(&url, dir).connect().await.expect("online");
    let start = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    for i in 0..n {
        let report = SmartPlugReport::default().with_power((i % 3000) as f32);
        pending.push_back(device.report(report).await.expect("report"));
        while pending.len() >= 32 {
            pending.pop_front().expect("pending").await.expect("acked");
        }
    }
    for d in pending {
        d.await.expect("acked");
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
    rate
}

/// An outbox holding `n` reports (an outage), then the device online through x-sim: the
/// seconds until every entry is acked and gone, and how many reports x-sim holds.
async fn drain(dir: &Path, n: usize) -> (f64, usize) {
    {
        let (mut outbox, _) = Outbox::open(
            dir,
            OutboxLimits {
                max_entries: 200_000,
                max_bytes: 256 * 1024 * 1024,
                ..OutboxLimits::default()
            },
            0,
        )
        .expect("outbox");
        let entries: Vec<Entry> = (0..n).map(entry).collect();
        for chunk in entries.chunks(1_000) {
            outbox.commit(chunk, &[]).expect("commit");
        }
    }
    let sim = support::sim().await;
    let id = sim.device("AA30C505", "PLUG0001").expect("device");
    let url = format!("mqtt://{}", sim.mqtt_addr().expect("addr"));
    let start = Instant::now();
    let device = plug(&url, dir).connect().await.expect("online");
    let until = Instant::now() + Duration::from_secs(600);
    while (device.counters().session.acked as usize) < n {
        assert!(
            Instant::now() < until,
            "drain timed out: {:?}",
            device.counters()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let held = sim.platform().property_history(&id, Some("power")).len();
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
    (seconds, held)
}
