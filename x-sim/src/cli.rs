//! Command-line front end of `x-sim`: argument parsing, validation that names the offending
//! flag, and the `creds` and `crypt` subcommands.

use std::ffi::OsString;
use std::io::{Read, Write};

use clap::{Args, Parser, Subcommand};
use x_protocol::{
    ConnectType, DeviceIdentity, DeviceSecret, MqttLogin, NodeEui, OpenId, ProductId, ProductKey,
    SessionKey, crypto, derive_session_key,
};

/// Why a command failed. Displays as one line; [`CliError::exit_code`] says how to exit.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line or the input is wrong; exit code 2.
    #[error("{0}")]
    Usage(String),
    /// Help or version was asked for; the text goes to stdout and the exit code is 0.
    #[error("{0}")]
    Info(String),
    /// Writing the output failed; exit code 1.
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            Self::Info(_) => 0,
            Self::Io(_) => 1,
        }
    }

    fn flag(flag: &str, problem: impl std::fmt::Display) -> Self {
        Self::Usage(format!("{flag}: {problem}"))
    }
}

/// The local X platform and its tools.
#[derive(Debug, Parser)]
#[command(name = "x-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compute auth-phase and V2 connect credentials (the platform's parameter generation
    /// tool), and the SessionKey when a SessionID and Nonce are given.
    Creds(CredsArgs),
    /// Encrypt or decrypt a payload with AES-128-ECB/PKCS#7, as encrypted products do.
    Crypt {
        #[command(subcommand)]
        direction: CryptDirection,
    },
    /// Run the local platform until interrupted: the broker with the platform's login rules
    /// (or an existing broker), the platform logic, the HTTP API and the firmware server.
    Serve(ServeArgs),
}

/// Flags of `x-sim serve`.
#[derive(Debug, Args)]
struct ServeArgs {
    /// The registry file (TOML; see docs/x-sim.md).
    #[arg(long, value_name = "FILE")]
    config: std::path::PathBuf,
    /// The embedded broker's address (port 0 for a free port; printed at start).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:1883")]
    listen: String,
    /// Join an existing broker (mqtt://HOST:PORT) instead of running the embedded one; the
    /// login rules are then the broker's.
    #[arg(long, value_name = "URL", conflicts_with = "listen")]
    broker: Option<String>,
    /// The HTTP API and firmware server's address (port 0 for a free port; printed at
    /// start), or "off".
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    http: String,
    /// The base URL devices download firmware from, as they reach this x-sim
    /// (http://HOST:PORT); default: the --http address.
    #[arg(long, value_name = "URL")]
    firmware_url: Option<String>,
    /// The token every HTTP request (API, console) must carry; required when --http is not a
    /// loopback address. Open the console once at http://ADDR/?token=TOKEN.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "X_SIM_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Keep registrations, received data, sessions and firmware in this directory, so that a
    /// restart loses nothing (without it, everything is in memory and there is no firmware
    /// server).
    #[arg(long, value_name = "DIR")]
    data: Option<std::path::PathBuf>,
    /// SessionKey lifetime in seconds before the platform rotates it (HeaderCtrl 3).
    #[arg(long, value_name = "SECS", default_value_t = 48 * 3600)]
    session_ttl: u64,
    /// How long a device that acked an OTA notify has to report the target version, in
    /// seconds, before the OTA is failed.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    ota_deadline: u64,
    /// How many notifies firmware reports may cause per OTA task and device module.
    #[arg(long, value_name = "N", default_value_t = 3)]
    ota_notifies: u32,
    /// Send OTA notifies' MD5 as a JSON number (the digest's 128-bit value in decimal, as
    /// the vendor document's example does) instead of 32 hex digits.
    #[arg(long)]
    ota_md5_number: bool,
}

/// Flags of `x-sim creds`. Values are taken as text and validated here, so that errors name
/// the flag and never echo a secret.
#[derive(Debug, Args)]
struct CredsArgs {
    /// OpenID: 8 hex characters.
    #[arg(long, value_name = "ID")]
    open_id: String,
    /// ProductID: 8 hex characters.
    #[arg(long, value_name = "ID")]
    product_id: String,
    /// NodeEui: 4-32 ASCII letters and digits.
    #[arg(long, value_name = "EUI")]
    node_eui: String,
    /// ProductKey: 32 hex characters.
    #[arg(long, value_name = "HEX")]
    product_key: String,
    /// DeviceSecret: 32 hex characters.
    #[arg(long, value_name = "HEX")]
    device_secret: String,
    /// Login timestamp, Unix seconds.
    #[arg(long, value_name = "SECS")]
    timestamp: String,
    /// V2 connect type: 0 (timestamp not checked) or 1 (checked).
    #[arg(long = "type", value_name = "0|1")]
    connect_type: String,
    /// SessionID from the auth reply (encrypted products); needs --nonce.
    #[arg(long, value_name = "S")]
    session_id: Option<String>,
    /// Nonce from the auth reply (encrypted products); needs --session-id.
    #[arg(long, value_name = "N")]
    nonce: Option<String>,
}

