//! The simulator's crash-safe store: what it must not lose across a restart or a crash
//! (products and devices changed at run time, last offline times, everything received from
//! devices, the violation log, and small state maps), kept in one [redb] file.
//!
//! Every write is one committed redb transaction, durable when the call returns. Products
//! and devices are stored as JSON records of this module's own shape; a record that does
//! not decode is reported as [`StoreError::Record`], naming its table and key. The calls
//! block on disk I/O (each write waits for `fsync`).

use std::fmt;
use std::io::ErrorKind;
use std::ops::Bound::{self, Excluded, Included, Unbounded};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{
    Database, DatabaseError, Key, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    StorageError, TableDefinition, TableHandle, Value, WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use x_protocol::{IdentityError, RegistrationType, SecretString};
use zeroize::Zeroizing;

use crate::registry::{Device, Format, ModelSource, Product};

// Keys and values are raw bytes, so a damaged entry decodes to an error here rather than
// failing redb's own UTF-8 check.
/// Products by ProductID, as [`ProductRecord`] JSON.
const PRODUCTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("products");
/// Devices by `ProductID/NodeEui`, as [`DeviceRecord`] JSON.
const DEVICES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("devices");
/// Unix seconds by `OpenID/ProductID/NodeEui`.
const LAST_OFFLINE: TableDefinition<&[u8], u64> = TableDefinition::new("last_offline");
/// Received JSON records by sequence number.
const RECEIVED: TableDefinition<u64, &[u8]> = TableDefinition::new("received");
/// Every state map: JSON values by (map, key).
const STATE: TableDefinition<(&[u8], &[u8]), &[u8]> = TableDefinition::new("state");
/// Violations of each device, as JSON records by (`OpenID/ProductID/NodeEui`, sequence
/// number): the newest of each device only.
const VIOLATIONS: TableDefinition<(&[u8], u64), &[u8]> = TableDefinition::new("violations");
/// Counters.
const META: TableDefinition<&[u8], u64> = TableDefinition::new("meta");
/// The last sequence number given out, kept apart from `RECEIVED` so that it is never
/// reused even if records are ever removed.
const LAST_SEQ: &[u8] = b"received.last_seq";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file could not be created or opened as a store.
    #[error("cannot open store {}: {source}", path.display())]
    Open {
        /// The store file.
        path: PathBuf,
        /// What redb reported.
        source: redb::Error,
    },
    /// The file exists but is not a store (not a redb database); it was left alone.
    #[error("cannot open store {}: the file is not a redb database", path.display())]
    NotAStore {
        /// The file.
        path: PathBuf,
    },
    /// A read or write of an open store failed.
    #[error("store {}: {source}", path.display())]
    Database {
        /// The store file.
        path: PathBuf,
        /// What redb reported.
        source: redb::Error,
    },
    /// A stored record does not decode (or a value does not encode). The problem never
    /// quotes a secret.
    #[error("store table {table}, key {key}: {problem}")]
    Record {
        /// The table, e.g. `devices`.
        table: String,
        /// The record's key, e.g. `AA30C505/20MQTTJ000121`.
        key: String,
        /// What is wrong, e.g. `secret: expected 32 hex characters (16 bytes), got 31 characters`.
        problem: String,
    },
    /// Every u64 sequence number has been given out.
    #[error("store {}: received sequence numbers are exhausted", path.display())]
    SequenceExhausted {
        /// The store file.
        path: PathBuf,
    },
}

impl StoreError {
    fn record(
        table: &impl TableHandle,
        key: impl fmt::Display,
        problem: impl fmt::Display,
    ) -> Self {
        Self::Record {
            table: table.name().to_owned(),
            key: key.to_string(),
            problem: problem.to_string(),
        }
    }
}

