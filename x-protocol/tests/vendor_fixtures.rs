//! Every example message of the vendor document (tests/fixtures/vendor, see its README)
//! decodes, and its payload reads as the typed payload of its command.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::PathBuf;

use serde_json::json;
use x_protocol::payload::{
    AuthCode, AuthReply, AuthRequest, ConfigSettings, FirmwareReport, HistoryUpload, OtaNotify,
    OtaNotifyAck, PassthroughDownlink, PropertyAsk, PropertySet, ServiceCall, SessionGrant,
    TimeSyncData,
};
use x_protocol::{AckCode, Frame, HeaderCtrl, MessageId, RegistrationType, SessionKey};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vendor")
}

fn frame(name: &str) -> Frame {
    let bytes = std::fs::read(dir().join(name)).unwrap();
    Frame::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_json_fixture_decodes_as_a_frame() {
    let mut count = 0;
    for entry in std::fs::read_dir(dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let bytes = std::fs::read(&path).unwrap();
            let f = Frame::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                !matches!(f.header_ctrl, HeaderCtrl::Unknown(_)),
                "{}",
                path.display()
            );
            // Encoding then decoding gives the same frame.
            assert_eq!(Frame::decode(&f.encode()).unwrap(), f);
            count += 1;
        }
    }
    assert_eq!(count, 39, "one fixture per example frame of the document");
}

#[test]
fn templates_and_acks() {
    let t = frame("01-frame-template.json");
    assert_eq!(t.message_id, MessageId::Text(String::new()));
    assert_eq!(t.header_ctrl, HeaderCtrl::Auth);
    let ack = frame("02-ack-template.json").ack().unwrap();
    assert_eq!(ack.code, AckCode::Success);
    for (name, hc, code) in [
        ("08-uplink-ack.json", HeaderCtrl::Uplink, AckCode::Success),
        (
            "10-downlink-ack.json",
            HeaderCtrl::Downlink,
            AckCode::Success,
        ),
        (
            "12-property-report-ack.json",
            HeaderCtrl::PropertyReport,
            AckCode::Success,
        ),
        (
            "14-event-report-ack.json",
            HeaderCtrl::EventReport,
            AckCode::Success,
        ),
        (
            "16-service-call-ack.json",
            HeaderCtrl::ServiceCall,
            AckCode::Success,
        ),
        (
            "18-history-upload-ack.json",
            HeaderCtrl::HistoryReport,
            AckCode::Success,
        ),
        (
            "20-property-set-ack.json",
            HeaderCtrl::PropertySet,
            AckCode::Success,
        ),
        (
            "21-property-set-failure-ack.json",
            HeaderCtrl::PropertySet,
            AckCode::Failure,
        ),
        (
            "25-hex-report-ack.json",
            HeaderCtrl::HexPropertyReport,
            AckCode::Success,
        ),
        (
            "27-hex-downlink-ack.json",
            HeaderCtrl::HexPropertySet,
            AckCode::Success,
        ),
        (
            "29-full-hex-report-ack.json",
            HeaderCtrl::FullHexReport,
            AckCode::Success,
        ),
        (
            "35-time-sync-ack.json",
            HeaderCtrl::TimeSync,
            AckCode::Success,
        ),
        (
            "37-firmware-report-ack.json",
            HeaderCtrl::FirmwareReport,
            AckCode::Success,
        ),
    ] {
        let f = frame(name);
        assert_eq!(f.header_ctrl, hc, "{name}");
        assert_eq!(f.ack().unwrap().code, code, "{name}");
    }
    let set_ack = frame("20-property-set-ack.json").ack().unwrap();
    assert_eq!(set_ack.data, Some(json!({"temp": "100"})));
    assert_eq!(
        frame("21-property-set-failure-ack.json").ack().unwrap().msg,
        "Failed"
    );
}

#[test]
fn auth_frames() {
    let req: AuthRequest = frame("03-auth-request.json").payload_as().unwrap();
    assert_eq!(req.open_id.as_str(), "E0C040B1");
    assert_eq!(
        req.registration_type,
        RegistrationType::ProductSecretUnregistered
    );

    let reply: AuthReply = frame("04-auth-reply.json").payload_as().unwrap();
    assert_eq!(reply.code, AuthCode::Ok);
    assert!(reply.session().is_none());
    // The document's DeviceSecret is 8 characters, not a usable 16-byte key: a typed error.
    let err = reply.device_secret().unwrap_err();
    assert_eq!(
        err.to_string(),
        "DeviceSecret: expected 32 hex characters (16 bytes), got 8 characters"
    );
    assert!(!format!("{reply:?}").contains("FE448731"));

    let enc: AuthReply = frame("05-auth-reply-encrypted.json").payload_as().unwrap();
    let grant = enc.session().unwrap();
    assert_eq!(grant.session_id, "3788433");
    assert_eq!(grant.nonce, 4);
}

