//! The simulator's crash-safe store: what it must not lose across a restart or a crash
//! (products and devices changed at run time, last offline times, everything received from
//! devices, the violation log, and small state maps), kept in a [redb] file and an
//! append-only log beside it.
//!
//! The records received from devices, most of what is written under a fleet's load, go to
//! the log (`<store>.log`, see the `log` module): a batch
//! of them is one `write` and one `fdatasync`, with no B-tree to update. Everything else is
//! in the database. A store whose received records are still in the database (written
//! before the log) has them moved to the log when it is opened.
//!
//! The simulator writes through one writer thread per store ([`Store::queue`],
//! [`Store::queue_received`]): each write is handed over without waiting, the thread writes
//! every write waiting as one batch (group commit: the log's records in one append, the
//! rest in one redb transaction, one `fsync` each for many writes), in the order they were
//! queued, and reports each one durable through its [`Durable`]. Nothing on the async
//! workers waits for the disk; what must wait (an ack, an HTTP answer) awaits its
//! `Durable`.
//!
//! The direct calls ([`Store::put_product`], [`Store::append_received`], ...) are durable
//! when they return, blocking on disk I/O: for tools and tests. Products and devices are
//! stored as JSON records of this module's own shape; a record that does not decode is
//! reported as [`StoreError::Record`], naming its table and key.

mod log;

use std::collections::VecDeque;
use std::fmt;
use std::io::ErrorKind;
use std::ops::Bound::{self, Excluded, Included, Unbounded};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{
    Database, DatabaseError, Key, ReadableDatabase, ReadableTableMetadata, StorageError,
    TableDefinition, TableHandle, Value, WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use x_protocol::{IdentityError, RegistrationType, SecretString};
use zeroize::Zeroizing;

use self::log::Log;
use crate::registry::{Device, Format, ModelSource, Product};

// Keys and values are raw bytes, so a damaged entry decodes to an error here rather than
// failing redb's own UTF-8 check.
/// Products by ProductID, as [`ProductRecord`] JSON.
const PRODUCTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("products");
/// Devices by `ProductID/NodeEui`, as [`DeviceRecord`] JSON.
const DEVICES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("devices");
/// Unix seconds by `OpenID/ProductID/NodeEui`.
const LAST_OFFLINE: TableDefinition<&[u8], u64> = TableDefinition::new("last_offline");
/// Received JSON records by sequence number: only in stores written before the received
/// log, whose records are moved to the log on open (the table is emptied then).
const RECEIVED: TableDefinition<u64, &[u8]> = TableDefinition::new("received");
/// Every state map: JSON values by (map, key).
const STATE: TableDefinition<(&[u8], &[u8]), &[u8]> = TableDefinition::new("state");
/// Violations of each device, as JSON records by (`OpenID/ProductID/NodeEui`, sequence
/// number): the newest of each device only.
const VIOLATIONS: TableDefinition<(&[u8], u64), &[u8]> = TableDefinition::new("violations");
/// Counters.
const META: TableDefinition<&[u8], u64> = TableDefinition::new("meta");
/// The last sequence number given out by stores written before the received log (which
/// kept it apart from `RECEIVED`, so that it was never reused even if records were ever
/// removed): still read, so that no number is reused.
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
    /// The received log could not be opened, read or written.
    #[error("received log {}: {problem}", path.display())]
    Log {
        /// The log file.
        path: PathBuf,
        /// What went wrong, e.g. `the file is not an x-sim received log`.
        problem: String,
    },
    /// Every u64 sequence number has been given out.
    #[error("store {}: received sequence numbers are exhausted", path.display())]
    SequenceExhausted {
        /// The store file.
        path: PathBuf,
    },
    /// The writer thread could not be started.
    #[error("store {}: cannot start its writer thread: {source}", path.display())]
    Writer {
        /// The store file.
        path: PathBuf,
        /// What the system reported.
        source: std::io::Error,
    },
    /// A write queued to the writer thread was not committed.
    #[error("store {}: {problem}", path.display())]
    NotWritten {
        /// The store file.
        path: PathBuf,
        /// Why, as the writer reported it (the commit's error, or the writer is gone).
        problem: String,
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

/// The simulator's store. Cloning shares the open database and its writer thread; the
/// thread ends (after committing what it holds) when the last clone is dropped, and the file
/// is free then.
#[derive(Clone)]
pub struct Store {
    core: Arc<Core>,
    writer: Arc<Writer>,
}

/// The open database, shared by the handles and the writer thread.
struct Core {
    db: Database,
    path: PathBuf,
    /// The received records.
    log: Log,
    /// Writes made durable through this store: each batch of the writer and each direct
    /// write counts one.
    commits: AtomicU64,
    /// Fault injection: how long each of the writer's commits waits first (a slow disk).
    commit_delay_ms: AtomicU64,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.core.path)
            .finish()
    }
}

