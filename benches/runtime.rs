//! What the device runtime costs, as ratios against baselines measured in the same run:
//!
//! 1. PUBACKed QoS 1 property reports per second from one runtime device to Mosquitto on
//!    loopback, against raw rumqttc publishing the same frames (same inflight limit);
//! 2. platform-acked reports per second through x-sim in memory, pipelined (window 64),
//!    against the raw PUBACK rate of (1);
//! 3. resident memory per connected idle device at 1,000 devices in one process, against
//!    1,000 raw rumqttc clients with the same subscriptions (each side in a child process of
//!    its own, so one does not inherit the other's heap).
//!
//! `cargo bench --bench runtime` (needs `/usr/sbin/mosquitto`); `-- --quick` for fewer rounds.

#[path = "../tests/runtime/support/mod.rs"]
mod support;

#[rustfmt::skip]
#[path = "../tests/golden/smart_plug.rs"]
#[allow(dead_code, missing_docs)]
mod plug;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use plug::{SmartPlug, SmartPlugReport, SmartPlugService};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;
use x_sdk::protocol::{
    ConnectType, DeviceIdentity, DeviceSecret, Frame, HeaderCtrl, MqttLogin, ProductKey,
    RegistrationType, TopicKind,
};
use x_sdk::runtime::Device;
use x_sim::mosquitto::Mosquitto;

const PRODUCT_KEY: &str = "A1A2A3A4A5A6A7A8A9AAABACADAEAFA0";
const SECRET: &str = "326086233FAB8A96566796551EB1DFF8";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--child") {
        let kind = args[at + 1].clone();
        let port: u16 = args[at + 2].parse().expect("port");
        let count: usize = args[at + 3].parse().expect("count");
        return child(&kind, port, count);
    }
    let quick = args.iter().any(|a| a == "--quick");
    // `--only 3` runs one part.
    let only: Option<u8> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|at| args.get(at + 1)?.parse().ok());
    let runs = |part: u8| only.is_none_or(|o| o == part);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let broker = Mosquitto::start().expect("mosquitto");
    let (reports, rounds) = if quick { (5_000, 1) } else { (20_000, 3) };

    let mut raw_rate = f64::NAN;
    if runs(1) {
        println!(
            "## 1. QoS 1 reports to Mosquitto, {reports} per round, {rounds} rounds, interleaved"
        );
        let mut raw = Vec::new();
        let mut runtime = Vec::new();
        for round in 0..rounds {
            raw.push(rt.block_on(raw_publish(broker.port(), reports, round)));
            runtime.push(rt.block_on(runtime_publish(broker.port(), reports, round)));
        }
        raw_rate = median(&mut raw);
        let runtime_rate = median(&mut runtime);
        println!("raw rumqttc: {raw_rate:.0} PUBACKed reports/s (runs {raw:.0?})");
        println!("runtime:     {runtime_rate:.0} PUBACKed reports/s (runs {runtime:.0?})");
        println!("ratio runtime / raw: {:.2}", runtime_rate / raw_rate);
    }

    if runs(2) {
        let acked_n = if quick { 2_000 } else { 10_000 };
        println!(
            "\n## 2. platform-acked reports through x-sim in memory, window 64, {acked_n} reports"
        );
        let mut acked = Vec::new();
        for _ in 0..rounds {
            acked.push(rt.block_on(through_sim(acked_n)));
        }
        let acked_rate = median(&mut acked);
        println!("runtime via x-sim: {acked_rate:.0} acked reports/s (runs {acked:.0?})");
        println!(
            "ratio to the raw PUBACK rate of (1): {:.2}",
            acked_rate / raw_rate
        );
    }

    if !runs(3) {
        return;
    }
    let devices = if quick { 200 } else { 1_000 };
    println!("\n## 3. resident memory per connected idle client, {devices} in one process");
    let raw_rss = run_child("raw", broker.port(), devices);
    let runtime_rss = run_child("runtime", broker.port(), devices);
    println!("raw rumqttc: {:.1} KiB per client", raw_rss / 1024.0);
    println!("runtime:     {:.1} KiB per device", runtime_rss / 1024.0);
    println!("ratio runtime / raw: {:.2}", runtime_rss / raw_rss);
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn device(n: usize, round: usize) -> DeviceIdentity {
    DeviceIdentity::parse("7ED01E2A", "2D2D2D2D", &format!("BENCH{round}X{n:05}")).expect("id")
}

