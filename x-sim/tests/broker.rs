//! The simulator's broker with the platform's access rules, against real MQTT clients
//! (rumqttc): refused logins get CONNACK codes a device can tell from network faults, and
//! each login reaches only its own topics.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS,
    SubscribeReasonCode,
};
use x_protocol::{ConnectType, DeviceIdentity, MqttLogin, ProductKey};
use x_sim::access::PlatformAccess;
use x_sim::broker::{self, BrokerHandle};
use x_sim::login::Login;
use x_sim::registry::Registry;

const REGISTRY: &str = r#"
[[product]]
open_id = "7ED01E2A"
product_id = "AA30C505"
product_key = "DB6FACEF35BEBA0517712F0E4BE32936"
registration = 1
format = "json"
model = "models/smart-plug.json"

[[device]]
product_id = "AA30C505"
node_eui = "20MQTTJ000121"
device_secret = "326086233FAB8A96566796551EB1DFF8"

[[device]]
product_id = "AA30C505"
node_eui = "NEIGHBOUR1"
"#;

async fn start() -> (BrokerHandle, PlatformAccess) {
    let registry = Registry::from_toml(
        REGISTRY,
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")),
    )
    .unwrap();
    let access = PlatformAccess::new(Arc::new(RwLock::new(registry)));
    let handle = broker::start("127.0.0.1:0".parse().unwrap(), Arc::new(access.clone()))
        .await
        .unwrap();
    (handle, access)
}

fn plug() -> DeviceIdentity {
    DeviceIdentity::parse("7ED01E2A", "AA30C505", "20MQTTJ000121").unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn client(broker: &BrokerHandle, login: &MqttLogin) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(
        &login.client_id,
        broker.addr().ip().to_string(),
        broker.addr().port(),
    );
    options.set_credentials(&login.username, login.password.expose());
    options.set_keep_alive(Duration::from_secs(30));
    AsyncClient::new(options, 16)
}

fn v2_login(device: &DeviceIdentity, secret: &str, ts: u64) -> MqttLogin {
    let pk: ProductKey = "DB6FACEF35BEBA0517712F0E4BE32936".parse().unwrap();
    MqttLogin::connect(
        device,
        &pk,
        &secret.parse().unwrap(),
        ConnectType::TimestampChecked,
        ts,
    )
}

/// Polls until an event matches `want`, or fails after two seconds.
async fn until<T>(
    events: &mut EventLoop,
    mut want: impl FnMut(Result<Event, ConnectionError>) -> Option<T>,
) -> T {
    tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if let Some(v) = want(events.poll().await) {
                return v;
            }
        }
    })
    .await
    .expect("timed out waiting for an event")
}

async fn connected(events: &mut EventLoop) {
    until(events, |e| match e {
        Ok(Event::Incoming(Packet::ConnAck(_))) => Some(()),
        Err(e) => panic!("connection failed: {e}"),
        _ => None,
    })
    .await;
}

#[tokio::test]
async fn refused_logins_get_a_connack_code() {
    let (broker, _) = start().await;
    let secret = "326086233FAB8A96566796551EB1DFF8";
    // Wrong password: 4, bad user name or password.
    let mut bad = v2_login(&plug(), secret, now());
    bad.password = x_protocol::SecretString::new("00".repeat(16));
    let (_c, mut events) = client(&broker, &bad);
    let code = until(&mut events, |e| match e {
        Err(ConnectionError::ConnectionRefused(code)) => Some(code),
        Ok(Event::Incoming(Packet::ConnAck(_))) => panic!("accepted a wrong password"),
        _ => None,
    })
    .await;
    assert_eq!(code, ConnectReturnCode::BadUserNamePassword);
    // Unknown device: 5, not authorized.
    let ghost = DeviceIdentity::parse("7ED01E2A", "AA30C505", "GHOST01").unwrap();
    let (_c, mut events) = client(&broker, &v2_login(&ghost, secret, now()));
    let code = until(&mut events, |e| match e {
        Err(ConnectionError::ConnectionRefused(code)) => Some(code),
        _ => None,
    })
    .await;
    assert_eq!(code, ConnectReturnCode::NotAuthorized);
    // A timestamp from the future: 5.
    let (_c, mut events) = client(&broker, &v2_login(&plug(), secret, now() + 3600));
    let code = until(&mut events, |e| match e {
        Err(ConnectionError::ConnectionRefused(code)) => Some(code),
        _ => None,
    })
    .await;
    assert_eq!(code, ConnectReturnCode::NotAuthorized);
}