impl Store {
    /// Opens the store at `path` and its received log (`<path>.log`), creating them if
    /// missing. A store left by a crash is recovered to its last committed write; what a
    /// crash left of an append to the log past that is cut off and kept aside (logged as
    /// a warning with the file that keeps it).
    ///
    /// # Errors
    /// [`StoreError::NotAStore`] for a file that is not a store; [`StoreError::Log`] for a
    /// log that cannot be used; [`StoreError::Open`] for anything else (a missing directory,
    /// a store already open elsewhere). Each names the path.
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
        let mut log_path = path.as_os_str().to_owned();
        log_path.push(".log");
        let (log, cut) = Log::open(Path::new(&log_path))?;
        if let Some(cut) = cut {
            tracing::warn!(target: "x_sim",
                "received log {}: {} bytes from offset {} were an append cut short by a crash (never reported durable); kept in {} and cut off",
                log.path().display(), cut.bytes, cut.offset, cut.kept_in.display());
        }
        let core = Core {
            db,
            path: path.to_owned(),
            log,
            commits: AtomicU64::new(0),
            commit_delay_ms: AtomicU64::new(0),
        };
        core.move_received_to_log()?;
        let last_seq = core.last_received_seq()?;
        let core = Arc::new(core);
        let writer =
            Writer::start(core.clone(), last_seq).map_err(|source| StoreError::Writer {
                path: path.to_owned(),
                source,
            })?;
        Ok(Store {
            core,
            writer: Arc::new(writer),
        })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.core.path
    }

    /// The received log (`<store file>.log`).
    pub fn log_path(&self) -> &Path {
        self.core.log.path()
    }

    /// Hands `write` to the writer thread without waiting, behind every write queued
    /// before it. [`Durable::wait`] on the returned handle returns once it is committed
    /// (or with the reason it was not); dropping it is fine when nothing waits for the
    /// write (a failure is logged by the writer all the same).
    ///
    /// Never blocks: callers on async workers first wait for [`Store::room`], which keeps
    /// the queue bounded.
    pub fn queue(&self, write: Write) -> Durable {
        let ticket = self.writer.submit(write, None);
        Durable {
            ticket,
            commits: self.writer.commits.clone(),
        }
    }

    /// Hands a received record to the writer thread without waiting, as [`Store::queue`].
    /// The writer thread encodes it (see [`ReceivedRecord`]), off the caller's thread:
    /// the platform handles messages one after another, so what it does per message bounds
    /// the fleet's rate. `seq` must be above every sequence number queued before (the
    /// log's records rise); a record that comes out of order, or does not encode, gets a
    /// failed [`Durable`] saying why.
    pub fn queue_received(&self, seq: u64, record: Arc<dyn ReceivedRecord>) -> Durable {
        match self.writer.submit_received(Some(seq), record, None) {
            Ok((_, ticket)) => Durable {
                ticket,
                commits: self.writer.commits.clone(),
            },
            Err(refused) => Durable::failed(refused.to_string()),
        }
    }

    /// Hands `write` to the writer thread without waiting, for a write nothing waits for
    /// (a failure is logged by the writer). Never blocks, as [`Store::queue`].
    pub fn queue_unwaited(&self, write: Write) {
        self.writer.submit(write, None);
    }

    /// Hands `write` to the writer thread and blocks until it is committed: for callers
    /// that answer only once it is durable and may block (a registration, run on a
    /// blocking thread by the HTTP API).
    ///
    /// # Errors
    /// [`StoreError::NotWritten`] with the writer's reason.
    pub fn write_durably(&self, write: Write) -> Result<(), StoreError> {
        let (done, wait) = mpsc::channel();
        self.writer.submit(write, Some(done));
        wait.recv()
            .unwrap_or_else(|_| Err(GONE.to_owned()))
            .map_err(|problem| self.not_written(problem))
    }

    /// Waits (asynchronously) until fewer than [`WRITER_QUEUE`] writes wait for the writer:
    /// producers on the async workers call this before producing more, so a slow disk
    /// holds them back instead of growing the queue.
    pub async fn room(&self) {
        let writer = &self.writer;
        loop {
            // The usual case, without registering as a waiter.
            if writer.waiting.load(Ordering::Acquire) < WRITER_QUEUE {
                return;
            }
            let notified = writer.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if writer.waiting.load(Ordering::Acquire) < WRITER_QUEUE {
                return;
            }
            notified.await;
        }
    }

    /// How many queued writes wait for the writer thread (not yet committed).
    pub fn waiting(&self) -> usize {
        self.writer.waiting.load(Ordering::Acquire)
    }

    /// Fault injection: a slow disk. Each of the writer thread's commits waits `delay`
    /// before it is written (zero: none), so that tests can see what waits for durability
    /// and what does not.
    pub fn set_commit_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.core.commit_delay_ms.store(ms, Ordering::Relaxed);
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
    /// first, then strictly increasing, never reused (also across restarts). Durable when
    /// this returns (it waits for the writer thread).
    ///
    /// # Errors
    /// The record does not encode; a failed write.
    pub fn append_received(&self, record: &serde_json::Value) -> Result<u64, StoreError> {
        let (done, wait) = mpsc::channel();
        let (seq, _) = self
            .writer
            .submit_received(None, Arc::new(record.clone()), Some(done))
            .map_err(|refused| match refused {
                Refused::Exhausted => StoreError::SequenceExhausted {
                    path: self.core.path.clone(),
                },
                refused => self.not_written(refused.to_string()),
            })?;
        wait.recv()
            .unwrap_or_else(|_| Err(GONE.to_owned()))
            .map_err(|problem| self.not_written(problem))?;
        Ok(seq)
    }

    fn not_written(&self, problem: String) -> StoreError {
        StoreError::NotWritten {
            path: self.core.path.clone(),
            problem,
        }
    }

    /// The last received sequence number given out (0 before the first).
    ///
    /// # Errors
    /// A failed read.
    pub fn last_received_seq(&self) -> Result<u64, StoreError> {
        self.core.last_received_seq()
    }

    /// How many batches and direct writes were made durable through this store (and its
    /// clones) since it was opened: for tests and benchmarks of group commit.
    pub fn commits(&self) -> u64 {
        self.core.commits.load(Ordering::Relaxed)
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
        self.core
            .log
            .read(after_seq, limit)?
            .into_iter()
            .map(|(seq, json)| Ok((seq, decode(&RECEIVED, seq, &json)?)))
            .collect()
    }

    /// How many received records are stored.
    ///
    /// # Errors
    /// A failed read.
    pub fn received_count(&self) -> Result<u64, StoreError> {
        Ok(self.core.log.count())
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
        let out = self.core.write(f)?;
        self.core.commits.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    /// Runs `f` in one read transaction.
    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let run = || f(&self.core.db.begin_read()?);
        run().map_err(|source| self.core.failed(source))
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
}

