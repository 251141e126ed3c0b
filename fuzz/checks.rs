//! What each fuzz target feeds and asserts, shared by the targets (`fuzz_targets/*.rs`) and
//! by the regression test that replays the corpus and every crash found
//! (`tests/fuzz_regressions.rs`). Every check asserts an invariant, not only "no panic":
//! round trips, and secrets absent from every error and every logged value.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use x_sdk::model::hex::{HexEvent, HexModel, HexServices};
use x_sdk::protocol::crypto;
use x_sdk::protocol::payload::{
    AuthReply, AuthRequest, ConfigSettings, FirmwareReport, HistoryUpload, OtaNotify, OtaNotifyAck,
    PassthroughDownlink, PropertyAsk, PropertySet, ServiceCall, SessionGrant, TimeSyncData,
};
use x_sdk::protocol::{
    AckPayload, DeviceIdentity, Frame, HeaderCtrl, RegistrationType, SessionKey, Topic, TopicKind,
};
use x_sdk::runtime::{DeviceConfig, Now, Persisted, Session};

/// The smart plug's bindings (the session target's model).
#[rustfmt::skip]
#[path = "../tests/golden/smart_plug.rs"]
#[allow(dead_code, missing_docs)]
mod plug;

/// The meter's HEX bindings.
#[rustfmt::skip]
#[path = "../tests/golden/meter_hex.rs"]
#[allow(dead_code, missing_docs)]
mod meter;

/// The HEX environment sensor's bindings.
#[rustfmt::skip]
#[path = "../tests/golden/env_sensor_hex.rs"]
#[allow(dead_code, missing_docs)]
mod env_sensor;

/// The fixed key of the decryption target; its hex must never show in an error.
const KEY: [u8; 16] = *b"fuzz-session-key";
const PRODUCT_KEY: &str = "DB6FACEF35BEBA0517712F0E4BE32936";
const DEVICE_SECRET: &str = "326086233FAB8A96566796551EB1DFF8";

/// `Frame::decode` of any bytes; what decodes re-encodes and decodes to the same frame, and
/// every typed payload reader takes its payload without panicking.
pub fn frame(data: &[u8]) {
    let Ok(frame) = Frame::decode(data) else {
        return;
    };
    let again = Frame::decode(&frame.encode()).expect("an encoded frame decodes");
    assert_eq!(again, frame, "a frame changed in a round trip");
    let _ = frame.payload_as::<AuthRequest>();
    let _ = frame.payload_as::<AuthReply>();
    let _ = frame.payload_as::<SessionGrant>();
    let _ = frame.payload_as::<PassthroughDownlink>();
    let _ = frame.payload_as::<FirmwareReport>();
    let _ = frame.payload_as::<OtaNotify>();
    let _ = frame.payload_as::<OtaNotifyAck>();
    let _ = frame.payload_as::<ConfigSettings>();
    let _ = frame.payload_as::<PropertySet>();
    let _ = frame.payload_as::<ServiceCall>();
    let _ = frame.payload_as::<PropertyAsk>();
    let _ = frame.payload_as::<TimeSyncData>();
    let _ = frame.payload_as::<AckPayload>();
    if let Ok(upload) = frame.payload_as::<HistoryUpload>() {
        for batch in &upload.params {
            let _ = batch.property_entries();
            let _ = batch.event_entries();
        }
    }
}

/// Decryption of any text under a fixed key: an error never contains the key (or the
/// plaintext's bytes it would leak); what decrypts re-encrypts to the same ciphertext
/// (uppercase, as the platform sends it).
pub fn decrypt(data: &[u8]) {
    let key = SessionKey::from_bytes(KEY);
    let text = String::from_utf8_lossy(data);
    match crypto::decrypt_hex(&key, &text) {
        Ok(plain) => {
            assert_eq!(
                crypto::encrypt_hex(&key, &plain),
                text.to_ascii_uppercase(),
                "a ciphertext changed in a round trip"
            );
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                !message.contains(key.expose_hex()) && !message.contains("fuzz-session-key"),
                "a decryption error shows the key: {message}"
            );
        }
    }
    // The frame path too: an encrypted Payload that does not decrypt is a typed error.
    let frame = Frame::new(
        1u32,
        HeaderCtrl::PropertyReport,
        Value::String(text.into_owned()),
    );
    if let Err(e) = frame.decrypted_payload(&key) {
        assert!(!e.to_string().contains(key.expose_hex()), "{e}");
    }
}

