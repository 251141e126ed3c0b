//! x-sim under a fleet's load, as ratios against baselines measured in the same run:
//!
//! 1. **Acked reports per second.** N devices each publish the same pre-encoded QoS 1
//!    property reports, pipelined with a window of W unanswered reports per device, three
//!    ways, interleaved round by round:
//!    - to Mosquitto with nothing behind it, counting PUBACKs (the ceiling: a broker that only
//!      routes);
//!    - to x-sim in memory, counting the platform's `report_ack` frames with Code "200";
//!    - to x-sim with a store (`--data`), the same.
//!
//!    The devices are the same raw rumqttc clients every time, in this process; each x-sim
//!    runs in a child process of its own, as Mosquitto does.
//! 2. **Resident memory per idle connected device** at 10,000 devices in one x-sim process
//!    (logged in, subscribed to what a device subscribes to), against Mosquitto holding the
//!    same 10,000 connections: the growth of each process's VmRSS divided by the count.
//!
//! `cargo bench --bench xsim_load` (needs `/usr/sbin/mosquitto`); `-- --quick` for smaller
//! sizes and one round; `-- --only 1|2` for one part; `-- --rounds N` for N rounds of part 1
//! (default 5: a round is 20,000 reports, under a second, and this machine's noise moves
//! single rounds by 10-20%); `-- --window W` for another window than 16.
//! Each goal is printed with "met" or "not met".

#[path = "../tests/runtime/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, SubscribeFilter};
use serde_json::json;
use tokio::sync::Semaphore;
use x_sdk::protocol::{
    ConnectType, DeviceIdentity, DeviceSecret, Frame, HeaderCtrl, MqttLogin, ProductKey, Publisher,
    TopicKind,
};
use x_sim::mosquitto::Mosquitto;
use x_sim::registry::Registry;
use x_sim::sim::{Sim, SimConfig};