impl Core {
    /// Runs `f` in one write transaction and commits it; durable when this returns.
    fn write<T>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let run = || -> Result<T, redb::Error> {
            let tx = self.db.begin_write()?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        };
        run().map_err(|source| self.failed(source))
    }

    /// The last received sequence number given out: the log's last, or an older store's
    /// record of it.
    fn last_received_seq(&self) -> Result<u64, StoreError> {
        let run = || -> Result<u64, redb::Error> {
            let tx = self.db.begin_read()?;
            Ok(tx
                .open_table(META)?
                .get(LAST_SEQ)?
                .map_or(0, |seq| seq.value()))
        };
        let recorded = run().map_err(|source| self.failed(source))?;
        Ok(recorded.max(self.log.last_seq()))
    }

    /// Moves the received records of a store written before the log into the log (those
    /// the log does not hold yet, in pages), then empties the database's table. A crash
    /// in between leaves records in both, and the next open only empties the table.
    fn move_received_to_log(&self) -> Result<(), StoreError> {
        const PAGE: usize = 10_000;
        let mut after = self.log.last_seq();
        let mut frames = Vec::new();
        loop {
            frames.clear();
            let mut page = |tx: &redb::ReadTransaction| -> Result<(usize, u64), redb::Error> {
                let table = tx.open_table(RECEIVED)?;
                let (mut n, mut last) = (0, after);
                for entry in table.range((Excluded(after), Unbounded))?.take(PAGE) {
                    let (seq, json) = entry?;
                    let json = json.value();
                    log::frame(&mut frames, seq.value(), |out| {
                        out.extend_from_slice(json);
                        Ok(())
                    })
                    .map_err(|e| redb::Error::Io(std::io::Error::other(e)))?;
                    (n, last) = (n + 1, seq.value());
                }
                Ok((n, last))
            };
            let (n, last) = self
                .db
                .begin_read()
                .map_err(redb::Error::from)
                .and_then(|tx| page(&tx))
                .map_err(|source| self.failed(source))?;
            if n == 0 {
                break;
            }
            self.log.append(&frames)?;
            tracing::info!(target: "x_sim", "store {}: moved {n} received records (up to {last}) to {}", self.path.display(), self.log.path().display());
            after = last;
        }
        let emptied = |tx: &WriteTransaction| -> Result<bool, redb::Error> {
            let mut table = tx.open_table(RECEIVED)?;
            if table.is_empty()? {
                return Ok(false);
            }
            table.retain(|_, _| false)?;
            Ok(true)
        };
        let tx = self.db.begin_write().map_err(|e| self.failed(e.into()))?;
        if emptied(&tx).map_err(|e| self.failed(e))? {
            tx.commit().map_err(|e| self.failed(e.into()))?;
        } else {
            tx.abort().map_err(|e| self.failed(e.into()))?;
        }
        Ok(())
    }

    /// Writes one batch of the writer: the received records' `frames` to the log, then
    /// `writes` in order in one committed transaction. Durable when this returns.
    fn commit<'a>(
        &self,
        frames: &[u8],
        writes: impl Iterator<Item = &'a Write>,
    ) -> Result<(), StoreError> {
        if !frames.is_empty() {
            self.log.append(frames)?;
        }
        let mut writes = writes.peekable();
        if writes.peek().is_some() {
            self.apply(writes)?;
        }
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Applies `writes` in order, all in one committed transaction.
    fn apply<'a>(&self, writes: impl Iterator<Item = &'a Write>) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut violations = None;
            let mut state = None;
            let mut last_offline = None;
            let mut devices = None;
            let mut products = None;
            for write in writes {
                match write {
                    Write::Violation {
                        device,
                        seq,
                        json,
                        oldest_kept,
                    } => {
                        let table = opened(&mut violations, tx, VIOLATIONS)?;
                        let device = device.as_bytes();
                        table.insert((device, *seq), json.as_slice())?;
                        table.retain_in((device, 0)..(device, *oldest_kept), |_, _| false)?;
                    }
                    Write::State { map, key, json } => {
                        opened(&mut state, tx, STATE)?
                            .insert((map.as_bytes(), key.as_bytes()), json.as_slice())?;
                    }
                    Write::LastOffline { device, secs } => {
                        opened(&mut last_offline, tx, LAST_OFFLINE)?
                            .insert(device.as_bytes(), *secs)?;
                    }
                    Write::Device { key, json } => {
                        opened(&mut devices, tx, DEVICES)?
                            .insert(key.as_bytes(), json.as_slice())?;
                    }
                    Write::Product { key, json } => {
                        opened(&mut products, tx, PRODUCTS)?
                            .insert(key.as_bytes(), json.as_slice())?;
                    }
                }
            }
            Ok(())
        })
    }

    fn failed(&self, source: redb::Error) -> StoreError {
        StoreError::Database {
            path: self.path.clone(),
            source,
        }
    }
}

