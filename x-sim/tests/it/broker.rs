//! The simulator's broker with the platform's access rules, against real MQTT clients
//! (rumqttc) that misbehave on purpose: refused logins get CONNACK codes a device can tell
//! from network faults, and each login reaches only its own topics.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use common::wire::{Mqtt, Refused};
use common::{PLUG_SECRET, WAIT, plug_device};
use rumqttc::{ConnectReturnCode, ConnectionError, QoS, SubscribeReasonCode};
use x_protocol::{ConnectType, DeviceIdentity, MqttLogin, ProductKey, Topic, TopicKind};
use x_sim::access::PlatformAccess;
use x_sim::broker::{self, BrokerHandle, Message};
use x_sim::login::Login;

async fn start() -> (BrokerHandle, PlatformAccess) {
    let secret = format!("device_secret = \"{PLUG_SECRET}\"");
    let toml = [
        common::plug_product(),
        plug_device("20MQTTJ000121", &secret),
        plug_device("NEIGHBOUR1", ""),
    ]
    .concat();
    let access = PlatformAccess::new(Arc::new(RwLock::new(common::registry(&toml))));
    let handle = broker::start("127.0.0.1:0".parse().unwrap(), Arc::new(access.clone()))
        .await
        .unwrap();
    (handle, access)
}

fn plug() -> DeviceIdentity {
    DeviceIdentity::parse("7ED01E2A", "AA30C505", "20MQTTJ000121").unwrap()
}

fn neighbour() -> DeviceIdentity {
    DeviceIdentity::parse("7ED01E2A", "AA30C505", "NEIGHBOUR1").unwrap()
}

