//! The durable outbox: reports and events the application handed over, kept in a crash-safe
//! store (one redb file in the state directory) until the platform acks them, bounded in
//! count and bytes with a stated policy when full, and a corrupt file set aside rather than
//! trusted or fatal.
//!
//! Writes are group-committed: [`OutboxWriter`] owns the store on a thread of its own, and
//! every append or removal queued while a commit is under way goes into the next commit,
//! so a burst of reports costs one `fsync`, not one each. An append's reply comes only after
//! its commit: durable before the caller hears "queued".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Entries by sequence number, as JSON.
const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
/// Small values kept beside the entries: the next sequence number, so that numbers (and the
/// MessageIds derived from them) are never reused, even after the outbox was empty.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_SEQ: &str = "next_seq";
/// The store file inside the state directory.
pub const FILE: &str = "outbox.redb";

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A property report; `payload` is the report object.
    Report,
    /// An event; `payload` is its outputs.
    Event(String),
    /// A HEX property report; `payload` is the hex text (HEX products have no history: it is
    /// replayed as a HEX report).
    HexReport,
    /// A HEX event; `payload` is the hex text.
    HexEvent,
}

/// One stored report or event: what it is, its plain payload (stored plain, encrypted when
/// sent, under the key current then), and when it was observed (Unix ms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// What it is.
    pub kind: EntryKind,
    /// The plain payload.
    pub payload: Value,
    /// When it was observed, Unix milliseconds (the platform clock where known).
    pub observed_ms: i64,
    /// Whether it may have been sent live, under the MessageId its sequence number gives
    /// (set before it is stored, so it survives a crash). Such an entry, when sent again,
    /// travels alone under that same MessageId, so that a platform that got the first
    /// send can recognise the second one; the others travel in history batches.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub live: bool,
}

impl Entry {
    /// An entry observed at `observed_ms`, not (yet) sent live.
    pub fn new(kind: EntryKind, payload: Value, observed_ms: i64) -> Self {
        Self {
            kind,
            payload,
            observed_ms,
            live: false,
        }
    }
}

/// What to do when the outbox is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FullPolicy {
    /// Drop the oldest entries to make room (the default: the newest data is worth most).
    #[default]
    DropOldest,
    /// Refuse the new entry.
    RefuseNew,
}

/// Bounds of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    /// The most entries kept.
    pub max_entries: usize,
    /// The most payload bytes kept (the stored JSON).
    pub max_bytes: u64,
    /// What happens when a new entry does not fit.
    pub policy: FullPolicy,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_bytes: 64 * 1024 * 1024,
            policy: FullPolicy::DropOldest,
        }
    }
}

/// Why the outbox failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The store could not be opened, read or written.
    #[error("outbox {}: {reason}", path.display())]
    Store {
        /// The store file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The outbox is full and its policy refuses new entries.
    #[error("outbox full ({entries} entries, {bytes} bytes): new entries are refused")]
    Full {
        /// Entries held.
        entries: usize,
        /// Bytes held.
        bytes: u64,
    },
    /// The writer thread is gone.
    #[error("the outbox writer has stopped")]
    Stopped,
}

/// Why a store file did not open.
#[derive(Debug)]
enum Unopened {
    /// Another holder has it open.
    InUse,
    /// It is not a readable store.
    Damaged(String),
}

impl std::fmt::Display for Unopened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InUse => f.write_str("in use"),
            Self::Damaged(reason) => f.write_str(reason),
        }
    }
}

/// What opening found: a corrupt store is moved aside and a fresh one started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Where the unreadable file now is.
    pub moved_to: PathBuf,
    /// What was wrong with it.
    pub reason: String,
}

/// The outcome of an append: the new entries' sequence numbers, and what the policy dropped
/// to make room (sequence numbers and entries, oldest first).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Appended {
    /// Sequence numbers of the appended entries, in order.
    pub seqs: Vec<u64>,
    /// Entries dropped to make room.
    pub dropped: Vec<(u64, Entry)>,
}

