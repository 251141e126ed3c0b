//! The simulator's firmware server and OTA task list: uploaded images kept as files under a
//! directory (with a JSON index, so they survive restarts), per product and module OTA
//! targets, the decision to send an OTA notify (HeaderCtrl 9) when a device reports its
//! firmware (HeaderCtrl 8), and the HTTP routes devices download images from (with `Range`
//! support, through tower-http's [`ServeFile`]).
//!
//! On disk, `{dir}/index.json` holds the metadata of every image and every task and is
//! replaced atomically (temporary file, fsync, rename); image bytes live in
//! `{dir}/images/{n}.bin`, named by a counter so that no user-supplied string ever becomes a
//! file name. A re-upload writes a new file, commits the index, then deletes the old file.
//!
//! Downloads can be made to misbehave ([`DownloadFaults`], per image or for every image), and
//! every request an image gets is recorded ([`Firmware::requests`]), both in memory only.

mod faults;

pub use faults::{DEFAULT_CHUNK_SIZE, DownloadFaults, DownloadRequest, FILLER, REQUESTS_PER_IMAGE};

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::header::RANGE;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use tower_http::services::ServeFile;
use x_protocol::ProductId;
use x_protocol::payload::{DEFAULT_MODULE, FirmwareReport, OtaNotify};

/// The `Type` of an HTTP upgrade, the only one MQTT supports.
pub const HTTP_UPGRADE: u8 = 2;

/// The URL path prefix images are served under.
pub const URL_PREFIX: &str = "/firmware";

/// The index file's name inside the firmware directory.
const INDEX_FILE: &str = "index.json";
/// The sub-directory holding image files.
const IMAGES_DIR: &str = "images";
/// The index format this code writes and reads.
const INDEX_FORMAT: u32 = 1;

/// Why a firmware operation failed; every message names the field, value or path at fault.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    /// An input (product id, module, version, file name) is not acceptable.
    #[error("{field} {value:?}: {problem}")]
    Invalid {
        /// The field, as named in [`FirmwareImage`] (`product_id`, `module`, `version`,
        /// `file_name`).
        field: &'static str,
        /// The rejected value.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An upload with no bytes.
    #[error("firmware image {file_name:?} is empty (0 bytes)")]
    EmptyImage {
        /// The file name of the rejected upload.
        file_name: String,
    },
    /// An OTA task names an image that was never uploaded.
    #[error(
        "no firmware image uploaded for product {product_id}, module {module:?}, version {version:?}"
    )]
    NoSuchImage {
        /// The product.
        product_id: String,
        /// The module.
        module: String,
        /// The version.
        version: String,
    },
    /// A file-system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "writing".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The index file is unreadable or inconsistent with the image files.
    #[error("firmware index {path}: {problem}")]
    Index {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

impl FirmwareError {
    fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    fn invalid(field: &'static str, value: &str, problem: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            value: value.to_owned(),
            problem: problem.into(),
        }
    }
}

/// One uploaded firmware image: what an OTA notify tells the device about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareImage {
    /// The product it is for.
    pub product_id: String,
    /// The module it is for ("default" is the device's main firmware).
    pub module: String,
    /// Its software version, compared with the device's `SoftVer` by exact ASCII equality.
    pub version: String,
    /// Its file name (the notify's `firmwareName`, the last segment of its URL).
    pub file_name: String,
    /// Its size in bytes (the notify's `SoftSize`).
    pub size: u64,
    /// Its MD5 as lowercase hex (the notify's `MD5`).
    pub md5: String,
    /// The URL path it is served at: `/firmware/{product}/{module}/{version}/{file_name}`,
    /// each segment percent-encoded except for `A-Z a-z 0-9 - . _ ~`.
    pub path: String,
}

/// An OTA target: devices of `product_id` reporting `module` at any other version are told
/// to upgrade to `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtaTask {
    /// The product.
    pub product_id: String,
    /// The module.
    pub module: String,
    /// The target version (an uploaded image).
    pub version: String,
    /// Which setting of a task this is: a number that grows with every
    /// [`Firmware::set_task`] of the directory (also one setting the same version again), so
    /// that the platform can tell a task set again, whose OTA progress starts over. 0 for a
    /// task of an index written before serials existed.
    #[serde(default)]
    pub serial: u64,
}

