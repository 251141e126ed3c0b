//! The simulator's MQTT 3.1.1 broker: strict where the platform is strict.
//!
//! Why not rumqttd: its auth handler can only accept or drop a client (no CONNACK return
//! code, so a device cannot tell a refused login from a network fault) and it has no
//! per-client topic permissions. This broker is small and does what the platform needs,
//! on rumqttc's maintained MQTT codec (`rumqttc::mqttbytes::v4`):
//!
//! - CONNECT is decided by an [`Authorizer`]; refusals get CONNACK 4 (bad user name or
//!   password) or 5 (not authorized) and the connection is closed;
//! - SUBSCRIBE filters the authorizer does not allow get return code 0x80 (failure);
//! - a PUBLISH to a topic the client may not publish closes the connection (MQTT 3.1.1 has
//!   no negative PUBACK);
//! - QoS 0, 1 (PUBACK) and 2 (PUBREC, then PUBCOMP for the PUBREL; a repeated PUBLISH of a
//!   packet id still awaiting its PUBREL is acknowledged again, not delivered again);
//!   subscriptions are granted at most QoS 1 and messages delivered at the granted QoS,
//!   without retransmission; no retained messages, no persistent sessions (a local
//!   simulator);
//! - a client that sends no packet for one and a half times its CONNECT keep-alive (MQTT
//!   3.1.1, 3.1.2.10; keep-alive 0: no limit) is disconnected as if the network had failed,
//!   and so is a connection whose CONNECT does not arrive within
//!   [`BrokerConfig::connect_timeout`].
//!
//! In-process parties (the platform logic, tests) publish and subscribe through
//! [`BrokerHandle`] without a socket.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, PubComp, PubRec, Publish, SubAck,
    SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{self, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::login::Login;
use crate::sync::lock;

/// Largest packet accepted, in bytes.
const MAX_PACKET: usize = 1024 * 1024;

/// How many messages may wait for a subscriber connection. A client that reads so slowly
/// that more wait is disconnected (with a log line), never buffered without bound.
pub const CONNECTION_QUEUE: usize = 1024;

/// How many messages may wait for an in-process subscriber ([`BrokerHandle::subscribe`]).
/// A device publishing to a full one waits (its connection stops being read: backpressure);
/// an in-process publish to a full one is dropped with a log line.
pub const IN_PROCESS_QUEUE: usize = 4096;

/// How the broker treats connections that are slow, go silent or misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerConfig {
    /// How long a new TCP connection may take to send its complete CONNECT packet before it
    /// is closed (default 10 s). Keep-alive does not apply before the CONNECT, since it is
    /// the CONNECT that states it.
    pub connect_timeout: Duration,
    /// How many PUBLISH packets a connection may send per second, in bursts of up to one
    /// second's worth, before it is closed as a flood (default 50,000: far above any device,
    /// a safety net; set it to a platform's per-device quota to test against that). `None`:
    /// no limit.
    pub max_publish_rate: Option<u32>,
    /// How many subscriptions to topics that are not its own a connection may ask for before
    /// it is closed as probing (default 10; each is refused with SUBACK 0x80 either way).
    pub max_refused_subscriptions: u32,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            max_publish_rate: Some(50_000),
            max_refused_subscriptions: 10,
        }
    }
}

/// A token bucket of PUBLISH packets: `rate` a second, holding at most one second's worth.
#[derive(Debug)]
struct PublishBudget {
    rate: f64,
    tokens: f64,
    last: tokio::time::Instant,
}

impl PublishBudget {
    fn new(rate: u32) -> Self {
        Self {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: tokio::time::Instant::now(),
        }
    }