#[derive(Debug, Subcommand)]
enum CryptDirection {
    /// Read plaintext bytes on stdin, print uppercase hex ciphertext.
    Encrypt(KeyArg),
    /// Read hex ciphertext on stdin (either case, surrounding whitespace ignored), write the
    /// plaintext bytes.
    Decrypt(KeyArg),
}

#[derive(Debug, Args)]
struct KeyArg {
    /// The AES-128 key (usually the SessionKey): 32 hex characters.
    #[arg(long, value_name = "HEX")]
    key: String,
}

/// Runs `x-sim` with `args` (the program name first), reading `stdin` and writing `stdout`.
///
/// # Errors
/// [`CliError`] with a one-line message naming the flag or input that is wrong.
pub fn run(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    mut stdin: impl Read,
    mut stdout: impl Write,
) -> Result<(), CliError> {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return clap_error(e, &mut stdout),
    };
    match cli.command {
        Command::Creds(args) => {
            let text = creds(&args)?;
            stdout.write_all(text.as_bytes())?;
        }
        Command::Serve(args) => serve(&args, &mut stdout)?,
        Command::Crypt { direction } => match direction {
            CryptDirection::Encrypt(KeyArg { key }) => {
                let key: SessionKey = parse_key("--key", &key)?;
                let mut plain = zeroize::Zeroizing::new(Vec::new());
                stdin
                    .read_to_end(&mut plain)
                    .map_err(|e| CliError::Usage(format!("stdin: {e}")))?;
                writeln!(stdout, "{}", crypto::encrypt_hex(&key, &plain))?;
            }
            CryptDirection::Decrypt(KeyArg { key }) => {
                let key: SessionKey = parse_key("--key", &key)?;
                let mut text = String::new();
                stdin
                    .read_to_string(&mut text)
                    .map_err(|e| CliError::Usage(format!("stdin: {e}")))?;
                let plain = crypto::decrypt_hex(&key, text.trim())
                    .map_err(|e| CliError::Usage(format!("stdin: {e}")))?;
                stdout.write_all(&plain)?;
            }
        },
    }
    stdout.flush()?;
    Ok(())
}

/// `x-sim serve`: loads the registry, starts the platform, prints its addresses, and runs
/// until Ctrl-C (or SIGTERM). Every message in and out is logged to stderr, one line each
/// (`RUST_LOG` filters, default `info`).
fn serve(args: &ServeArgs, stdout: &mut impl Write) -> Result<(), CliError> {
    let addr = |flag: &str, text: &str| {
        text.parse::<std::net::SocketAddr>().map_err(|_| {
            CliError::flag(
                flag,
                format!("expected an address like 127.0.0.1:1883, got {text:?}"),
            )
        })
    };
    let mqtt = match &args.broker {
        Some(url) => {
            let (host, port) =
                crate::link::parse_broker_url(url).map_err(|e| CliError::flag("--broker", e))?;
            crate::sim::Mqtt::External { host, port }
        }
        None => crate::sim::Mqtt::Embedded(addr("--listen", &args.listen)?),
    };
    let http = match args.http.as_str() {
        "off" => None,
        text => Some(addr("--http", text)?),
    };
    let registry =
        crate::registry::Registry::load(&args.config).map_err(|e| CliError::flag("--config", e))?;
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let mut config = crate::sim::SimConfig::local(registry);
        config.mqtt = mqtt;
        config.http = http;
        config.http_token = match args.token.as_deref() {
            Some("") => return Err(CliError::flag("--token", "must not be empty")),
            Some(t) => Some(x_protocol::SecretString::new(t.to_owned())),
            None => None,
        };
        config.data_dir.clone_from(&args.data);
        config.platform.session_ttl = std::time::Duration::from_secs(args.session_ttl.max(1));
        config.platform.ota_deadline = std::time::Duration::from_secs(args.ota_deadline.max(1));
        config.platform.ota_max_notifies = args.ota_notifies;
        if let Some(url) = &args.firmware_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(CliError::flag(
                    "--firmware-url",
                    format!("expected http://HOST:PORT or https://HOST:PORT, got {url:?}"),
                ));
            }
            config.platform.firmware_url = Some(url.clone());
        }
        config.platform.ota_md5_number = args.ota_md5_number;
        let sim = crate::sim::Sim::start(config).await.map_err(|e| {
            let flag = match &e {
                crate::sim::SimError::Broker(_) if args.broker.is_some() => "--broker",
                crate::sim::SimError::Store(_)
                | crate::sim::SimError::Firmware(_)
                | crate::sim::SimError::DataDir { .. }
                | crate::sim::SimError::Restore(_) => "--data",
                crate::sim::SimError::Listen { addr, .. } if Some(*addr) == http => "--http",
                crate::sim::SimError::TokenRequired { .. } => "--token",
                _ => "--listen",
            };
            CliError::flag(flag, e)
        })?;
        match (sim.mqtt_addr(), &args.broker) {
            (Some(addr), _) => writeln!(stdout, "x-sim: broker listening on {addr}")?,
            (None, Some(url)) => writeln!(stdout, "x-sim: platform joined the broker at {url}")?,
            (None, None) => {}
        }
        if let Some(addr) = sim.http_addr() {
            writeln!(stdout, "x-sim: HTTP API on http://{addr}")?;
            if args.token.is_some() {
                writeln!(
                    stdout,
                    "x-sim: console on http://{addr}/?token=TOKEN (your --token; needed once per browser)"
                )?;
            } else {
                writeln!(stdout, "x-sim: console on http://{addr}/")?;
            }
        }
        stdout.flush()?;
        shutdown_signal().await;
        Ok(())
    })
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Turns clap's multi-line error into one line; help and version go to stdout.
fn clap_error(e: clap::Error, stdout: &mut impl Write) -> Result<(), CliError> {
    use clap::error::ErrorKind;
    let rendered = e.render().to_string();
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        stdout.write_all(rendered.as_bytes())?;
        return Ok(());
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return Err(CliError::Usage(
            "missing subcommand: expected one of creds, crypt, serve (see x-sim --help)".to_owned(),
        ));
    }
    let line = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:"))
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect::<Vec<_>>()
        .join(" ");
    Err(CliError::Usage(
        line.strip_prefix("error: ").unwrap_or(&line).to_owned(),
    ))
}

