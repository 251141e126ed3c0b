//! OTA on the device: what an update is (from the platform's notify, HeaderCtrl 9), the
//! installer the application implements, the resumable verified download into the state
//! directory ([`download`]), and the task that runs updates per module ([`manager`]).
//!
//! The session acks every notify with its DownID first. With an installer configured
//! ([`crate::DeviceBuilder::ota`]), the runtime then compares the notify's SoftVer with the
//! module's current version by exact string: equal, nothing to do; different, it downloads
//! the image to `ota/<module>.part` in the state directory (resuming with a `Range` request
//! after a fault, a reconnect or a restart), checks it is exactly SoftSize bytes with the
//! notify's MD5, hands it to the installer, and on success logs in again and reports the new
//! version (a failure leaves the old version, which is reported, and reaches the
//! application as [`OtaEvent::Failed`]).

pub(crate) mod download;
pub(crate) mod manager;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use x_protocol::payload::{DEFAULT_MODULE, OtaNotify};

use crate::backoff::BackoffConfig;

/// One update the platform asked for: the notify's fields, the MD5 in one form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    /// The module (`None`: the default module).
    pub module: Option<String>,
    /// The target software version.
    pub version: String,
    /// Where the image is.
    pub url: String,
    /// Its size in bytes (SoftSize).
    pub size: u64,
    /// Its MD5 as the notify gave it (32 hex digits, or a decimal number).
    pub md5: String,
    /// The notify's DownID.
    pub down_id: String,
    /// The image's file name, if the notify named one.
    pub firmware_name: Option<String>,
}

impl Update {
    /// The update a notify asks for.
    pub fn from_notify(notify: &OtaNotify) -> Self {
        Self {
            module: notify
                .module
                .clone()
                .filter(|m| !m.is_empty() && m != DEFAULT_MODULE),
            version: notify.soft_ver.clone(),
            url: notify.url.clone(),
            size: notify.soft_size,
            md5: notify.md5.clone(),
            down_id: notify.down_id.clone(),
            firmware_name: notify.firmware_name.clone(),
        }
    }

    /// The module's name as the platform spells the default one (`default`).
    pub fn module_name(&self) -> &str {
        self.module.as_deref().unwrap_or(DEFAULT_MODULE)
    }

    /// Whether two updates install the same image (a second notify for it is not a new
    /// update, even with another DownID).
    pub fn same_target(&self, other: &Update) -> bool {
        self.module == other.module
            && self.version == other.version
            && self.url == other.url
            && self.size == other.size
            && match (parse_md5(&self.md5), parse_md5(&other.md5)) {
                // The same digest, whether sent as hex or as a number.
                (Ok(a), Ok(b)) => a == b,
                _ => self.md5.eq_ignore_ascii_case(&other.md5),
            }
    }

    /// A file name for this module's files: module names come from the network, so they
    /// never become paths themselves (hex of the name).
    pub(crate) fn file_key(&self) -> String {
        match &self.module {
            None => DEFAULT_MODULE.to_owned(),
            Some(m) => format!("m-{}", hex::encode(m.as_bytes())),
        }
    }
}

/// Installs a verified image. The application implements it (flash a partition, swap a
/// file, hand it to a bootloader); it runs on a blocking thread.
pub trait Installer: Send + Sync + 'static {
    /// Installs `image` (exactly `update.size` bytes, MD5 verified) for `update.module`.
    ///
    /// # Errors
    /// Why it could not be installed; the old version stays and is reported, and the reason
    /// reaches the application as [`OtaEvent::Failed`] with [`OtaError::Install`].
    fn install(&self, image: &Path, update: &Update) -> Result<(), String>;
}

/// An installer that swaps a file atomically: the image is copied to
/// `<dir>/<module>.bin.tmp`, synced, and renamed over `<dir>/<module>.bin` (`default.bin`
/// for the default module; other module names in hex, as they come from the network).
#[derive(Debug, Clone)]
pub struct FileInstaller {
    dir: PathBuf,
}

impl FileInstaller {
    /// Installs into `dir` (created when missing).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Where `update`'s module is installed.
    pub fn target(&self, update: &Update) -> PathBuf {
        self.dir.join(format!("{}.bin", update.file_key()))
    }
}