/// An image as the index records it: its metadata and the name of its file under `images/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredImage {
    #[serde(flatten)]
    image: FirmwareImage,
    file: String,
}

/// The index file's content.
#[derive(Debug, Serialize, Deserialize)]
struct Index {
    format: u32,
    next_file: u64,
    /// The serial of the next task set (absent in indexes written before serials existed).
    #[serde(default)]
    next_task_serial: u64,
    images: Vec<StoredImage>,
    tasks: Vec<OtaTask>,
}

/// (product, module, version).
type ImageKey = (String, String, String);
/// (product, module).
type TaskKey = (String, String);

#[derive(Debug, Clone, Default)]
struct FirmwareState {
    images: BTreeMap<ImageKey, StoredImage>,
    tasks: BTreeMap<TaskKey, OtaTask>,
    next_file: u64,
    next_task_serial: u64,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    /// The current state; held only to read it or swap in the next one.
    state: Mutex<FirmwareState>,
    /// Held by every update for its whole duration (file writes included), so updates do
    /// not overlap while readers (downloads, notifies) never wait on the disk.
    writer: Mutex<()>,
    /// Random per process, so DownIDs of different runs are unlikely to repeat.
    down_id_seed: u64,
    down_id_counter: AtomicU64,
    /// Download faults in force and the requests each image got.
    faults: Mutex<faults::FaultState>,
    /// Signs the image paths of notify URLs when the HTTP side has a token
    /// ([`Firmware::sign_urls`]).
    signer: std::sync::OnceLock<crate::web::Signer>,
}

/// The firmware store, OTA task list and HTTP server. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Firmware {
    inner: Arc<Inner>,
}

impl fmt::Debug for Firmware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("Firmware")
            .field("dir", &self.inner.dir)
            .field("images", &state.images.len())
            .field("tasks", &state.tasks.len())
            .finish()
    }
}

