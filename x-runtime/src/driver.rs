//! The thin async driver: one tokio task per device that performs the session's effects
//! over rumqttc and feeds it CONNACKs, SUBACKs, publishes, connection losses and the clock.
//! It makes no protocol decision of its own.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event as MqttEvent, EventLoop, MqttOptions, Packet, QoS,
};
use tokio::sync::{Semaphore, mpsc, watch};
use x_protocol::model::{ThingModel, ThingServices};

use crate::device::{
    Core, Device, DeviceBuilder, DeviceError, Guard, Handler, Replier, Request, ServiceRequest,
    Shared,
};
use crate::session::{ConnectionState, Effect, Event, Now, Persisted, Session};
use crate::state_dir::StateDir;

/// The largest MQTT packet the device accepts or sends.
const MAX_PACKET: usize = 256 * 1024;
/// The largest HEX service reply a handler may write.
const HEX_REPLY: usize = 1024;

/// How many connection events may wait for the driver.
const EVENTS: usize = 256;

/// One MQTT connection: the client half, the events its event loop's task forwards, and
/// what it is waiting for. The event loop runs in a task of its own, so the driver's
/// `select!` only ever cancels a channel receive (rumqttc does not promise that cancelling
/// `EventLoop::poll` mid-connect is safe).
struct Conn {
    client: AsyncClient,
    /// Boxed: a channel's storage is allocated in blocks of 32 slots, and an idle device
    /// should not hold 32 unboxed events.
    events: mpsc::Receiver<Box<Result<MqttEvent, ConnectionError>>>,
    /// The filters of the SUBSCRIBE in flight, to name refused ones from the SUBACK.
    subscribing: Vec<String>,
    /// Publishes the request channel had no room for, sent as soon as it has.
    backlog: VecDeque<(String, Vec<u8>)>,
    /// What the connection task tells the driver without an event per packet.
    signals: Arc<Signals>,
}

/// Counted or signalled by a connection's task instead of forwarded, so that a stream of
/// PUBACKs does not wake the driver once per report.
#[derive(Default)]
pub(crate) struct Signals {
    /// PUBACKs received (shared by every connection of a device).
    pub(crate) pubacks: Arc<std::sync::atomic::AtomicU64>,
    /// Set by the driver while it holds a backlog; the task then wakes it on each
    /// outgoing publish (the request channel has room again).
    backlogged: std::sync::atomic::AtomicBool,
    room: tokio::sync::Notify,
}

impl Conn {
    /// Starts the event loop's task.
    fn spawn(
        options: MqttOptions,
        capacity: usize,
        pubacks: Arc<std::sync::atomic::AtomicU64>,
    ) -> Self {
        let (client, mut events) = AsyncClient::new(options, capacity);
        // Small frames, each waiting for an answer: no Nagle delay.
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        events.set_network_options(network);
        let (tx, rx) = mpsc::channel(EVENTS);
        let signals = Arc::new(Signals {
            pubacks,
            ..Signals::default()
        });
        tokio::spawn(run_connection(events, tx, signals.clone()));
        Self {
            client,
            events: rx,
            subscribing: Vec::new(),
            backlog: VecDeque::new(),
            signals,
        }
    }
}

