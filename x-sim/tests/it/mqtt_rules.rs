//! The embedded broker's MQTT 3.1.1 rules for connections, against the simulator over TCP:
//! a device that goes silent is disconnected after one and a half times its keep-alive and
//! goes offline with its offline time, one that pings stays; a connection that sends no
//! CONNECT (or half of one) is closed after the configured CONNECT timeout; a QoS 2 publish
//! gets PUBREC and PUBCOMP and is stored once, even when its PUBLISH is repeated before the
//! PUBREL.
//!
//! The devices are the SDK's (a runtime `Device`, or a `Wire` whose login is the runtime's
//! session); where the test must write packets the runtime never writes (a repeated QoS 2
//! PUBLISH, a PUBREL for nothing), a raw socket speaks MQTT bytes with rumqttc's codec.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use common::wire::Wire;
use common::{Api, PLUG_SECRET, WAIT, online, plug, plug_device};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    Connect, ConnectReturnCode, Packet, PubComp, PubRec, PubRel, Publish,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use x_protocol::{ConnectType, Frame, HeaderCtrl, MessageId, MqttLogin, TopicKind};
use x_sim::sim::{Sim, SimConfig};

/// Where the API has PLUG0001.
const PLUG: &str = "/api/devices/AA30C505/PLUG0001";

/// The smart plug with PLUG0001, whose DeviceSecret is [`PLUG_SECRET`].
fn registry() -> String {
    let secret = format!("device_secret = \"{PLUG_SECRET}\"");
    [common::plug_product(), plug_device("PLUG0001", &secret)].concat()
}

/// The platform in memory; its broker closes a connection without a CONNECT after
/// `connect_timeout`.
async fn start(connect_timeout: Duration) -> Sim {
    let mut config = SimConfig::local(common::registry(&registry()));
    config.broker.connect_timeout = connect_timeout;
    Sim::start(config).await.unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The log lines of this test's thread: a `#[tokio::test]` runs the simulator's tasks on
/// the test's own thread, so a thread-local subscriber sees exactly this test's platform.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Log {
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let log = Self::default();
        let sink = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        (log, tracing::subscriber::set_default(subscriber))
    }

    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The client id of the accepted CONNECT whose client id starts with `prefix`.
    fn accepted(&self, prefix: &str) -> String {
        let line = self.line_with(&[&format!("<- CONNECT {prefix}"), ": accepted"]);
        let (_, rest) = line.split_once("<- CONNECT ").unwrap();
        rest.split(':').next().unwrap().to_owned()
    }

    /// The line containing every one of `parts`.
    fn line_with(&self, parts: &[&str]) -> String {
        let lines = self.lines();
        lines
            .iter()
            .find(|l| parts.iter().all(|p| l.contains(p)))
            .cloned()
            .unwrap_or_else(|| panic!("no log line with {parts:?} in {lines:#?}"))
    }
}

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_silent_device_is_disconnected_after_one_and_a_half_keep_alives() {
    let (log, _guard) = Log::capture();
    let sim = start(Duration::from_secs(10)).await;
    let api = Api::new(&sim);
    let params = plug();
    let before = now();

    let mut wire =
        Wire::online_keeping_alive(sim.mqtt_addr().unwrap(), &params, Duration::from_secs(1)).await;
    let silent_since = Instant::now();
    let device = api.ok(PLUG).await;
    assert_eq!(device["online"], true, "{device}");
    let client_id = log.accepted("V2_AA30C505.PLUG0001_");

    // The wire is not polled from here on: no PINGREQ, no packet at all, the socket open.
    let offline = api.until(PLUG, |d| d["online"] == false).await;
    let silent_for = silent_since.elapsed();
    // Its last packet came just before `silent_since`; the limit is 1.5 s, not 1 s.
    assert!(
        silent_for >= Duration::from_millis(1250),
        "offline after {silent_for:?}"
    );
    let last_offline = offline["last_offline"]
        .as_u64()
        .unwrap_or_else(|| panic!("no offline time: {offline}"));
    assert!((before..=now()).contains(&last_offline), "{offline}");
    assert_eq!(sim.platform().last_offline(&params.id), Some(last_offline));

    // The broker closed the connection, and said why, naming the client.
    assert!(wire.mqtt().closed_within(WAIT).await.is_some());
    log.line_with(&[&client_id, "no packet for 1.5s (1.5 x its keep-alive)"]);
    log.line_with(&["7ED01E2A/AA30C505/PLUG0001 offline", &client_id]);
}

#[tokio::test]
async fn a_device_that_pings_stays_online() {
    let sim = start(Duration::from_secs(10)).await;
    let params = plug();
    let builder = params
        .plug(sim.mqtt_addr().unwrap())
        .time_sync(false)
        .keep_alive(Duration::from_secs(2));
    let device = online(builder).await;
    // One and a half times the broker's limit (3 s) with no traffic but the runtime's
    // PINGREQs (every 2 s: a second to spare for a busy machine).
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(sim.platform().online(&params.id), Some(true));
    // Never offline in between (a reconnect would have recorded an offline time).
    assert_eq!(sim.platform().last_offline(&params.id), None);
    device.shutdown().await;
}

