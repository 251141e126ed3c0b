//! The received log: every record received from devices, appended in the order it was
//! numbered to one file next to the database, each framed with its length, its sequence
//! number and a CRC-32. Appending a batch is one `write` and one `fdatasync`, with no
//! B-tree to update: the store's hot path under a fleet's load.
//!
//! A crash can leave the last append cut short (or, as pages reach the disk in any order,
//! damaged anywhere after the last complete `fdatasync`). Opening the log finds the first
//! frame that is incomplete or fails its checksum, keeps every byte from there on in a file
//! of its own (`<log>.torn-<offset>`, never deleted) and cuts the log there. Nothing cut
//! was ever reported durable: a batch is reported only after its `fdatasync`.
//!
//! Layout: the 8 bytes [`MAGIC`], then frames of a 16-byte header (payload length u32,
//! sequence number u64, CRC-32 of the sequence number's 8 bytes and the payload u32, all
//! little-endian) and the payload (the record's JSON).

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, ErrorKind, Read, Seek, Write as _};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use super::{StoreError, lock};

/// The first bytes of a received log.
const MAGIC: &[u8; 8] = b"XSIMRCV\x01";

/// A frame's header: payload length, sequence number, checksum.
const HEADER: usize = 16;

/// Appends the frame of record `seq` to `out`, its payload (the record's JSON) written by
/// `encode`. On failure `out` is left as it was.
///
/// # Errors
/// `encode`'s, or a payload over 4 GiB (the header's length is 32 bits).
pub(super) fn frame(
    out: &mut Vec<u8>,
    seq: u64,
    encode: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
) -> Result<(), String> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    let payload = start + HEADER;
    let written = encode(out).and_then(|()| {
        let len = out.len() - payload;
        u32::try_from(len).map_err(|_| format!("{len} bytes, over the log's 4 GiB"))
    });
    let len = match written {
        Ok(len) => len,
        Err(e) => {
            out.truncate(start);
            return Err(e);
        }
    };
    let crc = checksum(seq, &out[payload..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 12].copy_from_slice(&seq.to_le_bytes());
    out[start + 12..payload].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// The CRC-32 of a frame: its sequence number's bytes, then its payload.
fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&seq.to_le_bytes());
    crc.update(payload);
    crc.finalize()
}

/// A frame's header, read.
struct Header {
    len: u32,
    seq: u64,
    crc: u32,
}

impl Header {
    fn parse(bytes: &[u8; HEADER]) -> Self {
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&bytes[4..12]);
        Self {
            len: word(0),
            seq: u64::from_le_bytes(seq),
            crc: word(12),
        }
    }
}

/// Where a durable record is: its sequence number, where its frame starts and its
/// payload's length (so that a read allocates what was written, whatever the file holds
/// now).
#[derive(Clone, Copy)]
struct Entry {
    seq: u64,
    offset: u64,
    len: u32,
}

/// An open received log.
pub(super) struct Log {
    path: PathBuf,
    /// The appending side: the store's writer thread's (and the migration's at open).
    append: Mutex<Appender>,
    /// Every durable record, by sequence number, ascending.
    index: RwLock<Vec<Entry>>,
    /// For reads at an offset, which need no lock.
    reader: File,
}

/// The appending side of a log.
struct Appender {
    file: File,
    /// The length of what is durable.
    len: u64,
    /// Set by a failed append: what the file holds after `len` is unknown then (and after a
    /// failed `fdatasync`, so is whether a later one means anything), so nothing more is
    /// appended until the store is opened again.
    broken: Option<String>,
}

/// What opening a log cut off: the bytes after the last complete record, kept aside.
#[derive(Debug)]
pub(super) struct Cut {
    /// Where the cut bytes began.
    pub offset: u64,
    /// How many bytes were cut.
    pub bytes: u64,
    /// The file that keeps them.
    pub kept_in: PathBuf,
}

