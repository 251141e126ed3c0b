//! The session's decisions, with no sockets: a scripted platform feeds it frames and reads
//! what it publishes.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};
use x_macros::{ThingEvent, ThingModel, ThingServices};
use x_protocol::model::ServiceFailure;
use x_protocol::payload::AuthCode;
use x_protocol::{
    AckPayload, ConnectType, DeviceIdentity, Frame, HeaderCtrl, MessageId, ProductKey,
    RegistrationType, SessionKey, derive_session_key,
};

use super::*;
use crate::backoff::BackoffConfig;

/// A small plug, derived for the tests.
#[derive(Debug, Clone, PartialEq, Default, ThingModel)]
#[thing(crate = "x_protocol")]
pub struct Plug {
    /// The relay.
    #[thing(access = "rw")]
    pub switch: bool,
    /// Watts.
    #[thing(min = 0, max = 3500)]
    pub power: f32,
    /// Seconds.
    #[thing(access = "rw", min = 0, max = 86400)]
    pub countdown: i32,
}

/// Overheat alarm.
#[derive(Debug, Clone, PartialEq, ThingEvent)]
#[thing(crate = "x_protocol", identifier = "overheat")]
pub struct Overheat {
    /// °C.
    pub temperature: f32,
}

/// The plug's services.
#[derive(Debug, Clone, PartialEq, ThingServices)]
#[thing(crate = "x_protocol")]
pub enum PlugService {
    /// Toggle the relay.
    Toggle {
        /// Seconds of delay.
        delay: i32,
    },
}

const PK: &str = "DB6FACEF35BEBA0517712F0E4BE32936";
const SECRET: &str = "326086233FAB8A96566796551EB1DFF8";

fn device() -> DeviceIdentity {
    DeviceIdentity::parse("7ED01E2A", "AA30C505", "PLUG0001").unwrap()
}

fn config(registration: RegistrationType, encrypted: bool) -> DeviceConfig {
    let mut c = DeviceConfig::new(device(), PK.parse().unwrap());
    c.registration = registration;
    c.encrypted = encrypted;
    c.timing.backoff = BackoffConfig {
        base: Duration::from_secs(1),
        cap: Duration::from_secs(30),
        jitter: 0.0,
    };
    c.timing.time_sync = false;
    c
}

type Plugs = Session<Plug, PlugService>;

/// A scripted test clock and the session it drives.
struct Harness {
    s: Plugs,
    now: Now,
    /// The latest state the session asked to persist.
    persisted: Option<Persisted>,
}

