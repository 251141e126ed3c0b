//! The platform's access rules on the broker: who may connect (the login rules over the
//! registry), and which topics each client may publish and subscribe. Also keeps each
//! device's last offline time, which type-1 logins are checked against, records refused
//! publishes and subscriptions in the violation log, and remembers when each device's
//! CONNECTs were refused (so that tests can count a device's login attempts at the broker).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use x_protocol::topic::AUTH_TOPIC;
use x_protocol::{DeviceIdentity, Publisher, Topic};

use crate::broker::{Authorizer, ConnectionNumber};
use crate::login::{Login, check_connect};
use crate::platform::violations::{Evidence, Rule, ViolationLog, registry_secrets};
use crate::registry::Registry;
use crate::store::{Store, StoreError, Write};
use crate::sync::{lock, read};

/// How many refused CONNECTs are remembered per device (the newest).
pub const REFUSED_CONNECTS_KEPT: usize = 1024;

/// How many devices' refused CONNECTs are remembered; CONNECTs naming further devices are
/// not (a client making up device names cannot grow the map without bound).
const REFUSED_DEVICES_KEPT: usize = 10_000;

/// The platform's [`Authorizer`].
#[derive(Debug, Clone)]
pub struct PlatformAccess {
    registry: Arc<RwLock<Registry>>,
    /// Accepted logins by client id, with the connection that holds each.
    logins: Arc<Mutex<HashMap<String, (ConnectionNumber, Login)>>>,
    last_offline: Arc<Mutex<HashMap<String, u64>>>,
    /// When CONNECTs naming each device (`{OpenID}/{ProductID}/{NodeEui}`) were refused.
    refused: Arc<Mutex<HashMap<String, VecDeque<Instant>>>>,
    store: Option<Store>,
    violations: Option<ViolationLog>,
}

impl PlatformAccess {
    /// Access rules over a shared registry.
    pub fn new(registry: Arc<RwLock<Registry>>) -> Self {
        Self {
            registry,
            logins: Arc::default(),
            last_offline: Arc::default(),
            refused: Arc::default(),
            store: None,
            violations: None,
        }
    }

    /// Access rules that keep last offline times in `store` (and start from what it holds).
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn with_store(registry: Arc<RwLock<Registry>>, store: Store) -> Result<Self, StoreError> {
        let last_offline = store.last_offline()?.into_iter().collect();
        Ok(Self {
            registry,
            logins: Arc::default(),
            last_offline: Arc::new(Mutex::new(last_offline)),
            refused: Arc::default(),
            store: Some(store),
            violations: None,
        })
    }

    /// These rules, recording refused publishes ([`Rule::ForbiddenTopic`]) and
    /// subscriptions ([`Rule::ForbiddenSubscription`]) in `log`.
    #[must_use]
    pub fn with_violations(mut self, log: ViolationLog) -> Self {
        self.violations = Some(log);
        self
    }

    /// Records a violation of the device behind `client_id`.
    fn violation(&self, client_id: &str, rule: Rule, reason: &str, evidence: Evidence<'_>) {
        let Some(log) = &self.violations else { return };
        let device = match lock(&self.logins).get(client_id) {
            Some((_, Login::Auth { device } | Login::Device { device, .. })) => device.clone(),
            None => return,
        };
        let secrets = registry_secrets(&read(&self.registry), &device);
        // The broker refuses at once; the record's write is not waited for.
        let _ = log.record(&device, rule, reason, evidence, &secrets);
    }

    /// Whether a device is connected after its V2 login.
    pub fn online(&self, device: &DeviceIdentity) -> bool {
        self.client_of(device).is_some()
    }

    /// The client id of a device's V2 connection.
    pub fn client_of(&self, device: &DeviceIdentity) -> Option<String> {
        lock(&self.logins)
            .iter()
            .find_map(|(client, (_, login))| match &login {
                Login::Device { device: d, .. } if d == device => Some(client.clone()),
                _ => None,
            })
    }

    /// Who a connected client is.
    pub fn login(&self, client_id: &str) -> Option<Login> {
        lock(&self.logins)
            .get(client_id)
            .map(|(_, login)| login.clone())
    }

    /// A device's last offline time (Unix seconds), if it has been online.
    pub fn last_offline(&self, device: &DeviceIdentity) -> Option<u64> {
        lock(&self.last_offline).get(&device.to_string()).copied()
    }

    /// Sets a device's last offline time (restored from storage).
    pub fn set_last_offline(&self, device: &DeviceIdentity, secs: u64) {
        lock(&self.last_offline).insert(device.to_string(), secs);
    }