impl Firmware {
    /// Opens (creating it if missing) the firmware directory `dir` and reloads the images
    /// and tasks recorded there. Leftovers of an interrupted write (temporary files, image
    /// files the index does not reference) are deleted.
    ///
    /// # Errors
    /// [`FirmwareError::Io`] if the directory cannot be created or read;
    /// [`FirmwareError::Index`] if the index is malformed or names an image file that is
    /// missing or has another size than recorded.
    pub fn open(dir: &Path) -> Result<Firmware, FirmwareError> {
        let images_dir = dir.join(IMAGES_DIR);
        fs::create_dir_all(&images_dir)
            .map_err(|e| FirmwareError::io("creating directory", &images_dir, e))?;
        let index_path = dir.join(INDEX_FILE);
        remove_if_exists(&tmp_path(&index_path));
        let state = match fs::read(&index_path) {
            Ok(bytes) => load_index(&index_path, &images_dir, &bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => FirmwareState::default(),
            Err(e) => return Err(FirmwareError::io("reading", &index_path, e)),
        };
        collect_garbage(&images_dir, &state)?;
        Ok(Firmware {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                state: Mutex::new(state),
                writer: Mutex::new(()),
                down_id_seed: RandomState::new().hash_one(dir),
                down_id_counter: AtomicU64::new(0),
                faults: Mutex::default(),
                signer: std::sync::OnceLock::new(),
            }),
        })
    }

    /// From now on, the URL of every notify carries the signature of its image path
    /// (`?sig=...`, [`crate::web::Signer`]), so that devices can download images from an
    /// HTTP side that needs a token they do not have. Set once; later calls are ignored.
    pub fn sign_urls(&self, signer: crate::web::Signer) {
        let _ = self.inner.signer.set(signer);
    }

    /// The directory the images and the index live in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Stores an image for `product_id`/`module`/`version`, replacing any image uploaded
    /// before for the same three. The bytes are on disk (fsync'd) when this returns.
    ///
    /// # Errors
    /// [`FirmwareError::Invalid`] for a malformed product id, or a module, version or file
    /// name that is empty, is `.`, contains `/` or `..`, has characters other than printable
    /// ASCII, or starts or ends with a space; [`FirmwareError::EmptyImage`] for no bytes;
    /// [`FirmwareError::Io`] if the image or the index cannot be written (nothing changes
    /// then).
    pub fn upload(
        &self,
        product_id: &str,
        module: &str,
        version: &str,
        file_name: &str,
        bytes: &[u8],
    ) -> Result<FirmwareImage, FirmwareError> {
        check_product_id(product_id)?;
        check_name("module", module)?;
        check_name("version", version)?;
        check_name("file_name", file_name)?;
        if bytes.is_empty() {
            return Err(FirmwareError::EmptyImage {
                file_name: file_name.to_owned(),
            });
        }
        let image = FirmwareImage {
            product_id: product_id.to_owned(),
            module: module.to_owned(),
            version: version.to_owned(),
            file_name: file_name.to_owned(),
            size: bytes.len() as u64,
            md5: md5_hex(bytes),
            path: url_path(product_id, module, version, file_name),
        };

        let _writer = self.writer();
        let mut next = self.state().clone();
        let file = format!("{}.bin", next.next_file);
        let images_dir = self.inner.dir.join(IMAGES_DIR);
        let file_path = images_dir.join(&file);
        write_atomic(&file_path, bytes)?;

        next.next_file += 1;
        let key = (product_id.to_owned(), module.to_owned(), version.to_owned());
        let replaced = next.images.insert(
            key,
            StoredImage {
                image: image.clone(),
                file,
            },
        );
        if let Err(e) = write_index(&self.inner.dir, &next) {
            remove_if_exists(&file_path);
            return Err(e);
        }
        *self.state() = next;
        if let Some(old) = replaced {
            remove_if_exists(&images_dir.join(old.file));
        }
        tracing::info!(
            product_id,
            module,
            version,
            file_name,
            size = image.size,
            md5 = %image.md5,
            "firmware image stored"
        );
        Ok(image)
    }

    /// The image uploaded for `product_id`/`module`/`version`, if any.
    pub fn image(&self, product_id: &str, module: &str, version: &str) -> Option<FirmwareImage> {
        self.state()
            .images
            .get(&image_key(product_id, module, version))
            .map(|stored| stored.image.clone())
    }

    /// Every uploaded image, ordered by product, module and version.
    pub fn images(&self) -> Vec<FirmwareImage> {
        self.state()
            .images
            .values()
            .map(|stored| stored.image.clone())
            .collect()
    }

    /// Sets the OTA target of `product_id`/`module` to `version` (replacing any earlier
    /// target for the two). The task is on disk when this returns.
    ///
    /// # Errors
    /// [`FirmwareError::Invalid`] for malformed inputs (as [`Firmware::upload`]);
    /// [`FirmwareError::NoSuchImage`] if that version was never uploaded;
    /// [`FirmwareError::Io`] if the index cannot be written (nothing changes then).
    pub fn set_task(
        &self,
        product_id: &str,
        module: &str,
        version: &str,
    ) -> Result<OtaTask, FirmwareError> {
        check_product_id(product_id)?;
        check_name("module", module)?;
        check_name("version", version)?;
        let _writer = self.writer();
        let mut next = self.state().clone();
        if !next
            .images
            .contains_key(&image_key(product_id, module, version))
        {
            return Err(FirmwareError::NoSuchImage {
                product_id: product_id.to_owned(),
                module: module.to_owned(),
                version: version.to_owned(),
            });
        }
        let task = OtaTask {
            product_id: product_id.to_owned(),
            module: module.to_owned(),
            version: version.to_owned(),
            serial: next.next_task_serial.max(1),
        };
        next.next_task_serial = task.serial + 1;
        next.tasks
            .insert((product_id.to_owned(), module.to_owned()), task.clone());
        write_index(&self.inner.dir, &next)?;
        *self.state() = next;
        tracing::info!(
            product_id,
            module,
            version,
            serial = task.serial,
            "OTA task set"
        );
        Ok(task)
    }

    /// Removes the OTA task of `product_id`/`module`, returning it (`None` if there was
    /// none).
    ///
    /// # Errors
    /// [`FirmwareError::Io`] if the index cannot be written (the task stays then).
    pub fn remove_task(
        &self,
        product_id: &str,
        module: &str,
    ) -> Result<Option<OtaTask>, FirmwareError> {
        let key = (product_id.to_owned(), module.to_owned());
        let _writer = self.writer();
        let mut next = self.state().clone();
        let Some(removed) = next.tasks.remove(&key) else {
            return Ok(None);
        };
        write_index(&self.inner.dir, &next)?;
        *self.state() = next;
        tracing::info!(product_id, module, "OTA task removed");
        Ok(Some(removed))
    }

    /// Every OTA task, ordered by product and module.
    pub fn tasks(&self) -> Vec<OtaTask> {
        self.state().tasks.values().cloned().collect()
    }

    /// The platform's answer to a firmware report (HeaderCtrl 8) from a device of
    /// `product_id`: an OTA notify (HeaderCtrl 9) when a task exists for the product and the
    /// report's module (absent = "default") and the reported `SoftVer` is not exactly (ASCII)
    /// the target version; `None` otherwise, and for any upgrade type but 2 (HTTP).
    ///
    /// The notify's `Url` is `base_url` (e.g. `http://127.0.0.1:8080`, a trailing `/` is
    /// ignored) followed by the image's [`FirmwareImage::path`]; `DownID` is fresh for every
    /// notify (8 uppercase hex digits, like the vendor's example); `Module` repeats the
    /// report's module, and is absent for "default".
    pub fn notify_for(
        &self,
        base_url: &str,
        product_id: &str,
        report: &FirmwareReport,
    ) -> Option<OtaNotify> {
        if report.upgrade_type != HTTP_UPGRADE {
            return None;
        }
        let module = report.module.as_deref().unwrap_or(DEFAULT_MODULE);
        let target = self.task(product_id, module)?;
        if target.version == report.soft_ver {
            return None;
        }
        self.task_notify(base_url, product_id, module)
    }

    /// The OTA task of a product's module.
    pub fn task(&self, product_id: &str, module: &str) -> Option<OtaTask> {
        self.state()
            .tasks
            .get(&(product_id.to_owned(), module.to_owned()))
            .cloned()
    }

    /// The OTA notify for the task of a product's module, whatever version the device has
    /// (an OTA pushed now): `None` when there is no task.
    pub fn task_notify(&self, base_url: &str, product_id: &str, module: &str) -> Option<OtaNotify> {
        let image = {
            let state = self.state();
            let task = state
                .tasks
                .get(&(product_id.to_owned(), module.to_owned()))?;
            state
                .images
                .get(&image_key(product_id, module, &task.version))?
                .image
                .clone()
        };
        Some(OtaNotify {
            upgrade_type: HTTP_UPGRADE,
            url: match self.inner.signer.get() {
                Some(signer) => format!(
                    "{}{}?{}={}",
                    base_url.trim_end_matches('/'),
                    image.path,
                    crate::web::SIGNATURE_PARAM,
                    signer.sign(&image.path)
                ),
                None => format!("{}{}", base_url.trim_end_matches('/'), image.path),
            },
            soft_ver: image.version,
            soft_size: image.size,
            md5: image.md5,
            down_id: self.next_down_id(),
            firmware_name: Some(image.file_name),
            module: (module != DEFAULT_MODULE).then(|| module.to_owned()),
        })
    }

    /// The HTTP routes devices download images from:
    /// `GET`/`HEAD /firmware/{product}/{module}/{version}/{file}`, served by tower-http's
    /// [`ServeFile`] (`Content-Length`, `Accept-Ranges: bytes`, `Range` → 206 with
    /// `Content-Range`, an unsatisfiable range → 416, `Last-Modified`). An unknown image is
    /// a 404 with a plain-text body naming it. Merge it into the simulator's router.
    pub fn routes(&self) -> Router {
        Router::new()
            .route(
                "/firmware/{product}/{module}/{version}/{file}",
                get(download),
            )
            .with_state(self.clone())
    }

    /// Makes every `GET` of every image misbehave as `faults` say, until cleared, replaced
    /// or spent ([`DownloadFaults::responses`]). An image's own faults
    /// ([`Firmware::set_image_faults`]) take precedence. In memory only.
    pub fn set_faults(&self, faults: DownloadFaults) {
        tracing::info!(target: "x_sim", ?faults, "firmware download faults set for every image");
        self.fault_state().set_every(Some(faults));
    }

    /// Makes every `GET` of the image `product_id`/`module`/`version` misbehave as `faults`
    /// say (`None`: no faults of its own), until cleared, replaced or spent. The image need
    /// not exist yet: the faults apply once it is uploaded.
    pub fn set_image_faults(
        &self,
        product_id: &str,
        module: &str,
        version: &str,
        faults: Option<DownloadFaults>,
    ) {
        tracing::info!(
            target: "x_sim",
            product_id, module, version, ?faults,
            "firmware download faults set for one image"
        );
        self.fault_state()
            .set_image(image_key(product_id, module, version), faults);
    }

    /// The faults in force for every image, if any.
    pub fn faults(&self) -> Option<DownloadFaults> {
        self.fault_state().every()
    }

    /// The faults in force for one image of its own, if any (not those for every image).
    pub fn image_faults(
        &self,
        product_id: &str,
        module: &str,
        version: &str,
    ) -> Option<DownloadFaults> {
        self.fault_state()
            .image(&image_key(product_id, module, version))
    }

    /// Takes every download fault away: images are served normally again.
    pub fn clear_faults(&self) {
        self.fault_state().clear();
    }

    /// The requests the image `product_id`/`module`/`version` got (`GET` and `HEAD` of its
    /// download URL), oldest first: the newest [`REQUESTS_PER_IMAGE`]. Requests for a file
    /// name that is not the image's are 404s and not recorded.
    pub fn requests(&self, product_id: &str, module: &str, version: &str) -> Vec<DownloadRequest> {
        self.fault_state()
            .requests(&image_key(product_id, module, version))
    }

    /// Forgets the requests of every image.
    pub fn clear_requests(&self) {
        self.fault_state().clear_requests();
    }

    fn fault_state(&self) -> MutexGuard<'_, faults::FaultState> {
        self.inner
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn next_down_id(&self) -> String {
        let n = self.inner.down_id_counter.fetch_add(1, Ordering::Relaxed);
        // Distinct for 2^32 consecutive notifies of one process.
        let id = self.inner.down_id_seed.wrapping_add(n) as u32;
        format!("{id:08X}")
    }

    /// The image file to serve for a download path, if the image exists under that name.
    fn file_for(&self, product: &str, module: &str, version: &str, file: &str) -> Option<PathBuf> {
        let state = self.state();
        let stored = state.images.get(&image_key(product, module, version))?;
        (stored.image.file_name == file).then(|| self.inner.dir.join(IMAGES_DIR).join(&stored.file))
    }

    fn state(&self) -> MutexGuard<'_, FirmwareState> {
        // Every update builds the next state aside and swaps it in whole, so a poisoned
        // lock still holds a consistent state.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn writer(&self) -> MutexGuard<'_, ()> {
        self.inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The download handler: looks the image up, then hands the request to [`ServeFile`], or to
