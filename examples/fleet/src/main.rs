//! `fleet`: N smart plugs in one process on the x-sdk runtime, each logging in and sending
//! reports with up to `--window` of them waiting for their acks, against x-sim in-process
//! (the default: the devices are provisioned in its registry) or any broker and platform
//! (`--broker`, with the devices listed in `--devices-file`). A live progress line on a
//! terminal (connected, reports acked, errors); bounded by `--reports` per device and
//! `--seconds` in all (then every device stops and disconnects cleanly); a closing summary:
//! connect rate, acked reports per second, ack latency p50 and p99, errors by kind, and
//! against x-sim in-process how many devices it still sees online (none, when every device
//! disconnected). It exits 0 when every report was acked.
//!
//! With `--compare-store` it runs the same load twice in one run, against x-sim in memory and
//! with a store, and prints the ratio of their acked rates.
//!
//! ```sh
//! cargo run --release -p fleet -- --devices 1000 --reports 20
//! cargo run --release -p fleet -- --devices 200 --reports 50 --compare-store
//! cargo run --release -p fleet -- --broker mqtt://127.0.0.1:1883 --devices-file devices.csv
//! ```
//!
//! A devices file holds one device per line, `open_id,product_id,node_eui,product_key` and,
//! for type 2, `,device_secret`; `#` starts a comment.

x_sdk::include_model!("smart-plug");

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use x_sdk::protocol::{DeviceIdentity, ProductKey, RegistrationType};
use x_sdk::runtime::{DeliveryError, Device};
use x_sim::registry::Registry;
use x_sim::sim::{Sim, SimConfig};

/// N devices of the smart plug model, reporting, with a summary at the end.
#[derive(Debug, Parser)]
#[command(name = "fleet", about)]
struct Flags {
    /// How many devices.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Reports per device.
    #[arg(long, default_value_t = 20)]
    reports: usize,
    /// Reports of one device waiting for their acks at once.
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// Pause between two reports of one device, in milliseconds.
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
    /// Logins in progress at once.
    #[arg(long, default_value_t = 64)]
    connecting: usize,
    /// Stop after this many seconds, whatever is left.
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// A broker (mqtt://HOST:PORT or mqtts://) instead of x-sim in-process.
    #[arg(long, env = "X_BROKER")]
    broker: Option<String>,
    /// With --broker: the devices, one per line (`open_id,product_id,node_eui,product_key[,device_secret]`).
    #[arg(long, requires = "broker")]
    devices_file: Option<PathBuf>,
    /// Run the load twice, against x-sim in memory and with a store, and print the ratio.
    #[arg(long, conflicts_with = "broker")]
    compare_store: bool,
    /// Registration type of the devices in --devices-file: 0, 1 or 2.
    #[arg(long = "type", default_value = "1", value_parser = clap::value_parser!(u8).range(0..=2))]
    registration: u8,
}

/// One device to run.
#[derive(Clone)]
struct Member {
    identity: DeviceIdentity,
    product_key: ProductKey,
    device_secret: Option<String>,
}

/// What the fleet measured.
#[derive(Default)]
struct Tally {
    connected: AtomicU64,
    /// Devices that disconnected cleanly (DISCONNECT sent) at their end or at the stop.
    disconnected: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
    latencies: Mutex<Vec<Duration>>,
    kinds: Mutex<BTreeMap<String, u64>>,
    last_connect: Mutex<Option<Instant>>,
    last_ack: Mutex<Option<Instant>>,
}

impl Tally {
    fn error(&self, kind: impl Into<String>) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *lock(&self.kinds).entry(kind.into()).or_default() += 1;
    }
}