impl Harness {
    fn new(config: DeviceConfig) -> Self {
        let now = Now {
            instant: std::time::Instant::now(),
            unix_ms: 1_700_000_000_000,
        };
        Self {
            s: Session::new(config, Plug::default(), Persisted::default(), 42),
            now,
            persisted: None,
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now = self.now.after(d);
        self.s.tick(self.now);
    }

    /// The effects since the last call, but for `Persist`, which is kept aside.
    fn effects(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        while let Some(e) = self.s.poll_effect() {
            match e {
                Effect::Persist(p) => self.persisted = Some(p),
                other => out.push(other),
            }
        }
        out
    }

    fn events(&mut self) -> Vec<Event<PlugService, <Plug as ThingModel>::Set>> {
        std::iter::from_fn(|| self.s.poll_event()).collect()
    }

    /// The frames published since the last call, as (topic suffix, frame), decrypted under
    /// `key` where given.
    fn published(&mut self, key: Option<&SessionKey>) -> Vec<(String, Frame)> {
        let prefix = device().topic_prefix();
        self.effects()
            .into_iter()
            .filter_map(|e| match e {
                Effect::Publish { topic, payload } => {
                    let mut f = Frame::decode(&payload).unwrap();
                    if let Some(k) = key
                        && f.payload.is_string()
                    {
                        f.payload = f.decrypted_payload(k).unwrap();
                    }
                    let suffix = topic.strip_prefix(&format!("{prefix}/")).unwrap_or(&topic);
                    Some((suffix.to_owned(), f))
                }
                _ => None,
            })
            .collect()
    }

    fn deliver(&mut self, suffix: &str, frame: &Frame) {
        let topic = format!("{}/{suffix}", device().topic_prefix());
        self.s.message(&topic, &frame.encode(), self.now);
    }

    /// Start, accept the CONNECT and the SUBSCRIBE, answering an auth request with `reply`.
    fn login(&mut self, reply: Option<Value>) {
        self.s.start(self.now);
        if let Some(reply) = reply {
            assert!(matches!(
                self.effects().as_slice(),
                [Effect::Connect {
                    phase: LoginPhase::Auth,
                    ..
                }]
            ));
            self.s.connected(self.now);
            assert!(matches!(self.effects().as_slice(), [Effect::Subscribe(f)] if f.len() == 1));
            self.s.subscribed(&[], self.now);
            let request = self.effects();
            let Effect::Publish { topic, payload } = &request[0] else {
                panic!("{request:?}")
            };
            assert_eq!(topic, "/sys/device/auth");
            let request = Frame::decode(payload).unwrap();
            let answer = Frame::new(request.message_id, HeaderCtrl::Auth, reply);
            self.deliver("downlink", &answer);
            let after: Vec<Effect> = self.effects();
            assert_eq!(after[0], Effect::Disconnect, "{after:?}");
            assert!(matches!(
                after[1],
                Effect::Connect {
                    phase: LoginPhase::Connect,
                    ..
                }
            ));
            self.s.connected(self.now);
            self.effects();
            self.s.subscribed(&[], self.now);
            assert!(self.s.is_online());
            return;
        }
        let connect = self.effects();
        assert!(
            matches!(
                connect.last(),
                Some(Effect::Connect {
                    phase: LoginPhase::Connect,
                    ..
                })
            ),
            "{connect:?}"
        );
        self.s.connected(self.now);
        self.effects();
        self.s.subscribed(&[], self.now);
        assert!(self.s.is_online());
    }
}

fn ack(request: &Frame, data: Option<Value>) -> Frame {
    Frame::ack_of(request, &AckPayload::success(data))
}

#[test]
fn type_1_runs_the_auth_phase_then_logs_in_with_the_secret_it_learnt() {
    let mut h = Harness::new(config(RegistrationType::ProductSecretPreRegistered, false));
    h.s.start(h.now);
    let Some(Effect::Connect { phase, login }) = h.s.poll_effect() else {
        panic!()
    };
    assert_eq!(phase, LoginPhase::Auth);
    assert_eq!(login.client_id, "AA30C505-PLUG0001");
    assert_eq!(login.username, "AUTH-7ED01E2A-AA30C505");
    h.s.connected(h.now);
    assert_eq!(
        h.effects(),
        [Effect::Subscribe(vec![format!(
            "{}/downlink",
            device().topic_prefix()
        )])]
    );
    h.s.subscribed(&[], h.now);
    assert_eq!(h.s.connection(), &ConnectionState::Authenticating);
    let Some(Effect::Publish { topic, payload }) = h.s.poll_effect() else {
        panic!()
    };
    assert_eq!(topic, "/sys/device/auth");
    let request = Frame::decode(&payload).unwrap();
    assert_eq!(
        request.payload,
        json!({"OpenID":"7ED01E2A","ProductID":"AA30C505","NodeEui":"PLUG0001","Type":1})
    );
    h.deliver(
        "downlink",
        &Frame::new(
            request.message_id,
            HeaderCtrl::Auth,
            json!({"Code":0,"DeviceSecret":SECRET}),
        ),
    );
    let effects = h.effects();
    assert_eq!(effects[0], Effect::Disconnect);
    let p = h.persisted.clone().unwrap();
    assert_eq!(p.device_secret.as_ref().unwrap().expose(), SECRET);
    assert!(!format!("{p:?}").contains(SECRET));
    let Some(Effect::Connect { phase, login }) = effects.last() else {
        panic!("{effects:?}")
    };
    assert_eq!(*phase, LoginPhase::Connect);
    let expected = x_protocol::MqttLogin::connect(
        &device(),
        &PK.parse().unwrap(),
        &SECRET.parse().unwrap(),
        ConnectType::TimestampChecked,
        1_700_000_000,
    );
    assert_eq!(*login, expected);
    assert_eq!(h.persisted.unwrap().last_login_timestamp, 1_700_000_000);
}

#[test]
fn an_unacked_firmware_report_is_sent_again_three_times_then_left() {
    let mut c = config(RegistrationType::DeviceSecretPreRegistered, false);
    c.device_secret = Some(SECRET.parse().unwrap());
    let timeout = c.timing.ack_timeout;
    let mut h = Harness::new(c);
    h.login(None);
    let first = h.published(None);
    assert_eq!(first[0].0, "firmware_report");
    let mut sends = 1;
    for _ in 0..6 {
        h.advance(timeout + Duration::from_millis(1));
        sends += h
            .published(None)
            .iter()
            .filter(|(topic, _)| topic == "firmware_report")
            .count();
    }
    assert_eq!(
        sends, 4,
        "the report and its three re-sends (the document's 2-3)"
    );
    // Asked (13): a report again, with the ask's MessageId.
    let ask = Frame::new(77u32, HeaderCtrl::AskFirmware, json!({}));
    h.deliver("ask_firmware", &ask);
    let sent = h.published(None);
    assert_eq!(sent[0].0, "firmware_report");
    assert_eq!(sent[0].1.message_id, MessageId::from(77u32));
}

#[test]
fn the_answer_to_a_firmware_ask_is_sent_again_under_the_asks_id_until_acked() {
    let mut c = config(RegistrationType::DeviceSecretPreRegistered, false);
    c.device_secret = Some(SECRET.parse().unwrap());
    c.firmware.push(Firmware::module("wifi", "A1", "2.0"));
    let timeout = c.timing.ack_timeout;
    let mut h = Harness::new(c);
    h.login(None);
    // The reports after the login are acked: only the answers to the ask remain.
    for (topic, frame) in h.published(None) {
        if topic == "firmware_report" {
            h.deliver("firmware_report_ack", &ack(&frame, None));
        }
    }
    let ask = Frame::new(77u32, HeaderCtrl::AskFirmware, json!({}));
    h.deliver("ask_firmware", &ask);
    let sent = h.published(None);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0].0, "firmware_report");
    assert_eq!(sent[0].1.message_id, MessageId::from(77u32));
    assert_eq!(sent[0].1.payload["SoftVer"], "1.0.0");
    let wifi_id = sent[1].1.message_id.clone();
    assert_eq!(sent[1].1.payload["Module"], "wifi");
    // The wifi report is acked; the answer to the ask is not: it goes again, three times,
    // under the ask's id, then is left.
    h.deliver("firmware_report_ack", &ack(&sent[1].1, None));
    let mut resent = Vec::new();
    for _ in 0..6 {
        h.advance(timeout + Duration::from_millis(1));
        resent.extend(h.published(None));
    }
    assert_eq!(resent.len(), 3, "{resent:?}");
    for (topic, frame) in &resent {
        assert_eq!(topic, "firmware_report");
        assert_eq!(frame.message_id, MessageId::from(77u32));
        assert_ne!(frame.message_id, wifi_id);
        assert_eq!(frame.payload, sent[0].1.payload);
    }
    // An ack stops the re-sends.
    let ask = Frame::new(78u32, HeaderCtrl::AskFirmware, json!({}));
    h.deliver("ask_firmware", &ask);
    for (_, frame) in h.published(None) {
        h.deliver("firmware_report_ack", &ack(&frame, None));
    }
    for _ in 0..4 {
        h.advance(timeout + Duration::from_millis(1));
        assert!(h.published(None).is_empty());
    }
}