/// the fault injection when faults are in force for a `GET` of it; records the request.
async fn download(
    State(firmware): State<Firmware>,
    UrlPath((product, module, version, file)): UrlPath<(String, String, String, String)>,
    request: Request,
) -> Response {
    let (parts, _body) = request.into_parts();
    let key = image_key(&product, &module, &version);
    let range = parts
        .headers
        .get(RANGE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let mut faults = None;
    // A re-upload may delete the file between the look-up and the open: look up again once.
    for _ in 0..2 {
        let Some(path) = firmware.file_for(&product, &module, &version, &file) else {
            break;
        };
        if faults.is_none() && parts.method == Method::GET {
            faults = firmware.fault_state().take(&key);
        }
        let served = match &faults {
            Some(f) => faults::faulted_response(&path, &parts, f).await,
            None => {
                let mut request = Request::new(Body::empty());
                *request.method_mut() = parts.method.clone();
                *request.uri_mut() = parts.uri.clone();
                *request.headers_mut() = parts.headers.clone();
                ServeFile::new(&path)
                    .try_call(request)
                    .await
                    .map(|r| r.map(Body::new))
            }
        };
        let response = match served {
            Ok(response) => response,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "serving firmware image");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("reading firmware image {product}/{module}/{version}/{file}: {e}\n"),
                )
                    .into_response()
            }
        };
        firmware.fault_state().record(
            key,
            DownloadRequest {
                method: parts.method.to_string(),
                range,
                status: response.status().as_u16(),
                faulted: faults.is_some(),
                at_ms: crate::platform::now_ms(),
            },
        );
        return response;
    }
    (
        StatusCode::NOT_FOUND,
        format!(
            "firmware image not found: product {product:?}, module {module:?}, \
             version {version:?}, file {file:?}\n"
        ),
    )
        .into_response()
}

