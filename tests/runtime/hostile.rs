//! Hostile clients against x-sim's embedded broker while a well-behaved runtime device keeps
//! reporting: a CONNECT sent byte by byte that stalls, a packet announced at 256 MiB, 5,000
//! connections that never send CONNECT, a flood of SUBSCRIBEs to foreign topics and a
//! PUBLISH flood from one logged-in device. Each offender is disconnected with a log line;
//! the device's reports are all acked, each within [`ACK_BOUND`]; the process's resident
//! memory grows by less than [`MEMORY_BOUND`].
//!
//! Everything runs on one current-thread runtime under a tracing subscriber of the test's
//! own, so the broker's log lines can be read back.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Connect, Publish, Subscribe};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use x_sdk::protocol::{ConnectType, DeviceIdentity, MqttLogin, TopicKind};
use x_sdk::runtime::{BackoffConfig, Device};
use x_sim::broker::BrokerConfig;
use x_sim::registry::Registry;
use x_sim::sim::{Sim, SimConfig};

use crate::plug::{SmartPlug, SmartPlugReport, SmartPlugService};
use crate::support;
use support::Captured;

/// Every report of the well-behaved device is acked within this, whatever the others do.
const ACK_BOUND: Duration = Duration::from_secs(2);

/// The test process's resident memory grows by less than this over all the attacks (the
/// 5,000 idle connections included, both ends being in this process).
const MEMORY_BOUND: u64 = 200 << 20;

/// How long a connection may take to send its CONNECT, for this test.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The flooding device's allowed rate, for this test.
const PUBLISH_RATE: u32 = 2_000;

/// Raises this process's open-file limit as far as it may go (both ends of every connection
/// are in this process); returns the soft limit then.
fn raise_open_files() -> u64 {
    use rlimit::Resource;
    let (_, hard) = Resource::NOFILE.get().unwrap_or((1024, 1024));
    // As root the hard limit can rise too; otherwise the soft one goes up to the hard one.
    let wanted = hard.max(65_536);
    if Resource::NOFILE.set(wanted, wanted).is_err() {
        let _ = Resource::NOFILE.set(hard, hard);
    }
    Resource::NOFILE.get().map_or(1024, |(soft, _)| soft)
}

/// The type-2 smart plug of the support registry, as a raw MQTT client.
fn offender() -> (DeviceIdentity, Vec<u8>) {
    let id = DeviceIdentity::parse("7ED01E2A", "2D2D2D2D", "PLUGT2").unwrap();
    let login = MqttLogin::connect(
        &id,
        &"A1A2A3A4A5A6A7A8A9AAABACADAEAFA0".parse().unwrap(),
        &"326086233FAB8A96566796551EB1DFF8".parse().unwrap(),
        ConnectType::Unchecked,
        1,
    );
    let mut connect = Connect::new(login.client_id);
    connect.set_login(login.username, login.password.expose());
    connect.keep_alive = 60;
    let mut out = BytesMut::new();
    connect.write(&mut out).unwrap();
    (id, out.to_vec())
}

/// Reads until the broker closes the connection; how long that took, or `None` if it did
/// not within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
    .map(|()| start.elapsed())
}

#[test]
fn hostile_clients_are_disconnected_while_a_device_is_served() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .finish();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _logs = tracing_subscriber::util::SubscriberInitExt::set_default(subscriber);
    rt.block_on(attacks(&captured));
}

