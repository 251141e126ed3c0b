//! A test device on a raw MQTT connection whose protocol decisions are the runtime's: the
//! sans-IO [`Session`] logs it in (auth phase where needed, V2 login, subscriptions) and
//! answers whatever the test hands it, while the test reads and writes the bytes itself.
//! For tests that must see or choose bytes exactly: what the platform sends, and devices
//! that misbehave (wrong keys, frames the model refuses, wrong answers, silence).
//!
//! Topics come from `x_protocol::Topic` and the command table (`Topic::reply_topic`),
//! frames from `x_protocol::Frame`, MessageIds from `MessageIdSource`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::panic::Location;
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event as MqttEvent, EventLoop, MqttOptions,
    Outgoing, Packet, QoS, SubscribeFilter, SubscribeReasonCode,
};
use serde_json::Value;
use x_protocol::model::{ThingModel, ThingServices};
use x_protocol::{
    AckPayload, Frame, HeaderCtrl, Identifier, MessageId, MessageIdSource, MqttLogin, SessionKey,
    Topic, TopicKind, derive_session_key,
};
use x_runtime::{
    Ack, ConnectionState, DeliveryError, Effect, Event, NoModel, NoServices, Now, Persisted,
    Session, Token,
};

use super::{Params, WAIT};

/// Why a connection did not come up.
#[derive(Debug, PartialEq)]
pub enum Refused {
    /// A CONNACK with this code.
    Code(ConnectReturnCode),
    /// The connection closed without a CONNACK.
    Closed(String),
}

/// One MQTT connection (QoS 1), with the publishes that arrived while it was polled for
/// something else.
pub struct Mqtt {
    pub client: AsyncClient,
    events: EventLoop,
    inbox: VecDeque<(String, Vec<u8>)>,
    /// How long a wait for a packet may take ([`WAIT`] unless a test says otherwise).
    wait: Duration,
}

/// The keep-alive of a [`Mqtt`] connection unless a test chooses one.
pub const KEEP_ALIVE: Duration = Duration::from_secs(30);

impl Mqtt {
    /// Connects with `login` and waits for the CONNACK.
    pub async fn open(addr: SocketAddr, login: &MqttLogin) -> Result<Self, Refused> {
        Self::open_keeping_alive(addr, login, KEEP_ALIVE).await
    }

    /// As [`Mqtt::open`], with this keep-alive in the CONNECT (rumqttc pings only while the
    /// connection is polled: one left alone goes silent).
    pub async fn open_keeping_alive(
        addr: SocketAddr,
        login: &MqttLogin,
        keep_alive: Duration,
    ) -> Result<Self, Refused> {
        let mut options = MqttOptions::new(&login.client_id, addr.ip().to_string(), addr.port());
        options.set_credentials(&login.username, login.password.expose());
        options.set_keep_alive(keep_alive);
        let (client, mut events) = AsyncClient::new(options, 64);
        tokio::time::timeout(WAIT, async {
            loop {
                match events.poll().await {
                    Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => return Ok(()),
                    Err(ConnectionError::ConnectionRefused(code)) => {
                        return Err(Refused::Code(code));
                    }
                    Err(e) => return Err(Refused::Closed(e.to_string())),
                    _ => {}
                }
            }
        })
        .await
        .expect("no CONNACK in time")?;
        Ok(Self {
            client,
            events,
            inbox: VecDeque::new(),
            wait: WAIT,
        })
    }

    /// The same connection, waiting up to `wait` instead of [`WAIT`] for what it polls: for
    /// a test whose platform side is slow by design, where the bound is not the point.
    pub fn waiting(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Subscribes to `filters` in one SUBSCRIBE; the SUBACK's code for each.
    pub async fn subscribe(&mut self, filters: &[String]) -> Vec<SubscribeReasonCode> {
        let subs = filters
            .iter()
            .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
        self.client.subscribe_many(subs).await.unwrap();
        self.poll_until(|e| match e {
            MqttEvent::Incoming(Packet::SubAck(a)) => Some(a.return_codes.clone()),
            _ => None,
        })
        .await
    }

    /// Publishes `bytes` on `topic` and waits until they are sent.
    pub async fn publish(&mut self, topic: &str, bytes: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, bytes)
            .await
            .unwrap();
        self.poll_until(|e| matches!(e, MqttEvent::Outgoing(Outgoing::Publish(_))).then_some(()))
            .await;
    }