fn image_key(product_id: &str, module: &str, version: &str) -> ImageKey {
    (product_id.to_owned(), module.to_owned(), version.to_owned())
}

fn check_product_id(value: &str) -> Result<(), FirmwareError> {
    ProductId::new(value)
        .map(drop)
        .map_err(|e| FirmwareError::invalid("product_id", value, e.problem.to_string()))
}

/// Module, version and file name: they become URL path segments and are compared exactly.
fn check_name(field: &'static str, value: &str) -> Result<(), FirmwareError> {
    let problem = if value.is_empty() {
        "must not be empty".to_owned()
    } else if let Some((position, c)) = value
        .chars()
        .enumerate()
        .find(|&(_, c)| !(' '..='~').contains(&c))
    {
        format!("{c:?} at position {position} is not printable ASCII")
    } else if value.contains('/') {
        "must not contain '/'".to_owned()
    } else if value.contains("..") {
        "must not contain \"..\"".to_owned()
    } else if value == "." {
        "must not be \".\"".to_owned()
    } else if value.starts_with(' ') || value.ends_with(' ') {
        // "1.0 " would never equal a device's "1.0": it would upgrade forever.
        "must not start or end with a space".to_owned()
    } else {
        return Ok(());
    };
    Err(FirmwareError::invalid(field, value, problem))
}