impl Log {
    /// Opens the log at `path`, creating it if missing, and cuts off what a crash left
    /// incomplete (see the module's documentation).
    ///
    /// # Errors
    /// [`StoreError::Log`] naming the path: an I/O failure, a file that is not a received
    /// log, or records out of order.
    pub(super) fn open(path: &Path) -> Result<(Log, Option<Cut>), StoreError> {
        let failed = |problem: String| StoreError::Log {
            path: path.to_owned(),
            problem,
        };
        let io = |what: &str, e: io::Error| failed(format!("cannot {what}: {e}"));
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| io("open it", e))?;
        let mut len = file.metadata().map_err(|e| io("read its size", e))?.len();
        let mut start = [0u8; 8];
        let have = usize::try_from(len.min(8)).unwrap_or(8);
        file.read_exact_at(&mut start[..have], 0)
            .map_err(|e| io("read it", e))?;
        if have < MAGIC.len() {
            // New, or its creation was cut short by a crash.
            if start[..have] != MAGIC[..have] {
                return Err(failed("the file is not an x-sim received log".into()));
            }
            file.set_len(0).map_err(|e| io("start it", e))?;
            file.write_all(MAGIC).map_err(|e| io("start it", e))?;
            file.sync_all().map_err(|e| io("start it", e))?;
            sync_dir(path).map_err(|e| io("record it in its directory", e))?;
            len = MAGIC.len() as u64;
        } else if &start != MAGIC {
            return Err(failed("the file is not an x-sim received log".into()));
        }
        let (index, good) = scan(&file, len).map_err(|e| match e {
            Scan::Io(e) => io("read it", e),
            Scan::Order(problem) => failed(problem),
        })?;
        let cut = if good < len {
            Some(cut(path, &file, good, len).map_err(|e| io("cut off an incomplete write", e))?)
        } else {
            None
        };
        let reader = File::open(path).map_err(|e| io("open it for reading", e))?;
        let log = Log {
            path: path.to_owned(),
            append: Mutex::new(Appender {
                file,
                len: good,
                broken: None,
            }),
            index: RwLock::new(index),
            reader,
        };
        Ok((log, cut))
    }

    /// The log file.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `frames` (made by [`frame`], sequence numbers above the last record's) and
    /// makes them durable; they are readable once this returns `Ok`.
    ///
    /// # Errors
    /// [`StoreError::Log`] with the reason; the log takes no more appends then.
    pub(super) fn append(&self, frames: &[u8]) -> Result<(), StoreError> {
        let failed = |problem: String| StoreError::Log {
            path: self.path.clone(),
            problem,
        };
        let mut append = lock(&self.append);
        if let Some(why) = &append.broken {
            return Err(failed(format!(
                "no appends since an earlier failure ({why}); reopen the store"
            )));
        }
        let written = append
            .file
            .write_all(frames)
            .and_then(|()| append.file.sync_data());
        if let Err(e) = written {
            let why = format!("cannot append: {e}");
            // Best effort: what was written of this batch must not be read as records.
            let _ = append.file.set_len(append.len);
            append.broken = Some(why.clone());
            return Err(failed(why));
        }
        let start = append.len;
        append.len += frames.len() as u64;
        drop(append);
        let mut index = self
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut at = 0;
        while at + HEADER <= frames.len() {
            let mut header = [0u8; HEADER];
            header.copy_from_slice(&frames[at..at + HEADER]);
            let header = Header::parse(&header);
            index.push(Entry {
                seq: header.seq,
                offset: start + at as u64,
                len: header.len,
            });
            at += HEADER + header.len as usize;
        }
        Ok(())
    }

    /// The last record's sequence number (0 for none).
    pub(super) fn last_seq(&self) -> u64 {
        self.index().last().map_or(0, |e| e.seq)
    }

    /// How many records the log holds.
    pub(super) fn count(&self) -> u64 {
        self.index().len() as u64
    }

    /// Up to `limit` records numbered above `after`, oldest first, as their JSON.
    ///
    /// # Errors
    /// [`StoreError::Log`] for a failed read; [`StoreError::Record`] (table `received`, the
    /// sequence number as key) for a record whose checksum no longer matches.
    pub(super) fn read(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let wanted: Vec<Entry> = {
            let index = self.index();
            let from = index.partition_point(|e| e.seq <= after);
            index[from..].iter().take(limit).copied().collect()
        };
        let mut out = Vec::with_capacity(wanted.len());
        for Entry { seq, offset, len } in wanted {
            let failed = |e: io::Error| StoreError::Log {
                path: self.path.clone(),
                problem: format!("cannot read record {seq} at offset {offset}: {e}"),
            };
            let mut header = [0u8; HEADER];
            self.reader
                .read_exact_at(&mut header, offset)
                .map_err(failed)?;
            let header = Header::parse(&header);
            let mut payload = vec![0u8; len as usize];
            if header.len == len {
                self.reader
                    .read_exact_at(&mut payload, offset + HEADER as u64)
                    .map_err(failed)?;
            }
            if header.len != len || header.seq != seq || checksum(seq, &payload) != header.crc {
                return Err(StoreError::Record {
                    table: "received".into(),
                    key: seq.to_string(),
                    problem: format!(
                        "the record at offset {offset} of {} was changed on disk (its checksum does not match)",
                        self.path.display()
                    ),
                });
            }
            out.push((seq, payload));
        }
        Ok(out)
    }

    fn index(&self) -> std::sync::RwLockReadGuard<'_, Vec<Entry>> {
        self.index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Why a scan stopped short of a usable log.