#[test]
fn passthrough_frames() {
    let up = frame("06-uplink-plain.json");
    assert_eq!(up.payload, json!({"deviceId": "10000001", "power": 99}));
    // The encrypted example is the document's truncated ciphertext: 14 bytes, not a whole
    // block, so decrypting it is a typed length error rather than garbage.
    let enc = frame("07-uplink-encrypted.json");
    let key: SessionKey = "A9AB8E82D2D4A60E67C99D3A446D6088".parse().unwrap();
    let err = enc.decrypted_payload(&key).unwrap_err();
    assert_eq!(
        err.to_string(),
        "frame HeaderCtrl 4 (Uplink): encrypted Payload: ciphertext: 14 bytes is not a positive multiple of the 16-byte AES block"
    );
    // Its full-length version decrypts to the plain example's payload.
    let mut full = up.clone();
    full.encrypt_payload(&key);
    assert!(
        full.payload
            .as_str()
            .unwrap()
            .starts_with(enc.payload.as_str().unwrap())
    );
    assert_eq!(full.decrypted_payload(&key).unwrap(), up.payload);

    let down: PassthroughDownlink = frame("09-downlink.json").payload_as().unwrap();
    assert!(down.data.is_string());
}

#[test]
fn thing_model_frames() {
    assert_eq!(
        frame("11-property-report.json").payload,
        json!({"temp": 100, "humi": 20})
    );
    assert_eq!(
        frame("13-event-report.json").header_ctrl,
        HeaderCtrl::EventReport
    );
    let call: ServiceCall = frame("15-service-call.json").payload_as().unwrap();
    assert_eq!(call.service, "switch");
    assert_eq!(call.params["on"], json!(1));

    let history: HistoryUpload = frame("17-history-upload.json").payload_as().unwrap();
    assert_eq!(history.params.len(), 2);
    let props = history.params[0].property_entries().unwrap();
    assert_eq!(props.len(), 4);
    assert_eq!(props[0].0, "Power");
    assert_eq!(props[0].1.time, 1524448722000);
    let events = history.params[1].event_entries().unwrap();
    assert_eq!(events[0].0, "alarmEvent");
    assert_eq!(events[0].1.value, json!({"Power": "on", "WF": "2"}));

    let set: PropertySet = frame("19-property-set.json").payload_as().unwrap();
    assert_eq!(set.params[0].identify, "temp");
    assert_eq!(set.params[0].value, json!("100"));
    let ask: PropertyAsk = frame("22-property-ask.json").payload_as().unwrap();
    assert_eq!(ask.params, ["temp"]);
    let answer = frame("23-property-ask-reply.json");
    assert_eq!(answer.header_ctrl, HeaderCtrl::PropertyReport);
    assert_eq!(answer.message_id, MessageId::Number(192155183));
}

#[test]
fn hex_frames() {
    let report = frame("24-hex-report.json");
    assert_eq!(report.header_ctrl, HeaderCtrl::HexEventReport);
    assert_eq!(report.payload, json!("00f0ff013FA00000"));
    let down = frame("26-hex-downlink.json");
    assert_eq!(down.header_ctrl, HeaderCtrl::HexPropertySet);
    assert_eq!(down.payload, json!("0101002d0142f6e76d"));
    // The full-HEX report is no frame: the MQTT payload is the bare hex string.
    let full = std::fs::read(dir().join("28-full-hex-report.txt")).unwrap();
    assert!(Frame::decode(&full).is_err());
    assert_eq!(
        hex::decode(&full).unwrap(),
        [0x00, 0xf0, 0xff, 0x01, 0x3f, 0xa0, 0x00, 0x00]
    );
}

#[test]
fn session_config_time_and_ota_frames() {
    let grant: SessionGrant = frame("30-session-key-update.json").payload_as().unwrap();
    assert_eq!(grant.session_id, "4655434B");
    assert_eq!(grant.nonce, 128);

    let ask = frame("31-ask-config.json");
    assert_eq!(ask.header_ctrl, HeaderCtrl::Config);
    assert_eq!(ask.payload, json!({}));
    let report: ConfigSettings = frame("32-config-report.json").payload_as().unwrap();
    assert_eq!(report.settings["Port"], json!(7200));
    // Settings as a string that holds JSON.
    let set: ConfigSettings = frame("33-down-config.json").payload_as().unwrap();
    assert_eq!(set.settings["data"], json!("1231"));

    let sync = frame("34-time-sync-request.json");
    assert_eq!(sync.payload, json!(""));
    let data: TimeSyncData =
        serde_json::from_value(frame("35-time-sync-ack.json").ack().unwrap().data.unwrap())
            .unwrap();
    assert_eq!(data.timestamp, 123213122332);
    assert_eq!(data.timezone, "Asia/Shanghai");

    let fw: FirmwareReport = frame("36-firmware-report.json").payload_as().unwrap();
    assert_eq!(fw.soft_ver, "v2.1.3");
    assert_eq!(fw.module.as_deref(), Some("module1"));
    assert_eq!(
        frame("38-ask-firmware.json").header_ctrl,
        HeaderCtrl::AskFirmware
    );
    let ota: OtaNotify = frame("39-ota-notify.json").payload_as().unwrap();
    assert_eq!(ota.md5, "232435456", "a numeric MD5 is kept as text");
    assert_eq!(ota.soft_size, 123345435);
    assert_eq!(ota.module(), "module1");
    let ack: OtaNotifyAck = frame("40-ota-notify-ack.json").payload_as().unwrap();
    assert_eq!(ack.down_id, "33367341");
}