#[test]
fn online_reports_firmware_and_acks_resolve_deliveries() {
    let mut c = config(RegistrationType::DeviceSecretPreRegistered, false);
    c.device_secret = Some(SECRET.parse().unwrap());
    c.firmware.push(Firmware::module("wifi", "A1", "2.0"));
    let mut h = Harness::new(c);
    h.login(None);
    let sent = h.published(None);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].0, "firmware_report");
    assert_eq!(
        sent[1].1.payload,
        json!({"HardVer":"A1","SoftVer":"2.0","Type":2,"Module":"wifi"})
    );
    h.events();

    let token =
        h.s.report(&PlugReport::default().with_power(12.5), h.now)
            .unwrap();
    let sent = h.published(None);
    assert_eq!(sent[0].0, "model/property/report");
    assert_eq!(sent[0].1.payload, json!({"power": 12.5}));
    assert_eq!(h.s.state().power, 12.5);
    // An ack on the wrong topic does not resolve it; the right one does.
    h.deliver("uplink_ack", &ack(&sent[0].1, None));
    h.deliver("model/property/report_ack", &ack(&sent[0].1, None));
    let events = h.events();
    assert!(
        matches!(&events[..], [Event::Delivered { token: t, result: Ok(_) }] if *t == token),
        "{events:?}"
    );
    // A 4001 carries the reason.
    let token = h.s.event(&Overheat { temperature: 96.0 }, h.now).unwrap();
    let sent = h.published(None);
    assert_eq!(sent[0].0, "model/event/overheat/report");
    h.deliver(
        "model/event/overheat/report_ack",
        &Frame::ack_of(&sent[0].1, &AckPayload::failure("temperature: too hot")),
    );
    assert!(matches!(
        &h.events()[..],
        [Event::Delivered { token: t, result: Err(DeliveryError::Rejected { reason, .. }) }]
            if *t == token && reason == "temperature: too hot"
    ));
    // No ack: a timeout.
    let token = h.s.passthrough(json!("AA55"), h.now).unwrap();
    h.advance(Duration::from_secs(11));
    assert!(h.events().iter().any(|e| matches!(
        e,
        Event::Delivered { token: t, result: Err(DeliveryError::Timeout(_)) } if *t == token
    )));
    assert_eq!(h.s.counters().acked, 1);
    assert_eq!(h.s.counters().rejected, 1);
    assert_eq!(h.s.counters().timed_out, 1);
}

fn online_plug() -> Harness {
    let mut c = config(RegistrationType::DeviceSecretPreRegistered, false);
    c.device_secret = Some(SECRET.parse().unwrap());
    let mut h = Harness::new(c);
    h.login(None);
    h.effects();
    h.events();
    h
}

#[test]
fn property_sets_are_decoded_applied_and_acked_with_the_applied_values() {
    let mut h = online_plug();
    let set = Frame::new(
        7u32,
        HeaderCtrl::PropertySet,
        json!({"params":[{"identify":"countdown","value":"600"}]}),
    );
    h.deliver("model/property/set", &set);
    let sent = h.published(None);
    assert_eq!(sent[0].0, "model/property/set_ack");
    assert_eq!(
        sent[0].1.encode(),
        br#"{"MessageId":7,"HeaderCtrl":20,"Payload":{"Code":"200","Msg":"SUCCESS","Data":{"countdown":600}},"Version":"2.0"}"#
    );
    assert_eq!(h.s.state().countdown, 600);
    assert!(matches!(&h.events()[..], [Event::PropertiesSet(_)]));

    // Read-only, out of range: 4001, nothing applied, the application not bothered.
    let bad = Frame::new(
        MessageId::Text("x1".into()),
        HeaderCtrl::PropertySet,
        json!({"params":[{"identify":"power","value":1},{"identify":"countdown","value":-5}]}),
    );
    h.deliver("model/property/set", &bad);
    let sent = h.published(None);
    let reply = sent[0].1.ack().unwrap();
    assert_eq!(sent[0].1.message_id, MessageId::Text("x1".into()));
    assert_eq!(reply.code.as_str(), "4001");
    assert!(
        reply.msg.contains("power") && reply.msg.contains("countdown"),
        "{}",
        reply.msg
    );
    assert_eq!(h.s.state().countdown, 600);
    assert!(h.events().is_empty());

    // The application may veto.
    h.s.set_veto(Box::new(|_, set: &PlugSet| match set.switch {
        Some(true) => Err("the child lock is on".to_owned()),
        _ => Ok(()),
    }));
    let veto = Frame::new(
        8u32,
        HeaderCtrl::PropertySet,
        json!({"params":[{"identify":"switch","value":1}]}),
    );
    h.deliver("model/property/set", &veto);
    let reply = h.published(None)[0].1.ack().unwrap();
    assert_eq!(
        (reply.code.as_str(), reply.msg.as_str()),
        ("4001", "the child lock is on")
    );
    assert!(!h.s.state().switch);
}