/// The simulator's store. Cloning shares the open database.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
    /// Write transactions committed through this handle and its clones.
    commits: Arc<AtomicU64>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens the store at `path`, creating the file if it is missing. A store left by a
    /// crash is recovered to its last committed write.
    ///
    /// # Errors
    /// [`StoreError::NotAStore`] for a file that is not a store; [`StoreError::Open`] for
    /// anything else (a missing directory, a store already open elsewhere). Both name the
    /// path.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let failed = |source: redb::Error| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let db = Database::create(path).map_err(|e| match e {
            // redb's only InvalidData here: the file does not start with its magic number.
            DatabaseError::Storage(StorageError::Io(io)) if io.kind() == ErrorKind::InvalidData => {
                StoreError::NotAStore {
                    path: path.to_owned(),
                }
            }
            e => failed(e.into()),
        })?;
        // Create every table up front, so that readers never meet a missing one.
        let create_tables = || -> Result<(), redb::Error> {
            let tx = db.begin_write()?;
            tx.open_table(PRODUCTS)?;
            tx.open_table(DEVICES)?;
            tx.open_table(LAST_OFFLINE)?;
            tx.open_table(RECEIVED)?;
            tx.open_table(STATE)?;
            tx.open_table(VIOLATIONS)?;
            tx.open_table(META)?;
            tx.commit()?;
            Ok(())
        };
        create_tables().map_err(failed)?;
        Ok(Store {
            db: Arc::new(db),
            path: path.to_owned(),
            commits: Arc::default(),
        })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores a product under its ProductID, replacing any stored before.
    ///
    /// # Errors
    /// A failed write.
    pub fn put_product(&self, p: &Product) -> Result<(), StoreError> {
        let key = p.product_id.as_str();
        let json = encode(&PRODUCTS, key, &ProductRecord::from(p))?;
        self.put(PRODUCTS, key.as_bytes(), json.as_slice())
    }

    /// Every stored product, by ProductID.
    ///
    /// # Errors
    /// A failed read, or a record that does not decode.
    pub fn products(&self) -> Result<Vec<Product>, StoreError> {
        self.scan(PRODUCTS, (Unbounded, Unbounded), usize::MAX, |key, json| {
            let key = String::from_utf8_lossy(key);
            let record: ProductRecord = decode(&PRODUCTS, &key, json)?;
            record
                .into_product()
                .map_err(|problem| StoreError::record(&PRODUCTS, key, problem))
        })?
        .into_iter()
        .collect()
    }

    /// Stores a device under `ProductID/NodeEui`, replacing any stored before.
    ///
    /// # Errors
    /// A failed write.
    pub fn put_device(&self, d: &Device) -> Result<(), StoreError> {
        let key = format!("{}/{}", d.product_id, d.node_eui);
        let json = encode(&DEVICES, &key, &DeviceRecord::from(d))?;
        self.put(DEVICES, key.as_bytes(), json.as_slice())
    }

    /// Every stored device, by ProductID and NodeEui.
    ///
    /// # Errors
    /// A failed read, or a record that does not decode.
    pub fn devices(&self) -> Result<Vec<Device>, StoreError> {
        self.scan(DEVICES, (Unbounded, Unbounded), usize::MAX, |key, json| {
            let key = String::from_utf8_lossy(key);
            let record: DeviceRecord = decode(&DEVICES, &key, json)?;
            record
                .into_device()
                .map_err(|problem| StoreError::record(&DEVICES, key, problem))
        })?
        .into_iter()
        .collect()
    }

    /// Records when `device` (`OpenID/ProductID/NodeEui`) last went offline, in Unix seconds.
    ///
    /// # Errors
    /// A failed write.
    pub fn set_last_offline(&self, device: &str, secs: u64) -> Result<(), StoreError> {
        self.put(LAST_OFFLINE, device.as_bytes(), secs)
    }

    /// Every device's last offline time, by device.
    ///
    /// # Errors
    /// A failed read, or a damaged key.
    pub fn last_offline(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.scan(
            LAST_OFFLINE,
            (Unbounded, Unbounded),
            usize::MAX,
            |key, secs| Ok((text(&LAST_OFFLINE, key)?, secs)),
        )?
        .into_iter()
        .collect()
    }

    /// Appends a record received from a device and returns its sequence number: 1 for the
    /// first, then strictly increasing, never reused (also across restarts).
    ///
    /// # Errors
    /// A failed write.
    pub fn append_received(&self, record: &serde_json::Value) -> Result<u64, StoreError> {
        let json = encode(&RECEIVED, "(new)", record)?;
        let seq = self.write(|tx| {
            let mut meta = tx.open_table(META)?;
            let last = meta.get(LAST_SEQ)?.map_or(0, |seq| seq.value());
            let Some(seq) = last.checked_add(1) else {
                return Ok(None);
            };
            meta.insert(LAST_SEQ, seq)?;
            tx.open_table(RECEIVED)?.insert(seq, json.as_slice())?;
            Ok(Some(seq))
        })?;
        seq.ok_or_else(|| StoreError::SequenceExhausted {
            path: self.path.clone(),
        })
    }

    /// Stores received records under sequence numbers the caller gave out (each above
    /// [`Store::last_received_seq`]), all in one committed transaction (one `fsync` for
    /// the lot: the platform's group commit). The last sequence number given out becomes
    /// the highest of them, so [`Store::append_received`] never reuses one.
    ///
    /// Each record comes as its JSON text, encoded by the caller (the platform encodes on
    /// its own threads, so that the writer only writes), and reads back as that JSON.
    ///
    /// # Errors
    /// A failed write; nothing is stored then.
    pub fn put_received(&self, records: &[(u64, &[u8])]) -> Result<(), StoreError> {
        let encoded = records;
        let Some(highest) = encoded.iter().map(|(seq, _)| *seq).max() else {
            return Ok(());
        };
        self.write(|tx| {
            let mut meta = tx.open_table(META)?;
            let last = meta.get(LAST_SEQ)?.map_or(0, |seq| seq.value());
            meta.insert(LAST_SEQ, last.max(highest))?;
            let mut table = tx.open_table(RECEIVED)?;
            for (seq, json) in encoded {
                table.insert(*seq, *json)?;
            }
            Ok(())
        })
    }

    /// The last received sequence number given out (0 before the first).
    ///
    /// # Errors
    /// A failed read.
    pub fn last_received_seq(&self) -> Result<u64, StoreError> {
        self.read(|tx| {
            Ok(tx
                .open_table(META)?
                .get(LAST_SEQ)?
                .map_or(0, |seq| seq.value()))
        })
    }

    /// How many write transactions were committed through this store (and its clones)
    /// since it was opened, each one `fsync`: for tests and benchmarks of group commit.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Up to `limit` received records with a sequence number above `after_seq`, oldest
    /// first. Page through them by passing the last sequence number seen.
    ///
    /// # Errors
    /// A failed read, or a record that does not decode.
    pub fn received(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<(u64, serde_json::Value)>, StoreError> {
        self.scan(
            RECEIVED,
            (Excluded(after_seq), Unbounded),
            limit,
            |seq, json| Ok((seq, decode(&RECEIVED, seq, json)?)),
        )?
        .into_iter()
        .collect()
    }

    /// How many received records are stored.
    ///
    /// # Errors
    /// A failed read.
    pub fn received_count(&self) -> Result<u64, StoreError> {
        self.read(|tx| Ok(tx.open_table(RECEIVED)?.len()?))
    }

    /// Stores violation `seq` of `device` (`OpenID/ProductID/NodeEui`) and removes the
    /// device's violations numbered below `oldest_kept`, in one committed transaction.
    ///
    /// # Errors
    /// A failed write.
    pub fn append_violation(
        &self,
        device: &str,
        seq: u64,
        record: &serde_json::Value,
        oldest_kept: u64,
    ) -> Result<(), StoreError> {
        let json = encode(&VIOLATIONS, format_args!("{device}/{seq}"), record)?;
        let device = device.as_bytes();
        self.write(|tx| {
            let mut table = tx.open_table(VIOLATIONS)?;
            table.insert((device, seq), json.as_slice())?;
            table.retain_in((device, 0)..(device, oldest_kept), |_, _| false)?;
            Ok(())
        })
    }

    /// Every stored violation: device, sequence number and record, by device and then
    /// sequence number.
    ///
    /// # Errors
    /// A failed read, or a record that does not decode.
    pub fn violations(&self) -> Result<Vec<(String, u64, serde_json::Value)>, StoreError> {
        self.scan(
            VIOLATIONS,
            (Unbounded, Unbounded),
            usize::MAX,
            |(device, seq), json| {
                let device = text(&VIOLATIONS, device)?;
                let value = decode(&VIOLATIONS, format_args!("{device}/{seq}"), json)?;
                Ok((device, seq, value))
            },
        )?
        .into_iter()
        .collect()
    }

    /// Sets `key` in the state map `map` (created on first use), replacing its value.
    ///
    /// # Errors
    /// A failed write.
    pub fn put_state(
        &self,
        map: &str,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let json = encode(&STATE, format_args!("{map}/{key}"), value)?;
        self.put(STATE, (map.as_bytes(), key.as_bytes()), json.as_slice())
    }

    /// Every key and value of the state map `map`, by key; empty for an unknown map.
    ///
    /// # Errors
    /// A failed read, or a value that does not decode.
    pub fn state(&self, map: &str) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        // (map, k) for every k sorts below (map + "\0", ""), and nothing of another map
        // sorts between.
        let end = [map.as_bytes(), b"\0"].concat();
        let range = (
            Included((map.as_bytes(), &b""[..])),
            Excluded((&end[..], &b""[..])),
        );
        self.scan(STATE, range, usize::MAX, |(_, key), json| {
            let key = text(&STATE, key)?;
            let value = decode(&STATE, format_args!("{map}/{key}"), json)?;
            Ok((key, value))
        })?
        .into_iter()
        .collect()
    }

    /// Removes `key` from the state map `map`; nothing happens if it is not there.
    ///
    /// # Errors
    /// A failed write.
    pub fn remove_state(&self, map: &str, key: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.open_table(STATE)?
                .remove((map.as_bytes(), key.as_bytes()))?;
            Ok(())
        })
    }

    /// Inserts or replaces one entry, in its own committed transaction.
    fn put<K: Key + 'static, V: Value + 'static>(
        &self,
        table: TableDefinition<K, V>,
        key: K::SelfType<'_>,
        value: V::SelfType<'_>,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.open_table(table)?.insert(key, value)?;
            Ok(())
        })
    }

    /// Runs `f` in one write transaction and commits it; durable when this returns.
    fn write<T>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let run = || -> Result<T, redb::Error> {
            let tx = self.db.begin_write()?;
            let out = f(&tx)?;
            tx.commit()?;
            self.commits.fetch_add(1, Ordering::Relaxed);
            Ok(out)
        };
        run().map_err(|source| self.failed(source))
    }

    /// Runs `f` in one read transaction.
    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let run = || f(&self.db.begin_read()?);
        run().map_err(|source| self.failed(source))
    }

    /// Maps up to `limit` entries of `range`, in key order, through `each`.
    fn scan<'a, K: Key + 'static, V: Value + 'static, T>(
        &self,
        table: TableDefinition<K, V>,
        range: (Bound<K::SelfType<'a>>, Bound<K::SelfType<'a>>),
        limit: usize,
        mut each: impl FnMut(K::SelfType<'_>, V::SelfType<'_>) -> T,
    ) -> Result<Vec<T>, StoreError> {
        self.read(|tx| {
            let table = tx.open_table(table)?;
            let mut out = Vec::new();
            for entry in table.range(range)?.take(limit) {
                let (key, value) = entry?;
                out.push(each(key.value(), value.value()));
            }
            Ok(out)
        })
    }

    fn failed(&self, source: redb::Error) -> StoreError {
        StoreError::Database {
            path: self.path.clone(),
            source,
        }
    }
}

