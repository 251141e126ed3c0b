//! The task that runs updates: one job per module at a time, started by a notify (or, at
//! start, by a download an earlier run left unfinished), superseded by a notify for another
//! target, and finished by the installer; it tells the device what to report.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::download::{Files, Progress, download};
use super::{Installed, Installer, OtaConfig, OtaError, OtaEvent, Update};
use crate::device::DeviceError;

/// How often one target may fail before notifies for it are ignored (until another target
/// or a restart).
const MAX_FAILURES: u32 = 3;

/// What the OTA task needs from the device it belongs to.
pub(crate) trait OtaHost: Send + Sync + 'static {
    /// The module's current version (`None` when the device reports no such module).
    fn current_version(&self, module: Option<&str>) -> Option<String>;
    /// Tells the application.
    fn emit(&self, event: OtaEvent);
    /// The module runs `version` now: log in again and report it.
    fn installed(&self, module: Option<&str>, version: &str);
    /// An update failed: report the firmware as it is.
    fn report_firmware(&self);
}

/// Hands notifies to the OTA task.
#[derive(Debug, Clone)]
pub(crate) struct OtaHandle {
    tx: mpsc::UnboundedSender<Msg>,
}

impl OtaHandle {
    /// An update the platform asked for (the notify is acked already).
    pub fn notify(&self, update: Update) {
        let _ = self.tx.send(Msg::Notify(update));
    }
}

#[derive(Debug)]
enum Msg {
    Notify(Update),
    Done {
        key: String,
        update: Update,
        from: String,
        result: Result<(), OtaError>,
    },
}

