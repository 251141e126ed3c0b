//! The platform's registry and login rules, on the notes' vectors.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use x_protocol::payload::{AuthCode, AuthRequest, SessionGrant};
use x_protocol::{
    ConnectType, DeviceIdentity, DeviceSecret, MqttLogin, ProductKey, RegistrationType,
};
use x_sim::login::{Login, Refusal, auth_reply, check_connect};
use x_sim::registry::{Format, Registry};

const REGISTRY: &str = r#"
[[product]]
open_id = "7ED01E2A"
product_id = "AA30C505"
product_key = "DB6FACEF35BEBA0517712F0E4BE32936"
registration = 1
format = "json"
model = "models/smart-plug.json"

[[product]]
open_id = "7ED01E2A"
product_id = "5E7A0B32"
product_key = "00112233445566778899AABBCCDDEEFF"
registration = 0
encrypted = true
format = "hex"
model = "models/meter-hex.json"

[[device]]
product_id = "AA30C505"
node_eui = "20MQTTJ000121"
device_secret = "326086233FAB8A96566796551EB1DFF8"

[[device]]
product_id = "AA30C505"
node_eui = "OFF0001"
enabled = false
"#;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn registry() -> Registry {
    Registry::from_toml(REGISTRY, root()).unwrap()
}

fn plug() -> DeviceIdentity {
    DeviceIdentity::parse("7ED01E2A", "AA30C505", "20MQTTJ000121").unwrap()
}

fn keys() -> (ProductKey, DeviceSecret) {
    (
        "DB6FACEF35BEBA0517712F0E4BE32936".parse().unwrap(),
        "326086233FAB8A96566796551EB1DFF8".parse().unwrap(),
    )
}

#[test]
fn registry_loads_products_devices_models_and_scripts() {
    let r = registry();
    let plug = r.product("AA30C505").unwrap();
    assert_eq!(plug.format, Format::Json);
    assert_eq!(plug.model.as_ref().unwrap().model().properties.len(), 7);
    assert!(plug.script.is_none());
    let meter = r.product("5E7A0B32").unwrap();
    assert!(
        meter
            .script
            .as_ref()
            .unwrap()
            .contains("function rawDataToProtocol")
    );
    assert!(!r.device("AA30C505", "OFF0001").unwrap().enabled);
    // A device registered without a secret gets the one the simulator issues.
    assert_eq!(
        r.device("AA30C505", "OFF0001").unwrap().secret,
        x_sim::registry::issued_secret(&keys().0, &"OFF0001".parse().unwrap())
    );
    assert_eq!(r.devices().count(), 2);
}

#[test]
fn registry_errors_name_entry_and_field() {
    let cases = [
        (
            REGISTRY.replace("DB6FACEF35BEBA0517712F0E4BE32936", "DB6F"),
            "product[0].product_key: expected 32 hex characters (16 bytes), got 4 characters",
        ),
        (
            REGISTRY.replace("registration = 1", "registration = 7"),
            "product[0].registration: expected registration type 0, 1 or 2, got \"7\"",
        ),
        (
            REGISTRY.replace("models/smart-plug.json", "models/missing.json"),
            "product[0].model: cannot read",
        ),
        (
            REGISTRY.replace("node_eui = \"OFF0001\"", "node_eui = \"OFF/1\""),
            "device[1].node_eui: ASCII letter or digit expected",
        ),
        (
            REGISTRY.replace("node_eui = \"OFF0001\"", "node_eui = \"20MQTTJ000121\""),
            "device[1]: device AA30C505/20MQTTJ000121 is registered twice",
        ),
        (
            REGISTRY.replace(
                "product_id = \"AA30C505\"\nnode_eui = \"OFF0001\"",
                "product_id = \"FFFFFFFF\"\nnode_eui = \"OFF0001\"",
            ),
            "device[1]: product FFFFFFFF is not registered",
        ),
        (
            REGISTRY.replace(
                "format = \"json\"\nmodel = \"models/smart-plug.json\"",
                "format = \"json\"",
            ),
            "product[0].model: a json or hex product needs its thing model",
        ),
        (
            REGISTRY.replace("encrypted = true", "encrypted = true\ncolour = 1"),
            "registry line 16: unknown field `colour`",
        ),
    ];
    for (text, expected) in cases {
        let err = Registry::from_toml(&text, root()).unwrap_err().to_string();
        assert!(err.starts_with(expected), "{err}\nexpected {expected}");
    }
}