/// `Topic::parse` of any text; a topic that parses prints as text that parses to it again.
pub fn topic(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(topic) = Topic::parse(text) {
        let printed = topic.to_string();
        assert_eq!(
            Topic::parse(&printed).expect("a printed topic parses"),
            topic,
            "{text:?} printed as {printed:?}"
        );
    }
}

/// A HEX codec round trip: what decodes encodes, and decodes again to the same value; the
/// second encoding is the first byte for byte (encoding is the normal form).
fn hex_round_trip<M: HexModel>(data: &[u8])
where
    M::Report: PartialEq + std::fmt::Debug,
    M::Set: PartialEq + std::fmt::Debug,
{
    let mut out = vec![0u8; 4096];
    if let Ok(report) = M::decode_report(data) {
        let n = M::encode_report(&report, &mut out).expect("a decoded report encodes");
        let again = M::decode_report(&out[..n]).expect("an encoded report decodes");
        assert_eq!(again, report, "a report changed in a round trip");
        let mut second = vec![0u8; 4096];
        let m = M::encode_report(&again, &mut second).expect("encodes");
        assert_eq!(&second[..m], &out[..n], "encoding is not stable");
    }
    if let Ok(set) = M::decode_set_hex(data) {
        let n = M::encode_set(&set, &mut out).expect("a decoded set encodes");
        let again = M::decode_set_hex(&out[..n]).expect("an encoded set decodes");
        assert_eq!(again, set, "a property set changed in a round trip");
    }
    if let Ok(ids) = M::decode_ask(data) {
        let n = M::encode_ask(&ids, &mut out).expect("a decoded ask encodes");
        assert_eq!(
            M::decode_ask(&out[..n]).expect("an encoded ask decodes"),
            ids,
            "a property ask changed in a round trip"
        );
    }
}

/// An event's HEX round trip: what decodes encodes, decodes again to the same event, and
/// encodes again to the same bytes.
fn hex_event_round_trip<E: HexEvent + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(event) = E::decode_hex(data) {
        let mut out = vec![0u8; 4096];
        let n = event.encode_hex(&mut out).expect("a decoded event encodes");
        let again = E::decode_hex(&out[..n]).expect("an encoded event decodes");
        assert_eq!(again, event, "an event changed in a round trip");
        let mut second = vec![0u8; 4096];
        let m = again.encode_hex(&mut second).expect("encodes");
        assert_eq!(&second[..m], &out[..n], "event encoding is not stable");
    }
}

/// The service codec: a call that decodes (what a device receives, HeaderCtrl 24) encodes
/// and decodes again to the same call, with stable bytes; a reply (what the platform reads,
/// 26) decodes to a known service or an error, never a panic.
fn hex_services_round_trip<S: HexServices + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(call) = S::decode_call_hex(data) {
        let mut out = vec![0u8; 4096];
        let n = call
            .encode_call_hex(&mut out)
            .expect("a decoded call encodes");
        let again = S::decode_call_hex(&out[..n]).expect("an encoded call decodes");
        assert_eq!(again, call, "a service call changed in a round trip");
        let mut second = vec![0u8; 4096];
        let m = again.encode_call_hex(&mut second).expect("encodes");
        assert_eq!(&second[..m], &out[..n], "call encoding is not stable");
    }
    if let Ok((service, outputs)) = S::decode_reply_hex(data) {
        assert!(!service.is_empty(), "a reply decoded to no service");
        if let Some(outputs) = outputs {
            assert!(
                serde_json::to_string(&outputs).is_ok(),
                "a decoded reply's outputs are not JSON"
            );
        }
    }
}

/// The meter's generated HEX readers (reports, property sets, asks, both events, service
/// calls and replies), round trips.
pub fn hex_meter(data: &[u8]) {
    hex_round_trip::<meter::MeterHex>(data);
    hex_event_round_trip::<meter::TamperEvent>(data);
    hex_event_round_trip::<meter::OverloadEvent>(data);
    hex_services_round_trip::<meter::MeterHexService>(data);
}