/// The table `definition` of `tx`, opened on first use.
fn opened<'s, 'txn, K: Key + 'static, V: Value + 'static>(
    slot: &'s mut Option<redb::Table<'txn, K, V>>,
    tx: &'txn WriteTransaction,
    definition: TableDefinition<K, V>,
) -> Result<&'s mut redb::Table<'txn, K, V>, redb::Error> {
    let table = match slot.take() {
        Some(table) => table,
        None => tx.open_table(definition)?,
    };
    Ok(slot.insert(table))
}

/// A queued write's place in the writer's order, to wait for its commit with
/// [`Durable::wait`]. Dropping it is fine when nothing waits for the write.
///
/// Writes are numbered as they are queued and committed in that order, in batches of
/// consecutive numbers: waiting for one is waiting until the writer has finished the batch
/// that holds it, and then looking whether that batch failed. Nothing is allocated per
/// write, and the writer wakes a waiter once per commit, not once per write.
#[derive(Debug)]
pub struct Durable {
    ticket: u64,
    commits: Arc<Commits>,
}

/// What the writer has finished: every write numbered up to `through` (committed or
/// failed), and the recent failed batches with their reason.
#[derive(Debug)]
struct Commits {
    through: watch::Sender<u64>,
    failed: Mutex<VecDeque<(RangeInclusive<u64>, String)>>,
}

/// How many failed batches are remembered for [`Durable::wait`] (an answer waits for its
/// writes within moments, long before this many commits fail).
const FAILURES_KEPT: usize = 1024;

impl Commits {
    fn new() -> Self {
        Self {
            through: watch::Sender::new(0),
            failed: Mutex::default(),
        }
    }

    /// The writes `tickets` failed: reported to their waiters once their batch is
    /// finished (which may have written the others).
    fn refused(&self, tickets: RangeInclusive<u64>, reason: String) {
        let mut failed = lock(&self.failed);
        if failed.len() == FAILURES_KEPT {
            failed.pop_front();
        }
        failed.push_back((tickets, reason));
    }

    /// The writer finished the batch `tickets`, with `result`.
    fn finished(&self, tickets: RangeInclusive<u64>, result: &Result<(), String>) {
        if let Err(reason) = result {
            self.refused(tickets.clone(), reason.clone());
        }
        self.through.send_replace(*tickets.end());
    }
}

impl Durable {
    /// Waits until the write is committed: `Ok` then, `Err` with the reason when its
    /// commit failed or the writer is gone.
    ///
    /// # Errors
    /// The writer's reason.
    pub async fn wait(self) -> Result<(), String> {
        let mut through = self.commits.through.subscribe();
        // The sender lives as long as this handle; the writer's exit finishes every ticket.
        let _ = through.wait_for(|t| *t >= self.ticket).await;
        match lock(&self.commits.failed)
            .iter()
            .find(|(tickets, _)| tickets.contains(&self.ticket))
        {
            Some((_, reason)) => Err(reason.clone()),
            None => Ok(()),
        }
    }

    /// A write that failed before it was queued (its record did not encode).
    pub fn failed(reason: String) -> Self {
        let commits = Commits::new();
        commits.finished(1..=1, &Err(reason));
        Self {
            ticket: 1,
            commits: Arc::new(commits),
        }
    }

    /// Whether the write is finished (committed or failed) already.
    pub fn is_finished(&self) -> bool {
        *self.commits.through.borrow() >= self.ticket
    }
}

