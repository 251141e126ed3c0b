//! Sessions of encrypted products: the SessionID and Nonce issued at auth, the SessionKey
//! derived from them, and rotation (HeaderCtrl 3 on the downlink), on demand and when a key
//! has lived longer than the configured lifetime. After a rotation the previous key is still
//! accepted for uplinks (messages already in flight), until the next rotation.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use x_protocol::payload::SessionGrant;
use x_protocol::{
    DeviceIdentity, Frame, HeaderCtrl, ProductKey, SessionKey, Topic, TopicKind, derive_session_key,
};

use super::{CommandError, Platform, now_ms};
use crate::registry::Registry;
use crate::store::{Durable, Store, StoreError, Write};
use crate::sync::{lock, read};

/// One device's session.
#[derive(Clone)]
struct Session {
    grant: SessionGrant,
    key: SessionKey,
    previous: Option<(SessionGrant, SessionKey)>,
    issued_ms: i64,
}

/// Every session, by device.
#[derive(Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    random: RandomState,
    counter: Mutex<u64>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

const STATE_MAP: &str = "sessions";

fn grant_json(g: &SessionGrant) -> Value {
    json!({"SessionID": g.session_id, "Nonce": g.nonce})
}

fn device_key(product_key: &ProductKey, g: &SessionGrant) -> Option<SessionKey> {
    derive_session_key(product_key, &g.session_id, g.nonce).ok()
}

impl Sessions {
    /// Restores sessions from the store (keys are derived again from the ProductKey).
    pub fn restore(store: Option<&Store>, registry: &Registry) -> Result<Self, StoreError> {
        let sessions = Self::default();
        let Some(store) = store else {
            return Ok(sessions);
        };
        for (device, value) in store.state(STATE_MAP)? {
            let product = device.split('/').nth(1).unwrap_or_default();
            let Some(product) = registry.product(product) else {
                continue;
            };
            let grant = |v: &Value| serde_json::from_value::<SessionGrant>(v.clone()).ok();
            let Some(g) = value.get("current").and_then(grant) else {
                continue;
            };
            let Some(key) = device_key(&product.product_key, &g) else {
                continue;
            };
            let previous = value
                .get("previous")
                .and_then(grant)
                .and_then(|p| device_key(&product.product_key, &p).map(|k| (p, k)));
            let issued_ms = value.get("issued_ms").and_then(Value::as_i64).unwrap_or(0);
            lock(&sessions.map).insert(
                device,
                Session {
                    grant: g,
                    key,
                    previous,
                    issued_ms,
                },
            );
        }
        Ok(sessions)
    }

    /// A fresh SessionID and Nonce. Short enough that SessionID + hex(Nonce) stays one AES
    /// block (8 + at most 4 characters), unpredictable, and not repeated after a restart.
    pub fn new_grant(&self) -> SessionGrant {
        let mut counter = lock(&self.counter);
        *counter += 1;
        let r = self.random.hash_one((*counter, now_ms()));
        SessionGrant {
            session_id: format!("{:08X}", r >> 32),
            nonce: i32::try_from(r % 0x7fff).unwrap_or(0) + 1,
        }
    }

    /// Decrypts a device frame's payload with the device's key (or the previous one).
    pub fn decrypt(&self, device: &DeviceIdentity, frame: &Frame) -> Result<Value, String> {
        let Some(session) = lock(&self.map).get(&device.to_string()).cloned() else {
            return Err("no SessionKey: run the auth phase first".to_owned());
        };
        match frame.decrypted_payload(&session.key) {
            Ok(v) => Ok(v),
            Err(e) => match &session.previous {
                Some((_, old)) => frame.decrypted_payload(old).map_err(|_| e.to_string()),
                None => Err(e.to_string()),
            },
        }
    }

    /// The device's current and previous SessionKey as hex, to keep out of records.
    pub fn key_hexes(&self, device: &DeviceIdentity) -> Vec<zeroize::Zeroizing<String>> {
        let Some(session) = self.get(device) else {
            return Vec::new();
        };
        std::iter::once(&session.key)
            .chain(session.previous.as_ref().map(|(_, k)| k))
            .map(|k| zeroize::Zeroizing::new(k.expose_hex().to_owned()))
            .collect()
    }

    fn get(&self, device: &DeviceIdentity) -> Option<Session> {
        lock(&self.map).get(&device.to_string()).cloned()
    }
}

impl Platform {
    /// The SessionKey of a device of an encrypted product, once it has authenticated.
    pub fn session_key(&self, device: &DeviceIdentity) -> Option<SessionKey> {
        self.inner.sessions.get(device).map(|s| s.key)
    }

    /// The SessionID and Nonce a device's current key derives from.
    pub fn session_grant(&self, device: &DeviceIdentity) -> Option<SessionGrant> {
        self.inner.sessions.get(device).map(|s| s.grant)
    }