/// `value` as JSON. The buffer may hold a secret, so it is wiped when dropped.
fn encode(
    table: &impl TableHandle,
    key: impl fmt::Display,
    value: &impl Serialize,
) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    serde_json::to_vec(value)
        .map(Zeroizing::new)
        .map_err(|e| StoreError::record(table, key, format!("cannot encode: {e}")))
}

/// The JSON record stored under `key`.
fn decode<T: DeserializeOwned>(
    table: &impl TableHandle,
    key: impl fmt::Display,
    json: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(json).map_err(|e| StoreError::record(table, key, e))
}

/// A stored key as text.
fn text(table: &impl TableHandle, key: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(key.to_vec()).map_err(|_| {
        StoreError::record(table, String::from_utf8_lossy(key), "the key is not UTF-8")
    })
}

/// Parses one field of a record, naming the field (but never quoting a secret) on failure.
fn field<T: FromStr<Err = IdentityError>>(name: &str, text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|e: IdentityError| format!("{name}: {}", e.problem))
}

/// A stored [`Product`].
#[derive(Serialize, Deserialize)]
struct ProductRecord {
    open_id: String,
    product_id: String,
    product_key: SecretString,
    registration: u8,
    encrypted: bool,
    format: FormatRecord,
    model: Option<ModelRecord>,
    script: Option<String>,
}