#[test]
fn asks_and_service_calls_are_answered_on_the_table_topics() {
    let mut h = online_plug();
    h.s.state_mut().power = 33.0;
    let ask = Frame::new(9u32, HeaderCtrl::PropertyAsk, json!({"params":["power"]}));
    h.deliver("model/property/ask", &ask);
    let sent = h.published(None);
    assert_eq!(sent[0].0, "model/property/report");
    assert_eq!(sent[0].1.header_ctrl, HeaderCtrl::PropertyReport);
    assert_eq!(sent[0].1.message_id, MessageId::Number(9));
    assert_eq!(sent[0].1.payload, json!({"power": 33.0}));
    // The platform acks the answer in turn: consumed, not a bad frame.
    h.deliver("model/property/report_ack", &ack(&sent[0].1, None));
    assert_eq!(h.s.counters().bad_frames, 0);

    let call = Frame::new(
        10u32,
        HeaderCtrl::ServiceCall,
        json!({"serviceIdentify":"toggle","params":{"delay":"5"}}),
    );
    h.deliver("model/service/toggle", &call);
    let events = h.events();
    let [Event::ServiceCall { ticket, call }] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(*call, PlugService::Toggle { delay: 5 });
    h.s.reply_service(ticket.clone(), Ok(serde_json::Map::new()))
        .unwrap();
    assert!(
        h.s.reply_service(ticket.clone(), Ok(serde_json::Map::new()))
            .is_err()
    );
    let sent = h.published(None);
    assert_eq!(sent[0].0, "model/service/toggle/ack");
    assert!(sent[0].1.ack().unwrap().code.is_success());

    // Bad inputs never reach the application.
    let bad = Frame::new(
        11u32,
        HeaderCtrl::ServiceCall,
        json!({"serviceIdentify":"toggle","params":{}}),
    );
    h.deliver("model/service/toggle", &bad);
    assert!(h.events().is_empty());
    let reply = h.published(None)[0].1.ack().unwrap();
    assert_eq!(reply.code.as_str(), "4001");
    let failed = Frame::new(
        12u32,
        HeaderCtrl::ServiceCall,
        json!({"serviceIdentify":"toggle","params":{"delay":1}}),
    );
    h.deliver("model/service/toggle", &failed);
    let Some(Event::ServiceCall { ticket, .. }) = h.events().pop() else {
        panic!()
    };
    h.s.reply_service(ticket, Err(ServiceFailure::from("relay stuck")))
        .unwrap();
    let reply = h.published(None)[0].1.ack().unwrap();
    assert_eq!(
        (reply.code.as_str(), reply.msg.as_str()),
        ("4001", "relay stuck")
    );
}

#[test]
fn garbage_unknown_commands_and_foreign_ids_are_counted_and_never_stop_the_device() {
    let mut h = online_plug();
    let prefix = device().topic_prefix();
    for (topic, bytes) in [
        (format!("{prefix}/model/property/set"), b"not json".to_vec()),
        (
            format!("{prefix}/model/property/set"),
            br#"{"MessageId":1,"HeaderCtrl":20,"Payload":{},"Version":"1.0"}"#.to_vec(),
        ),
        (
            "/sys/7ED01E2A/AA30C505/OTHER001/model/property/set".to_owned(),
            b"{}".to_vec(),
        ),
        (format!("{prefix}/no/such/topic"), b"{}".to_vec()),
        (
            format!("{prefix}/model/property/report_ack"),
            br#"{"MessageId":424242,"HeaderCtrl":16,"Payload":{"Code":"200"},"Version":"2.0"}"#
                .to_vec(),
        ),
    ] {
        h.s.message(&topic, &bytes, h.now);
    }
    assert_eq!(h.s.counters().bad_frames, 5);
    assert!(h.published(None).is_empty());
    // An unknown HeaderCtrl is ignored; a known one on the wrong topic is refused on the
    // topic's ack topic, with the HeaderCtrl the table gives that ack (the device's frame
    // stays on the table) and the request's MessageId.
    let odd = Frame::new(3u32, HeaderCtrl::Unknown(99), json!({}));
    h.deliver("model/property/set", &odd);
    assert!(h.published(None).is_empty());
    assert_eq!(h.s.counters().bad_frames, 6);
    let misplaced = Frame::new(4u32, HeaderCtrl::ServiceCall, json!({}));
    h.deliver("model/property/set", &misplaced);
    let sent = h.published(None);
    assert_eq!(sent[0].0, "model/property/set_ack");
    assert_eq!(sent[0].1.header_ctrl, HeaderCtrl::PropertySet);
    assert_eq!(sent[0].1.message_id, MessageId::from(4u32));
    assert_eq!(sent[0].1.ack().unwrap().code.as_str(), "4001");
    assert!(h.s.is_online());
    assert!(h.s.report_all(h.now).is_ok());
}

#[test]
fn encrypted_products_encrypt_and_rotate_keys_mid_stream() {
    let mut h = Harness::new(config(RegistrationType::ProductSecretUnregistered, true));
    let pk: ProductKey = PK.parse().unwrap();
    h.login(Some(
        json!({"Code":0,"DeviceSecret":SECRET,"SessionID":"s1","Nonce":7}),
    ));
    let key1 = derive_session_key(&pk, "s1", 7).unwrap();
    let fw = h.published(Some(&key1));
    assert_eq!(fw[0].1.payload["SoftVer"], json!("1.0.0"));

    let token =
        h.s.report(&PlugReport::default().with_power(1.0), h.now)
            .unwrap();
    let sent = h.published(Some(&key1));
    assert_eq!(sent[0].1.payload, json!({"power": 1.0}));

    // Rotation, encrypted under the old key; the in-flight ack comes under the old key too.
    let mut rotate = Frame::new(
        500u32,
        HeaderCtrl::SessionKeyUpdate,
        json!({"SessionID":"s2","Nonce":9}),
    );
    rotate.encrypt_payload(&key1);
    h.deliver("downlink", &rotate);
    let key2 = derive_session_key(&pk, "s2", 9).unwrap();
    let mut late = ack(&sent[0].1, None);
    late.encrypt_payload(&key1);
    h.deliver("model/property/report_ack", &late);
    let events = h.events();
    assert!(events.iter().any(|e| matches!(e, Event::KeyRotated)));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Delivered { token: t, result: Ok(_) } if *t == token))
    );
    h.s.report_all(h.now).unwrap();
    let sent = h.published(Some(&key2));
    assert_eq!(sent[0].1.payload["power"], json!(1.0));
    assert_eq!(h.s.counters().rotations, 1);

    // A command under no key we know: refused (encrypted), the device stays up.
    let stranger = derive_session_key(&pk, "zz", 1).unwrap();
    let mut set = Frame::new(501u32, HeaderCtrl::PropertySet, json!({"params":[]}));
    set.encrypt_payload(&stranger);
    h.deliver("model/property/set", &set);
    let sent = h.published(Some(&key2));
    assert_eq!(sent[0].1.ack().unwrap().code.as_str(), "4001");
    assert!(h.s.is_online());
}