const OPEN_ID: &str = "7ED01E2A";
const PRODUCT_ID: &str = "2D2D2D2D";
const PRODUCT_KEY: &str = "A1A2A3A4A5A6A7A8A9AAABACADAEAFA0";
const SECRET: &str = "326086233FAB8A96566796551EB1DFF8";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--sim-child") {
        let count: usize = args[at + 1].parse().expect("count");
        let data = args.get(at + 2).filter(|a| !a.starts_with("--")).cloned();
        return sim_child(count, data);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let only: Option<u8> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|at| args.get(at + 1)?.parse().ok());
    let runs = |part: u8| only.is_none_or(|o| o == part);
    let rounds_given: Option<usize> = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|at| args.get(at + 1)?.parse().ok());
    let window_given: Option<usize> = args
        .iter()
        .position(|a| a == "--window")
        .and_then(|at| args.get(at + 1)?.parse().ok());
    let rt = tokio::runtime::Runtime::new().expect("runtime");

    if runs(1) {
        let (devices, reports, window, rounds) = if quick {
            (50, 100, 16, 1)
        } else {
            (50, 400, 16, 5)
        };
        let window = window_given.unwrap_or(window).max(1);
        let rounds = rounds_given.unwrap_or(rounds).max(1);
        println!(
            "## 1. {devices} devices x {reports} QoS 1 property reports, window {window}, \
             {rounds} rounds, interleaved"
        );
        let mut broker = Mosquitto::start().expect("mosquitto");
        let (mut ceiling, mut memory, mut stored) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let ids = identities(devices);
            ceiling.push(rt.block_on(load(broker.port(), &ids, Answer::PubAck, reports, window)));
            // Mosquitto's queues for the clients of this round go with it.
            broker.restart().expect("mosquitto restart");
            let sim = SimChild::start(devices, None);
            memory.push(rt.block_on(load(sim.port, &ids, Answer::Platform, reports, window)));
            drop(sim);
            let dir = tempfile::tempdir().expect("tempdir");
            let sim = SimChild::start(devices, Some(dir.path()));
            stored.push(rt.block_on(load(sim.port, &ids, Answer::Platform, reports, window)));
            drop(sim);
            println!(
                "round {round}: mosquitto {:.0}/s, x-sim in memory {:.0}/s, x-sim --data {:.0}/s \
                 (ratios {:.2}, {:.2})",
                ceiling[round],
                memory[round],
                stored[round],
                memory[round] / ceiling[round],
                stored[round] / memory[round]
            );
        }
        // The same ratios taken round by round (each pair measured back to back), whose
        // median is steadier than the ratio of medians on a machine whose load drifts.
        let mut by_round: Vec<(f64, f64)> = (0..rounds)
            .map(|r| (memory[r] / ceiling[r], stored[r] / memory[r]))
            .collect();
        let (mut a, mut b): (Vec<f64>, Vec<f64>) = by_round.drain(..).unzip();
        let (per_round_memory, per_round_stored) = (median(&mut a), median(&mut b));
        let (c, m, s) = (
            median(&mut ceiling),
            median(&mut memory),
            median(&mut stored),
        );
        println!("Mosquitto, PUBACK only:       {c:.0} acked reports/s");
        println!("x-sim in memory, platform ack: {m:.0} acked reports/s");
        println!("x-sim --data, platform ack:    {s:.0} acked reports/s");
        println!(
            "ratio in memory / Mosquitto: {:.2} (goal >= 0.5: {})",
            m / c,
            met(m / c >= 0.5)
        );
        println!(
            "ratio --data / in memory:    {:.2} (goal >= 0.8: {})",
            s / m,
            met(s / m >= 0.8)
        );
        println!(
            "median of the rounds' ratios: in memory / Mosquitto {per_round_memory:.2}, \
             --data / in memory {per_round_stored:.2}"
        );
    }

    if runs(2) {
        let devices = if quick { 2_000 } else { 10_000 };
        println!("\n## 2. resident memory per idle connected device, {devices} devices");
        let ids = identities(devices);
        let mut sim = SimChild::start(devices, None);
        let before = sim.rss();
        let clients = rt.block_on(connect_idle(sim.port, &ids));
        std::thread::sleep(Duration::from_secs(2));
        let sim_per = (sim.rss() - before) / devices as f64;
        rt.block_on(disconnect(clients));
        drop(sim);

        let broker = Mosquitto::start().expect("mosquitto");
        std::thread::sleep(Duration::from_millis(200));
        let before = rss_of(broker.pid());
        let clients = rt.block_on(connect_idle(broker.port(), &ids));
        std::thread::sleep(Duration::from_secs(2));
        let mosquitto_per = (rss_of(broker.pid()) - before) / devices as f64;
        rt.block_on(disconnect(clients));
        println!("x-sim:     {:.1} KiB per device", sim_per / 1024.0);
        println!(
            "Mosquitto: {:.1} KiB per connection",
            mosquitto_per / 1024.0
        );
        println!(
            "ratio x-sim / Mosquitto: {:.2} (goal: recorded; {devices} idle devices held)",
            sim_per / mosquitto_per
        );
    }
}

/// A goal's verdict, as the summary prints it.
fn met(yes: bool) -> &'static str {
    if yes { "met" } else { "not met" }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `count` type-2 devices of the bench product (one DeviceSecret for all).
fn identities(count: usize) -> Vec<DeviceIdentity> {
    (0..count)
        .map(|n| DeviceIdentity::parse(OPEN_ID, PRODUCT_ID, &format!("LOAD{n:06}")).expect("id"))
        .collect()
}

/// The registry of an x-sim child: the smart plug as a type-2 product and `count` devices.
fn registry(count: usize) -> String {
    let mut text = format!(
        "[[product]]\nopen_id = \"{OPEN_ID}\"\nproduct_id = \"{PRODUCT_ID}\"\n\
         product_key = \"{PRODUCT_KEY}\"\nregistration = 2\nformat = \"json\"\n\
         model = \"models/smart-plug.json\"\n"
    );
    for id in identities(count) {
        text.push_str(&format!(
            "\n[[device]]\nproduct_id = \"{PRODUCT_ID}\"\nnode_eui = \"{}\"\n\
             device_secret = \"{SECRET}\"\n",
            id.node_eui
        ));
    }
    text
}

