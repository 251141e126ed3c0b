//! The device's state directory: what a device keeps across restarts (the DeviceSecret it
//! learnt, its session, the last login timestamp), written atomically.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::session::Persisted;

/// The file inside the state directory.
const FILE: &str = "device-state.json";

/// Why the state directory could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    /// A file operation failed.
    #[error("state directory {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The state file is not what this SDK writes.
    #[error("state file {path}: {reason} (move it aside to start afresh)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// A directory holding one device's persisted state.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// The state directory at `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// What an earlier run stored; the default when nothing was stored yet.
    ///
    /// # Errors
    /// [`StateDirError::Io`] when the file exists but cannot be read,
    /// [`StateDirError::Corrupt`] when it is not a state file.
    pub fn load(&self) -> Result<Persisted, StateDirError> {
        let path = self.dir.join(FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StateDirError::Corrupt {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Persisted::default()),
            Err(source) => Err(StateDirError::Io { path, source }),
        }
    }

    /// Stores `state`: written to a temporary file, flushed to disk, renamed over the old
    /// file, and the directory flushed, so a power cut leaves the old or the new state, never
    /// a torn one. The file is readable by its owner only (it holds the DeviceSecret).
    ///
    /// # Errors
    /// [`StateDirError::Io`] naming the file that could not be written.
    pub fn store(&self, state: &Persisted) -> Result<(), StateDirError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StateDirError::Io { path, source }
        };
        fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let tmp = self.dir.join(format!("{FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(state).unwrap_or_default();
        {
            let mut options = fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp).map_err(io(&tmp))?;
            file.write_all(&bytes).map_err(io(&tmp))?;
            file.sync_all().map_err(io(&tmp))?;
        }
        let path = self.dir.join(FILE);
        fs::rename(&tmp, &path).map_err(io(&path))?;
        #[cfg(unix)]
        if let Ok(dir) = fs::File::open(&self.dir) {
            // Best effort: the rename is durable once the directory is.
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use x_protocol::SecretString;
    use x_protocol::payload::SessionGrant;

    fn temp() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "x-runtime-state-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn round_trips_and_survives_a_stale_temporary_file() {
        let dir = StateDir::new(temp());
        assert_eq!(dir.load().unwrap(), Persisted::default());
        let state = Persisted {
            device_secret: Some(SecretString::new("326086233FAB8A96566796551EB1DFF8".into())),
            session: Some(SessionGrant {
                session_id: "s1".into(),
                nonce: 7,
            }),
            last_login_timestamp: 1_700_000_000,
            last_offline: 1_700_000_100,
        };
        dir.store(&state).unwrap();
        fs::write(dir.path().join(format!("{FILE}.tmp")), b"torn").unwrap();
        assert_eq!(dir.load().unwrap(), state);
        dir.store(&Persisted::default()).unwrap();
        assert_eq!(dir.load().unwrap(), Persisted::default());
        fs::remove_dir_all(dir.path()).unwrap();
    }

    #[test]
    fn a_corrupt_file_is_a_clear_error() {
        let dir = StateDir::new(temp());
        fs::create_dir_all(dir.path()).unwrap();
        fs::write(dir.path().join(FILE), b"{\"device_secret\": 12").unwrap();
        let err = dir.load().unwrap_err().to_string();
        assert!(
            err.contains("device-state.json") && err.contains("move it aside"),
            "{err}"
        );
        fs::remove_dir_all(dir.path()).unwrap();
    }
}