    /// Takes one packet's token; `false` when the connection is over its rate.
    fn take(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How long a client with this CONNECT keep-alive (seconds) may send nothing: one and a half
/// times the keep-alive (MQTT 3.1.1, 3.1.2.10); `None` for keep-alive 0 (no limit).
pub fn idle_limit(keep_alive_secs: u16) -> Option<Duration> {
    (keep_alive_secs > 0).then(|| Duration::from_millis(u64::from(keep_alive_secs) * 1500))
}

/// A connection's number, unique for the broker's lifetime. The same client id can be on two
/// connections for a moment (a device reconnecting before the broker has noticed that its
/// old connection is gone); the number tells an [`Authorizer`] which of the two a
/// [`Authorizer::disconnected`] is about, so that the old one's end never logs out the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionNumber(pub u64);

/// Decides who may connect and what each client may do. Implemented by the platform.
pub trait Authorizer: Send + Sync + 'static {
    /// Decides a CONNECT: `Ok` with who the client is, which the broker attaches to every
    /// message the connection publishes ([`Message::login`]); `Err` with the CONNACK return
    /// code (4 or 5).
    ///
    /// # Errors
    /// The return code of the refusal.
    fn connect(
        &self,
        connection: ConnectionNumber,
        client_id: &str,
        username: &str,
        password: &str,
    ) -> Result<Login, u8>;

    /// Whether `client_id` may publish on `topic`.
    fn can_publish(&self, client_id: &str, topic: &str) -> bool;

    /// Whether `client_id` may subscribe to `filter`.
    fn can_subscribe(&self, client_id: &str, filter: &str) -> bool;

    /// `client_id` published `payload` on `topic`, which [`Authorizer::can_publish`]
    /// refused; the broker closes the connection next.
    fn refused_publish(&self, client_id: &str, topic: &str, payload: &[u8]) {
        let _ = (client_id, topic, payload);
    }

    /// `client_id` subscribed to `filter`, which [`Authorizer::can_subscribe`] refused; the
    /// SUBACK says 0x80 for it.
    fn refused_subscribe(&self, client_id: &str, filter: &str) {
        let _ = (client_id, filter);
    }

    /// Connection `connection` of `client_id` went away (closed, refused a publish, lost, or
    /// taken over). A newer connection of the same client id may already be accepted: what
    /// it was granted stays.
    fn disconnected(&self, connection: ConnectionNumber, client_id: &str) {
        let _ = (connection, client_id);
    }

    /// Other connected clients that the accepted `client_id` takes over (the same device
    /// under another ClientID: a V2 ClientID carries its login timestamp). The broker closes
    /// them, as MQTT 3.1.1 does for the same ClientID.
    fn superseded(&self, client_id: &str) -> Vec<String> {
        let _ = client_id;
        Vec::new()
    }
}

/// A message routed by the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic.
    pub topic: String,
    /// The payload.
    pub payload: Bytes,
    /// Who published it (`None` for in-process publishers).
    pub from: Option<String>,
    /// The publisher's login as its CONNECT was accepted ([`Authorizer::connect`]), taken
    /// along with the message, so that whoever handles it later knows the sender even when
    /// the connection has closed in between (`None` for in-process publishers).
    pub login: Option<Login>,
}

struct Subscriber {
    filter: String,
    tx: mpsc::Sender<Message>,
    /// The subscribing connection's client id; `None` for in-process subscribers.
    client: Option<String>,
}

/// Every subscription, indexed so that routing a message looks at the few that can match it:
/// X's topics are `/sys/{OpenID}/{ProductID}/{NodeEui}/...`, so a device's filters share their
/// first five levels (the first one empty), and a message is tested only against the filters
/// of its own first five levels, plus the few with wildcards in those (the platform's). A scan of
/// every subscription per message cost the load benchmark most of x-sim's time, and grows
/// with the fleet.
#[derive(Default)]
struct Subscriptions {
    /// Filters whose first [`INDEXED_LEVELS`] levels (or all, if fewer) are literal, by those.
    by_prefix: HashMap<String, Vec<Subscriber>>,
    /// The others.
    general: Vec<Subscriber>,
}

/// How many leading levels of a topic the subscription index keys on: `/sys/{OpenID}/{ProductID}/{NodeEui}`.
const INDEXED_LEVELS: usize = 5;

/// The first [`INDEXED_LEVELS`] levels of a topic or filter (all of it, if it has fewer).
fn leading_levels(topic: &str) -> &str {
    match topic.match_indices('/').nth(INDEXED_LEVELS - 1) {
        Some((at, _)) => &topic[..at],
        None => topic,
    }
}

impl Subscriptions {
    fn add(&mut self, subscriber: Subscriber) {
        let lead = leading_levels(&subscriber.filter);
        if lead.split('/').any(|level| level == "+" || level == "#") {
            self.general.push(subscriber);
        } else {
            self.by_prefix
                .entry(lead.to_owned())
                .or_default()
                .push(subscriber);
        }
    }

    /// Removes the subscriptions to `filter` for which `which` holds.
    fn remove(&mut self, filter: &str, which: impl Fn(&Subscriber) -> bool) {
        let lead = leading_levels(filter);
        if let Some(list) = self.by_prefix.get_mut(lead) {
            list.retain(|s| !(s.filter == filter && which(s)));
            if list.is_empty() {
                self.by_prefix.remove(lead);
            }
        }
        self.general.retain(|s| !(s.filter == filter && which(s)));
    }