fn product_key() -> ProductKey {
    "DB6FACEF35BEBA0517712F0E4BE32936".parse().unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn v2_login(device: &DeviceIdentity, secret: &str, ts: u64) -> MqttLogin {
    let secret = secret.parse().unwrap();
    MqttLogin::connect(
        device,
        &product_key(),
        &secret,
        ConnectType::TimestampChecked,
        ts,
    )
}

/// Every topic one level below a device's prefix (the notes allow this wildcard).
fn all_of(device: &DeviceIdentity) -> String {
    format!("{}/+", device.topic_prefix())
}

fn topic(device: &DeviceIdentity, kind: TopicKind) -> String {
    Topic::new(device.clone(), kind).unwrap().to_string()
}

/// The next message the platform's subscription `rx` gets, polling `mqtt` meanwhile.
async fn reaches(rx: &mut tokio::sync::mpsc::Receiver<Message>, mqtt: &mut Mqtt) -> Message {
    tokio::select! {
        m = rx.recv() => m.unwrap(),
        closed = mqtt.closed_within(WAIT) => panic!("not received: {closed:?}"),
    }
}

/// Publishes `{}` on `topic` (QoS 0); how the connection ends, if it does.
async fn closes(mqtt: &mut Mqtt, topic: String) -> Option<ConnectionError> {
    let publish = mqtt.client.publish(topic, QoS::AtMostOnce, false, "{}");
    publish.await.unwrap();
    mqtt.closed_within(WAIT).await
}

#[tokio::test]
async fn refused_logins_get_a_connack_code() {
    let (broker, _) = start().await;
    let addr = broker.addr();
    // Wrong password: 4, bad user name or password.
    let mut bad = v2_login(&plug(), PLUG_SECRET, now());
    bad.password = x_protocol::SecretString::new("00".repeat(16));
    assert_eq!(
        Mqtt::open(addr, &bad).await.err(),
        Some(Refused::Code(ConnectReturnCode::BadUserNamePassword))
    );
    // Unknown device: 5, not authorized.
    let ghost = DeviceIdentity::parse("7ED01E2A", "AA30C505", "GHOST01").unwrap();
    assert_eq!(
        Mqtt::open(addr, &v2_login(&ghost, PLUG_SECRET, now()))
            .await
            .err(),
        Some(Refused::Code(ConnectReturnCode::NotAuthorized))
    );
    // A timestamp from the future: 5.
    assert_eq!(
        Mqtt::open(addr, &v2_login(&plug(), PLUG_SECRET, now() + 3600))
            .await
            .err(),
        Some(Refused::Code(ConnectReturnCode::NotAuthorized))
    );
}

#[tokio::test]
async fn a_device_reaches_its_own_topics_only() {
    let (broker, _) = start().await;
    let mut platform = broker.subscribe("/sys/#");
    let mut mqtt = Mqtt::open(broker.addr(), &v2_login(&plug(), PLUG_SECRET, now()))
        .await
        .unwrap();
    let codes = mqtt
        .subscribe(&[all_of(&plug()), all_of(&neighbour())])
        .await;
    assert_eq!(
        codes,
        [
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Failure
        ]
    );

    // Its own uplink reaches the platform; the platform's downlink reaches it.
    let report = topic(&plug(), TopicKind::PropertyReport);
    mqtt.publish(&report, br#"{"MessageId":1}"#.to_vec()).await;
    let m = reaches(&mut platform, &mut mqtt).await;
    assert_eq!(m.topic, report);
    assert_eq!(
        m.from
            .as_deref()
            .map(|c| c.starts_with("V2_AA30C505.20MQTTJ000121_1_")),
        Some(true)
    );
    let downlink = topic(&plug(), TopicKind::Downlink);
    broker.publish(&downlink, "hello");
    assert_eq!(mqtt.next().await, (downlink, b"hello".to_vec()));

    // Publishing on a topic the device does not own closes its connection.
    let closed = closes(&mut mqtt, topic(&neighbour(), TopicKind::PropertyReport)).await;
    assert!(
        matches!(
            closed,
            Some(ConnectionError::Io(_) | ConnectionError::MqttState(_))
        ),
        "{closed:?}"
    );
}

#[tokio::test]
async fn the_auth_phase_reaches_auth_and_its_downlink_only() {
    let (broker, access) = start().await;
    let login = MqttLogin::auth(&plug(), &product_key());
    let mut mqtt = Mqtt::open(broker.addr(), &login).await.unwrap();
    assert_eq!(
        access.login(&login.client_id),
        Some(Login::Auth { device: plug() })
    );
    let codes = mqtt
        .subscribe(&[TopicKind::Downlink.filter(&plug()), all_of(&plug())])
        .await;
    assert_eq!(
        codes,
        [
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Failure
        ]
    );
    let mut platform = broker.subscribe("/sys/device/auth");
    mqtt.publish(&Topic::auth().to_string(), b"{}".to_vec())
        .await;
    let m = reaches(&mut platform, &mut mqtt).await;
    assert_eq!(m.topic, "/sys/device/auth");
    // Anything else closes the connection.
    let closed = closes(&mut mqtt, topic(&plug(), TopicKind::PropertyReport)).await;
    assert!(closed.is_some());
}

#[tokio::test]
async fn a_dropped_client_sees_a_network_error_and_its_offline_time_is_kept() {
    let (broker, access) = start().await;
    let ts = now();
    let login = v2_login(&plug(), PLUG_SECRET, ts);
    let mut mqtt = Mqtt::open(broker.addr(), &login).await.unwrap();
    assert!(broker.drop_client(&login.client_id));
    let closed = mqtt.closed_within(WAIT).await;
    assert!(
        matches!(&closed, Some(e) if !matches!(e, ConnectionError::ConnectionRefused(_))),
        "a drop is not a refusal: {closed:?}"
    );
    // The broker noticed the disconnect: the same timestamp is now stale for a type-1 login.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(access.last_offline(&plug()).is_some_and(|t| t >= ts));
    assert_eq!(
        Mqtt::open(broker.addr(), &login).await.err(),
        Some(Refused::Code(ConnectReturnCode::NotAuthorized))
    );
}

/// A second V2 connection of the same device (another ClientID: it carries the login
/// timestamp) takes over: the older one is closed, and the device does not go offline.
#[tokio::test]
async fn a_second_connection_of_a_device_takes_over() {
    let (broker, access) = start().await;
    let login = |ts| {
        let secret = PLUG_SECRET.parse().unwrap();
        MqttLogin::connect(&plug(), &product_key(), &secret, ConnectType::Unchecked, ts)
    };
    let mut first = Mqtt::open(broker.addr(), &login(now() - 10)).await.unwrap();
    let second = Mqtt::open(broker.addr(), &login(now())).await.unwrap();
    assert!(
        first.closed_within(WAIT).await.is_some(),
        "the older connection stays open"
    );
    // Its close is not the device going offline: it is online under the newer one.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(access.last_offline(&plug()), None);
    assert!(access.online(&plug()));
    second.disconnect().await;
    let until = std::time::Instant::now() + WAIT;
    while access.last_offline(&plug()).is_none() && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(access.last_offline(&plug()).is_some());
}

/// A subscriber that reads nothing does not make the broker buffer without bound: once
/// `CONNECTION_QUEUE` messages wait for it (beyond what the sockets hold), it is
/// disconnected.
#[tokio::test]
async fn a_subscriber_that_reads_nothing_is_disconnected() {
    let (broker, _) = start().await;
    let login = v2_login(&plug(), PLUG_SECRET, now());
    let mut mqtt = Mqtt::open(broker.addr(), &login).await.unwrap();
    let downlink = topic(&plug(), TopicKind::Downlink);
    mqtt.subscribe(std::slice::from_ref(&downlink)).await;
    // The client is not polled from here on: it reads nothing.
    let payload = bytes::Bytes::from(vec![b'x'; 16 * 1024]);
    // More than the sockets and the queue hold: 16 MiB queued plus some MiB in the kernel.
    for n in 0..4 * 1024 {
        broker.publish(&downlink, payload.clone());
        if n % 64 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    assert!(
        !broker.drop_client(&login.client_id),
        "a client that reads nothing was still connected"
    );
    drop(mqtt);
}

/// A device that reconnects with the same ClientID before the broker has noticed that its old
/// connection is gone: the old connection's end, handled after the new login, does not log the
/// new connection out (which showed as a refused SUBSCRIBE and a dropped connection).
#[test]
fn the_end_of_an_old_connection_leaves_a_newer_one_of_the_same_client_id_online() {
    use x_sim::broker::{Authorizer, ConnectionNumber};
    let access = PlatformAccess::new(Arc::new(RwLock::new(common::registry(
        &[
            common::plug_product(),
            plug_device(
                "20MQTTJ000121",
                &format!("device_secret = \"{PLUG_SECRET}\""),
            ),
        ]
        .concat(),
    ))));
    let login = v2_login(&plug(), PLUG_SECRET, now());
    let password = login.password.expose().to_owned();
    let (old, new) = (ConnectionNumber(1), ConnectionNumber(2));
    for connection in [old, new] {
        access
            .connect(connection, &login.client_id, &login.username, &password)
            .unwrap();
    }
    access.disconnected(old, &login.client_id);
    assert!(access.online(&plug()));
    let own = format!("{}/downlink", plug().topic_prefix());
    assert!(access.can_subscribe(&login.client_id, &own));
    assert_eq!(access.last_offline(&plug()), None);
    // The new connection's own end does log the device out.
    access.disconnected(new, &login.client_id);
    assert!(!access.online(&plug()));
    assert!(access.last_offline(&plug()).is_some());
}
