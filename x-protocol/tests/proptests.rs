//! Property tests: crypto, frame and topic round trips, and arbitrary input never panics.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use proptest::prelude::*;
use serde_json::{Map, Value};
use x_protocol::crypto::{decrypt_hex, encrypt_hex};
use x_protocol::{
    DeviceIdentity, Frame, HeaderCtrl, Identifier, MessageId, SessionKey, Topic, TopicKind,
};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-zA-Z_]{1,8}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn message_id() -> impl Strategy<Value = MessageId> {
    prop_oneof![
        any::<u64>().prop_map(MessageId::Number),
        ".{0,12}".prop_map(MessageId::Text),
    ]
}

fn header_ctrl() -> impl Strategy<Value = HeaderCtrl> {
    prop_oneof![
        prop::sample::select(HeaderCtrl::ALL.to_vec()),
        any::<i64>().prop_map(HeaderCtrl::from_code),
    ]
}

fn device() -> impl Strategy<Value = DeviceIdentity> {
    ("[0-9A-Fa-f]{8}", "[0-9A-Fa-f]{8}", "[0-9A-Za-z]{4,32}")
        .prop_map(|(o, p, n)| DeviceIdentity::parse(&o, &p, &n).unwrap())
}

proptest! {
    #[test]
    fn encrypt_then_decrypt_is_identity(key in any::<[u8; 16]>(), plain in prop::collection::vec(any::<u8>(), 0..200)) {
        let key = SessionKey::from_bytes(key);
        let hex = encrypt_hex(&key, &plain);
        prop_assert_eq!(hex.len(), (plain.len() / 16 + 1) * 32);
        prop_assert_eq!(&hex, &hex.to_uppercase());
        prop_assert_eq!(decrypt_hex(&key, &hex).unwrap(), plain.clone());
        prop_assert_eq!(decrypt_hex(&key, &hex.to_lowercase()).unwrap(), plain);
    }

    #[test]
    fn frame_encode_then_decode_is_identity(id in message_id(), hc in header_ctrl(), payload in json_value()) {
        let frame = Frame::new(id, hc, payload);
        let bytes = frame.encode();
        prop_assert_eq!(Frame::decode(&bytes).unwrap(), frame);
    }

    #[test]
    fn encrypted_payload_round_trips(key in any::<[u8; 16]>(), hc in header_ctrl(), payload in json_value()) {
        let key = SessionKey::from_bytes(key);
        let mut frame = Frame::new(7u32, hc, payload.clone());
        frame.encrypt_payload(&key);
        prop_assert!(frame.payload.is_string());
        let decoded = Frame::decode(&frame.encode()).unwrap();
        prop_assert_eq!(decoded.decrypted_payload(&key).unwrap(), payload);
    }

    #[test]
    fn topic_build_then_parse_is_identity(
        device in device(),
        kind in prop::sample::select(TopicKind::ALL.to_vec()),
        id in "[A-Za-z][A-Za-z0-9_]{0,49}",
    ) {
        let topic = if kind == TopicKind::Auth {
            Topic::auth()
        } else if kind.spec().has_identifier() {
            Topic::with_identifier(device.clone(), kind, Identifier::new(id).unwrap()).unwrap()
        } else {
            Topic::new(device.clone(), kind).unwrap()
        };
        let text = topic.to_string();
        let parsed = Topic::parse(&text).unwrap();
        prop_assert_eq!(&parsed, &topic);
        prop_assert_eq!(parsed.kind(), kind);
        prop_assert_eq!(parsed.to_string(), text.clone());
        if kind != TopicKind::Auth {
            prop_assert_eq!(Topic::parse_for(&text, &device).unwrap(), topic);
        }
    }

    #[test]
    fn arbitrary_frames_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Frame::decode(&bytes);
    }

    #[test]
    fn arbitrary_json_frames_never_panic(id in json_value(), hc in json_value(), payload in json_value(), version in json_value()) {
        let text = serde_json::json!({"MessageId": id, "HeaderCtrl": hc, "Payload": payload, "Version": version});
        if let Ok(frame) = Frame::decode(text.to_string().as_bytes()) {
            let _ = frame.ack();
            let _ = frame.payload_as::<x_protocol::payload::PropertySet>();
            let _ = frame.decrypted_payload(&SessionKey::from_bytes([0; 16]));
        }
    }

    #[test]
    fn arbitrary_topics_never_panic(topic in "(/sys/)?[-0-9A-Za-z_/+#]{0,80}") {
        let _ = Topic::parse(&topic);
    }

    #[test]
    fn arbitrary_ciphertexts_never_panic(text in "[0-9A-Fa-fXx ]{0,96}") {
        let _ = decrypt_hex(&SessionKey::from_bytes([1; 16]), &text);
    }
}