    /// Calls `each` on every subscriber whose filter matches `topic`; those for which it
    /// returns `false` are removed.
    fn matching(&mut self, topic: &str, mut each: impl FnMut(&Subscriber) -> bool) {
        let lead = leading_levels(topic);
        let mut visit = |list: &mut Vec<Subscriber>| {
            list.retain(|s| !topic_matches(&s.filter, topic) || each(s));
        };
        if let Some(list) = self.by_prefix.get_mut(lead) {
            visit(list);
            if list.is_empty() {
                self.by_prefix.remove(lead);
            }
        }
        visit(&mut self.general);
    }
}

#[derive(Default)]
struct Routes {
    subscriptions: Subscriptions,
    /// Connected clients by id: a connection number and the sender whose drop closes the
    /// connection (when the id connects again, or on [`BrokerHandle::drop_client`]).
    clients: HashMap<String, (u64, oneshot::Sender<()>)>,
    /// Connections so far, to number them.
    connections: u64,
}

impl Routes {
    /// Hands `message` to every matching subscriber without waiting. A connection whose
    /// queue is full is disconnected (logged); a subscriber whose receiver is gone is
    /// forgotten. Returns the in-process subscribers whose queue is full, for a publisher
    /// that can wait for room.
    fn route(&mut self, message: &Message) -> Vec<mpsc::Sender<Message>> {
        let mut full = Vec::new();
        let mut slow = Vec::new();
        self.subscriptions
            .matching(&message.topic, |s| match s.tx.try_send(message.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Closed(_)) => false,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    match &s.client {
                        Some(client) => slow.push(client.clone()),
                        None => full.push(s.tx.clone()),
                    }
                    true
                }
            });
        for client in slow {
            if self.clients.remove(&client).is_some() {
                tracing::warn!(
                    target: "x_sim",
                    "{client}: {CONNECTION_QUEUE} messages wait for it (it reads too slowly), connection closed"
                );
            }
        }
        full
    }
}

/// A running broker: its address, and in-process publish/subscribe.
#[derive(Clone)]
pub struct BrokerHandle {
    addr: SocketAddr,
    routes: Arc<Mutex<Routes>>,
}

impl std::fmt::Debug for BrokerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerHandle")
            .field("addr", &self.addr)
            .finish()
    }
}

impl BrokerHandle {
    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Publishes in-process (QoS 0 to every matching subscriber).
    pub fn publish(&self, topic: &str, payload: impl Into<Bytes>) {
        let message = Message {
            topic: topic.to_owned(),
            payload: payload.into(),
            from: None,
            login: None,
        };
        let full = lock(&self.routes).route(&message);
        if !full.is_empty() {
            tracing::warn!(
                target: "x_sim",
                "-x {}: an in-process subscriber has {IN_PROCESS_QUEUE} messages waiting, dropped",
                message.topic
            );
        }
    }

    /// Subscribes in-process to `filter` (`+` and `#` wildcards).
    /// At most [`IN_PROCESS_QUEUE`] messages wait in the receiver.
    pub fn subscribe(&self, filter: &str) -> mpsc::Receiver<Message> {
        let (tx, rx) = mpsc::channel(IN_PROCESS_QUEUE);
        lock(&self.routes).subscriptions.add(Subscriber {
            filter: filter.to_owned(),
            tx,
            client: None,
        });
        rx
    }

    /// Closes the connection of `client_id`, as a network fault would. Returns whether it was
    /// connected.
    pub fn drop_client(&self, client_id: &str) -> bool {
        lock(&self.routes).clients.remove(client_id).is_some()
    }
}

/// Starts a broker on `addr` (port 0 for a free port) with the default [`BrokerConfig`] and
/// returns its handle.
///
/// # Errors
/// The address cannot be bound.
pub async fn start(addr: SocketAddr, auth: Arc<dyn Authorizer>) -> std::io::Result<BrokerHandle> {
    start_with(addr, auth, BrokerConfig::default()).await
}