/// The environment sensor's generated HEX readers (reports, sets, asks, its event, service
/// calls and replies), round trips.
pub fn hex_env_sensor(data: &[u8]) {
    hex_round_trip::<env_sensor::EnvSensorHex>(data);
    hex_event_round_trip::<env_sensor::SensorFaultEvent>(data);
    hex_services_round_trip::<env_sensor::EnvSensorHexService>(data);
}

/// The thing-model JSON reader and validator on any text; a model it accepts generates Rust
/// code and, exactly when it is a HEX product, a parsing script.
pub fn model_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(model) = x_codegen::load(text, "fuzz") else {
        return;
    };
    let code = x_codegen::rust::module(&model, &x_codegen::rust::Options::default());
    assert!(!code.is_empty(), "an accepted model generated no code");
    match x_codegen::script::script(&model, "fuzz.json") {
        Ok(script) => assert!(
            script.contains("rawDataToProtocol"),
            "a HEX model's script has no decoder"
        ),
        Err(_) => assert!(model.hex.is_none(), "a HEX model generated no script"),
    }
}

/// x-sim's registry TOML loader on any text (model paths resolve under a directory that
/// does not exist): a typed error, never a panic, and never the value of a `product_key` or
/// `device_secret` (32 hex digits) in the error, unless that text is also elsewhere in the
/// input, say as a key the error may quote.
pub fn registry(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = std::path::Path::new("/nonexistent-x-fuzz");
    let Err(e) = x_sim::registry::Registry::from_toml(text, base) else {
        return;
    };
    let message = e.to_string();
    for (n, line) in text.lines().enumerate() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if !matches!(key.trim(), "product_key" | "device_secret") {
            continue;
        }
        let value = value.trim().trim_matches('"');
        // Only what has a secret's shape (32 hex digits) is one: other text may be anything,
        // the error's own words included.
        let secret = value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit());
        let elsewhere = text
            .lines()
            .enumerate()
            .any(|(m, other)| m != n && other.contains(value));
        if secret && !elsewhere {
            assert!(
                !message.contains(value),
                "the error shows the {} of line {}: {message}",
                key.trim(),
                n + 1
            );
        }
    }
}

fn now() -> Now {
    Now {
        instant: Instant::now(),
        unix_ms: 1_700_000_000_000,
    }
}