fn parse_key<K: x_protocol::secret::KeyKind>(
    flag: &str,
    text: &str,
) -> Result<x_protocol::secret::Key<K>, CliError> {
    x_protocol::secret::Key::from_hex(text).map_err(|e| CliError::flag(flag, e.problem))
}

fn parse_id<T: std::str::FromStr<Err = x_protocol::IdentityError>>(
    flag: &str,
    text: &str,
) -> Result<T, CliError> {
    text.parse()
        .map_err(|e: x_protocol::IdentityError| CliError::flag(flag, e.problem))
}

/// The `creds` output: one `Name: value` line per credential, in the documented order.
fn creds(args: &CredsArgs) -> Result<String, CliError> {
    let device = DeviceIdentity::new(
        parse_id::<OpenId>("--open-id", &args.open_id)?,
        parse_id::<ProductId>("--product-id", &args.product_id)?,
        parse_id::<NodeEui>("--node-eui", &args.node_eui)?,
    );
    let product_key: ProductKey = parse_key("--product-key", &args.product_key)?;
    let device_secret: DeviceSecret = parse_key("--device-secret", &args.device_secret)?;
    let timestamp: u64 = args.timestamp.trim().parse().map_err(|_| {
        CliError::flag(
            "--timestamp",
            format!(
                "expected Unix seconds (a non-negative integer), got {:?}",
                args.timestamp
            ),
        )
    })?;
    let connect_type = args
        .connect_type
        .trim()
        .parse::<u8>()
        .ok()
        .and_then(ConnectType::from_code)
        .ok_or_else(|| {
            CliError::flag(
                "--type",
                format!("expected 0 or 1, got {:?}", args.connect_type),
            )
        })?;
    let session = match (&args.session_id, &args.nonce) {
        (Some(session_id), Some(nonce)) => {
            let nonce: i32 = nonce.trim().parse().map_err(|_| {
                CliError::flag(
                    "--nonce",
                    format!("expected a 32-bit integer, got {nonce:?}"),
                )
            })?;
            Some((session_id.as_str(), nonce))
        }
        (Some(_), None) => return Err(CliError::flag("--nonce", "required with --session-id")),
        (None, Some(_)) => return Err(CliError::flag("--session-id", "required with --nonce")),
        (None, None) => None,
    };

    let auth = MqttLogin::auth(&device, &product_key);
    let mqtt = MqttLogin::connect(
        &device,
        &product_key,
        &device_secret,
        connect_type,
        timestamp,
    );
    let mut out = format!(
        "AuthClientID: {}\nAuthUserName: {}\nAuthPassword: {}\nMqttClientID: {}\nMqttUserName: {}\nMqttPassword: {}\n",
        auth.client_id,
        auth.username,
        auth.password.expose(),
        mqtt.client_id,
        mqtt.username,
        mqtt.password.expose(),
    );
    if let Some((session_id, nonce)) = session {
        let key = derive_session_key(&product_key, session_id, nonce)
            .map_err(|e| CliError::flag("--session-id", e))?;
        out.push_str(&format!("SessionKey: {}\n", key.expose_hex()));
    }
    Ok(out)
}