async fn attacks(captured: &Captured) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = SimConfig::local(Registry::from_toml(support::REGISTRY, root).unwrap());
    config.http = None;
    config.broker = BrokerConfig {
        connect_timeout: CONNECT_TIMEOUT,
        max_publish_rate: Some(PUBLISH_RATE),
        max_refused_subscriptions: 10,
    };
    let sim = Sim::start(config).await.unwrap();
    let addr = sim.mqtt_addr().unwrap();

    // The well-behaved device: a report every 20 ms, each ack's latency kept.
    let device = Device::<SmartPlug, SmartPlugService>::builder(
        DeviceIdentity::parse("7ED01E2A", "AA30C505", "PLUG0001").unwrap(),
        "DB6FACEF35BEBA0517712F0E4BE32936".parse().unwrap(),
    )
    .broker(&format!("mqtt://{addr}"))
    .unwrap()
    .backoff(BackoffConfig {
        base: Duration::from_millis(100),
        cap: Duration::from_millis(500),
        jitter: 0.0,
    })
    .connect()
    .await
    .unwrap();
    let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reporter = {
        let (latencies, stop) = (latencies.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let report = SmartPlugReport::default().with_power(f32::from((n % 3000) as u16));
                let start = Instant::now();
                let delivery = device.report(report).await.expect("queued");
                delivery.await.expect("acked");
                latencies.lock().unwrap().push(start.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            device.shutdown().await;
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let memory_before = support::resident_bytes(std::process::id());
    let (id, connect) = offender();

    // 1. A CONNECT byte by byte, then silence: closed at the CONNECT timeout.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    for byte in &connect[..6] {
        slow.write_all(&[*byte]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = closed_within(&mut slow, CONNECT_TIMEOUT * 3).await;
    assert!(took.is_some(), "a stalled CONNECT was not closed");
    assert!(
        captured.text().contains("no CONNECT within"),
        "{}",
        captured.text()
    );

    // 2. A PUBLISH announced at 256 MiB: closed at once, nothing of it buffered.
    let mut huge = TcpStream::connect(addr).await.unwrap();
    huge.write_all(&connect).await.unwrap();
    huge.write_all(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F])
        .await
        .unwrap();
    huge.write_all(&[0u8; 1024]).await.unwrap();
    let took = closed_within(&mut huge, Duration::from_secs(2)).await;
    assert!(took.is_some(), "a 256 MiB announcement was not refused");
    assert!(
        captured.text().contains("within the broker's 1 MiB limit"),
        "{}",
        captured.text()
    );

    // 3. 5,000 connections that never send CONNECT: all closed at the CONNECT timeout. Each
    //    takes two descriptors here (both ends); with too low a limit, as many as fit.
    let open_files = raise_open_files();
    let count = 5_000.min(open_files.saturating_sub(1_000) / 2) as usize;
    if count < 5_000 {
        println!("open-file limit {open_files}: {count} idle connections instead of 5,000");
    }
    let mut idle = Vec::with_capacity(count);
    for _ in 0..count {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    let peak = support::resident_bytes(std::process::id());
    let deadline = CONNECT_TIMEOUT * 4;
    for stream in &mut idle {
        assert!(
            closed_within(stream, deadline).await.is_some(),
            "a connection without CONNECT stayed open"
        );
    }
    drop(idle);

    // 4. SUBSCRIBEs to other devices' topics: each refused, the connection closed at the
    //    tenth.
    let mut probe = TcpStream::connect(addr).await.unwrap();
    probe.write_all(&connect).await.unwrap();
    for n in 0..20u16 {
        let foreign = format!("/sys/7ED01E2A/AA30C505/PLUG{n:04}/model/property/set");
        let mut out = BytesMut::new();
        let mut subscribe = Subscribe::new(foreign, QoS::AtLeastOnce);
        subscribe.pkid = n + 1;
        subscribe.write(&mut out).unwrap();
        if probe.write_all(&out).await.is_err() {
            break;
        }
    }
    assert!(
        closed_within(&mut probe, Duration::from_secs(2))
            .await
            .is_some(),
        "a probing client was not closed"
    );
    assert!(captured.text().contains("(probing), connection closed"));

    // 5. A PUBLISH flood from a logged-in device: closed past its rate.
    let mut flood = TcpStream::connect(addr).await.unwrap();
    flood.write_all(&connect).await.unwrap();
    let topic = TopicKind::PropertyReport.filter(&id);
    let mut burst = BytesMut::new();
    let frame = br#"{"MessageId":1,"HeaderCtrl":16,"Payload":{"power":1},"Version":"2.0"}"#;
    for _ in 0..(PUBLISH_RATE * 3) {
        Publish::new(topic.as_str(), QoS::AtMostOnce, frame.to_vec())
            .write(&mut burst)
            .unwrap();
    }
    let _ = flood.write_all(&burst).await;
    assert!(
        closed_within(&mut flood, Duration::from_secs(5))
            .await
            .is_some(),
        "a flooding device was not closed"
    );
    assert!(captured.text().contains("(a flood), connection closed"));

    // The device was served throughout.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    reporter.await.unwrap();
    let latencies = latencies.lock().unwrap().clone();
    let worst = latencies.iter().max().copied().unwrap_or_default();
    println!(
        "well-behaved device: {} reports acked, worst {worst:?}; memory before {} MiB, \
         peak with 5,000 idle connections {} MiB",
        latencies.len(),
        memory_before >> 20,
        peak >> 20
    );
    assert!(latencies.len() > 100, "only {} reports", latencies.len());
    assert!(worst < ACK_BOUND, "a report took {worst:?}");
    assert!(
        peak.saturating_sub(memory_before) < MEMORY_BOUND,
        "memory grew by {} MiB",
        (peak - memory_before) >> 20
    );
    drop(sim);
}
