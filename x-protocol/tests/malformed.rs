//! Malformed frames, topics, hex and identities: each gives a typed error that names what is
//! wrong, and none panics.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use x_protocol::crypto::{self, CryptoError};
use x_protocol::identity::IdentityProblem;
use x_protocol::payload::{AuthReply, ConfigSettings, OtaNotify, PropertySet};
use x_protocol::{
    DeviceIdentity, DeviceSecret, Frame, FrameError, Identifier, NodeEui, OpenId, ProductId,
    ProductKey, RegistrationType, SessionKey, Topic, TopicError, TopicKind,
};

const P: &str = "/sys/7ED01E2A/AA30C505/20MQTTJ000121";

fn invalid(text: &str) -> String {
    match Frame::decode(text.as_bytes()) {
        Err(FrameError::Invalid { reason }) => reason,
        other => panic!("{text}: expected FrameError::Invalid, got {other:?}"),
    }
}

fn payload_error<T: serde::de::DeserializeOwned + std::fmt::Debug>(payload: &str) -> String {
    let text = format!(r#"{{"MessageId":1,"HeaderCtrl":14,"Payload":{payload},"Version":"2.0"}}"#);
    let frame = Frame::decode(text.as_bytes()).unwrap();
    match frame.payload_as::<T>() {
        Err(e @ FrameError::Payload { .. }) => e.to_string(),
        other => panic!("{payload}: expected FrameError::Payload, got {other:?}"),
    }
}

#[test]
fn malformed_frames() {
    assert!(invalid("").contains("EOF"));
    assert!(invalid("{").contains("EOF"));
    assert!(invalid("[]").contains("struct Frame"));
    assert!(invalid(r#"{"MessageId":1,"HeaderCtrl":16,"Payload":{}}"#).contains("`Version`"));
    assert!(invalid(r#"{"MessageId":1,"HeaderCtrl":16,"Version":"2.0"}"#).contains("`Payload`"));
    assert!(invalid(r#"{"HeaderCtrl":16,"Payload":{},"Version":"2.0"}"#).contains("`MessageId`"));
    assert!(
        invalid(r#"{"MessageId":-5,"HeaderCtrl":16,"Payload":{},"Version":"2.0"}"#)
            .contains("MessageId -5 is negative")
    );
    assert!(
        invalid(r#"{"MessageId":true,"HeaderCtrl":16,"Payload":{},"Version":"2.0"}"#)
            .contains("MessageId as a non-negative integer or a string")
    );
    assert!(
        invalid(r#"{"MessageId":1,"HeaderCtrl":"16","Payload":{},"Version":"2.0"}"#)
            .contains("expected i64")
    );
    assert!(
        invalid(r#"{"MessageId":1,"HeaderCtrl":16.5,"Payload":{},"Version":"2.0"}"#)
            .contains("expected i64")
    );
    assert_eq!(
        Frame::decode(br#"{"MessageId":1,"HeaderCtrl":16,"Payload":{},"Version":"1.0"}"#),
        Err(FrameError::Version {
            found: "1.0".into()
        })
    );
}

#[test]
fn malformed_payloads() {
    assert!(payload_error::<x_protocol::AckPayload>(r#"{"Msg":"x"}"#).contains("`Code`"));
    assert!(
        payload_error::<PropertySet>(r#"{"params":{"identify":"a"}}"#)
            .contains("HeaderCtrl 14 (Config): Payload invalid type: map, expected a sequence")
    );
    assert!(payload_error::<PropertySet>(r#"{"params":[{"value":1}]}"#).contains("`identify`"));
    assert!(
        payload_error::<ConfigSettings>(r#"{"Settings":"not json"}"#)
            .contains("the string does not hold valid JSON")
    );
    assert!(
        payload_error::<ConfigSettings>(r#"{"Settings":"[1,2]"}"#)
            .contains("expected a JSON object inside the string")
    );
    assert!(
        payload_error::<OtaNotify>(
            r#"{"Type":2,"Url":"u","SoftVer":"v","SoftSize":"big","MD5":"m","DownID":"d"}"#
        )
        .contains("invalid type: string \"big\", expected u64")
    );
    assert!(
        payload_error::<AuthReply>(r#"{"Code":0,"Nonce":1099511627776}"#)
            .contains("invalid value: integer `1099511627776`, expected i32")
    );
    assert!(payload_error::<AuthReply>(r#"{"Code":"ok"}"#).contains("Code: expected a number"));
}

#[test]
fn malformed_topics() {
    let not_device = |t: &str| {
        assert!(
            matches!(Topic::parse(t), Err(TopicError::NotDeviceTopic { .. })),
            "{t}"
        )
    };
    not_device("");
    not_device("/foo/bar");
    not_device("/sys/7ED01E2A/AA30C505");
    not_device("sys/7ED01E2A/AA30C505/20MQTTJ000121/uplink");

    let unknown = |suffix: &str| {
        let t = format!("{P}/{suffix}");
        match Topic::parse(&t) {
            Err(TopicError::UnknownSuffix { suffix: s, .. }) => assert_eq!(s, suffix),
            other => panic!("{t}: {other:?}"),
        }
    };
    unknown("model/property/bogus");
    unknown("uplink/");
    unknown("model/service/a/b/ack");
    unknown("model/event/x/report/extra");
    unknown("");

    let e = Topic::parse("/sys/7ED01E2Z/AA30C505/20MQTTJ000121/uplink").unwrap_err();
    assert!(
        e.to_string()
            .contains("OpenID: hex digit expected, found 'Z' at position 7"),
        "{e}"
    );
    let e = Topic::parse("/sys/7ED01E2A/AA30C505/dev+1/uplink").unwrap_err();
    assert!(
        matches!(&e, TopicError::Identity { source, .. } if source.field == "NodeEui"),
        "{e}"
    );
    let e = Topic::parse("/sys/7ED01E2A/AA30C505/#/uplink").unwrap_err();
    assert!(matches!(&e, TopicError::Identity { .. }), "{e}");

    let e = Topic::parse(&format!("{P}/model/event/over-heat/report")).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "topic \"{P}/model/event/over-heat/report\": identifier \"over-heat\": may contain only ASCII letters, digits and '_'"
        )
    );
    let e = Topic::parse(&format!("{P}/model/service//ack")).unwrap_err();
    assert!(e.to_string().ends_with("identifier \"\": is empty"), "{e}");

    let device = DeviceIdentity::parse("7ED01E2A", "AA30C505", "20MQTTJ000121").unwrap();
    assert!(matches!(
        Topic::new(device.clone(), TopicKind::EventReport),
        Err(TopicError::Shape { .. })
    ));
    assert!(matches!(
        Topic::with_identifier(
            device.clone(),
            TopicKind::Uplink,
            Identifier::new("x").unwrap()
        ),
        Err(TopicError::Shape { .. })
    ));
    assert!(matches!(
        Topic::new(device, TopicKind::Auth),
        Err(TopicError::Shape { .. })
    ));
}

#[test]
fn malformed_ciphertexts() {
    let key: SessionKey = "A9AB8E82D2D4A60E67C99D3A446D6088".parse().unwrap();
    assert!(matches!(
        crypto::decrypt_hex(&key, "XYZ0"),
        Err(CryptoError::Hex { .. })
    ));
    assert!(matches!(
        crypto::decrypt_hex(&key, "ABC"),
        Err(CryptoError::Hex { .. })
    ));
    assert_eq!(
        crypto::decrypt_hex(&key, ""),
        Err(CryptoError::Length { len: 0 })
    );
    assert_eq!(
        crypto::decrypt_hex(&key, "CB96395F5065FD121D88B1593EFE"),
        Err(CryptoError::Length { len: 14 })
    );
    let other: SessionKey = "00000000000000000000000000000001".parse().unwrap();
    let ciphertext = crypto::encrypt_hex(&other, b"0123456789");
    assert_eq!(
        crypto::decrypt_hex(&key, &ciphertext),
        Err(CryptoError::Padding)
    );
}

#[test]
fn malformed_identities() {
    let problem = |r: Result<(), x_protocol::IdentityError>| r.unwrap_err();
    let e = problem(OpenId::new("7ED01E2").map(drop));
    assert_eq!(
        e.to_string(),
        "OpenID: expected 8 characters, got 7 in \"7ED01E2\""
    );
    let e = problem(OpenId::new("7ED01E2G").map(drop));
    assert_eq!(
        e.to_string(),
        "OpenID: hex digit expected, found 'G' at position 7 in \"7ED01E2G\""
    );
    let e = problem(ProductId::new("").map(drop));
    assert_eq!(e.field, "ProductID");
    assert!(matches!(e.problem, IdentityProblem::Length { got: 0, .. }));
    let e = problem(NodeEui::new("abc").map(drop));
    assert!(e.to_string().contains("expected 4-32 characters, got 3"));
    let e = problem(NodeEui::new("a".repeat(33)).map(drop));
    assert!(e.to_string().contains("got 33"));
    let e = problem(NodeEui::new("设备0001").map(drop));
    assert!(e.to_string().contains("found '设' at position 0"), "{e}");
    let e = problem(NodeEui::new("dev#1234").map(drop));
    assert!(e.to_string().contains("found '#' at position 3"), "{e}");
    let e = problem(ProductKey::from_hex("DB6FACEF35BEBA0517712F0E4BE3293").map(drop));
    assert_eq!(
        e.to_string(),
        "ProductKey: expected 32 hex characters (16 bytes), got 31 characters"
    );
    let e = problem(DeviceSecret::from_hex("G26086233FAB8A96566796551EB1DFF8").map(drop));
    assert_eq!(
        e.to_string(),
        "DeviceSecret: expected hex digits, found a non-hex character at position 0"
    );
    assert!(!e.to_string().contains("26086233"));
    let e = problem("3".parse::<RegistrationType>().map(drop));
    assert_eq!(
        e.to_string(),
        "Type: expected registration type 0, 1 or 2, got \"3\""
    );
    let e = problem("one".parse::<RegistrationType>().map(drop));
    assert!(e.to_string().contains("\"one\""));
    let e = Identifier::new("x".repeat(51)).unwrap_err();
    assert!(e.to_string().ends_with("is longer than 50 characters"));
    assert!(Identifier::new("x".repeat(50)).is_ok());
    let e = Identifier::new("1st").unwrap_err();
    assert!(e.to_string().ends_with("must start with an ASCII letter"));
    let e = Identifier::new("").unwrap_err();
    assert!(e.to_string().ends_with("is empty"));
}