/// The outbox store itself (synchronous; see [`OutboxWriter`] for the group-committing
/// thread).
#[derive(Debug)]
pub struct Outbox {
    db: Database,
    path: PathBuf,
    limits: OutboxLimits,
    /// Sizes of the entries held, by sequence number.
    sizes: BTreeMap<u64, u64>,
    bytes: u64,
    next_seq: u64,
}

impl Outbox {
    /// Opens (or creates) the outbox in `dir`. A file that is not a readable store is moved
    /// aside to `outbox.redb.corrupt-<unix ms>` and a fresh store is started; the
    /// [`Recovered`] says so, for the application to log or report.
    ///
    /// # Errors
    /// [`OutboxError::Store`] when the directory or file cannot be used at all.
    pub fn open(
        dir: &Path,
        limits: OutboxLimits,
        now_ms: i64,
    ) -> Result<(Self, Option<Recovered>), OutboxError> {
        let path = dir.join(FILE);
        let fail = |reason: String| OutboxError::Store {
            path: path.clone(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        // A store still held by a device of this process that is shutting down is given a
        // moment to close; one in use for longer is an error, never "corrupt".
        let until = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let opened = loop {
            match Self::open_file(&path, limits) {
                Err(Unopened::InUse) if std::time::Instant::now() < until => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other,
            }
        };
        match opened {
            Ok(outbox) => Ok((outbox, None)),
            Err(Unopened::InUse) => Err(fail(
                "in use by another device or process (one outbox per state directory)".into(),
            )),
            Err(Unopened::Damaged(reason)) if path.exists() => {
                let moved_to = dir.join(format!("{FILE}.corrupt-{now_ms}"));
                std::fs::rename(&path, &moved_to).map_err(|e| fail(e.to_string()))?;
                tracing::error!(
                    "outbox {} unreadable ({reason}): moved to {}, starting afresh",
                    path.display(),
                    moved_to.display()
                );
                let outbox = Self::open_file(&path, limits).map_err(|e| fail(e.to_string()))?;
                Ok((outbox, Some(Recovered { moved_to, reason })))
            }
            Err(e) => Err(fail(e.to_string())),
        }
    }

    fn open_file(path: &Path, limits: OutboxLimits) -> Result<Self, Unopened> {
        // redb 4 asserts (panics) instead of failing on some truncated files; a damaged
        // store must be an error here, never a crash of the device.
        let opened = std::panic::catch_unwind(|| Database::create(path)).map_err(|_| {
            Unopened::Damaged("the store file is damaged (redb refused it)".to_owned())
        })?;
        let db = match opened {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(Unopened::InUse),
            Err(e) => return Err(Unopened::Damaged(e.to_string())),
        };
        Self::load(db, path, limits).map_err(Unopened::Damaged)
    }

    fn load(db: Database, path: &Path, limits: OutboxLimits) -> Result<Self, String> {
        let mut sizes = BTreeMap::new();
        {
            let tx = db.begin_write().map_err(|e| e.to_string())?;
            tx.open_table(ENTRIES).map_err(|e| e.to_string())?;
            tx.commit().map_err(|e| e.to_string())?;
            let read = db.begin_read().map_err(|e| e.to_string())?;
            let table = read.open_table(ENTRIES).map_err(|e| e.to_string())?;
            for row in table.iter().map_err(|e| e.to_string())? {
                let (seq, value) = row.map_err(|e| e.to_string())?;
                let bytes = value.value();
                // Every entry must decode: a store of entries we cannot read is corrupt.
                serde_json::from_slice::<Entry>(bytes)
                    .map_err(|e| format!("entry {}: {e}", seq.value()))?;
                sizes.insert(seq.value(), bytes.len() as u64);
            }
        }
        let bytes = sizes.values().sum();
        let stored_next = {
            let read = db.begin_read().map_err(|e| e.to_string())?;
            match read.open_table(META) {
                Ok(meta) => meta
                    .get(NEXT_SEQ)
                    .map_err(|e| e.to_string())?
                    .map(|v| v.value()),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(e.to_string()),
            }
        };
        let next_seq = sizes
            .keys()
            .next_back()
            .map_or(1, |s| s + 1)
            .max(stored_next.unwrap_or(1));
        Ok(Self {
            db,
            path: path.to_owned(),
            limits,
            sizes,
            bytes,
            next_seq,
        })
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn err(&self, e: impl std::fmt::Display) -> OutboxError {
        OutboxError::Store {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    /// Appends entries and removes `acked`, in one commit, applying the limits.
    ///
    /// # Errors
    /// [`OutboxError::Full`] under [`FullPolicy::RefuseNew`] (nothing is written), or a
    /// store failure (nothing is written).
    pub fn commit(&mut self, entries: &[Entry], acked: &[u64]) -> Result<Appended, OutboxError> {
        let encoded: Vec<Vec<u8>> = entries
            .iter()
            .map(|e| serde_json::to_vec(e).unwrap_or_default())
            .collect();
        // Which entries make room is decided before anything changes (a refusal changes
        // nothing), walking the oldest without copying the index.
        let acked_bytes: u64 = acked.iter().filter_map(|s| self.sizes.get(s)).sum();
        let acked_count = acked.iter().filter(|s| self.sizes.contains_key(s)).count();
        let mut count = self.sizes.len() - acked_count;
        let mut bytes = self.bytes - acked_bytes;
        let incoming: u64 = encoded.iter().map(|e| e.len() as u64).sum();
        let mut drop = Vec::new();
        let mut oldest = self.sizes.iter().filter(|(s, _)| !acked.contains(s));
        while count + encoded.len() > self.limits.max_entries
            || bytes + incoming > self.limits.max_bytes
        {
            let next = oldest.next();
            let (Some((&seq, &size)), FullPolicy::DropOldest) = (next, self.limits.policy) else {
                return Err(OutboxError::Full {
                    entries: self.sizes.len(),
                    bytes: self.bytes,
                });
            };
            count -= 1;
            bytes -= size;
            drop.push(seq);
        }
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let mut appended = Appended::default();
        {
            let mut table = tx.open_table(ENTRIES).map_err(|e| self.err(e))?;
            for seq in acked {
                table.remove(seq).map_err(|e| self.err(e))?;
            }
            for seq in &drop {
                if let Some(old) = table.remove(seq).map_err(|e| self.err(e))?
                    && let Ok(entry) = serde_json::from_slice::<Entry>(old.value())
                {
                    appended.dropped.push((*seq, entry));
                }
            }
            for (seq, bytes) in (self.next_seq..).zip(encoded.iter()) {
                table
                    .insert(seq, bytes.as_slice())
                    .map_err(|e| self.err(e))?;
                appended.seqs.push(seq);
            }
            if !encoded.is_empty() {
                let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
                meta.insert(NEXT_SEQ, self.next_seq + encoded.len() as u64)
                    .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        // Written: now the index follows.
        for seq in acked.iter().chain(&drop) {
            if let Some(size) = self.sizes.remove(seq) {
                self.bytes -= size;
            }
        }
        for (seq, bytes) in appended.seqs.iter().zip(encoded.iter()) {
            self.sizes.insert(*seq, bytes.len() as u64);
            self.bytes += bytes.len() as u64;
        }
        self.next_seq += encoded.len() as u64;
        Ok(appended)
    }

    /// The oldest `n` entries with their sequence numbers.
    ///
    /// # Errors
    /// A store failure, or an entry that does not decode.
    pub fn oldest(&self, n: usize) -> Result<Vec<(u64, Entry)>, OutboxError> {
        let read = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = read.open_table(ENTRIES).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| self.err(e))?.take(n) {
            let (seq, value) = row.map_err(|e| self.err(e))?;
            let entry = serde_json::from_slice(value.value())
                .map_err(|e| self.err(format!("entry {}: {e}", seq.value())))?;
            out.push((seq.value(), entry));
        }
        Ok(out)
    }
}

/// A request to the writer thread.
enum Job {
    Append(
        Vec<Entry>,
        tokio::sync::oneshot::Sender<Result<Appended, OutboxError>>,
    ),
    Ack(Vec<u64>),
    Oldest(
        usize,
        tokio::sync::oneshot::Sender<Result<Vec<(u64, Entry)>, OutboxError>>,
    ),
    /// Commit what is queued, close the store and end the thread.
    Close(tokio::sync::oneshot::Sender<()>),
}

/// The outbox on a thread of its own, committing everything queued meanwhile in one
/// transaction.
#[derive(Debug, Clone)]
pub struct OutboxWriter {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Append(e, _) => write!(f, "Append({})", e.len()),
            Job::Ack(s) => write!(f, "Ack({})", s.len()),
            Job::Oldest(n, _) => write!(f, "Oldest({n})"),
            Job::Close(_) => f.write_str("Close"),
        }
    }
}

impl OutboxWriter {
    /// Starts the writer thread over `outbox`.
    pub fn spawn(mut outbox: Outbox) -> Self {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("x-runtime-outbox".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    if let Some(closed) = run_batch(&mut outbox, batch) {
                        // The store closes before the closer hears so.
                        drop(outbox);
                        let _ = closed.send(());
                        return;
                    }
                }
            })
            .map_or_else(|e| tracing::error!("outbox writer thread: {e}"), |_| ());
        Self { jobs }
    }

    /// Appends entries; resolves once they are committed.
    ///
    /// # Errors
    /// As [`Outbox::commit`], or [`OutboxError::Stopped`].
    pub async fn append(&self, entries: Vec<Entry>) -> Result<Appended, OutboxError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job::Append(entries, tx))
            .map_err(|_| OutboxError::Stopped)?;
        rx.await.unwrap_or(Err(OutboxError::Stopped))
    }