/// How many queued writes may wait for the writer before [`Store::room`] holds producers
/// back.
pub const WRITER_QUEUE: usize = 4096;

/// A batch of at least this many writes waits [`LINGER`] for more before its commit.
const LINGER_FROM: usize = 8;

/// How long a batch under load waits for more writes.
const LINGER: Duration = Duration::from_millis(2);

/// One database write for the writer thread, encoded by the caller (on its own thread, so
/// that the writer only writes). Encoded buffers may hold secrets and are wiped when
/// dropped. (Received records go to the log instead: [`Store::queue_received`].)
pub enum Write {
    /// A violation of a device (see [`Store::append_violation`]).
    Violation {
        /// `OpenID/ProductID/NodeEui`.
        device: String,
        /// Its number among the device's violations.
        seq: u64,
        /// Its JSON.
        json: Zeroizing<Vec<u8>>,
        /// The device's violations below this number are removed.
        oldest_kept: u64,
    },
    /// A state map entry (see [`Store::put_state`]).
    State {
        /// The map.
        map: String,
        /// The key.
        key: String,
        /// The value's JSON.
        json: Zeroizing<Vec<u8>>,
    },
    /// A device's last offline time (see [`Store::set_last_offline`]).
    LastOffline {
        /// `OpenID/ProductID/NodeEui`.
        device: String,
        /// Unix seconds.
        secs: u64,
    },
    /// A device record (see [`Store::put_device`]).
    Device {
        /// `ProductID/NodeEui`.
        key: String,
        /// Its record's JSON.
        json: Zeroizing<Vec<u8>>,
    },
    /// A product record (see [`Store::put_product`]).
    Product {
        /// ProductID.
        key: String,
        /// Its record's JSON.
        json: Zeroizing<Vec<u8>>,
    },
}

impl fmt::Debug for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Records may hold secrets (a device's DeviceSecret): only what they are is shown.
        let what = match self {
            Write::Violation { device, seq, .. } => format!("violation {seq} of {device}"),
            Write::State { map, key, .. } => format!("state {map}/{key}"),
            Write::LastOffline { device, .. } => format!("last offline of {device}"),
            Write::Device { key, .. } => format!("device {key}"),
            Write::Product { key, .. } => format!("product {key}"),
        };
        f.write_str(&what)
    }
}

impl Write {
    /// Violation `seq` of `device`, removing the device's violations below `oldest_kept`.
    ///
    /// # Errors
    /// The record does not encode.
    pub fn violation(
        device: &str,
        seq: u64,
        record: &impl Serialize,
        oldest_kept: u64,
    ) -> Result<Self, StoreError> {
        Ok(Self::Violation {
            json: encode(&VIOLATIONS, format_args!("{device}/{seq}"), record)?,
            device: device.to_owned(),
            seq,
            oldest_kept,
        })
    }

    /// `key` of the state map `map` set to `value`.
    ///
    /// # Errors
    /// The value does not encode.
    pub fn state(map: &str, key: &str, value: &serde_json::Value) -> Result<Self, StoreError> {
        Ok(Self::State {
            json: encode(&STATE, format_args!("{map}/{key}"), value)?,
            map: map.to_owned(),
            key: key.to_owned(),
        })
    }

    /// When `device` (`OpenID/ProductID/NodeEui`) last went offline, in Unix seconds.
    pub fn last_offline(device: &str, secs: u64) -> Self {
        Self::LastOffline {
            device: device.to_owned(),
            secs,
        }
    }

    /// A device, stored under `ProductID/NodeEui`.
    ///
    /// # Errors
    /// The record does not encode.
    pub fn device(d: &Device) -> Result<Self, StoreError> {
        let key = format!("{}/{}", d.product_id, d.node_eui);
        Ok(Self::Device {
            json: encode(&DEVICES, &key, &DeviceRecord::from(d))?,
            key,
        })
    }

    /// A product, stored under its ProductID.
    ///
    /// # Errors
    /// The record does not encode.
    pub fn product(p: &Product) -> Result<Self, StoreError> {
        let key = p.product_id.to_string();
        Ok(Self::Product {
            json: encode(&PRODUCTS, &key, &ProductRecord::from(p))?,
            key,
        })
    }
}

/// A blocking caller waiting for its write ([`Store::write_durably`],
/// [`Store::append_received`]), told the write's result.
type Waiter = mpsc::Sender<Result<(), String>>;

/// A received record, encoded by the writer thread when it writes the record's batch.
pub trait ReceivedRecord: Send + Sync {
    /// Writes the record's JSON to `out`.
    ///
    /// # Errors
    /// Why it does not encode; the record is not stored then, and its [`Durable`] says so.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), String>;
}

impl ReceivedRecord for serde_json::Value {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), String> {
        serde_json::to_writer(out, self).map_err(|e| e.to_string())
    }
}

/// A write on its way to the store, and who waits for it.
struct Job {
    work: Work,
    /// A blocking caller waiting ([`Store::write_durably`], [`Store::append_received`]);
    /// async ones wait on the ticket ([`Durable`]).
    done: Option<Waiter>,
}