impl Installer for FileInstaller {
    fn install(&self, image: &Path, update: &Update) -> Result<(), String> {
        let target = self.target(update);
        let tmp = target.with_extension("bin.tmp");
        let io =
            |what: &str, path: &Path, e: std::io::Error| format!("{what} {}: {e}", path.display());
        fs::create_dir_all(&self.dir).map_err(|e| io("cannot create", &self.dir, e))?;
        fs::copy(image, &tmp).map_err(|e| io("cannot copy the image to", &tmp, e))?;
        fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io("cannot sync", &tmp, e))?;
        fs::rename(&tmp, &target).map_err(|e| io("cannot rename over", &target, e))?;
        if let Ok(d) = fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// How updates are downloaded.
#[derive(Debug, Clone)]
pub struct OtaConfig {
    /// The largest image accepted (default 64 MiB): a notify announcing more fails before
    /// anything is written.
    pub max_image_bytes: u64,
    /// Download attempts per update before it fails (default 8); each resumes where the
    /// last one stopped.
    pub attempts: u32,
    /// The pause between attempts (exponential, capped, jittered).
    pub backoff: BackoffConfig,
    /// How long one request may take to start answering and between two chunks.
    pub stall_timeout: Duration,
    /// A PEM file of CA certificates for `https://` URLs (default: the system's roots).
    pub ca_file: Option<PathBuf>,
}

impl Default for OtaConfig {
    fn default() -> Self {
        Self {
            max_image_bytes: 64 * 1024 * 1024,
            attempts: 8,
            backoff: BackoffConfig {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(60),
                jitter: 0.3,
            },
            stall_timeout: Duration::from_secs(30),
            ca_file: None,
        }
    }
}

/// What happens to an update, for the application ([`crate::Request::Ota`]).
#[derive(Debug, Clone, PartialEq)]
pub enum OtaEvent {
    /// The module already runs the notify's version: nothing to do.
    UpToDate {
        /// The module.
        module: String,
        /// Its version.
        version: String,
    },
    /// A download starts (or resumes from `from` bytes).
    Started {
        /// The module.
        module: String,
        /// The target version.
        version: String,
        /// Bytes already held from an earlier attempt.
        from: u64,
        /// The image size.
        total: u64,
    },
    /// Bytes downloaded so far (about every 5 %).
    Progress {
        /// The module.
        module: String,
        /// Bytes held.
        done: u64,
        /// The image size.
        total: u64,
    },
    /// The image was verified and installed; the device logs in again and reports it.
    Installed {
        /// The module.
        module: String,
        /// The version now running.
        version: String,
    },
    /// The update failed; the old version stays and is reported.
    Failed {
        /// The module.
        module: String,
        /// The version that was not installed.
        version: String,
        /// Why.
        error: OtaError,
    },
}

impl OtaEvent {
    /// The module the event is about.
    pub fn module(&self) -> &str {
        match self {
            Self::UpToDate { module, .. }
            | Self::Started { module, .. }
            | Self::Progress { module, .. }
            | Self::Installed { module, .. }
            | Self::Failed { module, .. } => module,
        }
    }
}

/// Why an update failed. Every message names the size, digest or status at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtaError {
    /// The notify announces an image larger than [`OtaConfig::max_image_bytes`].
    #[error("the image of {size} bytes is larger than the maximum of {max} bytes")]
    TooLarge {
        /// SoftSize.
        size: u64,
        /// The configured maximum.
        max: u64,
    },
    /// The server sent more than SoftSize bytes (cut off at SoftSize; not installed).
    #[error("the server sent more than the announced {size} bytes")]
    Oversize {
        /// SoftSize.
        size: u64,
    },
    /// The body kept ending before SoftSize bytes.
    #[error("the body ended at {got} of {size} bytes, {attempts} attempts")]
    Truncated {
        /// Bytes held.
        got: u64,
        /// SoftSize.
        size: u64,
        /// Attempts made.
        attempts: u32,
    },
    /// The image's MD5 is not the notify's.
    #[error("MD5 {got} of the downloaded image is not the notify's {expected}")]
    Digest {
        /// The notify's MD5.
        expected: String,
        /// The image's.
        got: String,
    },
    /// The notify's MD5 is neither 32 hex digits nor a decimal number.
    #[error("the notify's MD5 {0:?} is neither 32 hex digits nor a decimal number")]
    BadMd5(String),
    /// The URL cannot be downloaded from.
    #[error("URL {url:?}: {reason}")]
    Url {
        /// The notify's URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server refused the download.
    #[error("HTTP {status} for {url}")]
    Http {
        /// The status code.
        status: u16,
        /// The URL.
        url: String,
    },
    /// The network kept failing.
    #[error("download failed after {attempts} attempts: {reason}")]
    Network {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
    /// The state directory could not be written.
    #[error("{0}")]
    Io(String),
    /// The installer failed.
    #[error("installer: {0}")]
    Install(String),
}

/// The MD5 of a notify as 16 bytes: 32 hex digits (either case), or a decimal number read as
/// the digest's 128-bit big-endian value (the vendor document's example shows a number).
///
/// # Errors
/// [`OtaError::BadMd5`].
pub fn parse_md5(text: &str) -> Result<[u8; 16], OtaError> {
    let t = text.trim();
    if t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut out = [0u8; 16];
        hex::decode_to_slice(t, &mut out).map_err(|_| OtaError::BadMd5(text.to_owned()))?;
        return Ok(out);
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        let n: u128 = t.parse().map_err(|_| OtaError::BadMd5(text.to_owned()))?;
        return Ok(n.to_be_bytes());
    }
    Err(OtaError::BadMd5(text.to_owned()))
}

/// Versions an OTA installed, kept in `ota/installed.json`: `(module, from, to)`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Installed {
    pub modules: Vec<InstalledModule>,
}