#[test]
fn auth_refusals_are_typed_and_back_off_to_the_cap() {
    for (code, refusal) in [
        (2, AuthCode::ProductNotRegistered),
        (4, AuthCode::DeviceRejected),
        (5, AuthCode::TypeMismatch),
        (6, AuthCode::VersionMismatch),
    ] {
        let mut h = Harness::new(config(RegistrationType::ProductSecretPreRegistered, false));
        h.s.start(h.now);
        h.s.connected(h.now);
        h.s.subscribed(&[], h.now);
        let Some(Effect::Publish { payload, .. }) = h.effects().pop() else {
            panic!()
        };
        let request = Frame::decode(&payload).unwrap();
        h.deliver(
            "downlink",
            &Frame::new(request.message_id, HeaderCtrl::Auth, json!({"Code": code})),
        );
        let state = h.s.connection().clone();
        assert_eq!(
            state,
            ConnectionState::Refused {
                reason: Refusal::Auth(refusal),
                retry_in: Duration::from_secs(30)
            }
        );
        assert_eq!(h.effects(), [Effect::Disconnect]);
        // Nothing happens before the cap.
        h.s.disconnected("closed", h.now);
        h.advance(Duration::from_secs(29));
        assert!(h.effects().is_empty());
        h.advance(Duration::from_secs(1));
        assert!(matches!(
            h.effects()[..],
            [Effect::Connect {
                phase: LoginPhase::Auth,
                ..
            }]
        ));
    }
}

#[test]
fn network_faults_back_off_exponentially_and_a_refused_login_reauths_once() {
    let mut h = online_plug();
    h.s.disconnected("connection reset", h.now);
    let mut delays = Vec::new();
    for _ in 0..6 {
        let ConnectionState::Offline { retry_in, .. } = h.s.connection().clone() else {
            panic!("{:?}", h.s.connection())
        };
        delays.push(retry_in.as_secs());
        h.advance(retry_in);
        assert!(matches!(h.effects()[..], [Effect::Connect { .. }]));
        h.s.disconnected("connection refused", h.now);
    }
    assert_eq!(delays, [1, 2, 4, 8, 16, 30]);

    // CONNACK 4 on the V2 login of a type-2 device (nothing to re-learn): refused, capped.
    let ConnectionState::Offline { retry_in, .. } = h.s.connection().clone() else {
        panic!()
    };
    h.advance(retry_in);
    h.effects();
    h.s.connect_refused(4, h.now);
    assert!(matches!(
        h.s.connection(),
        ConnectionState::Refused { reason: Refusal::Connack { code: 4, .. }, retry_in } if *retry_in == Duration::from_secs(30)
    ));

    // A type-1 device runs the auth phase again, once.
    let mut h = Harness::new(config(RegistrationType::ProductSecretPreRegistered, false));
    h.login(Some(json!({"Code":0,"DeviceSecret":SECRET})));
    h.s.disconnected("broker restart", h.now);
    h.advance(Duration::from_secs(1));
    h.effects();
    h.s.connect_refused(5, h.now);
    assert!(matches!(
        h.effects()[..],
        [Effect::Connect {
            phase: LoginPhase::Auth,
            ..
        }]
    ));
}

#[test]
fn type_1_timestamps_are_always_later_than_the_last_login_and_the_last_offline_time() {
    let mut h = online_plug();
    let mut stamps = Vec::new();
    for _ in 0..3 {
        h.s.disconnected("drop", h.now);
        loop {
            h.advance(Duration::from_millis(100));
            if let Some(Effect::Connect { login, .. }) = h
                .effects()
                .into_iter()
                .find(|e| matches!(e, Effect::Connect { .. }))
            {
                stamps.push(login.client_id.rsplit('_').next().unwrap().to_owned());
                break;
            }
        }
        h.s.connected(h.now);
        h.effects();
        h.s.subscribed(&[], h.now);
        h.effects();
    }
    let stamps: Vec<u64> = stamps.iter().map(|s| s.parse().unwrap()).collect();
    assert!(stamps.windows(2).all(|w| w[1] > w[0]), "{stamps:?}");
    assert!(stamps[0] > 1_700_000_000, "{stamps:?}");
}