/// A stored [`ModelSource`].
#[derive(Serialize, Deserialize)]
struct ModelRecord {
    name: String,
    text: String,
}

/// A stored [`Format`].
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FormatRecord {
    Passthrough,
    Json,
    Hex,
}

/// A stored [`Device`].
#[derive(Serialize, Deserialize)]
struct DeviceRecord {
    product_id: String,
    node_eui: String,
    secret: SecretString,
    enabled: bool,
}

impl From<&Product> for ProductRecord {
    fn from(p: &Product) -> Self {
        Self {
            open_id: p.open_id.to_string(),
            product_id: p.product_id.to_string(),
            product_key: SecretString::new(p.product_key.expose_hex().to_owned()),
            registration: p.registration.code(),
            encrypted: p.encrypted,
            format: match p.format {
                Format::Passthrough => FormatRecord::Passthrough,
                Format::Json => FormatRecord::Json,
                Format::Hex => FormatRecord::Hex,
            },
            model: p.model.as_ref().map(|m| ModelRecord {
                name: m.name().to_owned(),
                text: m.text().to_owned(),
            }),
            script: p.script.clone(),
        }
    }
}

impl ProductRecord {
    fn into_product(self) -> Result<Product, String> {
        Ok(Product {
            open_id: field("open_id", &self.open_id)?,
            product_id: field("product_id", &self.product_id)?,
            product_key: field("product_key", self.product_key.expose())?,
            registration: RegistrationType::from_code(self.registration.into())
                .map_err(|e| format!("registration: {}", e.problem))?,
            encrypted: self.encrypted,
            format: match self.format {
                FormatRecord::Passthrough => Format::Passthrough,
                FormatRecord::Json => Format::Json,
                FormatRecord::Hex => Format::Hex,
            },
            model: self
                .model
                .map(|m| ModelSource::new(m.name, m.text))
                .transpose()
                .map_err(|d| format!("model: {}", crate::registry::diagnostics_line(&d)))?,
            script: self.script,
        })
    }
}

impl From<&Device> for DeviceRecord {
    fn from(d: &Device) -> Self {
        Self {
            product_id: d.product_id.to_string(),
            node_eui: d.node_eui.to_string(),
            secret: SecretString::new(d.secret.expose_hex().to_owned()),
            enabled: d.enabled,
        }
    }
}

impl DeviceRecord {
    fn into_device(self) -> Result<Device, String> {
        Ok(Device {
            product_id: field("product_id", &self.product_id)?,
            node_eui: field("node_eui", &self.node_eui)?,
            secret: field("secret", self.secret.expose())?,
            enabled: self.enabled,
        })
    }
}