#[test]
fn auth_phase_login() {
    let r = registry();
    let login = MqttLogin::auth(&plug(), &keys().0);
    assert_eq!(
        check_connect(
            &r,
            &login.client_id,
            &login.username,
            login.password.expose(),
            0,
            None
        ),
        Ok(Login::Auth { device: plug() })
    );
    let err = check_connect(
        &r,
        &login.client_id,
        &login.username,
        "00000000000000000000000000000000",
        0,
        None,
    )
    .unwrap_err();
    assert_eq!(err, Refusal::BadPassword("product AA30C505".into()));
    assert_eq!(err.connack_code(), 4);
    let err =
        check_connect(&r, "BBBBBBBB-X1234", "AUTH-7ED01E2A-BBBBBBBB", "x", 0, None).unwrap_err();
    assert_eq!(err, Refusal::UnknownProduct("BBBBBBBB".into()));
    assert_eq!(err.connack_code(), 5);
    let err = check_connect(
        &r,
        "AA30C505-X1234",
        "AUTH-FFFFFFFF-AA30C505",
        login.password.expose(),
        0,
        None,
    )
    .unwrap_err();
    assert_eq!(
        err,
        Refusal::UnknownProduct("AA30C505".into()),
        "a foreign OpenID is no owner"
    );
    assert!(matches!(
        check_connect(&r, "5E7A0B32-X1234", "AUTH-7ED01E2A-AA30C505", "x", 0, None),
        Err(Refusal::Mismatch(_))
    ));
}

#[test]
fn v2_login_both_types_and_timestamps() {
    let r = registry();
    let (pk, ds) = keys();
    let ts = 1_675_404_867;
    for connect_type in [ConnectType::Unchecked, ConnectType::TimestampChecked] {
        let login = MqttLogin::connect(&plug(), &pk, &ds, connect_type, ts);
        assert_eq!(
            check_connect(
                &r,
                &login.client_id,
                &login.username,
                login.password.expose(),
                ts + 60,
                Some(ts - 60)
            ),
            Ok(Login::Device {
                device: plug(),
                connect_type,
                timestamp: ts
            })
        );
    }
    let checked = MqttLogin::connect(&plug(), &pk, &ds, ConnectType::TimestampChecked, ts);
    let pw = checked.password.expose();
    assert_eq!(
        check_connect(
            &r,
            &checked.client_id,
            &checked.username,
            pw,
            ts + 60,
            Some(ts)
        ),
        Err(Refusal::StaleTimestamp {
            timestamp: ts,
            last_offline: ts
        })
    );
    assert_eq!(
        check_connect(&r, &checked.client_id, &checked.username, pw, ts - 60, None),
        Err(Refusal::FutureTimestamp {
            timestamp: ts,
            now: ts - 60
        })
    );
    // A few seconds of skew are allowed.
    assert!(check_connect(&r, &checked.client_id, &checked.username, pw, ts - 3, None).is_ok());
    // Type 0 does not check the timestamp.
    let unchecked = MqttLogin::connect(&plug(), &pk, &ds, ConnectType::Unchecked, ts);
    assert!(
        check_connect(
            &r,
            &unchecked.client_id,
            &unchecked.username,
            unchecked.password.expose(),
            0,
            Some(ts + 1)
        )
        .is_ok()
    );
    // Wrong password, unknown and disabled devices, malformed ids.
    let err = check_connect(
        &r,
        &checked.client_id,
        &checked.username,
        &pw.replace('5', "6"),
        ts,
        None,
    )
    .unwrap_err();
    assert_eq!(err, Refusal::BadPassword("AA30C505/20MQTTJ000121".into()));
    let ghost = DeviceIdentity::parse("7ED01E2A", "AA30C505", "GHOST01").unwrap();
    let login = MqttLogin::connect(&ghost, &pk, &ds, ConnectType::Unchecked, ts);
    assert_eq!(
        check_connect(
            &r,
            &login.client_id,
            &login.username,
            login.password.expose(),
            ts,
            None
        ),
        Err(Refusal::UnknownDevice("AA30C505/GHOST01".into()))
    );
    let off = DeviceIdentity::parse("7ED01E2A", "AA30C505", "OFF0001").unwrap();
    let secret = r.device("AA30C505", "OFF0001").unwrap().secret.clone();
    let login = MqttLogin::connect(&off, &pk, &secret, ConnectType::Unchecked, ts);
    assert_eq!(
        check_connect(
            &r,
            &login.client_id,
            &login.username,
            login.password.expose(),
            ts,
            None
        ),
        Err(Refusal::DeviceDisabled("AA30C505/OFF0001".into()))
    );
    for (client_id, username) in [
        (
            "V2_AA30C505.20MQTTJ000121_2_1",
            "7ED01E2A-AA30C505-20MQTTJ000121",
        ),
        (
            "V2_AA30C505.20MQTTJ000121_0_x",
            "7ED01E2A-AA30C505-20MQTTJ000121",
        ),
        (
            "V3_AA30C505.20MQTTJ000121_0_1",
            "7ED01E2A-AA30C505-20MQTTJ000121",
        ),
        ("V2_AA30C505_0_1", "7ED01E2A-AA30C505-20MQTTJ000121"),
    ] {
        assert!(
            matches!(
                check_connect(&r, client_id, username, "x", 0, None),
                Err(Refusal::Malformed { .. })
            ),
            "{client_id}"
        );
    }
    assert!(matches!(
        check_connect(
            &r,
            "V2_AA30C505.20MQTTJ000121_0_1",
            "7ED01E2A-AA30C505-OTHER01",
            "x",
            0,
            None
        ),
        Err(Refusal::Mismatch(_))
    ));
}