#[test]
fn a_clean_stop_is_remembered_so_the_next_run_logs_in_later_than_it() {
    let mut h = online_plug();
    h.s.stop(h.now);
    h.effects();
    let kept = h.persisted.clone().unwrap();
    let stopped_s = u64::try_from(h.now.unix_ms / 1000).unwrap();
    assert_eq!(kept.last_offline, stopped_s);
    // Another run, in the same second: it waits for the next one before its V2 login.
    let mut c = config(RegistrationType::DeviceSecretPreRegistered, false);
    c.device_secret = Some(SECRET.parse().unwrap());
    let mut next = Session::<Plug, PlugService>::new(c, Plug::default(), kept, 7);
    next.start(h.now);
    let mut stamp = None;
    let mut now = h.now;
    for _ in 0..30 {
        while let Some(effect) = next.poll_effect() {
            if let Effect::Connect { login, .. } = effect {
                stamp = login.client_id.rsplit('_').next().map(str::to_owned);
            }
        }
        if stamp.is_some() {
            break;
        }
        now = now.after(Duration::from_millis(100));
        next.tick(now);
    }
    let stamp: u64 = stamp.expect("a login").parse().unwrap();
    assert!(stamp > stopped_s, "{stamp} <= {stopped_s}");
}

#[test]
fn time_sync_sets_the_platform_clock() {
    let mut c = config(RegistrationType::DeviceSecretPreRegistered, false);
    c.device_secret = Some(SECRET.parse().unwrap());
    c.timing.time_sync = true;
    let mut h = Harness::new(c);
    h.login(None);
    let sent = h.published(None);
    let (_, sync) = sent.iter().find(|(t, _)| t == "update_time").unwrap();
    assert_eq!(sync.payload, json!(""));
    h.deliver(
        "update_time_ack",
        &ack(
            sync,
            Some(json!({"timestamp": 1_800_000_000_000_i64, "timezone": "Asia/Shanghai"})),
        ),
    );
    assert_eq!(h.s.platform_time(h.now), Some(1_800_000_000_000));
    assert!(
        h.events().iter().any(
            |e| matches!(e, Event::TimeSynced { timezone, .. } if timezone == "Asia/Shanghai")
        )
    );
}

#[test]
fn a_wrong_password_is_tried_a_handful_of_times_a_minute_not_stormed() {
    // The defaults: 0.5 s doubling to a 60 s cap, full jitter; here a 30 s cap.
    let mut c = config(RegistrationType::ProductSecretPreRegistered, false);
    c.device_secret = Some("00000000000000000000000000000000".parse().unwrap());
    c.timing.backoff = BackoffConfig {
        base: Duration::from_millis(500),
        cap: Duration::from_secs(30),
        jitter: 1.0,
    };
    let mut h = Harness::new(c);
    h.s.start(h.now);
    let mut connects = 0;
    let start = h.now.instant;
    while h.now.instant < start + Duration::from_secs(60) {
        for effect in h.effects() {
            if let Effect::Connect { phase, .. } = effect {
                connects += 1;
                match phase {
                    // The broker refuses the V2 login; the auth phase gives the same secret.
                    LoginPhase::Connect => h.s.connect_refused(4, h.now),
                    LoginPhase::Auth => {
                        h.s.connected(h.now);
                        h.s.subscribed(&[], h.now);
                        let Some(Effect::Publish { payload, .. }) = h.effects().pop() else {
                            panic!("no auth request")
                        };
                        let request = Frame::decode(&payload).unwrap();
                        let reply =
                            json!({"Code": 0, "DeviceSecret": "00000000000000000000000000000000"});
                        h.deliver(
                            "downlink",
                            &Frame::new(request.message_id, HeaderCtrl::Auth, reply),
                        );
                    }
                }
            }
        }
        h.advance(Duration::from_millis(100));
    }
    // The V2 login, one auth phase, the V2 login again, then one attempt per 15-30 s.
    assert!((3..=7).contains(&connects), "{connects} CONNECTs in 60 s");
}

#[test]
fn an_auth_reply_that_does_not_come_is_a_timeout_retried_with_the_backoff() {
    let mut c = config(RegistrationType::ProductSecretPreRegistered, false);
    c.timing.auth_timeout = Duration::from_secs(10);
    let mut h = Harness::new(c);
    let mut delays = Vec::new();
    let mut requests = Vec::new();
    for attempt in 1..=3u32 {
        if attempt == 1 {
            h.s.start(h.now);
        }
        assert!(matches!(
            h.effects()[..],
            [Effect::Connect {
                phase: LoginPhase::Auth,
                ..
            }]
        ));
        assert_eq!(
            h.s.connection(),
            &ConnectionState::Connecting {
                phase: LoginPhase::Auth,
                attempt
            }
        );
        h.s.connected(h.now);
        h.effects();
        h.s.subscribed(&[], h.now);
        let sent = h.effects();
        let [Effect::Publish { topic, payload }] = &sent[..] else {
            panic!("{sent:?}")
        };
        assert_eq!(topic, "/sys/device/auth");
        requests.push(Frame::decode(payload).unwrap().message_id);
        assert_eq!(h.s.connection(), &ConnectionState::Authenticating);
        // Nothing before the auth timeout.
        h.advance(Duration::from_millis(9_999));
        assert!(h.effects().is_empty());
        assert_eq!(h.s.connection(), &ConnectionState::Authenticating);
        // At the timeout: the connection is closed and the device is offline, waiting.
        h.advance(Duration::from_millis(1));
        assert_eq!(h.effects(), [Effect::Disconnect]);
        let ConnectionState::Offline { reason, retry_in } = h.s.connection().clone() else {
            panic!("{:?}", h.s.connection())
        };
        assert_eq!(reason, "no auth reply in time");
        delays.push(retry_in);
        // Not a moment before the backoff delay is over, then the auth phase again.
        h.advance(retry_in - Duration::from_millis(1));
        assert!(h.effects().is_empty());
        assert!(h.s.next_deadline().is_some());
        h.now = h.now.after(Duration::from_millis(1));
        h.s.tick(h.now);
    }
    // Exponential, as for network faults: 1 s, 2 s, 4 s.
    assert_eq!(
        delays,
        [
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_secs(4)
        ]
    );
    // A late reply to a request whose connection was given up is not taken for the new
    // one's (counted, ignored); the reply to the new request logs the device in.
    h.s.connected(h.now);
    h.effects();
    h.s.subscribed(&[], h.now);
    let Some(Effect::Publish { payload, .. }) = h.effects().pop() else {
        panic!()
    };
    let request = Frame::decode(&payload).unwrap();
    assert!(!requests.contains(&request.message_id), "{requests:?}");
    let late = Frame::new(
        requests[0].clone(),
        HeaderCtrl::Auth,
        json!({"Code":0,"DeviceSecret":SECRET}),
    );
    h.deliver("downlink", &late);
    assert!(h.effects().is_empty());
    assert_eq!(h.s.counters().bad_frames, 1);
    assert_eq!(h.s.connection(), &ConnectionState::Authenticating);
    h.deliver(
        "downlink",
        &Frame::new(
            request.message_id,
            HeaderCtrl::Auth,
            json!({"Code":0,"DeviceSecret":SECRET}),
        ),
    );
    let after = h.effects();
    assert!(
        matches!(
            after.last(),
            Some(Effect::Connect {
                phase: LoginPhase::Connect,
                ..
            })
        ),
        "{after:?}"
    );
    assert_eq!(h.s.counters().connects, 5);
    assert_eq!(h.s.counters().reconnects, 0);
}

