//! A Mosquitto broker of one's own for tests: the Debian package's binary (`apt-get install -y
//! mosquitto`) started on a free loopback port, optionally with a TLS listener, with its log
//! kept per run, restartable on the same ports, killed when dropped.
//!
//! The SDK's own tests run devices and x-sim (`--broker` mode) over it; product teams can do
//! the same in their CI.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why Mosquitto could not be started.
#[derive(Debug, thiserror::Error)]
pub enum MosquittoError {
    /// The binary is not installed.
    #[error(
        "the mosquitto broker is not installed: run `apt-get install -y mosquitto` (Debian \
         package; the binary is /usr/sbin/mosquitto)"
    )]
    NotInstalled,
    /// A file of its own could not be written.
    #[error("mosquitto directory {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// It exited or did not listen in time; the log says why.
    #[error("mosquitto did not start: {log}")]
    Start {
        /// Its log.
        log: String,
    },
}

/// The certificate and key files of a TLS listener (PEM).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The server certificate (chain).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// A running Mosquitto of the caller's own.
#[derive(Debug)]
pub struct Mosquitto {
    child: Child,
    listeners: Listeners,
    dir: PathBuf,
    runs: u32,
}

/// The listeners of a run: the plain port, and the TLS port with its files.
#[derive(Debug, Clone)]
struct Listeners {
    port: u16,
    tls: Option<(u16, TlsFiles)>,
}

impl Mosquitto {
    /// Mosquitto with a plain listener on a free loopback port.
    ///
    /// # Errors
    /// [`MosquittoError`] naming what is missing or what its log says.
    pub fn start() -> Result<Self, MosquittoError> {
        Self::launch(None)
    }

    /// Mosquitto with a plain listener and a TLS listener (`tls`'s certificate and key), each
    /// on a free loopback port.
    ///
    /// # Errors
    /// As [`Mosquitto::start`].
    pub fn start_with_tls(tls: TlsFiles) -> Result<Self, MosquittoError> {
        Self::launch(Some(tls))
    }

    fn launch(tls: Option<TlsFiles>) -> Result<Self, MosquittoError> {
        let binary = binary().ok_or(MosquittoError::NotInstalled)?;
        let dir = std::env::temp_dir().join(format!(
            "x-sim-mosquitto-{}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir_all(&dir).map_err(|source| MosquittoError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut last = String::new();
        // A free port can be taken by someone else before mosquitto binds it: try again.
        for _ in 0..5 {
            let port = free_port();
            let tls_port = tls.as_ref().map(|_| free_port());
            let listeners = Listeners {
                port,
                tls: tls_port.zip(tls.clone()),
            };
            match spawn(&binary, &dir, &listeners, 1) {
                Ok(child) => {
                    return Ok(Self {
                        child,
                        listeners,
                        dir,
                        runs: 1,
                    });
                }
                Err(MosquittoError::Start { log }) => last = log,
                Err(e) => return Err(e),
            }
        }
        Err(MosquittoError::Start { log: last })
    }

    /// The broker's process id (to read its resident memory, say).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The plain listener's port.
    pub fn port(&self) -> u16 {
        self.listeners.port
    }

    /// `mqtt://127.0.0.1:PORT` of the plain listener.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.listeners.port)
    }

    /// `mqtts://localhost:PORT` of the TLS listener, if it has one.
    pub fn tls_url(&self) -> Option<String> {
        let (port, _) = self.listeners.tls.as_ref()?;
        Some(format!("mqtts://localhost:{port}"))
    }

    /// Kills it and starts it again on the same ports (a broker restart).
    ///
    /// # Errors
    /// As [`Mosquitto::start`].
    pub fn restart(&mut self) -> Result<(), MosquittoError> {
        let binary = binary().ok_or(MosquittoError::NotInstalled)?;
        self.kill();
        self.runs += 1;
        self.child = spawn(&binary, &self.dir, &self.listeners, self.runs)?;
        Ok(())
    }

    /// Kills it (until [`Mosquitto::restart`]).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The current run's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        log_path(&self.dir, self.runs)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn log_path(dir: &Path, run: u32) -> PathBuf {
    dir.join(format!("mosquitto-{run}.log"))
}

/// Starts mosquitto with `listeners`; [`MosquittoError::Start`] with its log if it exits or
/// does not listen within 10 s.
fn spawn(
    binary: &Path,
    dir: &Path,
    listeners: &Listeners,
    run: u32,
) -> Result<Child, MosquittoError> {
    let mut config = format!(
        "per_listener_settings false\nallow_anonymous true\npersistence false\n\
         log_dest stderr\nlog_type all\nlog_timestamp false\nlistener {} 127.0.0.1\n",
        listeners.port
    );
    if let Some((port, tls)) = &listeners.tls {
        config.push_str(&format!(
            "listener {port} 127.0.0.1\ncertfile {}\nkeyfile {}\n",
            tls.cert.display(),
            tls.key.display()
        ));
    }
    let conf = dir.join("mosquitto.conf");
    write(&conf, config.as_bytes())?;
    let log_file = log_path(dir, run);
    let log = std::fs::File::create(&log_file).map_err(|source| MosquittoError::Io {
        path: log_file.clone(),
        source,
    })?;
    let mut child = Command::new(binary)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|source| MosquittoError::Io {
            path: binary.to_owned(),
            source,
        })?;
    let ports: Vec<u16> = std::iter::once(listeners.port)
        .chain(listeners.tls.as_ref().map(|(p, _)| *p))
        .collect();
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if ports
            .iter()
            .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok())
        {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(MosquittoError::Start {
        log: std::fs::read_to_string(&log_file).unwrap_or_default(),
    })
}

/// The mosquitto binary: on PATH, or in the sbin directories a non-root PATH may lack.
fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|dir| dir.join("mosquitto"))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(0, |a| a.port())
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), MosquittoError> {
    std::fs::write(path, bytes).map_err(|source| MosquittoError::Io {
        path: path.to_owned(),
        source,
    })
}