/// Polls one connection until it fails, forwarding every event. Once the driver lets go of
/// it (after asking for DISCONNECT), it is polled until the DISCONNECT is out, for a second
/// at most.
async fn run_connection(
    mut events: EventLoop,
    tx: mpsc::Sender<Box<Result<MqttEvent, ConnectionError>>>,
    signals: Arc<Signals>,
) {
    use std::sync::atomic::Ordering;
    loop {
        let event = events.poll().await;
        // After an error or our own DISCONNECT the event loop must not be polled again:
        // rumqttc would reconnect with the same credentials.
        let end = matches!(
            event,
            Err(_) | Ok(MqttEvent::Outgoing(rumqttc::Outgoing::Disconnect))
        );
        match &event {
            Ok(MqttEvent::Incoming(Packet::PubAck(_))) => {
                signals.pubacks.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Ok(MqttEvent::Outgoing(rumqttc::Outgoing::Publish(_))) => {
                if signals.backlogged.load(Ordering::Relaxed) {
                    signals.room.notify_one();
                }
                continue;
            }
            // What the session needs: CONNACK, SUBACK, publishes, and the end.
            Ok(MqttEvent::Incoming(
                Packet::ConnAck(_) | Packet::SubAck(_) | Packet::Publish(_),
            ))
            | Err(_) => {}
            Ok(_) if end => return,
            Ok(_) => continue,
        }
        if tx.send(Box::new(event)).await.is_err() {
            if end {
                return;
            }
            break;
        }
        if end {
            return;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match events.poll().await {
                Ok(MqttEvent::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

pub(crate) struct Driver<M: ThingModel, S> {
    shared: Arc<Shared<M, S>>,
    handler: Handler<S>,
    requests: mpsc::Sender<Request<M, S>>,
    broker: crate::device::BrokerAddr,
    tls: Option<rumqttc::TlsConfiguration>,
    keep_alive: Duration,
    inflight: u16,
    /// The OTA task, with an installer configured.
    ota: Option<crate::ota::manager::OtaHandle>,
}

/// Builds the session and the shared core, and spawns the driver task.
pub(crate) fn start<M, S>(b: DeviceBuilder<M, S>) -> Result<Device<M, S>, DeviceError>
where
    M: ThingModel + Send + 'static,
    M::Set: Send,
    S: ThingServices + Send + 'static,
{
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| DeviceError::NoRuntime)?;
    if b.ota.is_some() && b.state_dir.is_none() {
        return Err(DeviceError::OtaWithoutStateDir);
    }
    let state_dir = b.state_dir.map(StateDir::new);
    let persisted = match &state_dir {
        Some(dir) => dir.load()?,
        None => Persisted::default(),
    };
    let (outbox, recovered, restored) = match (&state_dir, b.outbox) {
        (Some(dir), Some(limits)) => {
            let now = x_protocol::model::Date::now().millis();
            let (outbox, recovered) = crate::outbox::Outbox::open(dir.path(), limits, now)?;
            let restored = outbox.oldest(usize::MAX)?;
            (
                Some(crate::outbox::OutboxWriter::spawn(outbox)),
                recovered,
                restored,
            )
        }
        _ => (None, None, Vec::new()),
    };
    let tls = if b.broker.tls {
        Some(crate::tls::configuration(b.ca_file.as_deref())?)
    } else {
        None
    };
    let seed = b.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let mut session = Session::new(b.config, b.state, persisted, seed);
    if let Some(hex) = b.hex {
        session = hex(session);
    }
    session.set_settings(b.settings);
    session.restore_stored(restored);
    if let (Some(dir), Some(_)) = (&state_dir, &b.ota) {
        // What an earlier OTA installed stands while the burned-in version is the one it
        // replaced.
        let installed = crate::ota::Installed::load(&dir.path().join("ota"));
        let firmware = session.config().firmware.clone();
        for fw in firmware {
            let effective = installed.effective(fw.module.as_deref(), &fw.soft_ver);
            if effective != fw.soft_ver {
                session.set_soft_ver(fw.module.as_deref(), effective);
            }
        }
    }
    if let Some(veto) = b.veto {
        session.set_veto(veto);
    }
    let (requests, rx) = mpsc::channel(b.request_capacity);
    let (connection, _) = watch::channel(ConnectionState::Idle);
    let shared = Arc::new(Shared {
        core: std::sync::Mutex::new(Core {
            session,
            waiters: Default::default(),
        }),
        wake: tokio::sync::Notify::new(),
        window: Arc::new(Semaphore::new(b.window)),
        connection,
        requests: tokio::sync::Mutex::new(rx),
        dropped_requests: Default::default(),
        pubacks: Arc::new(Default::default()),
        state_dir,
        outbox,
        recovered,
        ota_events: Default::default(),
    });
    let ota = match (&b.ota, &shared.state_dir) {
        (Some(installer), Some(dir)) => Some(crate::ota::manager::spawn(
            &runtime,
            Arc::new(OtaLink {
                shared: shared.clone(),
            }),
            installer.clone(),
            b.ota_config.clone(),
            dir.path().to_owned(),
            seed,
        )?),
        _ => None,
    };
    let driver = Driver {
        shared: shared.clone(),
        handler: b.handler,
        ota,
        requests,
        broker: b.broker,
        tls,
        keep_alive: b.keep_alive,
        inflight: u16::try_from(b.window + 32).unwrap_or(u16::MAX),
    };
    let task = runtime.spawn(driver.run());
    Ok(Device {
        guard: Arc::new(Guard::new(shared.clone(), task)),
        shared,
    })
}

impl<M, S> Driver<M, S>
where
    M: ThingModel + Send + 'static,
    M::Set: Send,
    S: ThingServices + Send + 'static,
{
    async fn run(mut self) {
        let mut conn: Option<Conn> = None;
        self.shared.lock().session.start(Now::system());
        loop {
            self.pump(&mut conn).await;
            if *self.shared.connection.borrow() == ConnectionState::Stopped {
                break;
            }
            let deadline = self.shared.lock().session.next_deadline();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = poll(&mut conn) => self.network(*event, &mut conn),
                () = self.shared.wake.notified() => {}
                () = sleep => self.shared.lock().session.tick(Now::system()),
            }
        }
        // The state directory is free again once the device has stopped.
        if let Some(outbox) = &self.shared.outbox {
            outbox.close().await;
        }
        tracing::debug!("device task stopped");
    }

    /// Performs effects and hands out events until the session has nothing more to say.
    async fn pump(&mut self, conn: &mut Option<Conn>) {
        loop {
            let (effects, events) = self.drain();
            if effects.is_empty() && events.is_empty() {
                if let Some(c) = conn {
                    flush(c);
                }
                return;
            }
            for effect in effects {
                self.perform(effect, conn).await;
            }
            for event in events {
                self.dispatch(event);
            }
        }
    }

    /// Takes the session's effects and events; acks go to their waiters here.
    fn drain(&self) -> (Vec<Effect>, Vec<Event<S, M::Set>>) {
        let mut core = self.shared.lock();
        let effects: Vec<Effect> = std::iter::from_fn(|| core.session.poll_effect()).collect();
        let mut events = Vec::new();
        while let Some(event) = core.session.poll_event() {
            match event {
                Event::Delivered { token, result } => {
                    if let Some((tx, _permit)) = core.waiters.remove(&token) {
                        let _ = tx.send(result);
                    }
                }
                other => events.push(other),
            }
        }
        (effects, events)
    }

    async fn perform(&mut self, effect: Effect, conn: &mut Option<Conn>) {
        match effect {
            Effect::Connect { login, .. } => {
                if let Some(old) = conn.take() {
                    close(old);
                }
                *conn = Some(self.open(login));
            }
            Effect::Subscribe(filters) => {
                if let Some(c) = conn {
                    let subs = filters
                        .iter()
                        .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                    if let Err(e) = c.client.try_subscribe_many(subs) {
                        tracing::warn!("subscribe not queued: {e}");
                    }
                    c.subscribing = filters;
                }
            }
            Effect::Publish { topic, payload } => match conn {
                Some(c) => c.backlog.push_back((topic, payload)),
                None => tracing::debug!("{topic}: not connected, not sent"),
            },
            Effect::Disconnect => {
                if let Some(old) = conn.take() {
                    close(old);
                }
            }
            Effect::Forget(seqs) => {
                if let Some(outbox) = &self.shared.outbox {
                    outbox.ack(seqs);
                }
            }
            Effect::Persist(state) => {
                if let Some(dir) = &self.shared.state_dir
                    && let Err(e) = dir.store(&state)
                {
                    tracing::error!("{e}");
                }
            }
        }
    }

    fn open(&self, login: x_protocol::MqttLogin) -> Conn {
        let mut options = MqttOptions::new(login.client_id, &self.broker.host, self.broker.port);
        options
            .set_credentials(login.username, login.password.expose())
            .set_keep_alive(self.keep_alive)
            .set_clean_session(true)
            .set_max_packet_size(MAX_PACKET, MAX_PACKET)
            .set_inflight(self.inflight);
        if let Some(tls) = &self.tls {
            options.set_transport(rumqttc::Transport::Tls(tls.clone()));
        }
        Conn::spawn(
            options,
            usize::from(self.inflight) + 16,
            self.shared.pubacks.clone(),
        )
    }

    /// Feeds the session what the connection did.
    fn network(&mut self, event: Result<MqttEvent, ConnectionError>, conn: &mut Option<Conn>) {
        let now = Now::system();
        let mut core = self.shared.lock();
        match event {
            Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => core.session.connected(now),
            Ok(MqttEvent::Incoming(Packet::SubAck(ack))) => {
                let filters = conn.as_mut().map(|c| std::mem::take(&mut c.subscribing));
                let refused: Vec<String> = filters
                    .unwrap_or_default()
                    .into_iter()
                    .zip(ack.return_codes.iter())
                    .filter(|(_, code)| matches!(code, rumqttc::SubscribeReasonCode::Failure))
                    .map(|(f, _)| f)
                    .collect();
                core.session.subscribed(&refused, now);
            }
            Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                core.session.message(&p.topic, &p.payload, now);
            }
            Ok(_) => {}
            Err(ConnectionError::ConnectionRefused(code)) => {
                *conn = None;
                core.session.connect_refused(code as u8, now);
            }
            Err(e) => {
                *conn = None;
                core.session.disconnected(&e.to_string(), now);
            }
        }
    }

    /// Hands one event to the application: service calls to the handler or the stream,
    /// the rest to the stream and the connection watch.
    fn dispatch(&mut self, event: Event<S, M::Set>) {
        let request = match event {
            Event::State(state) => {
                self.shared.connection.send_replace(state);
                return;
            }
            Event::Delivered { .. } => return,
            Event::ServiceCall { ticket, call } => match &mut self.handler {
                Handler::Json(handle) => {
                    let result = handle(call);
                    let _ = self.shared.lock().session.reply_service(ticket, result);
                    return;
                }
                Handler::Hex(handle) => {
                    let mut out = [0u8; HEX_REPLY];
                    let result = handle(call, &mut out);
                    let mut core = self.shared.lock();
                    let _ = match result {
                        Ok(reply) => core
                            .session
                            .reply_service_hex(ticket, &out[..reply.len.min(HEX_REPLY)]),
                        Err(e) => core.session.refuse_service(ticket, &e.to_string()),
                    };
                    return;
                }
                Handler::Stream => Request::Service(ServiceRequest {
                    call: Some(call),
                    ticket: Some(ticket),
                    replier: self.shared.clone() as Arc<dyn Replier<S>>,
                }),
            },
            Event::PropertiesSet(set) => Request::PropertiesSet(set),
            Event::Passthrough(data) => Request::Passthrough(data),
            Event::ConfigChanged(settings) => Request::ConfigChanged(settings),
            Event::OtaNotify(notify) => match &self.ota {
                Some(ota) => {
                    ota.notify(crate::ota::Update::from_notify(&notify));
                    return;
                }
                None => Request::OtaNotify(Box::new(notify)),
            },
            Event::TimeSynced {
                platform_ms,
                timezone,
            } => Request::TimeSynced {
                platform_ms,
                timezone,
            },
            Event::KeyRotated => Request::KeyRotated,
            Event::EntryRefused { entry, reason } => Request::EntryRefused {
                entry: Box::new(entry),
                reason,
            },
            Event::UploadRefused {
                reason,
                entries,
                retry_in,
            } => Request::UploadRefused {
                reason,
                entries,
                retry_in,
            },
        };
        if let Err(e) = self.requests.try_send(request) {
            self.shared
                .dropped_requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let request = e.into_inner();
            tracing::warn!("request stream full: {} dropped", describe(&request));
        }
    }
}

/// The OTA task's view of its device: versions from the session, events kept for the
/// application (beside its request stream, never dropped for a full one), the new version
/// reported after a new login.
struct OtaLink<M: ThingModel, S> {
    shared: Arc<Shared<M, S>>,
}

impl<M, S> crate::ota::manager::OtaHost for OtaLink<M, S>
where
    M: ThingModel + Send + 'static,
    M::Set: Send,
    S: ThingServices + Send + 'static,
{
    fn current_version(&self, module: Option<&str>) -> Option<String> {
        let core = self.shared.lock();
        core.session
            .config()
            .firmware
            .iter()
            .find(|f| f.module.as_deref() == module)
            .map(|f| f.soft_ver.clone())
    }

    fn emit(&self, event: crate::ota::OtaEvent) {
        let gave_way = self.shared.ota_events.push(event);
        if gave_way > 0 {
            self.shared
                .dropped_requests
                .fetch_add(gave_way, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                "{gave_way} OTA event(s) gave way: the application has not taken {} of them",
                crate::device::OtaEvents::LIMIT
            );
        }
    }

    fn installed(&self, module: Option<&str>, version: &str) {
        {
            let mut core = self.shared.lock();
            core.session.set_soft_ver(module, version);
            core.session.relogin(Now::system());
        }
        self.shared.wake.notify_one();
    }

    fn report_firmware(&self) {
        self.shared.lock().session.report_firmware(Now::system());
        self.shared.wake.notify_one();
    }
}

/// What was dropped, for the log line.
fn describe<M: ThingModel, S>(request: &Request<M, S>) -> &'static str {
    match request {
        Request::Service(_) => "service call (answered 4001)",
        Request::PropertiesSet(_) => "property set notice",
        Request::Passthrough(_) => "passthrough data",
        Request::ConfigChanged(_) => "config notice",
        Request::OtaNotify(_) => "OTA notify",
        Request::Ota(_) => "OTA progress",
        Request::TimeSynced { .. } => "time sync notice",
        Request::KeyRotated => "key rotation notice",
        Request::EntryRefused { .. } => "refused outbox entry notice",
        Request::UploadRefused { .. } => "refused history upload notice",
    }
}

/// Moves backlogged publishes into the client's request channel while it has room.
fn flush(conn: &mut Conn) {
    flush_backlog(conn);
    conn.signals.backlogged.store(
        !conn.backlog.is_empty(),
        std::sync::atomic::Ordering::Relaxed,
    );
}

fn flush_backlog(conn: &mut Conn) {
    while let Some((topic, payload)) = conn.backlog.pop_front() {
        match conn
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, payload)
        {
            Ok(()) => {}
            Err(rumqttc::ClientError::TryRequest(rumqttc::Request::Publish(p)))
            | Err(rumqttc::ClientError::Request(rumqttc::Request::Publish(p))) => {
                conn.backlog.push_front((p.topic, p.payload.to_vec()));
                break;
            }
            Err(e) => {
                tracing::warn!("publish not queued: {e}");
                break;
            }
        }
    }
}

/// The next event of the connection; never resolves without one.
async fn poll(conn: &mut Option<Conn>) -> Box<Result<MqttEvent, ConnectionError>> {
    match conn {
        Some(c) => loop {
            let signals = c.signals.clone();
            tokio::select! {
                event = c.events.recv() => {
                    flush(c);
                    return event.unwrap_or_else(|| Box::new(Err(ConnectionError::RequestsDone)));
                }
                () = signals.room.notified() => flush(c),
            }
        },
        None => std::future::pending().await,
    }
}

/// Lets go of a connection: what is backlogged is queued if there is room, then DISCONNECT;
/// its task sends them and ends.
fn close(mut conn: Conn) {
    flush(&mut conn);
    let _ = conn.client.try_disconnect();
}