/// The device session's `message(topic, bytes)` on an online type-2 smart plug: the first
/// byte picks one of the device's topics (or, when odd past the table, takes the topic from
/// the input), the second whether the rest is the raw MQTT payload or a frame's Payload
/// around it. Every effect and event afterwards is taken, and none shows the ProductKey or
/// the DeviceSecret in its Debug form (unless the input itself carried that text).
pub fn session(data: &[u8]) {
    let [pick, shape, header_ctrl, rest @ ..] = data else {
        return;
    };
    let id = DeviceIdentity::parse("7ED01E2A", "2D2D2D2D", "PLUGT2").unwrap();
    let mut config = DeviceConfig::new(id.clone(), PRODUCT_KEY.parse().unwrap());
    config.registration = RegistrationType::DeviceSecretPreRegistered;
    config.device_secret = Some(DEVICE_SECRET.parse().unwrap());
    config.timing.time_sync = false;
    let mut s: Session<plug::SmartPlug, plug::SmartPlugService> =
        Session::new(config, plug::SmartPlug::default(), Persisted::default(), 7);
    let mut t = now();
    s.tick(t);
    s.connected(t);
    let kinds = TopicKind::ALL;
    let (topic, body) = match kinds.get(usize::from(*pick)) {
        Some(kind) => (kind.filter(&id).replace('+', "overheat"), rest),
        None => {
            // The topic from the input: up to the first NUL.
            let at = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
            (
                String::from_utf8_lossy(&rest[..at]).into_owned(),
                rest.get(at + 1..).unwrap_or_default(),
            )
        }
    };
    let payload: Vec<u8> = match shape % 3 {
        0 => body.to_vec(),
        1 => {
            let inner: Value = serde_json::from_slice(body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
            Frame::new(7u32, HeaderCtrl::from_code(i64::from(*header_ctrl)), inner).encode()
        }
        _ => json!({
            "MessageId": 7,
            "HeaderCtrl": header_ctrl,
            "Version": "2.0",
            "Payload": String::from_utf8_lossy(body),
        })
        .to_string()
        .into_bytes(),
    };
    s.message(&topic, &payload, t);
    t = t.after(Duration::from_secs(30));
    s.tick(t);
    // A secret the input itself carries (say, in passthrough data handed to the application)
    // is the sender's text, not a leak: only the others count.
    let carried = String::from_utf8_lossy(&payload).into_owned() + &topic;
    let secrets: Vec<&str> = [PRODUCT_KEY, DEVICE_SECRET]
        .into_iter()
        .filter(|s| !carried.contains(s))
        .collect();
    while let Some(effect) = s.poll_effect() {
        let shown = format!("{effect:?}");
        for secret in &secrets {
            assert!(!shown.contains(secret), "an effect shows a secret: {shown}");
        }
    }
    while let Some(event) = s.poll_event() {
        let shown = format!("{event:?}");
        for secret in &secrets {
            assert!(!shown.contains(secret), "an event shows a secret: {shown}");
        }
    }
}

/// x-sim's embedded broker (with the platform's login rules), started once for the process.
fn broker_addr() -> std::net::SocketAddr {
    static ADDR: std::sync::OnceLock<std::net::SocketAddr> = std::sync::OnceLock::new();
    *ADDR.get_or_init(|| {
        let mut root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        if !root.join("models").exists() {
            root.pop();
        }
        let text = format!(
            "[[product]]\nopen_id = \"7ED01E2A\"\nproduct_id = \"2D2D2D2D\"\n\
             product_key = \"{PRODUCT_KEY}\"\nregistration = 2\nformat = \"json\"\n\
             model = \"models/smart-plug.json\"\n\n[[device]]\nproduct_id = \"2D2D2D2D\"\n\
             node_eui = \"PLUGT2\"\ndevice_secret = \"{DEVICE_SECRET}\"\n"
        );
        let registry = x_sim::registry::Registry::from_toml(&text, &root).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let mut config = x_sim::sim::SimConfig::local(registry);
                config.http = None;
                let sim = x_sim::sim::Sim::start(config).await.unwrap();
                tx.send(sim.mqtt_addr().unwrap()).unwrap();
                std::future::pending::<()>().await;
                drop(sim);
            });
        });
        rx.recv().unwrap()
    })
}

/// A CONNECT of the registered device with its valid V2 login.
fn valid_connect() -> Vec<u8> {
    use rumqttc::mqttbytes::v4::Connect;
    let id = DeviceIdentity::parse("7ED01E2A", "2D2D2D2D", "PLUGT2").unwrap();
    let login = x_sdk::protocol::MqttLogin::connect(
        &id,
        &PRODUCT_KEY.parse().unwrap(),
        &DEVICE_SECRET.parse().unwrap(),
        x_sdk::protocol::ConnectType::Unchecked,
        1,
    );
    let mut connect = Connect::new(login.client_id);
    connect.set_login(login.username, login.password.expose());
    connect.keep_alive = 30;
    let mut out = bytes::BytesMut::new();
    connect.write(&mut out).unwrap();
    out.to_vec()
}

/// Sends `bytes` on a new connection, closes its sending side and reads until the broker
/// closes or is quiet for `quiet`; returns what the broker sent.
fn exchange(bytes: &[u8], quiet: Duration) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(broker_addr()).unwrap();
    let _ = stream.set_nodelay(true);
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(quiet));
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || got.len() > 1 << 20 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// A byte stream into one connection of x-sim's embedded broker: raw bytes, or (first byte
/// odd) the registered device's valid CONNECT followed by the bytes, so that what follows a
/// login (PUBLISH, SUBSCRIBE, PINGREQ, garbage) is reached. The broker answers at most a
/// bounded amount, and every 256 inputs a well-behaved device still logs in (CONNACK 0).
pub fn broker(data: &[u8]) {
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let [first, rest @ ..] = data else {
        return;
    };
    let mut stream = Vec::new();
    if first % 2 == 1 {
        stream.extend(valid_connect());
    }
    stream.extend_from_slice(rest);
    let answer = exchange(&stream, Duration::from_millis(200));
    assert!(
        answer.len() <= 1 << 20,
        "the broker answered {} bytes",
        answer.len()
    );
    if RUNS
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .is_multiple_of(256)
    {
        let mut probe = valid_connect();
        probe.extend_from_slice(&[0xE0, 0x00]); // DISCONNECT
        let answer = exchange(&probe, Duration::from_secs(2));
        assert_eq!(
            answer.get(..4),
            Some(&[0x20, 0x02, 0x00, 0x00][..]),
            "a well-behaved device no longer logs in: {answer:02X?}"
        );
    }
}