#[test]
fn reconnects_count_returns_online_not_attempts_or_the_auth_phase() {
    let mut h = Harness::new(config(RegistrationType::ProductSecretPreRegistered, false));
    h.login(Some(json!({"Code":0,"DeviceSecret":SECRET})));
    assert_eq!((h.s.counters().connects, h.s.counters().reconnects), (2, 0));
    // Dropped; a failed attempt; then back online.
    h.s.disconnected("connection reset", h.now);
    h.advance(Duration::from_secs(1));
    h.effects();
    h.s.disconnected("connection refused", h.now);
    h.advance(Duration::from_secs(2));
    h.effects();
    h.s.connected(h.now);
    h.effects();
    h.s.subscribed(&[], h.now);
    assert!(h.s.is_online());
    assert_eq!((h.s.counters().connects, h.s.counters().reconnects), (4, 1));
}

#[test]
fn the_announced_retry_delay_is_the_one_kept_even_when_a_type_1_login_must_wait_for_its_second() {
    // Logged in and dropped 300 ms into a second: the next V2 login (type 1) must be
    // stamped in a later second, 700 ms on, longer than the first backoff delay (100 ms).
    let mut c = config(RegistrationType::DeviceSecretPreRegistered, false);
    c.device_secret = Some(SECRET.parse().unwrap());
    c.timing.backoff.base = Duration::from_millis(100);
    let mut h = Harness::new(c);
    h.now = h.now.after(Duration::from_millis(300));
    h.login(None);
    h.effects();
    h.s.disconnected("connection reset", h.now);
    let ConnectionState::Offline { retry_in, .. } = h.s.connection().clone() else {
        panic!("{:?}", h.s.connection())
    };
    assert_eq!(retry_in, Duration::from_millis(700));
    // Nothing before the announced delay, the CONNECT right at it.
    h.advance(retry_in - Duration::from_millis(1));
    assert!(h.effects().is_empty());
    h.advance(Duration::from_millis(1));
    let connect = h.effects();
    let [Effect::Connect { login, .. }] = &connect[..] else {
        panic!("{connect:?}")
    };
    assert_eq!(login.client_id.rsplit('_').next(), Some("1700000001"));
    // A later failure in the same second: the backoff's 200 ms would be too early again.
    h.advance(Duration::from_millis(100));
    h.effects();
    h.s.disconnected("connection refused", h.now);
    let ConnectionState::Offline { retry_in, .. } = h.s.connection().clone() else {
        panic!()
    };
    assert_eq!(retry_in, Duration::from_millis(900));
    // Products that do not check the timestamp keep the backoff's delays.
    let mut c = config(RegistrationType::DeviceSecretPreRegistered, false);
    c.device_secret = Some(SECRET.parse().unwrap());
    c.connect_type = ConnectType::Unchecked;
    c.timing.backoff.base = Duration::from_millis(100);
    let mut h = Harness::new(c);
    h.login(None);
    h.s.disconnected("connection reset", h.now);
    assert!(matches!(
        h.s.connection(),
        ConnectionState::Offline { retry_in, .. } if *retry_in == Duration::from_millis(100)
    ));
}

/// Reports of `power` values as outbox entries under sequence numbers from 1.
fn stored_reports(powers: &[f64]) -> Vec<(u64, crate::outbox::Entry)> {
    use crate::outbox::{Entry, EntryKind};
    powers
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let seq = i as u64 + 1;
            let entry = Entry::new(
                EntryKind::Report,
                json!({ "power": p }),
                1_600_000_000_000 + seq as i64,
            );
            (seq, entry)
        })
        .collect()
}

/// The plug online with `entries` in its outbox; returns the history upload it sent.
fn online_with_stored(entries: Vec<(u64, crate::outbox::Entry)>) -> (Harness, Frame) {
    let mut c = config(RegistrationType::DeviceSecretPreRegistered, false);
    c.device_secret = Some(SECRET.parse().unwrap());
    let mut h = Harness::new(c);
    h.s.restore_stored(entries);
    h.login(None);
    let upload = h
        .published(None)
        .into_iter()
        .find(|(topic, _)| topic == "model/history/data/report")
        .map(|(_, f)| f)
        .expect("a history upload once online");
    h.events();
    (h, upload)
}