enum Scan {
    Io(io::Error),
    /// Checksummed records out of order: not a crash's doing, so nothing is cut.
    Order(String),
}

/// Reads every frame after the magic: the index of the complete ones and where they end
/// (the first incomplete or damaged frame, or `len`).
fn scan(file: &File, len: u64) -> Result<(Vec<Entry>, u64), Scan> {
    // A duplicate handle shares the cursor, which appends do not use (they go to the end).
    let mut handle = file.try_clone().map_err(Scan::Io)?;
    handle
        .seek(io::SeekFrom::Start(MAGIC.len() as u64))
        .map_err(Scan::Io)?;
    let mut reader = BufReader::with_capacity(1 << 20, handle);
    let mut index = Vec::new();
    let mut at = MAGIC.len() as u64;
    let mut payload = Vec::new();
    let mut last = 0u64;
    while len - at >= HEADER as u64 {
        let mut header = [0u8; HEADER];
        reader.read_exact(&mut header).map_err(Scan::Io)?;
        let header = Header::parse(&header);
        let end = at + HEADER as u64 + u64::from(header.len);
        if end > len {
            break;
        }
        payload.resize(header.len as usize, 0);
        reader.read_exact(&mut payload).map_err(Scan::Io)?;
        if checksum(header.seq, &payload) != header.crc {
            break;
        }
        if header.seq <= last {
            return Err(Scan::Order(format!(
                "record {} at offset {at} follows record {last}: records are out of order",
                header.seq
            )));
        }
        last = header.seq;
        index.push(Entry {
            seq: header.seq,
            offset: at,
            len: header.len,
        });
        at = end;
    }
    Ok((index, at))
}

/// Keeps the bytes of `file` from `good` to `len` in a file of their own, then cuts them
/// off.
fn cut(path: &Path, file: &File, good: u64, len: u64) -> io::Result<Cut> {
    let mut tail = vec![0u8; usize::try_from(len - good).map_err(io::Error::other)?];
    file.read_exact_at(&mut tail, good)?;
    let mut n = 1;
    let (kept_in, mut keep) = loop {
        let name = match n {
            1 => format!("{}.torn-{good}", path.display()),
            n => format!("{}.torn-{good}-{n}", path.display()),
        };
        match OpenOptions::new().write(true).create_new(true).open(&name) {
            Ok(keep) => break (PathBuf::from(name), keep),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(e),
        }
    };
    keep.write_all(&tail)?;
    keep.sync_all()?;
    sync_dir(&kept_in)?;
    file.set_len(good)?;
    file.sync_all()?;
    Ok(Cut {
        offset: good,
        bytes: len - good,
        kept_in,
    })
}