    fn product_key(&self, device: &DeviceIdentity) -> Option<ProductKey> {
        read(&self.inner.registry)
            .product(device.product_id.as_str())
            .map(|p| p.product_key.clone())
    }

    /// Starts a session after a successful auth (the previous one ends). With a store, the
    /// [`Durable`] of its write: the auth reply that hands the device its SessionID waits
    /// for it.
    pub(super) fn start_session(
        &self,
        device: &DeviceIdentity,
        grant: SessionGrant,
    ) -> Option<Durable> {
        let Some(key) = self
            .product_key(device)
            .and_then(|pk| device_key(&pk, &grant))
        else {
            tracing::error!(target: "x_sim", "{device}: the SessionKey cannot be derived from {}", grant.session_id);
            return None;
        };
        self.set_session(
            device,
            Session {
                grant,
                key,
                previous: None,
                issued_ms: now_ms(),
            },
        )
    }

    /// Makes `session` the device's, and queues it to the store (no key is stored: the
    /// SessionID and Nonce, from which a restart derives it again).
    fn set_session(&self, device: &DeviceIdentity, session: Session) -> Option<Durable> {
        let stored = json!({
            "current": grant_json(&session.grant),
            "previous": session.previous.as_ref().map(|(g, _)| grant_json(g)),
            "issued_ms": session.issued_ms,
        });
        let mut sessions = lock(&self.inner.sessions.map);
        // Queued under the lock (without waiting), so that the store gets a device's
        // sessions in the order they were set.
        let durable = self.inner.store.as_ref().and_then(|store| {
            match Write::state(STATE_MAP, &device.to_string(), &stored) {
                Ok(write) => Some(store.queue(write)),
                Err(e) => {
                    tracing::error!(target: "x_sim", "cannot store the session of {device}: {e}");
                    None
                }
            }
        });
        sessions.insert(device.to_string(), session);
        durable
    }

    /// Rotates the device's SessionKey: sends HeaderCtrl 3 `{"SessionID","Nonce"}` on its
    /// downlink, encrypted under the current key like every platform frame of an encrypted
    /// product, then encrypts with the new key. Uplinks under the previous key are still
    /// accepted until the next rotation.
    ///
    /// # Errors
    /// [`CommandError::NoSession`] when the device has no session.
    pub fn rotate_key(&self, device: &DeviceIdentity) -> Result<SessionGrant, CommandError> {
        let Some(old) = self.inner.sessions.get(device) else {
            return Err(CommandError::NoSession(device.to_string()));
        };
        let grant = self.inner.sessions.new_grant();
        let Some(key) = self
            .product_key(device)
            .and_then(|pk| device_key(&pk, &grant))
        else {
            return Err(CommandError::NoSession(device.to_string()));
        };
        let topic = Topic::new(device.clone(), TopicKind::Downlink)
            .map_err(|e| CommandError::Build(e.to_string()))?;
        let mut frame = Frame::new(
            self.inner.ids.next_id(),
            HeaderCtrl::SessionKeyUpdate,
            grant_json(&grant),
        );
        frame.encrypt_payload(&old.key);
        // Queued, not waited for: the rotation frame leaves now, in order with the frames
        // published after it (which use the new key). Its commit follows within one group
        // commit.
        let _ = self.set_session(
            device,
            Session {
                grant: grant.clone(),
                key,
                previous: Some((old.grant, old.key)),
                issued_ms: now_ms(),
            },
        );
        tracing::info!(target: "x_sim", "{device}: SessionKey rotated to SessionID {}", grant.session_id);
        self.publish(&topic.to_string(), &frame, &grant_json(&grant));
        Ok(grant)
    }

    /// Rotates every key older than the configured lifetime, checking a few times per
    /// lifetime (at least once a second). Devices the embedded broker knows to be offline
    /// keep their key: they get a new one at their next auth.
    pub(super) fn rotate_expired_keys(self) -> tokio::task::JoinHandle<()> {
        let ttl = self.inner.config.session_ttl;
        let period = (ttl / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
                let now = now_ms();
                let expired: Vec<String> = lock(&self.inner.sessions.map)
                    .iter()
                    .filter(|(_, s)| now.saturating_sub(s.issued_ms) >= ttl_ms)
                    .map(|(d, _)| d.clone())
                    .collect();
                for device in expired {
                    let Some(identity) = parse_device(&device) else {
                        continue;
                    };
                    if self.online(&identity) == Some(false) {
                        continue;
                    }
                    if let Err(e) = self.rotate_key(&identity) {
                        tracing::warn!(target: "x_sim", "{device}: {e}");
                    }
                }
            }
        })
    }
}

/// A device from its `OpenID/ProductID/NodeEui` form.
pub(crate) fn parse_device(text: &str) -> Option<DeviceIdentity> {
    let mut parts = text.splitn(3, '/');
    DeviceIdentity::parse(parts.next()?, parts.next()?, parts.next()?).ok()
}