#[tokio::test]
async fn a_device_reaches_its_own_topics_only() {
    let (broker, _) = start().await;
    let mut platform = broker.subscribe("/sys/#");
    let (client_handle, mut events) = client(
        &broker,
        &v2_login(&plug(), "326086233FAB8A96566796551EB1DFF8", now()),
    );
    connected(&mut events).await;
    let p = plug().topic_prefix();
    let neighbour = "/sys/7ED01E2A/AA30C505/NEIGHBOUR1";
    client_handle
        .subscribe(format!("{p}/+"), QoS::AtLeastOnce)
        .await
        .unwrap();
    client_handle
        .subscribe(format!("{neighbour}/+"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut codes = Vec::new();
    while codes.len() < 2 {
        let c = until(&mut events, |e| match e {
            Ok(Event::Incoming(Packet::SubAck(ack))) => Some(ack.return_codes),
            Err(e) => panic!("{e}"),
            _ => None,
        })
        .await;
        codes.extend(c);
    }
    assert_eq!(
        codes,
        [
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Failure
        ]
    );

    // Its own uplink reaches the platform; the platform's downlink reaches it.
    client_handle
        .publish(
            format!("{p}/model/property/report"),
            QoS::AtLeastOnce,
            false,
            r#"{"MessageId":1}"#,
        )
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            tokio::select! {
                m = platform.recv() => return m.unwrap(),
                e = events.poll() => { e.unwrap(); }
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(m.topic, format!("{p}/model/property/report"));
    assert_eq!(
        m.from
            .as_deref()
            .map(|c| c.starts_with("V2_AA30C505.20MQTTJ000121_1_")),
        Some(true)
    );
    broker.publish(&format!("{p}/downlink"), "hello");
    let got = until(&mut events, |e| match e {
        Ok(Event::Incoming(Packet::Publish(p))) => Some((p.topic, p.payload)),
        Err(e) => panic!("{e}"),
        _ => None,
    })
    .await;
    assert_eq!(got, (format!("{p}/downlink"), "hello".into()));

    // Publishing on a topic the device does not own closes its connection.
    client_handle
        .publish(
            format!("{neighbour}/model/property/report"),
            QoS::AtMostOnce,
            false,
            "x",
        )
        .await
        .unwrap();
    until(&mut events, |e| match e {
        Err(ConnectionError::Io(_) | ConnectionError::MqttState(_)) => Some(()),
        Err(other) => panic!("unexpected {other}"),
        _ => None,
    })
    .await;
}

#[tokio::test]
async fn the_auth_phase_reaches_auth_and_its_downlink_only() {
    let (broker, access) = start().await;
    let pk: ProductKey = "DB6FACEF35BEBA0517712F0E4BE32936".parse().unwrap();
    let login = MqttLogin::auth(&plug(), &pk);
    let (c, mut events) = client(&broker, &login);
    connected(&mut events).await;
    assert_eq!(
        access.login(&login.client_id),
        Some(Login::Auth { device: plug() })
    );
    let p = plug().topic_prefix();
    c.subscribe(format!("{p}/downlink"), QoS::AtMostOnce)
        .await
        .unwrap();
    c.subscribe(format!("{p}/+"), QoS::AtMostOnce)
        .await
        .unwrap();
    let mut codes = Vec::new();
    while codes.len() < 2 {
        let got = until(&mut events, |e| match e {
            Ok(Event::Incoming(Packet::SubAck(ack))) => Some(ack.return_codes),
            Err(e) => panic!("{e}"),
            _ => None,
        })
        .await;
        codes.extend(got);
    }
    assert_eq!(
        codes,
        [
            SubscribeReasonCode::Success(QoS::AtMostOnce),
            SubscribeReasonCode::Failure
        ]
    );
    let mut platform = broker.subscribe("/sys/device/auth");
    c.publish("/sys/device/auth", QoS::AtMostOnce, false, "{}")
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            tokio::select! {
                m = platform.recv() => return m.unwrap(),
                e = events.poll() => { e.unwrap(); }
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(m.topic, "/sys/device/auth");
    // Anything else closes the connection.
    c.publish(
        format!("{p}/model/property/report"),
        QoS::AtMostOnce,
        false,
        "{}",
    )
    .await
    .unwrap();
    until(&mut events, |e| match e {
        Err(_) => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test]
async fn a_dropped_client_sees_a_network_error_and_its_offline_time_is_kept() {
    let (broker, access) = start().await;
    let ts = now();
    let login = v2_login(&plug(), "326086233FAB8A96566796551EB1DFF8", ts);
    let (_c, mut events) = client(&broker, &login);
    connected(&mut events).await;
    assert!(broker.drop_client(&login.client_id));
    until(&mut events, |e| match e {
        Err(ConnectionError::ConnectionRefused(_)) => panic!("a drop is not a refusal"),
        Err(_) => Some(()),
        _ => None,
    })
    .await;
    // The broker noticed the disconnect: the same timestamp is now stale for a type-1 login.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(access.last_offline(&plug()).is_some_and(|t| t >= ts));
    let mut options = MqttOptions::new(
        &login.client_id,
        broker.addr().ip().to_string(),
        broker.addr().port(),
    );
    options.set_credentials(&login.username, login.password.expose());
    let (_c, mut events) = AsyncClient::new(options, 16);
    let code = until(&mut events, |e| match e {
        Err(ConnectionError::ConnectionRefused(code)) => Some(code),
        Ok(Event::Incoming(Packet::ConnAck(_))) => panic!("a stale timestamp was accepted"),
        _ => None,
    })
    .await;
    assert_eq!(code, ConnectReturnCode::NotAuthorized);
}