struct Job {
    update: Update,
    installing: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

struct Manager {
    host: Arc<dyn OtaHost>,
    installer: Arc<dyn Installer>,
    config: OtaConfig,
    dir: PathBuf,
    client: reqwest::Client,
    tx: mpsc::UnboundedSender<Msg>,
    jobs: HashMap<String, Job>,
    /// Notifies that came while their module was installing: started after it.
    next: HashMap<String, Update>,
    /// Targets that failed, and how often: a platform that keeps offering an image that
    /// cannot be installed is not followed into a loop.
    failed: HashMap<String, (Update, u32)>,
    seed: u64,
}

/// Starts the OTA task of a device whose state directory is `state_dir`; downloads an
/// earlier run left unfinished resume at once.
pub(crate) fn spawn(
    runtime: &tokio::runtime::Handle,
    host: Arc<dyn OtaHost>,
    installer: Arc<dyn Installer>,
    config: OtaConfig,
    state_dir: PathBuf,
    seed: u64,
) -> Result<OtaHandle, DeviceError> {
    let tls = crate::tls::client_config(config.ca_file.as_deref(), false)?;
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(config.stall_timeout)
        .build()
        .map_err(|e| DeviceError::Tls(format!("OTA HTTP client: {e}")))?;
    let (tx, rx) = mpsc::unbounded_channel();
    let dir = state_dir.join("ota");
    let mut manager = Manager {
        host,
        installer,
        config,
        dir,
        client,
        tx: tx.clone(),
        jobs: HashMap::new(),
        next: HashMap::new(),
        failed: HashMap::new(),
        seed,
    };
    runtime.spawn(async move {
        manager.resume_left();
        manager.run(rx).await;
    });
    Ok(OtaHandle { tx })
}

impl Manager {
    async fn run(&mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::Notify(update) => self.notified(update),
                Msg::Done {
                    key,
                    update,
                    from,
                    result,
                } => self.done(&key, update, &from, result),
            }
        }
        for job in self.jobs.values() {
            job.task.abort();
        }
    }

    /// Downloads a killed or stopped run left: resumed from their partial files.
    fn resume_left(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let is_job = path.extension().is_some_and(|e| e == "json")
                && path.file_name().is_some_and(|n| n != "installed.json");
            if !is_job {
                continue;
            }
            match std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Update>(&b).ok())
            {
                Some(update) => {
                    tracing::info!(module = update.module_name(), version = %update.version, "resuming an OTA download left by an earlier run");
                    self.notified(update);
                }
                None => {
                    tracing::warn!("unreadable OTA job {} removed", path.display());
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }

    fn notified(&mut self, update: Update) {
        let key = update.file_key();
        let module = update.module_name().to_owned();
        let current = self.host.current_version(update.module.as_deref());
        if current.as_deref() == Some(update.version.as_str()) {
            tracing::info!(module, version = %update.version, "OTA notify for the version running: nothing to do");
            // The platform's target is what runs: an update to something else is off.
            match self.jobs.get(&key) {
                Some(job) if !job.installing.load(Ordering::SeqCst) => {
                    tracing::info!(module, superseded = %job.update.version, "the running update is called off");
                    job.task.abort();
                    Files::of(&self.dir, &job.update).remove();
                    self.jobs.remove(&key);
                }
                Some(_) => {}
                None => Files::of(&self.dir, &update).remove(),
            }
            self.host.emit(OtaEvent::UpToDate {
                module,
                version: update.version,
            });
            return;
        }
        if let Some((target, count)) = self.failed.get(&key)
            && target.same_target(&update)
            && *count >= MAX_FAILURES
        {
            tracing::warn!(module, version = %update.version, failures = count, "OTA notify for an update that failed {count} times: ignored until another target or a restart");
            return;
        }
        if let Some(job) = self.jobs.get(&key) {
            if job.update.same_target(&update) {
                tracing::info!(module, version = %update.version, "OTA notify for the update already running: ignored");
                return;
            }
            if job.installing.load(Ordering::SeqCst) {
                tracing::info!(module, version = %update.version, "OTA notify while installing: it runs next");
                self.next.insert(key, update);
                return;
            }
            tracing::info!(module, from = %job.update.version, to = %update.version, "OTA notify for another target: the running update is superseded");
            job.task.abort();
            Files::of(&self.dir, &job.update).remove();
            self.jobs.remove(&key);
        }
        self.start(key, update, current.unwrap_or_default());
    }

    fn start(&mut self, key: String, update: Update, from: String) {
        let files = Files::of(&self.dir, &update);
        let installing = Arc::new(AtomicBool::new(false));
        let (client, config, installer, host, tx) = (
            self.client.clone(),
            self.config.clone(),
            self.installer.clone(),
            self.host.clone(),
            self.tx.clone(),
        );
        self.seed = self
            .seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let seed = self.seed;
        let flag = installing.clone();
        let job_update = update.clone();
        let job_key = key.clone();
        let task = tokio::spawn(async move {
            let mut progress = Emit {
                host,
                module: job_update.module_name().to_owned(),
                version: job_update.version.clone(),
            };
            let mut result =
                download(&client, &job_update, &files, &config, &mut progress, seed).await;
            if result.is_ok() {
                flag.store(true, Ordering::SeqCst);
                let (image, u) = (files.image.clone(), job_update.clone());
                result = match tokio::task::spawn_blocking(move || installer.install(&image, &u))
                    .await
                {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(OtaError::Install(e)),
                    Err(e) => Err(OtaError::Install(format!("the installer panicked: {e}"))),
                };
            }
            let _ = tx.send(Msg::Done {
                key: job_key,
                update: job_update,
                from,
                result,
            });
        });
        self.jobs.insert(
            key,
            Job {
                update,
                installing,
                task,
            },
        );
    }

    fn done(&mut self, key: &str, update: Update, from: &str, result: Result<(), OtaError>) {
        // A superseded job's last word is not news.
        if self
            .jobs
            .get(key)
            .is_none_or(|j| !j.update.same_target(&update))
        {
            return;
        }
        self.jobs.remove(key);
        let files = Files::of(&self.dir, &update);
        let module = update.module_name().to_owned();
        match result {
            Ok(()) => {
                if let Err(e) =
                    Installed::record(&self.dir, update.module.as_deref(), from, &update.version)
                {
                    tracing::warn!(module, "cannot record the installed version: {e}");
                }
                files.remove();
                self.failed.remove(key);
                tracing::info!(module, version = %update.version, "OTA update installed: logging in again to report it");
                self.host
                    .installed(update.module.as_deref(), &update.version);
                self.host.emit(OtaEvent::Installed {
                    module,
                    version: update.version.clone(),
                });
            }
            Err(error) => {
                tracing::warn!(module, version = %update.version, "OTA update failed: {error}");
                // A download that may yet finish keeps its partial file; anything else
                // cannot be resumed and goes.
                if !matches!(
                    error,
                    OtaError::Network { .. } | OtaError::Truncated { .. } | OtaError::Io(_)
                ) {
                    files.remove();
                }
                let entry = self
                    .failed
                    .entry(key.to_owned())
                    .or_insert_with(|| (update.clone(), 0));
                if !entry.0.same_target(&update) {
                    *entry = (update.clone(), 0);
                }
                entry.1 += 1;
                self.host.report_firmware();
                self.host.emit(OtaEvent::Failed {
                    module,
                    version: update.version.clone(),
                    error,
                });
            }
        }
        if let Some(next) = self.next.remove(key) {
            self.notified(next);
        }
    }
}

/// Progress as events to the application.
struct Emit {
    host: Arc<dyn OtaHost>,
    module: String,
    version: String,
}

impl Progress for Emit {
    fn started(&mut self, from: u64, total: u64) {
        self.host.emit(OtaEvent::Started {
            module: self.module.clone(),
            version: self.version.clone(),
            from,
            total,
        });
    }

    fn progress(&mut self, done: u64, total: u64) {
        self.host.emit(OtaEvent::Progress {
            module: self.module.clone(),
            done,
            total,
        });
    }
}