/// Starts a broker on `addr` (port 0 for a free port) with `config` and returns its handle.
///
/// # Errors
/// The address cannot be bound.
pub async fn start_with(
    addr: SocketAddr,
    auth: Arc<dyn Authorizer>,
    config: BrokerConfig,
) -> std::io::Result<BrokerHandle> {
    let listener = TcpListener::bind(addr).await?;
    let handle = BrokerHandle {
        addr: listener.local_addr()?,
        routes: Arc::default(),
    };
    let routes = handle.routes.clone();
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            // Small packets, each awaited by the other side (an ack, a command): no Nagle
            // delay behind the peer's delayed ACK. Without it, a fleet's acks stalled for
            // tens of milliseconds each (the load benchmark).
            let _ = stream.set_nodelay(true);
            let routes = routes.clone();
            let auth = auth.clone();
            tokio::spawn(async move {
                let _ = Connection::serve(stream, peer, routes, auth, config).await;
            });
        }
    });
    Ok(handle)
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    Io,
    Protocol,
    Refused,
    Closed,
    /// Nothing from the client within its keep-alive limit (or no CONNECT in time).
    Silent,
}

struct Connection {
    stream: TcpStream,
    read: BytesMut,
    client_id: String,
    /// Who the client is, as its CONNECT was accepted.
    login: Option<Login>,
    /// One and a half times the client's keep-alive (`None`: no limit). Also bounds how long
    /// a write to the client may take: a client that reads nothing for that long is as gone
    /// as one that sends nothing.
    idle_limit: Option<Duration>,
    /// The filters this connection subscribed to, with their granted QoS: a message is sent
    /// at the highest QoS of the filters it matches, and they leave the index with it.
    subscribed: Vec<(String, QoS)>,
    /// Packets encoded and not yet written: the answers to a burst of packets read at once,
    /// or a burst of messages for the client, go out in one write.
    out: BytesMut,
    /// Where the connection comes from, for log lines before its CONNECT names it.
    peer: SocketAddr,
    /// The broker's limits.
    config: BrokerConfig,
    /// The PUBLISH packets it may still send in this second (`None`: no limit).
    budget: Option<PublishBudget>,
    /// How many subscriptions to foreign topics it asked for.
    refused: u32,
}

/// Past this many bytes waiting, the connection writes before it reads or queues more.
const WRITE_BATCH: usize = 64 * 1024;