/// One module's installed version and the one it replaced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct InstalledModule {
    pub module: Option<String>,
    pub from: String,
    pub to: String,
}

impl Installed {
    const FILE: &'static str = "installed.json";

    /// What `dir` records (nothing when unreadable: the burned-in versions stand).
    pub fn load(dir: &Path) -> Self {
        fs::read(dir.join(Self::FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Records that `module` now runs `to` instead of `from`.
    pub fn record(dir: &Path, module: Option<&str>, from: &str, to: &str) -> Result<(), String> {
        let mut all = Self::load(dir);
        all.modules.retain(|m| m.module.as_deref() != module);
        all.modules.push(InstalledModule {
            module: module.map(str::to_owned),
            from: from.to_owned(),
            to: to.to_owned(),
        });
        let bytes = serde_json::to_vec_pretty(&all).map_err(|e| e.to_string())?;
        write_atomic(&dir.join(Self::FILE), &bytes)
    }

    /// The version a module runs given its burned-in one: an installed version while the
    /// burned-in one is still the version it replaced (a simulated device, or firmware
    /// that does not carry its own version), else the burned-in one.
    pub fn effective<'a>(&'a self, module: Option<&str>, burned_in: &'a str) -> &'a str {
        self.modules
            .iter()
            .find(|m| m.module.as_deref() == module && m.from == burned_in)
            .map_or(burned_in, |m| m.to.as_str())
    }
}

/// Writes a file atomically: a temporary file beside it, synced, renamed over it.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(fail)?;
    }
    let mut f = fs::File::create(&tmp).map_err(fail)?;
    f.write_all(bytes).map_err(fail)?;
    f.sync_all().map_err(fail)?;
    fs::rename(&tmp, path).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_is_read_as_hex_or_as_a_decimal_number() {
        let hex = parse_md5("9E107D9D372BB6826BD81D3542A419D6").unwrap();
        assert_eq!(hex, parse_md5("9e107d9d372bb6826bd81d3542a419d6").unwrap());
        let n = u128::from_be_bytes(hex);
        assert_eq!(parse_md5(&n.to_string()).unwrap(), hex);
        for bad in ["", "xyz", "9e107d9d", "1e10", "-5"] {
            assert!(matches!(parse_md5(bad), Err(OtaError::BadMd5(_))), "{bad}");
        }
    }

    #[test]
    fn module_names_never_become_paths() {
        let mut u = Update {
            module: Some("../../etc/passwd".into()),
            version: "2".into(),
            url: "http://x/".into(),
            size: 1,
            md5: String::new(),
            down_id: "d".into(),
            firmware_name: None,
        };
        assert!(!u.file_key().contains('/'));
        assert!(!u.file_key().contains('.'));
        u.module = None;
        assert_eq!(u.file_key(), "default");
    }

    #[test]
    fn an_installed_version_stands_while_the_burned_in_one_is_the_one_it_replaced() {
        let dir = std::env::temp_dir().join(format!("x-ota-installed-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        Installed::record(&dir, Some("wifi"), "1.0", "1.1").unwrap();
        let all = Installed::load(&dir);
        assert_eq!(all.effective(Some("wifi"), "1.0"), "1.1");
        // Reflashed with firmware that carries its own version: that one stands.
        assert_eq!(all.effective(Some("wifi"), "2.0"), "2.0");
        assert_eq!(all.effective(None, "1.0"), "1.0");
        let _ = fs::remove_dir_all(&dir);
    }
}