/// What counts as the answer to a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// The broker's PUBACK (nothing behind the broker).
    PubAck,
    /// The platform's `report_ack` frame with Code "200".
    Platform,
}

fn login(id: &DeviceIdentity, port: u16, cap: usize) -> (AsyncClient, rumqttc::EventLoop) {
    let login = MqttLogin::connect(
        id,
        &PRODUCT_KEY.parse::<ProductKey>().expect("key"),
        &SECRET.parse::<DeviceSecret>().expect("secret"),
        ConnectType::Unchecked,
        1,
    );
    let mut options = MqttOptions::new(login.client_id, "127.0.0.1", port);
    options
        .set_credentials(login.username, login.password.expose())
        .set_keep_alive(Duration::from_secs(60))
        .set_inflight(u16::try_from(cap).unwrap_or(u16::MAX));
    let (client, mut events) = AsyncClient::new(options, cap);
    // As the runtime's devices do: small frames, each waiting for an answer.
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    events.set_network_options(network);
    (client, events)
}

/// Every device publishes `reports` frames, at most `window` unanswered; the answers per
/// second over all devices, from the first publish to the last answer.
async fn load(
    port: u16,
    ids: &[DeviceIdentity],
    answer: Answer,
    reports: usize,
    window: usize,
) -> f64 {
    let answered = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicU64::new(0));
    let mut devices = Vec::new();
    for id in ids {
        let (client, mut events) = login(id, port, window * 2);
        let ack_topic = TopicKind::PropertyReportAck.filter(id);
        client
            .subscribe(ack_topic.clone(), QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        let permits = Arc::new(Semaphore::new(window));
        let (answered, refused, ready, release) = (
            answered.clone(),
            refused.clone(),
            ready.clone(),
            permits.clone(),
        );
        tokio::spawn(async move {
            while let Ok(event) = events.poll().await {
                let Event::Incoming(packet) = event else {
                    continue;
                };
                let done = match packet {
                    Packet::SubAck(_) => {
                        ready.fetch_add(1, Ordering::Relaxed);
                        false
                    }
                    Packet::PubAck(_) => answer == Answer::PubAck,
                    Packet::Publish(p) if answer == Answer::Platform => {
                        if !contains(&p.payload, b"\"Code\":\"200\"")
                            && refused.fetch_add(1, Ordering::Relaxed) == 0
                        {
                            eprintln!("refused: {}", String::from_utf8_lossy(&p.payload));
                        }
                        true
                    }
                    _ => false,
                };
                if done {
                    answered.fetch_add(1, Ordering::Relaxed);
                    release.add_permits(1);
                }
            }
        });
        let topic = TopicKind::PropertyReport.filter(id);
        let frames: Vec<Vec<u8>> = (0..reports)
            .map(|i| {
                let payload = json!({ "power": (i % 3000) as f64, "voltage": 220.5 });
                Frame::new(i as u32 + 1, HeaderCtrl::PropertyReport, payload).encode()
            })
            .collect();
        devices.push((client, topic, frames, permits));
    }
    let total = (ids.len() * reports) as u64;
    wait_until(|| ready.load(Ordering::Relaxed) >= ids.len() as u64).await;
    let start = Instant::now();
    let mut publishers = Vec::new();
    for (client, topic, frames, permits) in devices {
        publishers.push(tokio::spawn(async move {
            for frame in frames {
                permits.acquire().await.expect("permit").forget();
                client
                    .publish(topic.as_str(), QoS::AtLeastOnce, false, frame)
                    .await
                    .expect("publish");
            }
            client
        }));
    }
    wait_until(|| answered.load(Ordering::Relaxed) >= total).await;
    let rate = total as f64 / start.elapsed().as_secs_f64();
    assert_eq!(
        refused.load(Ordering::Relaxed),
        0,
        "the platform refused reports"
    );
    for p in publishers {
        let client = p.await.expect("publisher");
        let _ = client.disconnect().await;
    }
    rate
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Connects every device, 100 at a time, each subscribed to the topics a device subscribes
/// to; returns once all are subscribed.
async fn connect_idle(port: u16, ids: &[DeviceIdentity]) -> Vec<AsyncClient> {
    let online = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::with_capacity(ids.len());
    for (n, id) in ids.iter().enumerate() {
        let (client, mut events) = login(id, port, 16);
        let filters: Vec<SubscribeFilter> = TopicKind::ALL
            .iter()
            .filter(|k| {
                k.spec().publisher == Publisher::Platform
                    && **k != TopicKind::Auth
                    && !matches!(
                        k,
                        TopicKind::HexReportAck | TopicKind::HexDownlink | TopicKind::FullHexAck
                    )
            })
            .map(|k| SubscribeFilter::new(k.filter(id), QoS::AtLeastOnce))
            .collect();
        client.subscribe_many(filters).await.expect("subscribe");
        let subscribed = online.clone();
        tokio::spawn(async move {
            while let Ok(event) = events.poll().await {
                if let Event::Incoming(Packet::SubAck(_)) = event {
                    subscribed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        clients.push(client);
        if n % 100 == 99 {
            wait_until(|| online.load(Ordering::Relaxed) > n as u64).await;
        }
    }
    wait_until(|| online.load(Ordering::Relaxed) >= ids.len() as u64).await;
    clients
}

async fn disconnect(clients: Vec<AsyncClient>) {
    for c in clients {
        let _ = c.disconnect().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
}

async fn wait_until(done: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(300);
    while !done() {
        assert!(Instant::now() < until, "timed out");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn rss_of(pid: u32) -> f64 {
    support::resident_bytes(pid) as f64
}

/// An x-sim in a child process (this binary with `--sim-child`), embedded broker, no HTTP.
struct SimChild {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    port: u16,
}

impl SimChild {
    fn start(devices: usize, data: Option<&std::path::Path>) -> Self {
        let mut command = Command::new(std::env::current_exe().expect("exe"));
        command.args(["--sim-child", &devices.to_string()]);
        if let Some(dir) = data {
            command.arg(dir);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("x-sim child");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let port = read_value(&mut stdout, "port ") as u16;
        Self {
            child,
            stdin,
            stdout,
            port,
        }
    }

    /// The child's resident memory, in bytes.
    fn rss(&mut self) -> f64 {
        writeln!(self.stdin, "rss").expect("ask");
        self.stdin.flush().expect("ask");
        read_value(&mut self.stdout, "rss ")
    }
}

impl Drop for SimChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_value(out: &mut impl BufRead, prefix: &str) -> f64 {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).expect("child output") > 0,
            "child ended"
        );
        if let Some(v) = line.trim().strip_prefix(prefix) {
            return v.parse().expect("number");
        }
    }
}

/// Child process: x-sim with `count` devices; prints `port N`, then `rss BYTES` for each
/// `rss` line read, until its input ends.
fn sim_child(count: usize, data: Option<String>) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _inside = rt.enter();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config =
        SimConfig::local(Registry::from_toml(&registry(count), root).expect("registry"));
    config.http = None;
    config.data_dir = data.map(Into::into);
    let sim = rt.block_on(Sim::start(config)).expect("x-sim");
    let port = sim.mqtt_addr().expect("addr").port();
    rt.block_on(tokio::time::sleep(Duration::from_millis(200)));
    println!("port {port}");
    let stdin = std::io::stdin();
    for line in stdin.lock().lines().map_while(Result::ok) {
        if line.trim() == "rss" {
            println!("rss {}", rss_of(std::process::id()));
        }
    }
    drop(sim);
}