impl Connection {
    async fn serve(
        stream: TcpStream,
        peer: SocketAddr,
        routes: Arc<Mutex<Routes>>,
        auth: Arc<dyn Authorizer>,
        config: BrokerConfig,
    ) -> Result<(), End> {
        let mut conn = Connection {
            stream,
            read: BytesMut::with_capacity(4096),
            client_id: String::new(),
            login: None,
            idle_limit: None,
            subscribed: Vec::new(),
            out: BytesMut::with_capacity(1024),
            peer,
            config,
            budget: config.max_publish_rate.map(PublishBudget::new),
            refused: 0,
        };
        let first = tokio::time::timeout(config.connect_timeout, conn.next_packet()).await;
        let connect = match first {
            Ok(Ok(Packet::Connect(connect))) => connect,
            Ok(Ok(other)) => {
                tracing::info!(
                    target: "x_sim",
                    "<- {} from {peer} before any CONNECT: connection closed",
                    packet_name(&other)
                );
                return Err(End::Protocol);
            }
            Ok(Err(end)) => return Err(end),
            Err(_) => {
                tracing::info!(
                    target: "x_sim",
                    "connection from {peer}: no CONNECT within {:?}, connection closed",
                    config.connect_timeout
                );
                return Err(End::Silent);
            }
        };
        conn.idle_limit = idle_limit(connect.keep_alive);
        let (username, password) = connect
            .login
            .as_ref()
            .map_or(("", ""), |l| (l.username.as_str(), l.password.as_str()));
        let number = {
            let mut r = lock(&routes);
            r.connections += 1;
            r.connections
        };
        match auth.connect(
            ConnectionNumber(number),
            &connect.client_id,
            username,
            password,
        ) {
            Ok(login) => conn.login = Some(login),
            Err(code) => {
                let code = if code == 4 {
                    ConnectReturnCode::BadUserNamePassword
                } else {
                    ConnectReturnCode::NotAuthorized
                };
                conn.send(&Packet::ConnAck(ConnAck::new(code, false)))
                    .await?;
                return Err(End::Refused);
            }
        }
        conn.client_id = connect.client_id.clone();
        let (tx, mut rx) = mpsc::channel::<Message>(CONNECTION_QUEUE);
        let (kill_tx, mut kill) = oneshot::channel::<()>();
        {
            let mut r = lock(&routes);
            // The same client id again: the older connection is taken over (MQTT 3.1.1);
            // so is the same device under another client id.
            r.clients.insert(conn.client_id.clone(), (number, kill_tx));
            for older in auth.superseded(&conn.client_id) {
                if r.clients.remove(&older).is_some() {
                    tracing::info!(target: "x_sim", "{older}: taken over by {}", conn.client_id);
                }
            }
        }
        // Accepted: from here on, every way out goes through the clean-up below.
        let accepted = Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false));
        let result = match conn.send(&accepted).await {
            Ok(()) => {
                conn.run(&routes, auth.as_ref(), &tx, &mut rx, &mut kill)
                    .await
            }
            Err(end) => Err(end),
        };
        {
            let mut r = lock(&routes);
            for (filter, _) in &conn.subscribed {
                r.subscriptions.remove(filter, |s| s.tx.same_channel(&tx));
            }
            // Ours unless a newer connection with the same id took the entry over.
            let ours = r
                .clients
                .get(&conn.client_id)
                .is_none_or(|(n, _)| *n == number);
            if ours {
                r.clients.remove(&conn.client_id);
            }
        }
        // The authorizer forgets this connection's login, not a newer one's of the same id.
        auth.disconnected(ConnectionNumber(number), &conn.client_id);
        result
    }

    async fn run(
        &mut self,
        routes: &Mutex<Routes>,
        auth: &dyn Authorizer,
        tx: &mpsc::Sender<Message>,
        rx: &mut mpsc::Receiver<Message>,
        kill: &mut oneshot::Receiver<()>,
    ) -> Result<(), End> {
        let mut next_pkid: u16 = 0;
        // QoS 2 packet ids received (and delivered) whose PUBREL has not come yet.
        let mut awaiting_release: HashSet<u16> = HashSet::new();
        // Reset by every packet that arrives; never fires without a keep-alive.
        let idle = tokio::time::sleep(self.idle_limit.unwrap_or(Duration::MAX));
        tokio::pin!(idle);
        loop {
            tokio::select! {
                _ = &mut *kill => return Err(End::Closed),
                () = &mut idle, if self.idle_limit.is_some() => {
                    tracing::info!(
                        target: "x_sim",
                        "{}: no packet for {:?} (1.5 x its keep-alive), connection closed",
                        self.client_id,
                        self.idle_limit.unwrap_or_default()
                    );
                    return Err(End::Silent);
                }
                packet = self.next_packet() => {
                    let packet = packet?;
                    if let Some(limit) = self.idle_limit {
                        idle.as_mut().reset(tokio::time::Instant::now() + limit);
                    }
                    let disconnect = self.handle(packet, routes, auth, tx, &mut awaiting_release).await?;
                    // Answers wait while more packets are already read, to go out together.
                    if disconnect || self.out.len() >= WRITE_BATCH || !self.packet_waiting() {
                        self.flush().await?;
                    }
                    if disconnect {
                        return Ok(());
                    }
                }
                message = rx.recv() => {
                    let Some(message) = message else {
                        return Err(End::Closed);
                    };
                    self.queue_message(message, &mut next_pkid)?;
                    while self.out.len() < WRITE_BATCH {
                        let Ok(message) = rx.try_recv() else {
                            break;
                        };
                        self.queue_message(message, &mut next_pkid)?;
                    }
                    self.flush().await?;
                }
            }
        }
    }

    /// Queues `message` for the client, at the highest QoS of its filters that match it.
    fn queue_message(&mut self, message: Message, next_pkid: &mut u16) -> Result<(), End> {
        let qos = self
            .subscribed
            .iter()
            .filter(|(filter, _)| topic_matches(filter, &message.topic))
            .map(|(_, qos)| *qos)
            .max_by_key(|q| *q as u8)
            .unwrap_or(QoS::AtMostOnce);
        let mut publish = Publish::new(message.topic, qos, message.payload.to_vec());
        if qos == QoS::AtLeastOnce {
            *next_pkid = next_pkid.checked_add(1).unwrap_or(1).max(1);
            publish.pkid = *next_pkid;
        }
        self.queue(&Packet::Publish(publish))
    }

    /// Handles one packet from the client; `Ok(true)` when it is a DISCONNECT.
    async fn handle(
        &mut self,
        packet: Packet,
        routes: &Mutex<Routes>,
        auth: &dyn Authorizer,
        tx: &mpsc::Sender<Message>,
        awaiting_release: &mut HashSet<u16>,
    ) -> Result<bool, End> {
        match packet {
            Packet::Publish(p) => {
                if let Some(budget) = &mut self.budget
                    && !budget.take()
                {
                    tracing::warn!(
                        target: "x_sim",
                        "<- PUBLISH {} from {}: more than {} a second (a flood), connection closed",
                        p.topic,
                        self.client_id,
                        self.config.max_publish_rate.unwrap_or_default()
                    );
                    return Err(End::Refused);
                }
                if !auth.can_publish(&self.client_id, &p.topic) {
                    tracing::info!(
                        target: "x_sim",
                        "<- PUBLISH {} from {}: not its topic, connection closed",
                        p.topic,
                        self.client_id
                    );
                    auth.refused_publish(&self.client_id, &p.topic, &p.payload);
                    return Err(End::Refused);
                }
                let deliver = match p.qos {
                    QoS::AtMostOnce => true,
                    QoS::AtLeastOnce => {
                        self.queue(&Packet::PubAck(PubAck::new(p.pkid)))?;
                        true
                    }
                    QoS::ExactlyOnce => {
                        // MQTT 3.1.1, 4.3.3 (method A): delivered on the first PUBLISH of a
                        // packet id; until its PUBREL, the same id is acknowledged again and
                        // not delivered again.
                        let first = awaiting_release.insert(p.pkid);
                        if !first {
                            tracing::info!(
                                target: "x_sim",
                                "<- PUBLISH {} from {}: QoS 2 packet id {} again before its PUBREL, PUBREC again, not delivered again",
                                p.topic,
                                self.client_id,
                                p.pkid
                            );
                        }
                        self.queue(&Packet::PubRec(PubRec::new(p.pkid)))?;
                        first
                    }
                };
                if deliver {
                    let message = Message {
                        topic: p.topic,
                        payload: p.payload,
                        from: Some(self.client_id.clone()),
                        login: self.login.clone(),
                    };
                    let full = lock(routes).route(&message);
                    // A busy platform slows its publishers down: this connection is not
                    // read until there is room.
                    for tx in full {
                        let _ = tx.send(message.clone()).await;
                    }
                }
            }
            Packet::PubRel(r) => {
                // Answered even for an id not awaited (MQTT 3.1.1, 4.3.3: a PUBREL is always
                // answered with PUBCOMP), such as one resent after a reconnect.
                awaiting_release.remove(&r.pkid);
                self.queue(&Packet::PubComp(PubComp::new(r.pkid)))?;
            }
            Packet::Subscribe(s) => {
                let mut codes = Vec::with_capacity(s.filters.len());
                for f in s.filters {
                    if auth.can_subscribe(&self.client_id, &f.path) {
                        let qos = if f.qos == QoS::AtMostOnce {
                            QoS::AtMostOnce
                        } else {
                            QoS::AtLeastOnce
                        };
                        // A filter subscribed again replaces the older subscription (MQTT
                        // 3.1.1, 3.8.4).
                        {
                            let mut r = lock(routes);
                            if self.subscribed.iter().any(|(old, _)| *old == f.path) {
                                r.subscriptions.remove(&f.path, |s| s.tx.same_channel(tx));
                            }
                            r.subscriptions.add(Subscriber {
                                filter: f.path.clone(),
                                tx: tx.clone(),
                                client: Some(self.client_id.clone()),
                            });
                        }
                        self.subscribed.retain(|(old, _)| *old != f.path);
                        self.subscribed.push((f.path, qos));
                        codes.push(SubscribeReasonCode::Success(qos));
                    } else {
                        tracing::info!(
                            target: "x_sim",
                            "<- SUBSCRIBE {} from {}: not its topic, SUBACK 0x80",
                            f.path,
                            self.client_id
                        );
                        auth.refused_subscribe(&self.client_id, &f.path);
                        codes.push(SubscribeReasonCode::Failure);
                        self.refused = self.refused.saturating_add(1);
                    }
                }
                self.queue(&Packet::SubAck(SubAck::new(s.pkid, codes)))?;
                if self.refused >= self.config.max_refused_subscriptions {
                    self.flush().await?;
                    tracing::warn!(
                        target: "x_sim",
                        "{}: {} subscriptions to topics that are not its own (probing), connection closed",
                        self.client_id,
                        self.refused
                    );
                    return Err(End::Refused);
                }
            }
            Packet::Unsubscribe(u) => {
                {
                    let mut r = lock(routes);
                    for filter in &u.topics {
                        r.subscriptions.remove(filter, |s| s.tx.same_channel(tx));
                    }
                }
                self.subscribed.retain(|(f, _)| !u.topics.contains(f));
                self.queue(&Packet::UnsubAck(UnsubAck::new(u.pkid)))?;
            }
            Packet::PingReq => self.queue(&Packet::PingResp)?,
            Packet::PubAck(_) => {}
            Packet::Disconnect => return Ok(true),
            ack @ (Packet::PubRec(_) | Packet::PubComp(_)) => {
                tracing::info!(
                    target: "x_sim",
                    "<- {} from {}: the broker sends no QoS 2 message, so there is nothing to acknowledge; connection closed",
                    packet_name(&ack),
                    self.client_id
                );
                return Err(End::Protocol);
            }
            other => {
                tracing::info!(
                    target: "x_sim",
                    "<- {} from {}: not a packet a client sends after its CONNECT, connection closed",
                    packet_name(&other),
                    self.client_id
                );
                return Err(End::Protocol);
            }
        }
        Ok(false)
    }

    async fn next_packet(&mut self) -> Result<Packet, End> {
        loop {
            match Packet::read(&mut self.read, MAX_PACKET) {
                Ok(packet) => return Ok(packet),
                Err(mqttbytes::Error::InsufficientBytes(_)) => {
                    let n = self
                        .stream
                        .read_buf(&mut self.read)
                        .await
                        .map_err(|_| End::Io)?;
                    if n == 0 {
                        return Err(End::Io);
                    }
                }
                Err(e) => {
                    let who = if self.client_id.is_empty() {
                        self.peer.to_string()
                    } else {
                        self.client_id.clone()
                    };
                    tracing::info!(
                        target: "x_sim",
                        "<- from {who}: not an MQTT 3.1.1 packet within the broker's 1 MiB limit ({e:?}), connection closed"
                    );
                    return Err(End::Protocol);
                }
            }
        }
    }

    /// Whether a whole packet is already read and waiting to be handled.
    fn packet_waiting(&self) -> bool {
        mqttbytes::check(self.read.iter(), MAX_PACKET).is_ok()
    }

    /// Encodes `packet` behind what waits to be written.
    fn queue(&mut self, packet: &Packet) -> Result<(), End> {
        packet
            .write(&mut self.out, MAX_PACKET)
            .map(drop)
            .map_err(|_| End::Protocol)
    }

    /// Queues `packet` and writes everything waiting.
    async fn send(&mut self, packet: &Packet) -> Result<(), End> {
        self.queue(packet)?;
        self.flush().await
    }

    /// Writes everything waiting, within the idle limit.
    async fn flush(&mut self) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        let bytes = self.out.len();
        let write = self.stream.write_all(&self.out);
        let written = match self.idle_limit {
            None => write.await.map_err(|_| End::Io),
            Some(limit) => match tokio::time::timeout(limit, write).await {
                Ok(written) => written.map_err(|_| End::Io),
                Err(_) => {
                    tracing::info!(
                        target: "x_sim",
                        "-> {}: {bytes} bytes not taken within {limit:?} (1.5 x its keep-alive), connection closed",
                        self.client_id,
                    );
                    Err(End::Silent)
                }
            },
        };
        self.out.clear();
        written
    }
}