fn request(product: &str, node: &str, ty: RegistrationType) -> AuthRequest {
    AuthRequest {
        open_id: "7ED01E2A".parse().unwrap(),
        product_id: product.parse().unwrap(),
        node_eui: node.parse().unwrap(),
        registration_type: ty,
    }
}

fn grant() -> SessionGrant {
    SessionGrant {
        session_id: "3788433".into(),
        nonce: 4,
    }
}

#[test]
fn auth_replies() {
    let mut r = registry();
    let pre = RegistrationType::ProductSecretPreRegistered;
    let reply = auth_reply(
        &mut r,
        &plug(),
        &request("AA30C505", "20MQTTJ000121", pre),
        grant,
    );
    assert_eq!(reply.code, AuthCode::Ok);
    assert_eq!(reply.device_secret().unwrap(), keys().1);
    assert!(reply.session().is_none(), "not an encrypted product");

    // Type must match the product; the device must be registered and enabled.
    let reply = auth_reply(
        &mut r,
        &plug(),
        &request(
            "AA30C505",
            "20MQTTJ000121",
            RegistrationType::ProductSecretUnregistered,
        ),
        grant,
    );
    assert_eq!(reply.code, AuthCode::TypeMismatch);
    let ghost = DeviceIdentity::parse("7ED01E2A", "AA30C505", "GHOST01").unwrap();
    assert_eq!(
        auth_reply(&mut r, &ghost, &request("AA30C505", "GHOST01", pre), grant).code,
        AuthCode::DeviceRejected
    );
    let off = DeviceIdentity::parse("7ED01E2A", "AA30C505", "OFF0001").unwrap();
    assert_eq!(
        auth_reply(&mut r, &off, &request("AA30C505", "OFF0001", pre), grant).code,
        AuthCode::DeviceRejected
    );
    let unknown = DeviceIdentity::parse("7ED01E2A", "BBBBBBBB", "X1234").unwrap();
    assert_eq!(
        auth_reply(&mut r, &unknown, &request("BBBBBBBB", "X1234", pre), grant).code,
        AuthCode::ProductNotRegistered
    );
    // A request about another device than the login's is refused.
    assert_eq!(
        auth_reply(&mut r, &plug(), &request("AA30C505", "OTHER01", pre), grant).code,
        AuthCode::DeviceRejected
    );

    // Type 0 registers itself on first auth; encrypted products get a session.
    let meter = DeviceIdentity::parse("7ED01E2A", "5E7A0B32", "MTR0001").unwrap();
    assert!(r.device("5E7A0B32", "MTR0001").is_none());
    let reply = auth_reply(
        &mut r,
        &meter,
        &request(
            "5E7A0B32",
            "MTR0001",
            RegistrationType::ProductSecretUnregistered,
        ),
        grant,
    );
    assert_eq!(reply.code, AuthCode::Ok);
    assert_eq!(reply.session(), Some(grant()));
    assert_eq!(
        reply.device_secret().unwrap(),
        r.device("5E7A0B32", "MTR0001").unwrap().secret
    );
    // Registered now: the same secret again.
    let again = auth_reply(
        &mut r,
        &meter,
        &request(
            "5E7A0B32",
            "MTR0001",
            RegistrationType::ProductSecretUnregistered,
        ),
        grant,
    );
    assert_eq!(
        again.device_secret().unwrap(),
        reply.device_secret().unwrap()
    );
    // Secrets never show in Debug output.
    assert!(!format!("{again:?}").contains(again.device_secret().unwrap().expose_hex()));
}