/// The frames the runtime sends for `report(power = i)`, published by a raw client.
async fn raw_publish(port: u16, count: usize, round: usize) -> f64 {
    let id = device(0, round * 2);
    let login = MqttLogin::connect(
        &id,
        &PRODUCT_KEY.parse::<ProductKey>().expect("key"),
        &SECRET.parse::<DeviceSecret>().expect("secret"),
        ConnectType::Unchecked,
        1,
    );
    let mut options = MqttOptions::new(login.client_id, "127.0.0.1", port);
    options
        .set_credentials(login.username, login.password.expose())
        .set_inflight(inflight(count))
        .set_max_packet_size(256 * 1024, 256 * 1024);
    let (client, mut events) = AsyncClient::new(options, 1024);
    let acked = Arc::new(AtomicU64::new(0));
    let counter = acked.clone();
    tokio::spawn(async move {
        while let Ok(event) = events.poll().await {
            if let Event::Incoming(Packet::PubAck(_)) = event {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let topic = format!("{}/model/property/report", id.topic_prefix());
    let frames: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            let mut r = SmartPlugReport::default();
            r = r.with_power(i as f32 % 3000.0);
            let payload = x_sdk::model::ToPayload::to_payload(&r);
            Frame::new(i as u32 + 1, HeaderCtrl::PropertyReport, json!(payload)).encode()
        })
        .collect();
    let start = Instant::now();
    for frame in frames {
        client
            .publish(topic.clone(), QoS::AtLeastOnce, false, frame)
            .await
            .expect("publish");
    }
    wait_until(|| acked.load(Ordering::Relaxed) >= count as u64).await;
    let rate = count as f64 / start.elapsed().as_secs_f64();
    let _ = client.disconnect().await;
    rate
}

fn inflight(count: usize) -> u16 {
    u16::try_from(count + 32).unwrap_or(u16::MAX)
}

/// A type-2 device (no auth phase) on Mosquitto; nothing acks its reports but the broker.
async fn runtime_publish(port: u16, count: usize, round: usize) -> f64 {
    let device = Device::<SmartPlug, SmartPlugService>::builder(
        device(0, round * 2 + 1),
        PRODUCT_KEY.parse().expect("key"),
    )
    .broker(&format!("mqtt://127.0.0.1:{port}"))
    .expect("broker")
    .registration(RegistrationType::DeviceSecretPreRegistered)
    .device_secret(SECRET.parse().expect("secret"))
    .time_sync(false)
    .window(count)
    .ack_timeout(Duration::from_secs(3600))
    .connect()
    .await
    .expect("online");
    let before = device.counters().pubacks;
    let start = Instant::now();
    let mut pending = Vec::with_capacity(count);
    for i in 0..count {
        let report = SmartPlugReport::default().with_power(i as f32 % 3000.0);
        pending.push(device.report(report).await.expect("report"));
    }
    wait_until(|| device.counters().pubacks >= before + count as u64).await;
    let rate = count as f64 / start.elapsed().as_secs_f64();
    drop(pending);
    device.shutdown().await;
    rate
}

/// Pipelined reports acked by x-sim in memory.
async fn through_sim(count: usize) -> f64 {
    let sim = support::sim().await;
    let id = DeviceIdentity::parse("7ED01E2A", "AA30C505", "PLUG0001").expect("id");
    let device = Device::<SmartPlug, SmartPlugService>::builder(
        id,
        "DB6FACEF35BEBA0517712F0E4BE32936".parse().expect("key"),
    )
    .broker(&format!("mqtt://{}", sim.mqtt_addr().expect("addr")))
    .expect("broker")
    .window(64)
    .connect()
    .await
    .expect("online");
    let start = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    for i in 0..count {
        let report = SmartPlugReport::default().with_power(i as f32 % 3000.0);
        pending.push_back(device.report(report).await.expect("report"));
        // Keep the window full, collecting acks as they come.
        while pending.len() >= 64 {
            pending.pop_front().expect("pending").await.expect("acked");
        }
    }
    for d in pending {
        d.await.expect("acked");
    }
    let rate = count as f64 / start.elapsed().as_secs_f64();
    device.shutdown().await;
    rate
}

async fn wait_until(done: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < until, "timed out");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Runs this binary as `--child KIND PORT COUNT` and reads the bytes per client it prints.
fn run_child(kind: &str, port: u16, count: usize) -> f64 {
    let exe = std::env::current_exe().expect("exe");
    let out = std::process::Command::new(exe)
        .args(["--child", kind, &port.to_string(), &count.to_string()])
        .output()
        .expect("child");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .find_map(|l| l.strip_prefix("bytes-per-client "))
        .and_then(|v| v.trim().parse().ok())
        .expect("bytes-per-client line")
}

fn rss_bytes() -> f64 {
    support::resident_bytes(std::process::id()) as f64
}

/// Child process: `count` idle clients of one kind, then the resident memory they added.
fn child(kind: &str, port: u16, count: usize) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        // Warm the allocator and the runtime before the baseline.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = rss_bytes();
        let mut keep: Vec<Box<dyn std::any::Any + Send>> = Vec::new();
        let online = Arc::new(AtomicU64::new(0));
        for n in 0..count {
            let id = device(n, 90 + usize::from(kind == "runtime"));
            if kind == "raw" {
                keep.push(Box::new(raw_idle(id, port, online.clone()).await));
            } else {
                let d = Device::<SmartPlug, SmartPlugService>::builder(
                    id,
                    PRODUCT_KEY.parse().expect("key"),
                )
                .broker(&format!("mqtt://127.0.0.1:{port}"))
                .expect("broker")
                .registration(RegistrationType::DeviceSecretPreRegistered)
                .device_secret(SECRET.parse().expect("secret"))
                .time_sync(false)
                .start()
                .expect("start");
                keep.push(Box::new(d));
            }
        }
        if kind == "runtime" {
            let devices: Vec<&Device<SmartPlug, SmartPlugService>> = keep
                .iter()
                .filter_map(|d| d.downcast_ref::<Device<SmartPlug, SmartPlugService>>())
                .collect();
            wait_until(|| devices.iter().all(|d| d.is_online())).await;
        } else {
            wait_until(|| online.load(Ordering::Relaxed) >= count as u64).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = rss_bytes();
        println!("bytes-per-client {}", (after - before) / count as f64);
    });
}