fn md5_hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let digest = Md5::digest(bytes);
    let mut hex = String::with_capacity(32);
    for byte in digest.iter() {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

fn url_path(product_id: &str, module: &str, version: &str, file_name: &str) -> String {
    let mut path = URL_PREFIX.to_owned();
    for segment in [product_id, module, version, file_name] {
        path.push('/');
        for byte in segment.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                path.push(char::from(byte));
            } else {
                path.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    path
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FirmwareError> {
    let tmp = tmp_path(path);
    let result = (|| {
        let mut file = File::create(&tmp).map_err(|e| FirmwareError::io("creating", &tmp, e))?;
        file.write_all(bytes)
            .map_err(|e| FirmwareError::io("writing", &tmp, e))?;
        file.sync_all()
            .map_err(|e| FirmwareError::io("syncing", &tmp, e))?;
        drop(file);
        fs::rename(&tmp, path).map_err(|e| FirmwareError::io("renaming into place", path, e))?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))
    })();
    if result.is_err() {
        remove_if_exists(&tmp);
    }
    result
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), FirmwareError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| FirmwareError::io("syncing directory", dir, e))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), FirmwareError> {
    Ok(())
}

fn remove_if_exists(path: &Path) {
    if let Err(e) = fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "could not delete firmware file");
    }
}