/// What a [`Job`] writes.
enum Work {
    /// To the database.
    Database(Write),
    /// To the received log.
    Received {
        seq: u64,
        record: Arc<dyn ReceivedRecord>,
    },
}

/// The writer thread's handle. Dropping it (with the last [`Store`] clone) lets the thread
/// commit what it holds and waits for it.
struct Writer {
    queue: Arc<Queue>,
    /// What the writer has finished, for [`Durable::wait`].
    commits: Arc<Commits>,
    thread: Option<JoinHandle<()>>,
    /// Writes queued and not yet committed.
    waiting: Arc<AtomicUsize>,
    /// Notified after each commit, for [`Store::room`].
    room: Arc<Notify>,
}

/// The writes waiting for the writer thread. A vector under a mutex, which the writer
/// empties in one go, rather than a channel: no allocation per write (a channel's blocks
/// are allocated by the senders, on the async workers, and freed by the writer thread),
/// and a batch is taken with one lock.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    /// Signalled when a write comes to an empty queue, or the queue closes.
    ready: Condvar,
}

#[derive(Default)]
struct QueueState {
    jobs: Vec<Job>,
    /// The highest received sequence number queued (or stored when the store opened).
    last_seq: u64,
    /// The ticket of the last write queued (the first is 1).
    last_ticket: u64,
    /// No more writes come: the writer commits what it holds and ends.
    closed: bool,
}

impl Writer {
    fn start(core: Arc<Core>, last_seq: u64) -> Result<Self, std::io::Error> {
        let queue = Arc::new(Queue::default());
        lock(&queue.state).last_seq = last_seq;
        let commits = Arc::new(Commits::new());
        let waiting = Arc::new(AtomicUsize::new(0));
        let room = Arc::new(Notify::new());
        let (q, c, w, r) = (
            queue.clone(),
            commits.clone(),
            waiting.clone(),
            room.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("x-sim-store".into())
            .spawn(move || {
                // Whatever ends the thread (its queue closed, a panic), every write still
                // waiting is finished as failed, so that nobody waits for it forever.
                let _gone = Gone(&q, &c);
                write_all(&core, &q, &c, &w, &r);
            })?;
        Ok(Self {
            queue,
            commits,
            thread: Some(thread),
            waiting,
            room,
        })
    }

    /// Queues one database write and returns its ticket; never blocks (the lock is held
    /// only to push).
    fn submit(&self, write: Write, done: Option<Waiter>) -> u64 {
        let mut state = lock(&self.queue.state);
        if state.closed {
            state.last_ticket += 1;
            let ticket = state.last_ticket;
            drop(state);
            let gone = Err(GONE.to_owned());
            if let Some(done) = done {
                let _ = done.send(gone.clone());
            }
            self.commits.finished(ticket..=ticket, &gone);
            return ticket;
        }
        let work = Work::Database(write);
        self.push(state, Job { work, done })
    }

    /// Queues received `record` under `seq` (`None`: the next number) and returns its
    /// sequence number and ticket; never blocks.
    ///
    /// # Errors
    /// The record is refused (out of order, numbers exhausted, the writer gone); nothing
    /// is queued then.
    fn submit_received(
        &self,
        seq: Option<u64>,
        record: Arc<dyn ReceivedRecord>,
        done: Option<Waiter>,
    ) -> Result<(u64, u64), Refused> {
        let mut state = lock(&self.queue.state);
        if state.closed {
            return Err(Refused::Gone);
        }
        let seq = match seq {
            Some(seq) if seq > state.last_seq => seq,
            Some(seq) => {
                return Err(Refused::OutOfOrder {
                    seq,
                    last: state.last_seq,
                });
            }
            None => state.last_seq.checked_add(1).ok_or(Refused::Exhausted)?,
        };
        state.last_seq = seq;
        let work = Work::Received { seq, record };
        Ok((seq, self.push(state, Job { work, done })))
    }

    /// Pushes `job` to the open queue with the next ticket, which it returns, and wakes
    /// the writer if it waits.
    fn push(&self, mut state: MutexGuard<'_, QueueState>, job: Job) -> u64 {
        state.last_ticket += 1;
        let ticket = state.last_ticket;
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let wake = state.jobs.is_empty();
        state.jobs.push(job);
        drop(state);
        // The writer waits only on an empty queue.
        if wake {
            self.queue.ready.notify_one();
        }
        ticket
    }
}

/// Why a received record was not queued.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("received record {seq} is not above {last}, the last sequence number queued")]
    OutOfOrder { seq: u64, last: u64 },
    #[error("received sequence numbers are exhausted")]
    Exhausted,
    #[error("{GONE}")]
    Gone,
}

/// What a write is told when the writer is gone.
const GONE: &str = "the store writer is gone";