/// Words the structure-aware targets draw object keys and strings from: the thing model's and
/// the frame's vocabulary, so that random JSON reaches past "unknown key".
const WORDS: &[&str] = &[
    "properties",
    "events",
    "services",
    "identifier",
    "name",
    "desc",
    "accessMode",
    "required",
    "dataType",
    "type",
    "specs",
    "min",
    "max",
    "step",
    "unit",
    "unitName",
    "length",
    "size",
    "item",
    "int",
    "float",
    "double",
    "bool",
    "enum",
    "text",
    "date",
    "struct",
    "array",
    "r",
    "rw",
    "w",
    "callType",
    "sync",
    "async",
    "outputData",
    "inputData",
    "info",
    "alert",
    "error",
    "hex",
    "mode",
    "tagged",
    "positional",
    "byteOrder",
    "big",
    "little",
    "id",
    "scale",
    "offset",
    "u8",
    "i16",
    "u32",
    "f32",
    "MessageId",
    "HeaderCtrl",
    "Payload",
    "Version",
    "2.0",
    "params",
    "value",
    "time",
    "Code",
    "Msg",
    "switch",
    "power",
    "0",
    "1",
    "true",
];

/// A JSON value read from `u`, at most `depth` levels deep.
fn arbitrary_json(u: &mut arbitrary::Unstructured<'_>, depth: u32) -> arbitrary::Result<Value> {
    let word = |u: &mut arbitrary::Unstructured<'_>| -> arbitrary::Result<String> {
        Ok(if u.ratio(1, 8)? {
            u.arbitrary::<String>()?
        } else {
            (*u.choose(WORDS)?).to_owned()
        })
    };
    let kind = if depth == 0 {
        u.int_in_range(0..=4)?
    } else {
        u.int_in_range(0..=6)?
    };
    Ok(match kind {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => json!(u.arbitrary::<i64>()? % 100_000),
        3 => serde_json::Number::from_f64(u.arbitrary::<f64>()?).map_or(Value::Null, Value::Number),
        4 => Value::String(word(u)?),
        5 => {
            let n = u.int_in_range(0..=4)?;
            Value::Array(
                (0..n)
                    .map(|_| arbitrary_json(u, depth - 1))
                    .collect::<Result<_, _>>()?,
            )
        }
        _ => {
            let n = u.int_in_range(0..=6)?;
            let mut map = serde_json::Map::new();
            for _ in 0..n {
                let key = word(u)?;
                map.insert(key, arbitrary_json(u, depth - 1)?);
            }
            Value::Object(map)
        }
    })
}

/// Structure-aware `model_json`: a random JSON document in the thing model's vocabulary,
/// through the same reader, validator and generators.
pub fn model_structured(data: &[u8]) {
    let mut u = arbitrary::Unstructured::new(data);
    if let Ok(value) = arbitrary_json(&mut u, 6) {
        model_json(value.to_string().as_bytes());
    }
}

/// Structure-aware `frame` and `session`: a frame whose Payload is random JSON in the
/// protocol's vocabulary, decoded as a frame and handed to the session on a topic the first
/// byte picks.
pub fn frame_structured(data: &[u8]) {
    let mut u = arbitrary::Unstructured::new(data);
    let (Ok(pick), Ok(header_ctrl), Ok(payload)) = (
        u.arbitrary::<u8>(),
        u.int_in_range(0u8..=40),
        arbitrary_json(&mut u, 5),
    ) else {
        return;
    };
    let bytes = json!({
        "MessageId": 9,
        "HeaderCtrl": header_ctrl,
        "Version": "2.0",
        "Payload": payload,
    })
    .to_string()
    .into_bytes();
    frame(&bytes);
    let mut input = vec![pick, 0, header_ctrl];
    input.extend_from_slice(&bytes);
    session(&input);
}