/// The MQTT name of a packet's type, for log lines (never its content: a CONNECT carries a
/// password).
fn packet_name(packet: &Packet) -> &'static str {
    match packet {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubAck(_) => "SUBACK",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingReq => "PINGREQ",
        Packet::PingResp => "PINGRESP",
        Packet::Disconnect => "DISCONNECT",
    }
}

/// MQTT topic filter matching with `+` (one level) and `#` (the rest).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    // Levels as byte slices: splitting `str`s on a char cost more than the rest of routing.
    let mut f = filter.as_bytes().split(|b| *b == b'/');
    let mut t = topic.as_bytes().split(|b| *b == b'/');
    loop {
        match (f.next(), t.next()) {
            (Some(b"#"), _) => return true,
            (Some(b"+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::{Message, Routes, Subscriber, idle_limit, leading_levels, topic_matches};

    fn message(topic: &str) -> Message {
        Message {
            topic: topic.to_owned(),
            payload: bytes::Bytes::new(),
            from: None,
            login: None,
        }
    }

    #[test]
    fn the_index_keys_on_a_devices_prefix() {
        assert_eq!(
            leading_levels("/sys/7E/AA/N1/model/property/report"),
            "/sys/7E/AA/N1"
        );
        assert_eq!(leading_levels("/sys/7E/AA/N1"), "/sys/7E/AA/N1");
        assert_eq!(leading_levels("/sys/7E/AA/N1/"), "/sys/7E/AA/N1");
        assert_eq!(leading_levels("/sys/#"), "/sys/#");
        assert_eq!(leading_levels("a/b"), "a/b");
        assert_eq!(leading_levels(""), "");
    }

    /// Routing through the index delivers exactly what a scan of every filter would.
    #[test]
    fn indexed_routing_matches_every_filter_as_a_scan_would() {
        let filters = [
            "/sys/7E/AA/N1/model/property/set",
            "/sys/7E/AA/N1/model/event/+/report_ack",
            "/sys/7E/AA/N1/#",
            "/sys/7E/AA/N2/model/property/set",
            "/sys/+/+/+/model/property/report",
            "/sys/7E/+/N1/model/property/set",
            "/sys/#",
            "#",
            "/sys/7E/AA",
            "/sys/7E/AA/N1",
            "sys/7E/AA/N1/model/property/set",
        ];
        let topics = [
            "/sys/7E/AA/N1/model/property/set",
            "/sys/7E/AA/N1/model/event/overheat/report_ack",
            "/sys/7E/AA/N2/model/property/set",
            "/sys/7E/AA/N3/model/property/report",
            "/sys/7E/AA",
            "/sys/7E/AA/N1",
            "/sys/7E/AA/N1/x",
            "sys/7E/AA/N1/model/property/set",
            "other",
        ];
        let mut routes = Routes::default();
        let mut receivers = Vec::new();
        for filter in filters {
            let (tx, rx) = mpsc::channel(64);
            routes.subscriptions.add(Subscriber {
                filter: filter.to_owned(),
                tx,
                client: None,
            });
            receivers.push((filter, rx));
        }
        for topic in topics {
            routes.route(&message(topic));
            for (filter, rx) in &mut receivers {
                let got = rx.try_recv().ok().map(|m| m.topic);
                let want = topic_matches(filter, topic).then(|| topic.to_owned());
                assert_eq!(got, want, "filter {filter}, topic {topic}");
            }
        }
    }

    /// A subscriber whose receiver is gone is dropped from the index the next time a
    /// message matches it; one removed by filter gets nothing more.
    #[test]
    fn closed_and_removed_subscribers_leave_the_index() {
        let mut routes = Routes::default();
        let (tx, rx) = mpsc::channel(4);
        routes.subscriptions.add(Subscriber {
            filter: "/sys/a/b/c/d".into(),
            tx,
            client: None,
        });
        drop(rx);
        routes.route(&message("/sys/a/b/c/d"));
        assert!(routes.subscriptions.by_prefix.is_empty());

        let (tx, mut rx) = mpsc::channel(4);
        routes.subscriptions.add(Subscriber {
            filter: "/sys/+/b/c/d".into(),
            tx: tx.clone(),
            client: None,
        });
        routes
            .subscriptions
            .remove("/sys/+/b/c/d", |s| s.tx.same_channel(&tx));
        routes.route(&message("/sys/a/b/c/d"));
        assert!(rx.try_recv().is_err());
        assert!(routes.subscriptions.general.is_empty());
    }

    #[test]
    fn keep_alive_limits() {
        assert_eq!(idle_limit(0), None);
        assert_eq!(idle_limit(1), Some(Duration::from_millis(1500)));
        assert_eq!(idle_limit(60), Some(Duration::from_secs(90)));
        assert_eq!(
            idle_limit(u16::MAX),
            Some(Duration::from_millis(98_302_500))
        );
    }

    #[test]
    fn filters() {
        let p = "/sys/7ED01E2A/AA30C505/D1";
        assert!(topic_matches(&format!("{p}/+"), &format!("{p}/downlink")));
        assert!(!topic_matches(
            &format!("{p}/+"),
            &format!("{p}/model/property/set")
        ));
        assert!(topic_matches(
            &format!("{p}/model/service/+"),
            &format!("{p}/model/service/reset")
        ));
        assert!(topic_matches(
            &format!("{p}/#"),
            &format!("{p}/model/hex/downlink")
        ));
        assert!(!topic_matches(
            &format!("{p}/downlink"),
            &format!("{p}/downlink_ack")
        ));
    }
}