    /// When the broker refused CONNECTs that named `device` (auth-phase and V2 logins
    /// alike), oldest first: the newest [`REFUSED_CONNECTS_KEPT`] since this process
    /// started.
    pub fn refused_connects(&self, device: &DeviceIdentity) -> Vec<Instant> {
        lock(&self.refused)
            .get(&device.to_string())
            .map(|times| times.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Remembers a refused CONNECT of the device its client id and user name name.
    fn refused_connect(&self, client_id: &str, username: &str) {
        let Some(key) = device_key(client_id, username) else {
            return;
        };
        let mut refused = lock(&self.refused);
        if refused.len() >= REFUSED_DEVICES_KEPT && !refused.contains_key(&key) {
            return;
        }
        let times = refused.entry(key).or_default();
        if times.len() >= REFUSED_CONNECTS_KEPT {
            times.pop_front();
        }
        times.push_back(Instant::now());
    }
}

/// The device (`{OpenID}/{ProductID}/{NodeEui}`) a CONNECT names, by either login's shape:
/// `AUTH-{OpenID}-{ProductID}` / `{ProductID}-{NodeEui}`, or a V2 client id and user name.
fn device_key(client_id: &str, username: &str) -> Option<String> {
    let key = match username.strip_prefix("AUTH-") {
        Some(rest) => {
            let (open_id, _) = rest.split_once('-')?;
            let (product, node) = client_id.split_once('-')?;
            format!("{open_id}/{product}/{node}")
        }
        None => last_offline_key(client_id, username)?,
    };
    let mut parts = key.split('/');
    let (Some(open_id), Some(product), Some(node)) = (parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    // Only well-formed identities are remembered.
    DeviceIdentity::parse(open_id, product, node)
        .ok()
        .map(|d| d.to_string())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The device a V2 client id names (`V2_{ProductID}.{NodeEui}_...`), to find its last
/// offline time before the login is decided.
fn last_offline_key(client_id: &str, username: &str) -> Option<String> {
    let ids = client_id.strip_prefix("V2_")?;
    let (product, rest) = ids.split_once('.')?;
    let node = rest.split('_').next()?;
    let open_id = username.split('-').next()?;
    Some(format!("{open_id}/{product}/{node}"))
}

impl Authorizer for PlatformAccess {
    fn connect(
        &self,
        connection: ConnectionNumber,
        client_id: &str,
        username: &str,
        password: &str,
    ) -> Result<Login, u8> {
        let last = last_offline_key(client_id, username)
            .and_then(|key| lock(&self.last_offline).get(&key).copied());
        let registry = read(&self.registry);
        match check_connect(&registry, client_id, username, password, now(), last) {
            Ok(login) => {
                tracing::info!(target: "x_sim", "<- CONNECT {client_id}: accepted");
                lock(&self.logins).insert(client_id.to_owned(), (connection, login.clone()));
                Ok(login)
            }
            Err(refusal) => {
                tracing::info!(
                    target: "x_sim",
                    "<- CONNECT {client_id}: refused with CONNACK {}: {refusal}",
                    refusal.connack_code()
                );
                drop(registry);
                self.refused_connect(client_id, username);
                Err(refusal.connack_code())
            }
        }
    }

    fn can_publish(&self, client_id: &str, topic: &str) -> bool {
        match lock(&self.logins).get(client_id).map(|(_, login)| login) {
            Some(Login::Auth { .. }) => topic == AUTH_TOPIC,
            Some(Login::Device { device, .. }) => Topic::parse_for(topic, device).is_ok_and(|t| {
                t.device().is_some() && t.kind().spec().publisher == Publisher::Device
            }),
            None => false,
        }
    }

    fn refused_publish(&self, client_id: &str, topic: &str, payload: &[u8]) {
        let reason = match self.login(client_id) {
            Some(Login::Auth { .. }) => format!(
                "an auth-phase login may publish only {AUTH_TOPIC}, not {topic}: connection closed"
            ),
            Some(Login::Device { .. }) => format!(
                "{topic} is not a topic this device may publish (its own device topics of the command table): connection closed"
            ),
            None => return,
        };
        self.violation(
            client_id,
            Rule::ForbiddenTopic,
            &reason,
            Evidence::of(topic, payload),
        );
    }

    fn refused_subscribe(&self, client_id: &str, filter: &str) {
        let reason = match self.login(client_id) {
            Some(Login::Auth { device }) => format!(
                "an auth-phase login may subscribe only {}/downlink, not {filter}: SUBACK 0x80",
                device.topic_prefix()
            ),
            Some(Login::Device { device, .. }) => format!(
                "{filter} is outside the device's own topics {}/...: SUBACK 0x80",
                device.topic_prefix()
            ),
            None => return,
        };
        self.violation(
            client_id,
            Rule::ForbiddenSubscription,
            &reason,
            Evidence::of(filter, b""),
        );
    }

    fn can_subscribe(&self, client_id: &str, filter: &str) -> bool {
        match lock(&self.logins).get(client_id).map(|(_, login)| login) {
            Some(Login::Auth { device }) => filter == format!("{}/downlink", device.topic_prefix()),
            Some(Login::Device { device, .. }) => {
                filter.starts_with(&format!("{}/", device.topic_prefix()))
            }
            None => false,
        }
    }

    fn superseded(&self, client_id: &str) -> Vec<String> {
        let logins = lock(&self.logins);
        let Some((_, Login::Device { device, .. })) = logins.get(client_id) else {
            return Vec::new();
        };
        logins
            .iter()
            .filter(|(other, (_, login))| {
                other.as_str() != client_id
                    && matches!(login, Login::Device { device: d, .. } if d == device)
            })
            .map(|(other, _)| other.clone())
            .collect()
    }

    fn disconnected(&self, connection: ConnectionNumber, client_id: &str) {
        let mut logins = lock(&self.logins);
        // Only this connection's login: the client id may be on a newer connection already.
        if logins.get(client_id).is_none_or(|(c, _)| *c != connection) {
            return;
        }
        let login = logins.remove(client_id).map(|(_, login)| login);
        // A device still online under a newer connection has not gone offline.
        let still_online = |device: &DeviceIdentity| {
            logins
                .values()
                .any(|(_, l)| matches!(l, Login::Device { device: d, .. } if d == device))
        };
        let login =
            login.filter(|l| !matches!(l, Login::Device { device, .. } if still_online(device)));
        drop(logins);
        if let Some(Login::Device { device, .. }) = login {
            let at = now();
            let mut last_offline = lock(&self.last_offline);
            last_offline.insert(device.to_string(), at);
            // Queued to the store's writer under the lock, in order (on the connection's
            // task: never waiting for the disk); the writer logs a failure.
            if let Some(store) = &self.store {
                store.queue_unwaited(Write::last_offline(&device.to_string(), at));
            }
            drop(last_offline);
            tracing::info!(target: "x_sim", "{device} offline ({client_id})");
        }
    }
}