    /// Commits what is queued and closes the store (the directory can then be opened
    /// again); later calls fail with [`OutboxError::Stopped`].
    pub async fn close(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.jobs.send(Job::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Removes acked entries (in the next commit).
    pub fn ack(&self, seqs: Vec<u64>) {
        let _ = self.jobs.send(Job::Ack(seqs));
    }

    /// The oldest `n` entries, after everything queued before is committed.
    ///
    /// # Errors
    /// As [`Outbox::oldest`], or [`OutboxError::Stopped`].
    pub async fn oldest(&self, n: usize) -> Result<Vec<(u64, Entry)>, OutboxError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job::Oldest(n, tx))
            .map_err(|_| OutboxError::Stopped)?;
        rx.await.unwrap_or(Err(OutboxError::Stopped))
    }
}

/// One group commit: every append and ack of the batch in one transaction, then the
/// answers; reads after it. Returns the closer's reply when the batch asked to close.
fn run_batch(outbox: &mut Outbox, batch: Vec<Job>) -> Option<tokio::sync::oneshot::Sender<()>> {
    let mut entries = Vec::new();
    let mut acked = Vec::new();
    let mut waiters = Vec::new();
    let mut reads = Vec::new();
    let mut close = None;
    for job in batch {
        match job {
            Job::Close(reply) => close = Some(reply),
            Job::Append(e, reply) => {
                waiters.push((entries.len(), e.len(), reply));
                entries.extend(e);
            }
            Job::Ack(seqs) => acked.extend(seqs),
            Job::Oldest(n, reply) => reads.push((n, reply)),
        }
    }
    if !entries.is_empty() || !acked.is_empty() {
        match outbox.commit(&entries, &acked) {
            Ok(appended) => {
                // Every waiter hears its own sequence numbers; drops go to the first.
                let mut dropped = Some(appended.dropped);
                for (start, len, reply) in waiters {
                    let _ = reply.send(Ok(Appended {
                        seqs: appended.seqs[start..start + len].to_vec(),
                        dropped: dropped.take().unwrap_or_default(),
                    }));
                }
            }
            Err(e) => {
                let text = e.to_string();
                for (_, _, reply) in waiters {
                    let _ = reply.send(Err(match &e {
                        OutboxError::Full { entries, bytes } => OutboxError::Full {
                            entries: *entries,
                            bytes: *bytes,
                        },
                        _ => OutboxError::Store {
                            path: outbox.path.clone(),
                            reason: text.clone(),
                        },
                    }));
                }
            }
        }
    }
    for (n, reply) in reads {
        let _ = reply.send(outbox.oldest(n));
    }
    close
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "x-runtime-outbox-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn report(power: i64) -> Entry {
        Entry::new(
            EntryKind::Report,
            json!({ "power": power }),
            1_700_000_000_000 + power,
        )
    }

    #[test]
    fn sequence_numbers_are_never_reused_even_after_the_outbox_was_empty() {
        let dir = temp("never-reused");
        let (mut outbox, _) = Outbox::open(&dir, OutboxLimits::default(), 0).unwrap();
        let first = outbox.commit(&[report(1), report(2)], &[]).unwrap().seqs;
        outbox.commit(&[], &first).unwrap();
        assert!(outbox.is_empty());
        drop(outbox);
        let (mut outbox, _) = Outbox::open(&dir, OutboxLimits::default(), 0).unwrap();
        let next = outbox.commit(&[report(3)], &[]).unwrap().seqs;
        assert_eq!(
            next,
            [first[1] + 1],
            "numbers continue after a reopen of an empty outbox"
        );
    }

    #[test]
    fn the_live_mark_survives_reopening_and_old_entries_without_it_read_as_unmarked() {
        let dir = temp("live-mark");
        let (mut outbox, _) = Outbox::open(&dir, OutboxLimits::default(), 0).unwrap();
        let mut live = report(1);
        live.live = true;
        outbox.commit(&[live.clone(), report(2)], &[]).unwrap();
        drop(outbox);
        let (outbox, _) = Outbox::open(&dir, OutboxLimits::default(), 0).unwrap();
        let held = outbox.oldest(10).unwrap();
        assert_eq!(
            held.iter().map(|(_, e)| e.live).collect::<Vec<_>>(),
            [true, false]
        );
        // An entry written before the mark existed has no "live" field.
        let old: Entry =
            serde_json::from_str(r#"{"kind":"Report","payload":{"power":1},"observed_ms":5}"#)
                .unwrap();
        assert!(!old.live);
    }

    #[test]
    fn entries_survive_reopening_and_leave_when_acked() {
        let dir = temp("reopen");
        let (mut outbox, recovered) = Outbox::open(&dir, OutboxLimits::default(), 0).unwrap();
        assert!(recovered.is_none());
        let a = outbox
            .commit(&[report(1), report(2), report(3)], &[])
            .unwrap();
        assert_eq!(a.seqs, [1, 2, 3]);
        outbox.commit(&[], &[2]).unwrap();
        drop(outbox);
        let (outbox, _) = Outbox::open(&dir, OutboxLimits::default(), 0).unwrap();
        let held = outbox.oldest(10).unwrap();
        assert_eq!(held, vec![(1, report(1)), (3, report(3))]);
        // Sequence numbers are never reused after a restart.
        let mut outbox = outbox;
        assert_eq!(outbox.commit(&[report(4)], &[]).unwrap().seqs, [4]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn full_outboxes_drop_the_oldest_or_refuse_by_policy() {
        let dir = temp("full");
        let limits = OutboxLimits {
            max_entries: 3,
            ..OutboxLimits::default()
        };
        let (mut outbox, _) = Outbox::open(&dir, limits, 0).unwrap();
        outbox
            .commit(&[report(1), report(2), report(3)], &[])
            .unwrap();
        let a = outbox.commit(&[report(4), report(5)], &[]).unwrap();
        assert_eq!(a.dropped, vec![(1, report(1)), (2, report(2))]);
        assert_eq!(outbox.len(), 3);
        drop(outbox);
        let refuse = OutboxLimits {
            policy: FullPolicy::RefuseNew,
            ..limits
        };
        let (mut outbox, _) = Outbox::open(&dir, refuse, 0).unwrap();
        let err = outbox.commit(&[report(6)], &[]).unwrap_err();
        assert!(matches!(err, OutboxError::Full { entries: 3, .. }), "{err}");
        assert_eq!(outbox.len(), 3);
        // Bytes bound too.
        let tiny = OutboxLimits {
            max_entries: 100,
            max_bytes: 200,
            policy: FullPolicy::DropOldest,
        };
        drop(outbox);
        let (mut outbox, _) = Outbox::open(&dir, tiny, 0).unwrap();
        outbox.commit(&[report(7), report(8)], &[]).unwrap();
        assert!(outbox.bytes() <= 200, "{}", outbox.bytes());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_or_truncated_store_is_set_aside_not_trusted() {
        for (name, damage) in [("garbage", 0usize), ("truncated", 1)] {
            let dir = temp(name);
            {
                let (mut outbox, _) = Outbox::open(&dir, OutboxLimits::default(), 0).unwrap();
                outbox.commit(&[report(1)], &[]).unwrap();
            }
            let file = dir.join(FILE);
            if damage == 0 {
                std::fs::write(&file, b"this is not a redb file at all").unwrap();
            } else {
                let bytes = std::fs::read(&file).unwrap();
                std::fs::write(&file, &bytes[..bytes.len() / 3]).unwrap();
            }
            let (mut outbox, recovered) = Outbox::open(&dir, OutboxLimits::default(), 42).unwrap();
            let recovered = recovered.unwrap_or_else(|| panic!("{name}: not detected"));
            assert_eq!(recovered.moved_to, dir.join(format!("{FILE}.corrupt-42")));
            assert!(recovered.moved_to.exists());
            assert!(outbox.is_empty());
            assert_eq!(outbox.commit(&[report(2)], &[]).unwrap().seqs, [1]);
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn a_store_in_use_is_an_error_and_is_not_moved_aside() {
        let dir = temp("in-use");
        let (mut first, _) = Outbox::open(&dir, OutboxLimits::default(), 0).unwrap();
        first.commit(&[report(1)], &[]).unwrap();
        let err = Outbox::open(&dir, OutboxLimits::default(), 0).unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
        assert!(!dir.join(format!("{FILE}.corrupt-0")).exists());
        drop(first);
        let (again, recovered) = Outbox::open(&dir, OutboxLimits::default(), 0).unwrap();
        assert!(recovered.is_none());
        assert_eq!(again.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn concurrent_appends_share_commits_and_each_hears_its_own_seqs() {
        let dir = temp("group");
        let (outbox, _) = Outbox::open(&dir, OutboxLimits::default(), 0).unwrap();
        let writer = OutboxWriter::spawn(outbox);
        let mut tasks = Vec::new();
        for i in 0..50 {
            let w = writer.clone();
            tasks.push(tokio::spawn(async move { w.append(vec![report(i)]).await }));
        }
        let mut seqs = Vec::new();
        for t in tasks {
            let a = t.await.unwrap().unwrap();
            assert_eq!(a.seqs.len(), 1);
            seqs.extend(a.seqs);
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=50).collect::<Vec<u64>>());
        writer.ack((1..=25).collect());
        let left = writer.oldest(100).await.unwrap();
        assert_eq!(left.len(), 25);
        assert_eq!(left[0].0, 26);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
