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

/// How the broker treats connections that are slow or go silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerConfig {
    /// How long a new TCP connection may take to send its complete CONNECT packet before it
    /// is closed (default 10 s). Keep-alive does not apply before the CONNECT, since it is
    /// the CONNECT that states it.
    pub connect_timeout: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// How long a client with this CONNECT keep-alive (seconds) may send nothing: one and a half
/// times the keep-alive (MQTT 3.1.1, 3.1.2.10); `None` for keep-alive 0 (no limit).
pub fn idle_limit(keep_alive_secs: u16) -> Option<Duration> {
    (keep_alive_secs > 0).then(|| Duration::from_millis(u64::from(keep_alive_secs) * 1500))
}

/// Decides who may connect and what each client may do. Implemented by the platform.
pub trait Authorizer: Send + Sync + 'static {
    /// Decides a CONNECT: `Ok` with who the client is, which the broker attaches to every
    /// message the connection publishes ([`Message::login`]); `Err` with the CONNACK return
    /// code (4 or 5).
    ///
    /// # Errors
    /// The return code of the refusal.
    fn connect(&self, client_id: &str, username: &str, password: &str) -> Result<Login, u8>;

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

    /// `client_id` went away (closed, refused a publish, or lost).
    fn disconnected(&self, client_id: &str) {
        let _ = client_id;
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
    qos: QoS,
    tx: mpsc::Sender<Message>,
    /// The subscribing connection's client id; `None` for in-process subscribers.
    client: Option<String>,
}

#[derive(Default)]
struct Routes {
    subscribers: Vec<Subscriber>,
    /// Connected clients by id: a connection number and the sender whose drop closes the
    /// connection (when the id connects again, or on [`BrokerHandle::drop_client`]).
    clients: HashMap<String, (u64, oneshot::Sender<()>)>,
    /// Connections so far, to number them.
    connections: u64,
}

impl Routes {
    /// Hands `message` to every matching subscriber without waiting. A connection whose
    /// queue is full is disconnected (logged). Returns the in-process subscribers whose
    /// queue is full, for a publisher that can wait for room.
    fn route(&mut self, message: &Message) -> Vec<mpsc::Sender<Message>> {
        self.subscribers.retain(|s| !s.tx.is_closed());
        let mut full = Vec::new();
        let mut slow = Vec::new();
        for s in &self.subscribers {
            if !topic_matches(&s.filter, &message.topic) {
                continue;
            }
            match s.tx.try_send(message.clone()) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                Err(mpsc::error::TrySendError::Full(_)) => match &s.client {
                    Some(client) => slow.push(client.clone()),
                    None => full.push(s.tx.clone()),
                },
            }
        }
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
        lock(&self.routes).subscribers.push(Subscriber {
            filter: filter.to_owned(),
            qos: QoS::AtMostOnce,
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
}

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
        match auth.connect(&connect.client_id, username, password) {
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
        let number = {
            let mut r = lock(&routes);
            r.connections += 1;
            let number = r.connections;
            // The same client id again: the older connection is taken over (MQTT 3.1.1);
            // so is the same device under another client id.
            r.clients.insert(conn.client_id.clone(), (number, kill_tx));
            for older in auth.superseded(&conn.client_id) {
                if r.clients.remove(&older).is_some() {
                    tracing::info!(target: "x_sim", "{older}: taken over by {}", conn.client_id);
                }
            }
            number
        };
        conn.send(&Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::Success,
            false,
        )))
        .await?;
        let result = conn
            .run(&routes, auth.as_ref(), &tx, &mut rx, &mut kill)
            .await;
        let still_ours = {
            let mut r = lock(&routes);
            r.subscribers.retain(|s| !s.tx.same_channel(&tx));
            // Ours unless a newer connection with the same id took the entry over.
            let ours = r
                .clients
                .get(&conn.client_id)
                .is_none_or(|(n, _)| *n == number);
            if ours {
                r.clients.remove(&conn.client_id);
            }
            ours
        };
        // A connection taken over by a newer one with the same id is not a disconnect.
        if still_ours {
            auth.disconnected(&conn.client_id);
        }
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
                    if self.handle(packet, routes, auth, tx, &mut awaiting_release).await? {
                        return Ok(());
                    }
                }
                message = rx.recv() => {
                    let Some(message) = message else {
                        return Err(End::Closed);
                    };
                    let qos = lock(routes)
                        .subscribers
                        .iter()
                        .filter(|s| s.tx.same_channel(tx) && topic_matches(&s.filter, &message.topic))
                        .map(|s| s.qos)
                        .max_by_key(|q| *q as u8)
                        .unwrap_or(QoS::AtMostOnce);
                    let mut publish = Publish::new(message.topic, qos, message.payload.to_vec());
                    if qos == QoS::AtLeastOnce {
                        next_pkid = next_pkid.checked_add(1).unwrap_or(1).max(1);
                        publish.pkid = next_pkid;
                    }
                    self.send(&Packet::Publish(publish)).await?;
                }
            }
        }
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
                        self.send(&Packet::PubAck(PubAck::new(p.pkid))).await?;
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
                        self.send(&Packet::PubRec(PubRec::new(p.pkid))).await?;
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
                self.send(&Packet::PubComp(PubComp::new(r.pkid))).await?;
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
                        lock(routes).subscribers.push(Subscriber {
                            filter: f.path,
                            qos,
                            tx: tx.clone(),
                            client: Some(self.client_id.clone()),
                        });
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
                    }
                }
                self.send(&Packet::SubAck(SubAck::new(s.pkid, codes)))
                    .await?;
            }
            Packet::Unsubscribe(u) => {
                lock(routes)
                    .subscribers
                    .retain(|s| !(s.tx.same_channel(tx) && u.topics.contains(&s.filter)));
                self.send(&Packet::UnsubAck(UnsubAck::new(u.pkid))).await?;
            }
            Packet::PingReq => self.send(&Packet::PingResp).await?,
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
                Err(_) => return Err(End::Protocol),
            }
        }
    }

    async fn send(&mut self, packet: &Packet) -> Result<(), End> {
        let mut out = BytesMut::new();
        packet
            .write(&mut out, MAX_PACKET)
            .map_err(|_| End::Protocol)?;
        let write = self.stream.write_all(&out);
        let Some(limit) = self.idle_limit else {
            return write.await.map_err(|_| End::Io);
        };
        match tokio::time::timeout(limit, write).await {
            Ok(written) => written.map_err(|_| End::Io),
            Err(_) => {
                tracing::info!(
                    target: "x_sim",
                    "-> {}: {} not taken within {limit:?} (1.5 x its keep-alive), connection closed",
                    self.client_id,
                    packet_name(packet)
                );
                Err(End::Silent)
            }
        }
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
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{idle_limit, topic_matches};

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