/// Closes the queue when the writer thread ends (also by a panic) and finishes every write
/// still queued as failed.
struct Gone<'a>(&'a Queue, &'a Commits);

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        state.closed = true;
        let last = state.last_ticket;
        let jobs = std::mem::take(&mut state.jobs);
        drop(state);
        let gone = Err(GONE.to_owned());
        for job in jobs {
            if let Some(done) = job.done {
                let _ = done.send(gone.clone());
            }
        }
        if *self.1.through.borrow() < last {
            let first = *self.1.through.borrow() + 1;
            self.1.finished(first..=last, &gone);
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        lock(&self.queue.state).closed = true;
        self.queue.ready.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Locks, ignoring poisoning (a panicking holder leaves the queue usable).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The writer's loop, until the queue closes and is empty: takes every write waiting,
/// writes them as one batch in the order they came and reports each.
fn write_all(core: &Core, queue: &Queue, commits: &Commits, waiting: &AtomicUsize, room: &Notify) {
    // Moves every write waiting to the batch; whether the queue is closed (and so now
    // empty), and the ticket of the last write taken.
    let take = |batch: &mut Vec<Job>, wait: bool| -> (bool, u64) {
        let mut state = lock(&queue.state);
        while wait && state.jobs.is_empty() && !state.closed {
            state = queue
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        batch.append(&mut state.jobs);
        (state.closed, state.last_ticket)
    };
    // Buffers for the thread's life: a batch of hundreds of writes is not grown from empty
    // (and freed) at every commit.
    let mut batch: Vec<Job> = Vec::with_capacity(WRITER_QUEUE);
    let mut frames: Vec<u8> = Vec::new();
    let mut refused: Vec<(usize, String)> = Vec::new();
    loop {
        let (mut done, mut taken) = take(&mut batch, true);
        if batch.is_empty() {
            if done {
                return;
            }
            continue;
        }
        // Under load (many writes came during the last commit), wait a moment for more:
        // fewer, larger commits cost less per write (PostgreSQL's commit_delay). A lone
        // write is committed at once. It sleeps rather than waiting on the queue, so that
        // the writes arriving meanwhile do not wake it one by one.
        if batch.len() >= LINGER_FROM && !done {
            std::thread::sleep(LINGER);
            (done, taken) = take(&mut batch, false);
        }
        let delay = core.commit_delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        // The received records, framed for the log; one that does not encode is left out
        // and fails alone.
        for (i, job) in batch.iter().enumerate() {
            if let Work::Received { seq, record } = &job.work
                && let Err(why) = log::frame(&mut frames, *seq, |out| record.encode(out))
            {
                let why = format!("received record {seq} does not encode: {why}");
                tracing::error!(target: "x_sim", "{why}");
                refused.push((i, why));
            }
        }
        let writes = batch.iter().filter_map(|job| match &job.work {
            Work::Database(write) => Some(write),
            Work::Received { .. } => None,
        });
        let result = core.commit(&frames, writes).map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!(target: "x_sim", "cannot store {} writes: {e}", batch.len());
        }
        frames.clear();
        waiting.fetch_sub(batch.len(), Ordering::AcqRel);
        room.notify_waiters();
        let first = taken + 1 - batch.len() as u64;
        for (i, why) in &refused {
            commits.refused(first + *i as u64..=first + *i as u64, why.clone());
        }
        commits.finished(first..=taken, &result);
        let mut refused = refused.drain(..).peekable();
        for (i, job) in batch.drain(..).enumerate() {
            let own = match refused.next_if(|(at, _)| *at == i) {
                Some((_, why)) => Err(why),
                None => result.clone(),
            };
            if let Some(done) = job.done {
                let _ = done.send(own);
            }
        }
        if done {
            return;
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Queues received record `seq`.
    fn received(store: &Store, seq: u64) -> Durable {
        store.queue_received(seq, Arc::new(serde_json::json!({ "n": seq })))
    }

    /// Writes queued while the writer is busy share one commit, are applied in the order
    /// they were queued (the last value of a key wins), and each is reported durable.
    #[tokio::test]
    async fn queued_writes_share_a_commit_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("x-sim.redb")).unwrap();
        store.set_commit_delay(Duration::from_millis(300));
        let before = store.commits();
        let mut waiting = vec![received(&store, 1)];
        for seq in 2..=100 {
            waiting.push(received(&store, seq));
        }
        for value in 1..=3 {
            let write = Write::state("config", "d", &serde_json::json!(value)).unwrap();
            waiting.push(store.queue(write));
        }
        waiting.push(store.queue(Write::last_offline("o/p/n", 7)));
        for durable in waiting {
            assert_eq!(durable.wait().await, Ok(()));
        }
        // The first write may have been taken alone, before the others were queued.
        let commits = store.commits() - before;
        assert!(
            (1..=2).contains(&commits),
            "{commits} commits for 104 writes"
        );
        assert_eq!(store.waiting(), 0);
        assert_eq!(store.received_count().unwrap(), 100);
        assert_eq!(store.last_received_seq().unwrap(), 100);
        assert_eq!(
            store.state("config").unwrap(),
            [("d".to_owned(), serde_json::json!(3))]
        );
        assert_eq!(store.last_offline().unwrap(), [("o/p/n".to_owned(), 7)]);
        // Later appends continue after the numbers given out.
        assert_eq!(
            store.append_received(&serde_json::Value::Null).unwrap(),
            101
        );
    }

    /// A record that does not encode fails alone: the others of its batch are stored.
    #[tokio::test]
    async fn a_record_that_does_not_encode_fails_alone() {
        struct Unencodable;
        impl ReceivedRecord for Unencodable {
            fn encode(&self, out: &mut Vec<u8>) -> Result<(), String> {
                out.extend_from_slice(b"{\"half");
                Err("a float that is NaN".into())
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("x-sim.redb")).unwrap();
        store.set_commit_delay(Duration::from_millis(200));
        let first = received(&store, 1);
        let bad = store.queue_received(2, Arc::new(Unencodable));
        let third = received(&store, 3);
        assert_eq!(first.wait().await, Ok(()));
        assert_eq!(
            bad.wait().await,
            Err("received record 2 does not encode: a float that is NaN".to_owned())
        );
        assert_eq!(third.wait().await, Ok(()));
        let stored: Vec<u64> = store.received(0, 10).unwrap().iter().map(|r| r.0).collect();
        assert_eq!(stored, [1, 3]);
    }

    /// The log's records rise: a record numbered at or below one queued before is
    /// refused, saying why, and nothing is written for it.
    #[tokio::test]
    async fn a_record_out_of_order_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("x-sim.redb")).unwrap();
        received(&store, 5).wait().await.unwrap();
        let refused = received(&store, 5);
        assert!(refused.is_finished());
        assert_eq!(
            refused.wait().await,
            Err("received record 5 is not above 5, the last sequence number queued".to_owned())
        );
        assert_eq!(store.received_count().unwrap(), 1);
        assert_eq!(store.append_received(&serde_json::Value::Null).unwrap(), 6);
    }

    /// A violation written through the queue keeps only the device's newest.
    #[test]
    fn queued_violations_drop_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("x-sim.redb")).unwrap();
        for seq in 1..=5 {
            let v = serde_json::json!({ "seq": seq });
            let write = Write::violation("o/p/n", seq, &v, seq.saturating_sub(1).max(1)).unwrap();
            store.write_durably(write).unwrap();
        }
        let kept: Vec<u64> = store.violations().unwrap().iter().map(|v| v.1).collect();
        assert_eq!(kept, [4, 5]);
    }

    /// While the queue is full, [`Store::room`] waits (asynchronously) for the writer; it
    /// returns once a commit has emptied it.
    #[tokio::test]
    async fn room_waits_while_the_queue_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("x-sim.redb")).unwrap();
        store.room().await;
        store.set_commit_delay(Duration::from_millis(800));
        let waiting: Vec<Durable> = (1..=WRITER_QUEUE as u64 + 1)
            .map(|seq| received(&store, seq))
            .collect();
        assert!(store.waiting() >= WRITER_QUEUE);
        let started = std::time::Instant::now();
        assert!(
            tokio::time::timeout(Duration::from_millis(400), store.room())
                .await
                .is_err(),
            "room while {} writes wait",
            store.waiting()
        );
        tokio::time::timeout(Duration::from_secs(30), store.room())
            .await
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(400));
        for durable in waiting {
            assert_eq!(durable.wait().await, Ok(()));
        }
        assert_eq!(store.received_count().unwrap(), WRITER_QUEUE as u64 + 1);
    }

    /// A write waits for the batch that holds it, not for later ones, and a failed write
    /// reports its reason; a store dropped with writes queued commits them first.
    #[tokio::test]
    async fn each_write_waits_for_its_own_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("x-sim.redb")).unwrap();
        let first = received(&store, 1);
        first.wait().await.unwrap();
        store.set_commit_delay(Duration::from_millis(600));
        let second = received(&store, 2);
        assert!(!second.is_finished());
        let started = std::time::Instant::now();
        second.wait().await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(500));
        let failed = Durable::failed("cannot encode".into());
        assert!(failed.is_finished());
        assert_eq!(failed.wait().await, Err("cannot encode".to_owned()));
    }

    /// A queued write shows what it is, never its record (a device's holds its secret).
    #[test]
    fn a_write_never_shows_its_record() {
        let device = Device {
            product_id: "AA30C505".parse().unwrap(),
            node_eui: "PLUG0001".parse().unwrap(),
            secret: "326086233FAB8A96566796551EB1DFF8".parse().unwrap(),
            enabled: true,
        };
        let shown = format!("{:?}", Write::device(&device).unwrap());
        assert_eq!(shown, "device AA30C505/PLUG0001");
    }

    /// Dropping the last handle lets the writer commit what it holds, and frees the file.
    #[test]
    fn dropping_the_store_commits_what_waits_and_frees_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x-sim.redb");
        let store = Store::open(&path).unwrap();
        store.set_commit_delay(Duration::from_millis(100));
        for seq in 1..=10 {
            drop(received(&store, seq));
        }
        drop(store);
        let again = Store::open(&path).unwrap();
        assert_eq!(again.received_count().unwrap(), 10);
    }
}