    /// Publishes `bytes` on `topic` (QoS 1) and waits for the broker's PUBACK of it.
    pub async fn publish_acked(&mut self, topic: &str, bytes: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, bytes)
            .await
            .unwrap();
        let mut sent = None;
        self.poll_until(|e| match e {
            MqttEvent::Outgoing(Outgoing::Publish(id)) => {
                sent = Some(*id);
                None
            }
            MqttEvent::Incoming(Packet::PubAck(a)) if Some(a.pkid) == sent => Some(()),
            _ => None,
        })
        .await;
    }

    /// Publishes `bytes` on `topic` at QoS 2 and waits for the broker's PUBCOMP; the
    /// packets of the handshake as they passed (`"PUBLISH 3"`, `"PUBREC 3"`, ...: the type
    /// and the packet id).
    pub async fn publish_exactly_once(&mut self, topic: &str, bytes: Vec<u8>) -> Vec<String> {
        self.client
            .publish(topic, QoS::ExactlyOnce, false, bytes)
            .await
            .unwrap();
        let mut seen = Vec::new();
        self.poll_until(|e| {
            let (packet, done) = match e {
                MqttEvent::Outgoing(Outgoing::Publish(id)) => (format!("PUBLISH {id}"), false),
                MqttEvent::Incoming(Packet::PubRec(r)) => (format!("PUBREC {}", r.pkid), false),
                MqttEvent::Outgoing(Outgoing::PubRel(id)) => (format!("PUBREL {id}"), false),
                MqttEvent::Incoming(Packet::PubComp(c)) => (format!("PUBCOMP {}", c.pkid), true),
                _ => return None,
            };
            seen.push(packet);
            done.then(|| seen.clone())
        })
        .await
    }

    /// The next message: its topic and payload.
    pub async fn next(&mut self) -> (String, Vec<u8>) {
        if self.inbox.is_empty() {
            self.poll_until(|e| matches!(e, MqttEvent::Incoming(Packet::Publish(_))).then_some(()))
                .await;
        }
        self.inbox.pop_front().unwrap()
    }

    /// The next message if one arrives before `until`.
    async fn next_before(&mut self, until: Option<Instant>) -> Option<(String, Vec<u8>)> {
        let wait = until.map_or(WAIT, |u| u.saturating_duration_since(Instant::now()));
        tokio::time::timeout(wait, self.next()).await.ok()
    }

    /// Polls the connection until `f` picks an event, keeping publishes that arrive.
    async fn poll_until<T>(&mut self, mut f: impl FnMut(&MqttEvent) -> Option<T>) -> T {
        tokio::time::timeout(self.wait, async {
            loop {
                let event = self.events.poll().await.expect("connection failed");
                if let MqttEvent::Incoming(Packet::Publish(p)) = &event {
                    self.inbox.push_back((p.topic.clone(), p.payload.to_vec()));
                }
                if let Some(t) = f(&event) {
                    return t;
                }
            }
        })
        .await
        .expect("timed out waiting on the connection")
    }

    /// Whether nothing arrives within `within`.
    pub async fn quiet_for(&mut self, within: Duration) -> bool {
        self.inbox.is_empty() && tokio::time::timeout(within, self.next()).await.is_err()
    }

    /// How the connection ends, if it does within `within` (a drop, a refused publish).
    pub async fn closed_within(&mut self, within: Duration) -> Option<ConnectionError> {
        tokio::time::timeout(within, async {
            loop {
                match self.events.poll().await {
                    Err(e) => return e,
                    Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                        self.inbox.push_back((p.topic.clone(), p.payload.to_vec()));
                    }
                    Ok(_) => {}
                }
            }
        })
        .await
        .ok()
    }

    /// Sends DISCONNECT and waits until it is out.
    pub async fn disconnect(mut self) {
        if self.client.disconnect().await.is_ok() {
            let _ = tokio::time::timeout(WAIT, async {
                loop {
                    match self.events.poll().await {
                        Ok(MqttEvent::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            })
            .await;
        }
    }
}

/// A message from the platform: its topic, the frame (its payload decrypted where it came
/// encrypted), and the topic and bytes as they came.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub topic: Topic,
    pub frame: Frame,
    pub name: String,
    pub bytes: Vec<u8>,
}

/// A device whose session runs over a raw connection (see the module documentation).
pub struct Wire<M: ThingModel = NoModel, S: ThingServices = NoServices> {
    pub session: Session<M, S>,
    /// What the session last asked to persist: the DeviceSecret, the session, the last
    /// login timestamp.
    pub persisted: Persisted,
    /// The SessionKey of an encrypted product (derived from the persisted session, by
    /// `x_protocol::derive_session_key`): frames the test sends with [`Wire::send`] are
    /// encrypted with it (except HeaderCtrl 1, 28, 29), encrypted frames in decrypted.
    pub key: Option<SessionKey>,
    addr: SocketAddr,
    /// The keep-alive of its connections ([`KEEP_ALIVE`] unless chosen).
    keep_alive: Duration,
    mqtt: Option<Mqtt>,
    ids: MessageIdSource,
}

impl Wire {
    /// A device of `params` logged in by a fresh session (auth phase, V2 login,
    /// subscriptions to every platform topic of the product's kind), sending nothing on its
    /// own (no firmware report, no time sync).
    pub async fn online(addr: SocketAddr, params: &Params) -> Self {
        Self::resume(addr, params, Persisted::default()).await
    }

    /// As [`Wire::online`], from what an earlier run persisted (a runtime device's state
    /// directory): with the DeviceSecret (and the session) there, no auth phase.
    pub async fn resume(addr: SocketAddr, params: &Params, persisted: Persisted) -> Self {
        Self::start(addr, Session::new(params.config(), NoModel, persisted, 7)).await
    }

    /// As [`Wire::online`], its connections stating `keep_alive` in their CONNECT. The wire
    /// pings only while a test waits on it: left alone, it goes silent with its connection
    /// open, as a device whose network vanished.
    pub async fn online_keeping_alive(
        addr: SocketAddr,
        params: &Params,
        keep_alive: Duration,
    ) -> Self {
        let session = Session::new(params.config(), NoModel, Persisted::default(), 7);
        Self::start_keeping_alive(addr, session, keep_alive).await
    }
}

impl<M: ThingModel, S: ThingServices> Wire<M, S> {
    /// Logs `session` in over raw connections to `addr`; panics if it is refused.
    pub async fn start(addr: SocketAddr, session: Session<M, S>) -> Self {
        Self::start_keeping_alive(addr, session, KEEP_ALIVE).await
    }

    /// As [`Wire::start`], with this keep-alive in its CONNECTs.
    pub async fn start_keeping_alive(
        addr: SocketAddr,
        session: Session<M, S>,
        keep_alive: Duration,
    ) -> Self {
        let mut wire = Self {
            session,
            persisted: Persisted::default(),
            key: None,
            addr,
            keep_alive,
            mqtt: None,
            ids: MessageIdSource::starting_at(1000),
        };
        let until = Instant::now() + WAIT;
        wire.session.start(Now::system());
        loop {
            wire.flush().await;
            match wire.session.connection() {
                ConnectionState::Online => return wire,
                ConnectionState::Refused { reason, .. } => {
                    panic!("{}: refused: {reason}", wire.id())
                }
                _ => {}
            }
            assert!(
                Instant::now() < until,
                "{}: not online in time: {:?}",
                wire.id(),
                wire.session.connection()
            );
            let deadline = wire.session.next_deadline();
            let message = match &mut wire.mqtt {
                Some(m) => m.next_before(deadline).await,
                None => {
                    let wait =
                        deadline.map_or(WAIT, |d| d.saturating_duration_since(Instant::now()));
                    tokio::time::sleep(wait).await;
                    None
                }
            };
            match message {
                Some((topic, bytes)) => wire.session.message(&topic, &bytes, Now::system()),
                None => wire.session.tick(Now::system()),
            }
        }
    }

    /// The device.
    pub fn id(&self) -> &x_protocol::DeviceIdentity {
        &self.session.config().identity
    }

    /// The connection.
    pub fn mqtt(&mut self) -> &mut Mqtt {
        self.mqtt.as_mut().expect("not connected")
    }

    /// Performs what the session asked for (connects, subscriptions, publishes, persisting)
    /// and returns what it told the application (not the connection states).
    pub async fn flush(&mut self) -> Vec<Event<S, M::Set>> {
        while let Some(effect) = self.session.poll_effect() {
            self.perform(effect).await;
        }
        std::iter::from_fn(|| self.session.poll_event())
            .filter(|e| !matches!(e, Event::State(_)))
            .collect()
    }

    async fn perform(&mut self, effect: Effect) {
        let now = Now::system();
        match effect {
            Effect::Connect { login, .. } => {
                if let Some(old) = self.mqtt.take() {
                    old.disconnect().await;
                }
                match Mqtt::open_keeping_alive(self.addr, &login, self.keep_alive).await {
                    Ok(m) => {
                        self.mqtt = Some(m);
                        self.session.connected(now);
                    }
                    Err(Refused::Code(code)) => self.session.connect_refused(code as u8, now),
                    Err(Refused::Closed(e)) => self.session.disconnected(&e, now),
                }
            }
            Effect::Subscribe(filters) => {
                let codes = self.mqtt().subscribe(&filters).await;
                let refused: Vec<String> = filters
                    .into_iter()
                    .zip(codes)
                    .filter(|(_, c)| *c == SubscribeReasonCode::Failure)
                    .map(|(f, _)| f)
                    .collect();
                self.session.subscribed(&refused, now);
            }
            Effect::Publish { topic, payload } => self.mqtt().publish(&topic, payload).await,
            Effect::Disconnect => {
                if let Some(old) = self.mqtt.take() {
                    old.disconnect().await;
                }
            }
            Effect::Persist(p) => {
                let config = self.session.config();
                self.key = match (&p.session, config.encrypted) {
                    (Some(g), true) => {
                        derive_session_key(&config.product_key, &g.session_id, g.nonce).ok()
                    }
                    _ => None,
                };
                self.persisted = p;
            }
            // A wire has no outbox.
            Effect::Forget(_) => {}
        }
    }

    /// Hands a message to the session, performs what it asks for (its answer) and returns
    /// what it told the application.
    pub async fn deliver(&mut self, m: &Incoming) -> Vec<Event<S, M::Set>> {
        self.session.message(&m.name, &m.bytes, Now::system());
        self.flush().await
    }

    /// Takes the next message, which must arrive on `kind` with `ctrl`, and hands it to the
    /// session, which must have been waiting for it (the ack of its own report, or of an
    /// answer that is a report): it counts no bad frame.
    #[track_caller]
    pub fn deliver_ack(
        &mut self,
        kind: TopicKind,
        ctrl: HeaderCtrl,
    ) -> impl Future<Output = Vec<Event<S, M::Set>>> {
        let at = Location::caller();
        async move {
            let m = self.expect_at(at, kind, ctrl).await;
            let bad = self.session.counters().bad_frames;
            let events = self.deliver(&m).await;
            assert_eq!(
                self.session.counters().bad_frames,
                bad,
                "at {at}: the session was not waiting for {m:?}"
            );
            events
        }
    }

    /// Runs an application call on the session (a report, an event) and hands it the
    /// platform's messages until that delivery resolves.
    pub async fn run(
        &mut self,
        call: impl FnOnce(&mut Session<M, S>, Now) -> Result<Token, DeliveryError>,
    ) -> Result<Ack, DeliveryError> {
        let token = call(&mut self.session, Now::system())?;
        let mut events = self.flush().await;
        loop {
            for event in events {
                if let Event::Delivered { token: t, result } = event
                    && t == token
                {
                    return result;
                }
            }
            let m = self.next().await;
            events = self.deliver(&m).await;
        }
    }

    /// A topic of this device without identifier.
    pub fn topic(&self, kind: TopicKind) -> Topic {
        Topic::new(self.id().clone(), kind).unwrap()
    }

    /// An event or service topic of this device.
    pub fn topic_of(&self, kind: TopicKind, identifier: &str) -> Topic {
        Topic::with_identifier(
            self.id().clone(),
            kind,
            Identifier::new(identifier).unwrap(),
        )
        .unwrap()
    }

    /// Also subscribes to these kinds' filters (for a session that does not, a JSON
    /// product's on a HEX product); whether each was granted.
    pub async fn subscribe(&mut self, kinds: &[TopicKind]) -> Vec<bool> {
        let filters: Vec<String> = kinds.iter().map(|k| k.filter(self.id())).collect();
        let codes = self.mqtt().subscribe(&filters).await;
        codes
            .into_iter()
            .map(|c| c != SubscribeReasonCode::Failure)
            .collect()
    }

    /// The next message from the platform (see [`Incoming`]).
    pub async fn next(&mut self) -> Incoming {
        let (name, bytes) = self.mqtt().next().await;
        let topic = Topic::parse_for(&name, self.id()).unwrap_or_else(|e| panic!("{e}"));
        let mut frame = Frame::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Some(key) = &self.key
            && frame.payload.is_string()
            && frame.header_ctrl.is_encrypted_uplink()
        {
            frame.payload = frame
                .decrypted_payload(key)
                .unwrap_or_else(|e| panic!("{name}: not under the SessionKey: {e}"));
        }
        Incoming {
            topic,
            frame,
            name,
            bytes,
        }
    }

    /// The next message, which must arrive on `kind` with `ctrl`.
    #[track_caller]
    pub fn expect(&mut self, kind: TopicKind, ctrl: HeaderCtrl) -> impl Future<Output = Incoming> {
        self.expect_at(Location::caller(), kind, ctrl)
    }

    async fn expect_at(
        &mut self,
        at: &Location<'_>,
        kind: TopicKind,
        ctrl: HeaderCtrl,
    ) -> Incoming {
        let m = self.next().await;
        assert_eq!(
            (m.topic.kind(), m.frame.header_ctrl),
            (kind, ctrl),
            "at {at}: {m:?}"
        );
        m
    }

    /// Whether nothing arrives within `within`.
    pub async fn quiet_for(&mut self, within: Duration) -> bool {
        self.mqtt().quiet_for(within).await
    }

    /// A fresh MessageId.
    pub fn next_id(&self) -> MessageId {
        self.ids.next_id()
    }

    /// Publishes bytes as they are (a full-HEX report, garbage).
    pub async fn publish(&mut self, topic: &Topic, bytes: Vec<u8>) {
        self.mqtt().publish(&topic.to_string(), bytes).await;
    }

    /// Publishes a frame, encrypted with [`Wire::key`] where the command is.
    pub async fn send(&mut self, topic: &Topic, mut frame: Frame) {
        if let Some(key) = &self.key
            && frame.header_ctrl.is_encrypted_uplink()
        {
            frame.encrypt_payload(key);
        }
        self.publish(topic, frame.encode()).await;
    }

    /// Publishes a frame as [`Wire::send`] does and waits for the broker's PUBACK (not the
    /// platform's ack).
    pub async fn send_acked(&mut self, topic: &Topic, mut frame: Frame) {
        if let Some(key) = &self.key
            && frame.header_ctrl.is_encrypted_uplink()
        {
            frame.encrypt_payload(key);
        }
        self.mqtt()
            .publish_acked(&topic.to_string(), frame.encode())
            .await;
    }

    /// Closes the connection without a DISCONNECT, as a device whose network failed.
    pub fn vanish(mut self) {
        drop(self.mqtt.take());
    }

    /// Sends a frame with a fresh MessageId and takes the platform's ack of it, which must
    /// arrive where the command table says (`Topic::reply_topic`), with its HeaderCtrl and
    /// the MessageId. Returns the ack.
    #[track_caller]
    pub fn acked(
        &mut self,
        topic: &Topic,
        ctrl: HeaderCtrl,
        payload: Value,
    ) -> impl Future<Output = AckPayload> {
        let at = Location::caller();
        let topic = topic.clone();
        async move {
            let id = self.next_id();
            self.send(&topic, Frame::new(id.clone(), ctrl, payload))
                .await;
            let ack = self.next().await;
            let (want, reply) = topic.reply_topic(ctrl).expect("a request without an ack");
            assert_eq!(
                (&ack.topic, ack.frame.header_ctrl, &ack.frame.message_id),
                (&want, reply.header_ctrl, &id),
                "at {at}: the ack of {topic}: {ack:?}"
            );
            ack.frame
                .ack()
                .unwrap_or_else(|e| panic!("at {at}: not an ack ({e}): {ack:?}"))
        }
    }

    /// Answers a platform command with `payload` as the command table says: on its reply
    /// topic, with the reply's HeaderCtrl and the command's MessageId.
    pub async fn answer(&mut self, to: &Incoming, payload: Value) {
        let (topic, reply) = to
            .topic
            .reply_topic(to.frame.header_ctrl)
            .expect("a command without an answer");
        let frame = Frame::new(to.frame.message_id.clone(), reply.header_ctrl, payload);
        self.send(&topic, frame).await;
    }

    /// Disconnects cleanly.
    pub async fn disconnect(mut self) {
        if let Some(m) = self.mqtt.take() {
            m.disconnect().await;
        }
    }
}