/// Reads until the peer closes; whether it did within `within` (bytes sent before the
/// close are returned too).
async fn closed_within(socket: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    tokio::time::timeout(within, async {
        let mut buf = [0u8; 256];
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()
    .map(|()| got)
}

fn bytes_of(packet: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    packet.write(&mut out, 1024 * 1024).unwrap();
    out.to_vec()
}

/// PLUG0001's V2 login (it has its DeviceSecret), without timestamp check.
fn plug_login() -> MqttLogin {
    let params = plug();
    MqttLogin::connect(
        &params.id,
        &params.product_key,
        &PLUG_SECRET.parse().unwrap(),
        ConnectType::Unchecked,
        now(),
    )
}

fn connect_packet(login: &MqttLogin, keep_alive: u16) -> Packet {
    let mut connect = Connect::new(login.client_id.clone());
    connect.keep_alive = keep_alive;
    connect.set_login(login.username.clone(), login.password.expose());
    Packet::Connect(connect)
}

#[tokio::test]
async fn a_connection_without_connect_is_closed_after_the_connect_timeout() {
    let (log, _guard) = Log::capture();
    let timeout = Duration::from_millis(300);
    let sim = start(timeout).await;
    let addr = sim.mqtt_addr().unwrap();

    // Nothing at all.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let opened = Instant::now();
    let got = closed_within(&mut idle, WAIT).await.expect("still open");
    assert!(opened.elapsed() >= timeout - Duration::from_millis(50));
    assert!(
        got.is_empty(),
        "sent {got:?} (no CONNACK without a CONNECT)"
    );
    let peer = idle.local_addr().unwrap().to_string();
    log.line_with(&[&format!("connection from {peer}: no CONNECT within 300ms")]);

    // Half a CONNECT, the rest never: the timeout is for the whole packet.
    let mut half = TcpStream::connect(addr).await.unwrap();
    let connect = bytes_of(&connect_packet(&plug_login(), 30));
    half.write_all(&connect[..connect.len() / 2]).await.unwrap();
    let got = closed_within(&mut half, WAIT).await.expect("still open");
    assert!(got.is_empty(), "sent {got:?}");

    // A connection that sends its CONNECT in time is not bound by it afterwards.
    let wire = Wire::online(addr, &plug()).await;
    tokio::time::sleep(2 * timeout).await;
    assert_eq!(sim.platform().online(wire.id()), Some(true));
    wire.disconnect().await;
}

#[tokio::test]
async fn a_qos2_report_gets_pubrec_and_pubcomp_and_is_stored_once() {
    let sim = start(Duration::from_secs(10)).await;
    let api = Api::new(&sim);
    let mut wire = Wire::online(sim.mqtt_addr().unwrap(), &plug()).await;
    let topic = wire.topic(TopicKind::PropertyReport);
    let id = wire.next_id();
    let frame = Frame::new(
        id.clone(),
        HeaderCtrl::PropertyReport,
        json!({"power": 7.5}),
    );

    let handshake = wire
        .mqtt()
        .publish_exactly_once(&topic.to_string(), frame.encode())
        .await;
    let pkid = handshake[0].strip_prefix("PUBLISH ").unwrap().to_owned();
    assert_eq!(
        handshake,
        ["PUBLISH", "PUBREC", "PUBREL", "PUBCOMP"].map(|p| format!("{p} {pkid}"))
    );
    // The platform's ack, once.
    let ack = wire
        .expect(TopicKind::PropertyReportAck, HeaderCtrl::PropertyReport)
        .await;
    assert_eq!(ack.frame.message_id, id);
    assert_eq!(ack.frame.ack().unwrap().code.as_str(), "200");
    assert!(wire.quiet_for(Duration::from_millis(300)).await);

    let messages = api.ok(&format!("{PLUG}/messages")).await;
    assert_eq!(message_ids(&messages), [id.to_string()], "{messages}");
    let history = api.ok(&format!("{PLUG}/history?property=power")).await;
    assert_eq!(common::each(&history, |h| h["value"].as_f64()), [7.5]);
    wire.disconnect().await;
}

/// The MessageIds of the API's messages.
fn message_ids(messages: &Value) -> Vec<String> {
    common::each(messages, |m| {
        Some(m["MessageId"].to_string().trim_matches('"').to_owned())
    })
}

/// A raw MQTT connection: packets in and out with rumqttc's codec.
struct Raw {
    socket: TcpStream,
    read: BytesMut,
}

impl Raw {
    async fn open(addr: SocketAddr, connect: &Packet) -> Self {
        let mut raw = Self {
            socket: TcpStream::connect(addr).await.unwrap(),
            read: BytesMut::new(),
        };
        raw.send(connect).await;
        match raw.recv().await {
            Packet::ConnAck(a) => assert_eq!(a.code, ConnectReturnCode::Success),
            other => panic!("not a CONNACK: {other:?}"),
        }
        raw
    }

    async fn send(&mut self, packet: &Packet) {
        self.socket.write_all(&bytes_of(packet)).await.unwrap();
    }

    async fn recv(&mut self) -> Packet {
        tokio::time::timeout(WAIT, async {
            loop {
                match Packet::read(&mut self.read, 1024 * 1024) {
                    Ok(packet) => return packet,
                    Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {
                        let n = self.socket.read_buf(&mut self.read).await.unwrap();
                        assert_ne!(n, 0, "the broker closed the connection");
                    }
                    Err(e) => panic!("unreadable packet: {e:?}"),
                }
            }
        })
        .await
        .expect("no packet in time")
    }

    async fn exchange(&mut self, packet: &Packet) -> Packet {
        self.send(packet).await;
        self.recv().await
    }
}

fn report(pkid: u16, message_id: u32, power: f64) -> Publish {
    let topic = x_protocol::Topic::new(plug().id, TopicKind::PropertyReport).unwrap();
    let frame = Frame::new(
        MessageId::Number(message_id.into()),
        HeaderCtrl::PropertyReport,
        json!({ "power": power }),
    );
    let mut publish = Publish::new(topic.to_string(), QoS::ExactlyOnce, frame.encode());
    publish.pkid = pkid;
    publish
}

#[tokio::test]
async fn a_repeated_qos2_publish_is_delivered_once() {
    let (log, _guard) = Log::capture();
    let sim = start(Duration::from_secs(10)).await;
    let api = Api::new(&sim);
    // What the broker routes, before the platform (which also sets aside a message it
    // already holds) sees it.
    let report_topic = x_protocol::Topic::new(plug().id, TopicKind::PropertyReport).unwrap();
    let mut routed = sim.broker().unwrap().subscribe(&report_topic.to_string());
    let login = plug_login();
    let mut raw = Raw::open(sim.mqtt_addr().unwrap(), &connect_packet(&login, 30)).await;

    // PUBLISH, the same PUBLISH again (DUP) before the PUBREL: PUBREC both times.
    let first = report(7, 1, 1.0);
    let pubrec = Packet::PubRec(PubRec::new(7));
    assert_eq!(raw.exchange(&Packet::Publish(first.clone())).await, pubrec);
    let mut again = first;
    again.dup = true;
    assert_eq!(raw.exchange(&Packet::Publish(again)).await, pubrec);
    let pubcomp = Packet::PubComp(PubComp::new(7));
    assert_eq!(raw.exchange(&Packet::PubRel(PubRel::new(7))).await, pubcomp);
    log.line_with(&[
        &login.client_id,
        "QoS 2 packet id 7 again before its PUBREL",
    ]);
    // A PUBREL for an id not awaited is answered too (MQTT 3.1.1, 4.3.3).
    let pubrel = Packet::PubRel(PubRel::new(9));
    assert_eq!(
        raw.exchange(&pubrel).await,
        Packet::PubComp(PubComp::new(9))
    );
    // Released, the id is free: a new message under it is a new message.
    assert_eq!(
        raw.exchange(&Packet::Publish(report(7, 2, 2.0))).await,
        pubrec
    );
    assert_eq!(raw.exchange(&Packet::PubRel(PubRel::new(7))).await, pubcomp);

    // Routed once each: the repeated PUBLISH never left the broker.
    let mut payloads = Vec::new();
    while let Ok(m) = routed.try_recv() {
        payloads.push(m.payload);
    }
    let bytes = |p: Publish| p.payload;
    assert_eq!(
        payloads,
        [bytes(report(7, 1, 1.0)), bytes(report(7, 2, 2.0))]
    );
    // The platform handles messages in order: once the second is there, so would be a
    // duplicate of the first.
    let messages = api
        .until(&format!("{PLUG}/messages"), |m| {
            m.as_array().is_some_and(|a| a.len() >= 2)
        })
        .await;
    assert_eq!(message_ids(&messages), ["1", "2"], "{messages}");
    let history = api.ok(&format!("{PLUG}/history?property=power")).await;
    assert_eq!(common::each(&history, |h| h["value"].as_f64()), [1.0, 2.0]);

    // The broker sends no QoS 2, so a PUBREC from a client acknowledges nothing: closed.
    raw.send(&Packet::PubRec(PubRec::new(3))).await;
    assert!(closed_within(&mut raw.socket, WAIT).await.is_some());
    log.line_with(&["<- PUBREC from", &login.client_id, "connection closed"]);
    api.until(PLUG, |d| d["online"] == false).await;
}