fn write_index(dir: &Path, state: &FirmwareState) -> Result<(), FirmwareError> {
    let path = dir.join(INDEX_FILE);
    let index = Index {
        format: INDEX_FORMAT,
        next_file: state.next_file,
        next_task_serial: state.next_task_serial,
        images: state.images.values().cloned().collect(),
        tasks: state.tasks.values().cloned().collect(),
    };
    let mut json = serde_json::to_vec_pretty(&index).map_err(|e| FirmwareError::Index {
        path: path.clone(),
        problem: format!("serializing: {e}"),
    })?;
    json.push(b'\n');
    write_atomic(&path, &json)
}

/// Whether `name` is an image file name this module writes (`{n}.bin`), and its number.
fn image_file_number(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".bin")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn load_index(
    index_path: &Path,
    images_dir: &Path,
    bytes: &[u8],
) -> Result<FirmwareState, FirmwareError> {
    let bad = |problem: String| FirmwareError::Index {
        path: index_path.to_path_buf(),
        problem,
    };
    let index: Index = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if index.format != INDEX_FORMAT {
        return Err(bad(format!(
            "format {} is not supported (expected {INDEX_FORMAT})",
            index.format
        )));
    }
    let mut state = FirmwareState {
        next_file: index.next_file,
        next_task_serial: index.next_task_serial,
        ..FirmwareState::default()
    };
    for mut stored in index.images {
        let image = &mut stored.image;
        let what = format!(
            "image {}/{}/{}",
            image.product_id, image.module, image.version
        );
        check_product_id(&image.product_id)
            .and_then(|()| check_name("module", &image.module))
            .and_then(|()| check_name("version", &image.version))
            .and_then(|()| check_name("file_name", &image.file_name))
            .map_err(|e| bad(format!("{what}: {e}")))?;
        let number = image_file_number(&stored.file).ok_or_else(|| {
            bad(format!(
                "{what}: file {:?} is not an image file name",
                stored.file
            ))
        })?;
        let file_path = images_dir.join(&stored.file);
        let size = fs::metadata(&file_path)
            .map_err(|e| bad(format!("{what}: file {}: {e}", file_path.display())))?
            .len();
        if size != image.size {
            return Err(bad(format!(
                "{what}: file {} has {size} bytes, the index says {}",
                file_path.display(),
                image.size
            )));
        }
        image.path = url_path(
            &image.product_id,
            &image.module,
            &image.version,
            &image.file_name,
        );
        state.next_file = state.next_file.max(number.saturating_add(1));
        let key = image_key(&image.product_id, &image.module, &image.version);
        if state.images.insert(key, stored).is_some() {
            return Err(bad(format!("{what} is listed twice")));
        }
    }
    for task in index.tasks {
        let what = format!("task {}/{}", task.product_id, task.module);
        if !state
            .images
            .contains_key(&image_key(&task.product_id, &task.module, &task.version))
        {
            return Err(bad(format!(
                "{what}: target version {:?} has no image",
                task.version
            )));
        }
        let key = (task.product_id.clone(), task.module.clone());
        state.next_task_serial = state.next_task_serial.max(task.serial.saturating_add(1));
        if state.tasks.insert(key, task).is_some() {
            return Err(bad(format!("{what} is listed twice")));
        }
    }
    Ok(state)
}

/// Deletes image files (and temporary files) the index does not reference: leftovers of a
/// write interrupted before its index commit, or of a replacement interrupted after it.
/// Files this module would not have written are left alone.
fn collect_garbage(images_dir: &Path, state: &FirmwareState) -> Result<(), FirmwareError> {
    let entries = fs::read_dir(images_dir)
        .map_err(|e| FirmwareError::io("reading directory", images_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| FirmwareError::io("reading directory", images_dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let image_name = name.strip_suffix(".tmp").unwrap_or(name);
        if image_file_number(image_name).is_none() {
            continue;
        }
        let referenced =
            name == image_name && state.images.values().any(|stored| stored.file == name);
        if !referenced {
            tracing::info!(file = %entry.path().display(), "deleting unreferenced firmware file");
            remove_if_exists(&entry.path());
        }
    }
    Ok(())
}