/// How long the devices get to disconnect cleanly once `--seconds` is up.
const STOP_GRACE: Duration = Duration::from_secs(5);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The name of a delivery failure, for the summary.
fn kind(e: &DeliveryError) -> String {
    match e {
        DeliveryError::Rejected { code, .. } => format!("rejected {code}"),
        DeliveryError::Timeout(_) => "ack timeout".into(),
        DeliveryError::Disconnected => "disconnected".into(),
        DeliveryError::Offline => "offline".into(),
        DeliveryError::Invalid(_) => "invalid".into(),
        DeliveryError::Encode(_) => "encode".into(),
        DeliveryError::Stopped => "stopped".into(),
        DeliveryError::Dropped => "dropped".into(),
        DeliveryError::OutboxFull { .. } => "outbox full".into(),
        DeliveryError::Store(_) => "store".into(),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let flags = match Flags::try_parse() {
        Ok(f) => f,
        Err(e) if e.use_stderr() => {
            let text = e.to_string();
            eprintln!("fleet: {}", text.lines().next().unwrap_or_default());
            return std::process::ExitCode::from(2);
        }
        Err(e) => {
            print!("{e}");
            return std::process::ExitCode::SUCCESS;
        }
    };
    match run(flags).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("fleet: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The embedded platform's registry: the plug's product and `n` devices.
fn registry(n: usize) -> String {
    let mut text = String::from(
        r#"
[[product]]
open_id = "7ED01E2A"
product_id = "AA30C505"
product_key = "DB6FACEF35BEBA0517712F0E4BE32936"
registration = 1
format = "json"
model = "models/smart-plug.json"
"#,
    );
    for i in 0..n {
        text.push_str(&format!(
            "\n[[device]]\nproduct_id = \"AA30C505\"\nnode_eui = \"FLEET{i:06}\"\n"
        ));
    }
    text
}

/// The devices of a devices file.
fn read_devices(path: &Path) -> Result<Vec<Member>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut members = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let at = |what: &str| format!("{}:{}: {what}", path.display(), n + 1);
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [open_id, product_id, node_eui, product_key, rest @ ..] = fields.as_slice() else {
            return Err(at(
                "expected open_id,product_id,node_eui,product_key[,device_secret]",
            ));
        };
        let identity =
            DeviceIdentity::parse(open_id, product_id, node_eui).map_err(|e| at(&e.to_string()))?;
        let product_key = product_key
            .parse::<ProductKey>()
            .map_err(|e| at(&format!("product_key: {e}")))?;
        members.push(Member {
            identity,
            product_key,
            device_secret: rest.first().map(|s| (*s).to_owned()),
        });
    }
    if members.is_empty() {
        return Err(format!("{}: no devices in it", path.display()));
    }
    Ok(members)
}

async fn run(flags: Flags) -> Result<bool, Box<dyn std::error::Error>> {
    let registration = match flags.registration {
        0 => RegistrationType::ProductSecretUnregistered,
        1 => RegistrationType::ProductSecretPreRegistered,
        2 => RegistrationType::DeviceSecretPreRegistered,
        other => return Err(format!("--type {other}: expected 0, 1 or 2").into()),
    };
    if flags.compare_store {
        if flags.broker.is_some() {
            return Err("--compare-store runs x-sim in-process: it takes no --broker".into());
        }
        // The same load twice in this run: x-sim in memory, then with a store.
        let (memory_ok, memory) = {
            let (_sim, url, members) = embedded(&flags, None).await?;
            load(
                &flags,
                registration,
                url,
                members,
                "x-sim in-process, in memory",
            )
            .await?
        };
        let dir = std::env::temp_dir().join(format!("fleet-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (stored_ok, stored) = {
            let (_sim, url, members) = embedded(&flags, Some(dir.clone())).await?;
            load(
                &flags,
                registration,
                url,
                members,
                "x-sim in-process with a store (--data)",
            )
            .await?
        };
        let _ = std::fs::remove_dir_all(&dir);
        println!(
            "ratio acked reports/s with a store / in memory: {:.2}",
            stored / memory
        );
        return Ok(memory_ok && stored_ok);
    }
    // The platform: x-sim in this process, or whatever --broker reaches.
    match (&flags.broker, &flags.devices_file) {
        (Some(url), Some(file)) => {
            let members = read_devices(file)?;
            Ok(load(&flags, registration, url.clone(), members, url)
                .await?
                .0)
        }
        (Some(_), None) => Err("--broker needs --devices-file".into()),
        (None, _) => {
            let (sim, url, members) = embedded(&flags, None).await?;
            let (ok, _) = load(
                &flags,
                registration,
                url,
                members.clone(),
                "x-sim in-process",
            )
            .await?;
            let online = still_online(&sim, &members).await;
            println!("online at the platform after the run: {online}");
            Ok(ok && online == 0)
        }
    }
}

/// x-sim in this process with the fleet's devices in its registry (and a store in
/// `data_dir`, if given): the platform, its MQTT URL and the devices.
async fn embedded(
    flags: &Flags,
    data_dir: Option<PathBuf>,
) -> Result<(Sim, String, Vec<Member>), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut config = SimConfig::local(Registry::from_toml(&registry(flags.devices), &root)?);
    config.http = None;
    config.data_dir = data_dir;
    let sim = Sim::start(config).await?;
    let addr = sim.mqtt_addr().ok_or("x-sim has no MQTT address")?;
    let key: ProductKey = "DB6FACEF35BEBA0517712F0E4BE32936".parse()?;
    let members = (0..flags.devices)
        .map(|i| {
            Ok(Member {
                identity: DeviceIdentity::parse("7ED01E2A", "AA30C505", &format!("FLEET{i:06}"))?,
                product_key: key.clone(),
                device_secret: None,
            })
        })
        .collect::<Result<Vec<_>, x_sdk::protocol::IdentityError>>()?;
    Ok((sim, format!("mqtt://{addr}"), members))
}

/// How many of `members` x-sim still has online, once their disconnects had a moment to
/// arrive (every device disconnects at its end, or at `--seconds`).
async fn still_online(sim: &Sim, members: &[Member]) -> usize {
    let count = || {
        members
            .iter()
            .filter(|m| sim.platform().online(&m.identity) == Some(true))
            .count()
    };
    let until = Instant::now() + Duration::from_secs(2);
    while count() > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    count()
}

/// Runs the load on `members` and prints its summary: whether every report was acked with
/// no error, and the acked reports per second.
async fn load(
    flags: &Flags,
    registration: RegistrationType,
    url: String,
    members: Vec<Member>,
    against: &str,
) -> Result<(bool, f64), Box<dyn std::error::Error>> {
    let members: Vec<Member> = members.into_iter().take(flags.devices).collect();
    let total = (members.len() * flags.reports) as u64;
    println!(
        "fleet: {} devices x {} reports (window {}) against {against}",
        members.len(),
        flags.reports,
        flags.window
    );

    let tally = Arc::new(Tally::default());
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} acked {msg}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    let ticker = {
        let (bar, tally, n) = (bar.clone(), tally.clone(), members.len());
        tokio::spawn(async move {
            loop {
                bar.set_position(tally.acked.load(Ordering::Relaxed));
                bar.set_message(format!(
                    "| connected {}/{n} | errors {}",
                    tally.connected.load(Ordering::Relaxed),
                    tally.errors.load(Ordering::Relaxed)
                ));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let started = Instant::now();
    let logins = Arc::new(Semaphore::new(flags.connecting.max(1)));
    // Set at `--seconds`: every device stops reporting, disconnects cleanly and ends.
    let (stop, stopping) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for member in members.clone() {
        let (tally, logins, url) = (tally.clone(), logins.clone(), url.clone());
        let mut stopping = stopping.clone();
        let (reports, window, interval) = (
            flags.reports,
            flags.window.max(1),
            Duration::from_millis(flags.interval_ms),
        );
        tasks.spawn(async move {
            let login = async {
                let _login = logins.acquire().await;
                let mut builder = Device::<SmartPlug, SmartPlugService>::builder(
                    member.identity.clone(),
                    member.product_key.clone(),
                )
                .registration(registration)
                .window(window)
                .firmware("SP16A-HW2", "1.4.0");
                if let Some(secret) = &member.device_secret {
                    builder = builder
                        .device_secret(secret.parse().map_err(|e| format!("device secret: {e}"))?);
                }
                let builder = builder.broker(&url).map_err(|e| format!("broker: {e}"))?;
                builder.connect().await.map_err(|e| format!("login: {e}"))
            };
            let device = tokio::select! {
                device = login => match device {
                    Ok(d) => d,
                    Err(e) => return tally.error(e),
                },
                _ = stopping.wait_for(|s| *s) => return,
            };
            tally.connected.fetch_add(1, Ordering::Relaxed);
            *lock(&tally.last_connect) = Some(Instant::now());
            let pending = Arc::new(Semaphore::new(window));
            let mut acks = JoinSet::new();
            for i in 0..reports {
                let permit = tokio::select! {
                    permit = pending.clone().acquire_owned() => match permit {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = stopping.wait_for(|s| *s) => break,
                };
                let report = SmartPlugReport::default().with_power((i % 3000) as f32 + 0.5);
                let sent = Instant::now();
                match device.report(report).await {
                    Ok(delivery) => {
                        let tally = tally.clone();
                        acks.spawn(async move {
                            let result = delivery.await;
                            drop(permit);
                            match result {
                                Ok(_) => {
                                    let now = Instant::now();
                                    lock(&tally.latencies).push(now - sent);
                                    tally.acked.fetch_add(1, Ordering::Relaxed);
                                    *lock(&tally.last_ack) = Some(now);
                                }
                                Err(e) => tally.error(kind(&e)),
                            }
                        });
                    }
                    Err(e) => tally.error(kind(&e)),
                }
                if !interval.is_zero() {
                    tokio::select! {
                        () = tokio::time::sleep(interval) => {}
                        _ = stopping.wait_for(|s| *s) => break,
                    }
                }
            }
            // Every ack, unless the stop comes first: then those still awaited are
            // not counted (neither acked nor failed).
            tokio::select! {
                () = async { while acks.join_next().await.is_some() {} } => {}
                _ = stopping.wait_for(|s| *s) => acks.abort_all(),
            }
            device.shutdown().await;
            tally.disconnected.fetch_add(1, Ordering::Relaxed);
        });
    }
    let finished = tokio::time::timeout(Duration::from_secs(flags.seconds), async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if !finished {
        // Time is up: the devices disconnect cleanly, within a grace period.
        let _ = stop.send(true);
        let _ = tokio::time::timeout(STOP_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.abort_all();
    }
    ticker.abort();
    bar.set_position(tally.acked.load(Ordering::Relaxed));
    bar.finish_and_clear();

    // The summary.
    let connected = tally.connected.load(Ordering::Relaxed);
    let acked = tally.acked.load(Ordering::Relaxed);
    let connect_s = lock(&tally.last_connect).map_or(0.0, |t| (t - started).as_secs_f64());
    let ack_s = lock(&tally.last_ack).map_or(0.0, |t| (t - started).as_secs_f64());
    let rate = |n: u64, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    println!(
        "connected {connected}/{} in {connect_s:.2} s ({:.1} devices/s)",
        members.len(),
        rate(connected, connect_s)
    );
    println!(
        "acked {acked}/{total} reports in {ack_s:.2} s ({:.0} reports/s)",
        rate(acked, ack_s)
    );
    let mut latencies = lock(&tally.latencies).clone();
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!("ack latency p50 {:.1} ms, p99 {:.1} ms", at(0.50), at(0.99));
    if !finished {
        tally.error(format!("stopped at --seconds {}", flags.seconds));
        println!(
            "stopped at --seconds {}: {} of {connected} connected devices disconnected cleanly",
            flags.seconds,
            tally.disconnected.load(Ordering::Relaxed)
        );
    }
    let kinds = lock(&tally.kinds).clone();
    if kinds.is_empty() {
        println!("errors: none");
    } else {
        let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        println!("errors: {}", list.join(", "));
    }
    Ok((kinds.is_empty() && acked == total, rate(acked, ack_s)))
}