/// A raw rumqttc client, logged in and subscribed to what a device subscribes, then idle.
async fn raw_idle(id: DeviceIdentity, port: u16, online: Arc<AtomicU64>) -> AsyncClient {
    let login = MqttLogin::connect(
        &id,
        &PRODUCT_KEY.parse::<ProductKey>().expect("key"),
        &SECRET.parse::<DeviceSecret>().expect("secret"),
        ConnectType::Unchecked,
        1,
    );
    let mut options = MqttOptions::new(login.client_id, "127.0.0.1", port);
    options.set_credentials(login.username, login.password.expose());
    let (client, mut events) = AsyncClient::new(options, 64);
    let filters: Vec<rumqttc::SubscribeFilter> = TopicKind::ALL
        .iter()
        .filter(|k| {
            k.spec().publisher == x_sdk::protocol::Publisher::Platform
                && **k != TopicKind::Auth
                && !matches!(
                    k,
                    TopicKind::HexReportAck | TopicKind::HexDownlink | TopicKind::FullHexAck
                )
        })
        .map(|k| rumqttc::SubscribeFilter::new(k.filter(&id), QoS::AtLeastOnce))
        .collect();
    client.subscribe_many(filters).await.expect("subscribe");
    tokio::spawn(async move {
        while let Ok(event) = events.poll().await {
            if let Event::Incoming(Packet::SubAck(_)) = event {
                online.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    client
}