/// Makes a file's entry in its directory durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record(out: &mut Vec<u8>, seq: u64) {
        frame(out, seq, |out| {
            out.extend_from_slice(format!("{{\"n\":{seq}}}").as_bytes());
            Ok(())
        })
        .unwrap();
    }

    /// A failed append leaves the log as it was and takes no more appends (what the file
    /// holds after a failed write or `fdatasync` is unknown); the records before it stay
    /// readable, there and after reopening.
    #[test]
    fn a_failed_append_stops_the_log_and_loses_nothing_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("received.log");
        let (log, cut) = Log::open(&path).unwrap();
        assert!(cut.is_none());
        let mut frames = Vec::new();
        record(&mut frames, 1);
        log.append(&frames).unwrap();
        // The disk fails: the appending handle can no longer write.
        lock(&log.append).file = File::open(&path).unwrap();
        frames.clear();
        record(&mut frames, 2);
        let failed = log.append(&frames).unwrap_err().to_string();
        let prefix = format!("received log {}: cannot append: ", path.display());
        assert!(failed.starts_with(&prefix), "{failed}");
        let again = log.append(&frames).unwrap_err().to_string();
        assert!(
            again.contains("no appends since an earlier failure"),
            "{again}"
        );
        assert_eq!(log.count(), 1);
        assert_eq!(log.read(0, 10).unwrap(), [(1, br#"{"n":1}"#.to_vec())]);
        drop(log);
        let (log, cut) = Log::open(&path).unwrap();
        assert!(cut.is_none());
        assert_eq!(log.read(0, 10).unwrap(), [(1, br#"{"n":1}"#.to_vec())]);
    }

    /// A record whose header was changed on disk after it was written is reported, not
    /// read with the length the file now claims.
    #[test]
    fn a_header_changed_on_disk_is_reported_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("received.log");
        let (log, _) = Log::open(&path).unwrap();
        let mut frames = Vec::new();
        record(&mut frames, 1);
        log.append(&frames).unwrap();
        // The length field claims 4 GiB.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&u32::MAX.to_le_bytes(), MAGIC.len() as u64)
            .unwrap();
        let e = log.read(0, 10).unwrap_err().to_string();
        assert!(
            e.starts_with("store table received, key 1: the record at offset 8 of"),
            "{e}"
        );
    }

    /// Complete records out of order are not a crash's doing: the log is refused, naming
    /// where, and left as it is.
    #[test]
    fn records_out_of_order_are_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("received.log");
        let mut bytes = MAGIC.to_vec();
        record(&mut bytes, 2);
        record(&mut bytes, 1);
        std::fs::write(&path, &bytes).unwrap();
        let Err(e) = Log::open(&path) else {
            panic!("opened");
        };
        assert_eq!(
            e.to_string(),
            format!(
                "received log {}: record 1 at offset 31 follows record 2: records are out of order",
                path.display()
            )
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    /// Frames are what the module's documentation says: length, sequence number, CRC-32 of
    /// both, payload, little-endian.
    #[test]
    fn a_frame_is_laid_out_as_documented() {
        let mut out = Vec::new();
        record(&mut out, 7);
        let payload = br#"{"n":7}"#;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&7u64.to_le_bytes());
        crc.update(payload);
        let mut expected = Vec::new();
        expected.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        expected.extend_from_slice(&7u64.to_le_bytes());
        expected.extend_from_slice(&crc.finalize().to_le_bytes());
        expected.extend_from_slice(payload);
        assert_eq!(out, expected);
        // A payload that does not encode leaves the buffer as it was.
        let e = frame(&mut out, 8, |out| {
            out.extend_from_slice(b"{\"half");
            Err("no".into())
        });
        assert_eq!(e, Err("no".to_owned()));
        assert_eq!(out, expected);
    }
}
