//! The verified vectors of PROTOCOL-NOTES.md, through the library.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use x_protocol::crypto::{decrypt_hex, encrypt_hex};
use x_protocol::{
    ConnectType, DeviceIdentity, DeviceSecret, MqttLogin, ProductKey, SessionKey,
    derive_session_key,
};

const TYPE0_PASSWORD: &str = "5EB6BBC8DE5233E632389FA3E8E133F14DC0378BDDE5EDD73E64F682A79D14515CF9C8D4C5A0F469AD773DF9F4BFC8F05876680DBB4A7CB546B1EE27FF10134B";
const TYPE1_PASSWORD: &str = "5EB6BBC8DE5233E632389FA3E8E133F14DC0378BDDE5EDD73E64F682A79D14515CF9C8D4C5A0F469AD773DF9F4BFC8F0725CDE013D77D74F22A59C33F8FE51622BE8CFAD9396E7811545F61CEDA9E4F9";

fn vector() -> (DeviceIdentity, ProductKey, DeviceSecret) {
    (
        DeviceIdentity::parse("7ED01E2A", "AA30C505", "20MQTTJ000121").unwrap(),
        "DB6FACEF35BEBA0517712F0E4BE32936".parse().unwrap(),
        "326086233FAB8A96566796551EB1DFF8".parse().unwrap(),
    )
}

#[test]
fn type0_connect_login_matches_the_notes() {
    let (device, pk, ds) = vector();
    let login = MqttLogin::connect(&device, &pk, &ds, ConnectType::Unchecked, 1675404867);
    assert_eq!(login.client_id, "V2_AA30C505.20MQTTJ000121_0_1675404867");
    assert_eq!(login.username, "7ED01E2A-AA30C505-20MQTTJ000121");
    assert_eq!(login.password.expose(), TYPE0_PASSWORD);
}

#[test]
fn type1_connect_login_matches_the_notes() {
    let (device, pk, ds) = vector();
    let login = MqttLogin::connect(&device, &pk, &ds, ConnectType::TimestampChecked, 1675404867);
    assert_eq!(login.client_id, "V2_AA30C505.20MQTTJ000121_1_1675404867");
    assert_eq!(login.username, "7ED01E2A-AA30C505-20MQTTJ000121");
    assert_eq!(login.password.expose(), TYPE1_PASSWORD);
}

#[test]
fn password_is_the_documented_plaintext_under_the_device_secret() {
    let (device, pk, ds) = vector();
    let login = MqttLogin::connect(&device, &pk, &ds, ConnectType::TimestampChecked, 1675404867);
    let plain = decrypt_hex(&ds, login.password.expose()).unwrap();
    assert_eq!(
        plain,
        b"AA30C505.20MQTTJ000121_DB6FACEF35BEBA0517712F0E4BE32936_1675404867"
    );
}

#[test]
fn auth_login_uses_product_credentials() {
    let (device, pk, _) = vector();
    let login = MqttLogin::auth(&device, &pk);
    assert_eq!(login.client_id, "AA30C505-20MQTTJ000121");
    assert_eq!(login.username, "AUTH-7ED01E2A-AA30C505");
    assert_eq!(login.password.expose(), "DB6FACEF35BEBA0517712F0E4BE32936");
}

#[test]
fn seed_ciphertext_is_the_prefix_of_the_full_output() {
    let key: SessionKey = "A9AB8E82D2D4A60E67C99D3A446D6088".parse().unwrap();
    let plain = br#"{"deviceId":"10000001","power":99}"#;
    let out = encrypt_hex(&key, plain);
    assert_eq!(&out[..28], "CB96395F5065FD121D88B1593EFE");
    assert_eq!(out.len(), 96);
    assert_eq!(out, out.to_uppercase());
    assert_eq!(decrypt_hex(&key, &out).unwrap(), plain);
    assert_eq!(decrypt_hex(&key, &out.to_lowercase()).unwrap(), plain);
}

#[test]
fn session_key_follows_the_settled_derivation() {
    let (_, pk, _) = vector();
    // SessionID "3788433" and Nonce 4 from the vendor's auth reply: plaintext "37884334".
    let key = derive_session_key(&pk, "3788433", 4).unwrap();
    assert_eq!(
        key.expose_bytes()[..],
        x_protocol::crypto::encrypt(&pk, b"37884334")[..16]
    );
    // The key the CLI prints for the same inputs (x-sim/tests/it/cli.rs checks the other side).
    assert_eq!(key.expose_hex(), "E9FD1F6A5003A3807A081BC1416F6413");
}