/// The `power` values of a history upload, in the order of its `params`.
fn uploaded_powers(upload: &Frame) -> Vec<f64> {
    upload.payload["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|batch| batch["properties"][0]["power"]["value"].as_f64().unwrap())
        .collect()
}

fn forgotten(effects: &[Effect]) -> Vec<u64> {
    effects
        .iter()
        .flat_map(|e| match e {
            Effect::Forget(seqs) => seqs.clone(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn a_history_4001_drops_exactly_the_entries_it_names_and_resends_the_rest() {
    let (mut h, upload) = online_with_stored(stored_reports(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
    // One entry per batch, oldest first: params[i] is entry i.
    assert_eq!(uploaded_powers(&upload), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(
        upload.payload["params"][0]["properties"][0]["power"]["time"],
        1_600_000_000_001_i64
    );
    let refusal = AckPayload::failure(
        "params[1].properties.power: 2 is not allowed here; params[4].properties.power: 5 is not allowed here",
    );
    h.deliver(
        "model/history/data/report_ack",
        &Frame::ack_of(&upload, &refusal),
    );
    let effects = h.effects();
    assert_eq!(
        forgotten(&effects),
        [2, 5],
        "exactly the named entries leave the outbox"
    );
    let refused: Vec<(f64, String)> = h
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::EntryRefused { entry, reason } => {
                Some((entry.payload["power"].as_f64().unwrap(), reason))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        refused,
        [
            (
                2.0,
                "params[1].properties.power: 2 is not allowed here".to_owned()
            ),
            (
                5.0,
                "params[4].properties.power: 5 is not allowed here".to_owned()
            )
        ]
    );
    assert_eq!(h.s.counters().outbox_refused, 2);
    // The rest go again at once, in a new upload, still oldest first.
    let again: Vec<Frame> = effects
        .into_iter()
        .filter_map(|e| match e {
            Effect::Publish { topic, payload } if topic.ends_with("history/data/report") => {
                Frame::decode(&payload).ok()
            }
            _ => None,
        })
        .collect();
    assert_eq!(again.len(), 1);
    assert_eq!(uploaded_powers(&again[0]), [1.0, 3.0, 4.0, 6.0]);
    h.deliver("model/history/data/report_ack", &ack(&again[0], None));
    assert_eq!(forgotten(&h.effects()), [1, 3, 4, 6]);
    assert_eq!(h.s.stored_waiting(), 0);
}

#[test]
fn a_history_4001_that_names_no_entry_keeps_the_whole_batch_and_backs_off() {
    let (mut h, upload) = online_with_stored(stored_reports(&[7.0, 8.0, 9.0]));
    h.deliver(
        "model/history/data/report_ack",
        &Frame::ack_of(&upload, &AckPayload::failure("history uploads are paused")),
    );
    assert!(forgotten(&h.effects()).is_empty(), "nothing dropped");
    let events = h.events();
    assert!(
        matches!(
            &events[..],
            [Event::UploadRefused { reason, entries: 3, retry_in }]
                if reason == "history uploads are paused" && *retry_in == Duration::from_secs(1)
        ),
        "{events:?}"
    );
    assert_eq!(h.s.counters().uploads_refused, 1);
    assert_eq!(h.s.counters().outbox_refused, 0);
    assert_eq!(h.s.stored_waiting(), 3);
    // Not before the backoff: no storm.
    h.advance(Duration::from_millis(900));
    assert!(h.published(None).is_empty());
    h.advance(Duration::from_millis(200));
    let again = h.published(None);
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(uploaded_powers(&again[0].1), [7.0, 8.0, 9.0]);
    // Refused again: the next wait is longer (the backoff doubles).
    h.deliver(
        "model/history/data/report_ack",
        &Frame::ack_of(
            &again[0].1,
            &AckPayload::failure("history uploads are paused"),
        ),
    );
    assert!(matches!(
        &h.events()[..],
        [Event::UploadRefused { retry_in, .. }] if *retry_in == Duration::from_secs(2)
    ));
    h.advance(Duration::from_millis(1500));
    assert!(h.published(None).is_empty());
    h.advance(Duration::from_millis(600));
    let again = h.published(None);
    h.deliver("model/history/data/report_ack", &ack(&again[0].1, None));
    assert_eq!(
        forgotten(&h.effects()),
        [1, 2, 3],
        "every entry delivered in the end"
    );
    assert_eq!(h.s.counters().outbox_refused, 0);
}

#[test]
fn a_live_report_refused_as_unreadable_ciphertext_is_kept_not_dropped() {
    let mut h = online_plug();
    let entry =
        h.s.prepare_report(&PlugReport::default().with_power(3.0), h.now)
            .unwrap();
    let mut entry = entry;
    entry.live = true;
    let token = h.s.queue_stored(1, entry, h.now);
    let sent = h.published(None);
    assert_eq!(sent[0].0, "model/property/report");
    h.deliver(
        "model/property/report_ack",
        &Frame::ack_of(
            &sent[0].1,
            &AckPayload::failure("the ciphertext does not decrypt"),
        ),
    );
    let effects = h.effects();
    assert!(forgotten(&effects).is_empty(), "{effects:?}");
    assert!(
        !h.events()
            .iter()
            .any(|e| matches!(e, Event::Delivered { token: t, .. } if *t == token))
    );
    // A refusal of the report itself drops it.
    let mut h = online_plug();
    let mut entry =
        h.s.prepare_report(&PlugReport::default().with_power(4.0), h.now)
            .unwrap();
    entry.live = true;
    h.s.queue_stored(1, entry, h.now);
    let sent = h.published(None);
    h.deliver(
        "model/property/report_ack",
        &Frame::ack_of(&sent[0].1, &AckPayload::failure("power: 4 is not allowed")),
    );
    assert_eq!(forgotten(&h.effects()), [1]);
    assert_eq!(h.s.counters().outbox_refused, 1);
}
