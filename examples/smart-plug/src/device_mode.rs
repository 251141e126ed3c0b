//! The plug as one device on any platform: burned-in parameters from flags (or environment
//! variables), reports every few seconds, every platform command answered, until Ctrl-C or
//! `--seconds N`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use x_sdk::protocol::{DeviceIdentity, RegistrationType};
use x_sdk::runtime::{ConnectionState, Device, Request};

use super::{Relay, SmartPlug, SmartPlugReport, SmartPlugService};

/// Runs the smart plug as one device against a platform.
#[derive(Debug, Parser)]
#[command(name = "smart-plug-example", about)]
pub struct Flags {
    /// The broker: mqtt://HOST:PORT or mqtts://HOST:PORT.
    #[arg(long, env = "X_BROKER")]
    broker: String,
    /// PEM file of the CAs that sign the broker's certificate (mqtts://).
    #[arg(long, env = "X_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// OpenID: 8 hex digits.
    #[arg(long, env = "X_OPEN_ID")]
    open_id: String,
    /// ProductID: 8 hex digits.
    #[arg(long, env = "X_PRODUCT_ID")]
    product_id: String,
    /// NodeEui: 4-32 ASCII letters and digits.
    #[arg(long, env = "X_NODE_EUI")]
    node_eui: String,
    /// ProductKey: 32 hex digits.
    #[arg(long, env = "X_PRODUCT_KEY", hide_env_values = true)]
    product_key: String,
    /// DeviceSecret burned in at the factory (type 2): 32 hex digits.
    #[arg(long, env = "X_DEVICE_SECRET", hide_env_values = true)]
    device_secret: Option<String>,
    /// Registration type: 0, 1 or 2.
    #[arg(long = "type", env = "X_TYPE", default_value = "1")]
    registration: String,
    /// The product encrypts payloads.
    #[arg(long, env = "X_ENCRYPTED")]
    encrypted: bool,
    /// Where the DeviceSecret and session are kept between runs.
    #[arg(long, env = "X_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, env = "X_SECONDS")]
    seconds: Option<u64>,
    /// Seconds between reports.
    #[arg(long, env = "X_REPORT_EVERY", default_value_t = 10)]
    report_every: u64,
}

/// Why the flags were not taken.
#[derive(Debug)]
pub enum FlagsError {
    /// `--help` or `--version`: the text to print.
    Help(String),
    /// A bad flag: one line naming it.
    Bad(String),
}

/// What the flags describe, validated.
#[derive(Debug)]
pub struct Checked {
    flags: Flags,
    identity: DeviceIdentity,
    registration: RegistrationType,
}

impl Flags {
    /// Reads the flags (and their environment variables).
    ///
    /// # Errors
    /// [`FlagsError::Bad`] with one line naming the flag and what is wrong.
    pub fn parse(args: &[String]) -> Result<Checked, FlagsError> {
        let argv = std::iter::once("smart-plug-example".to_owned()).chain(args.iter().cloned());
        let flags = Flags::try_parse_from(argv).map_err(|e| match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                FlagsError::Help(e.to_string())
            }
            clap::error::ErrorKind::MissingRequiredArgument => FlagsError::Bad(missing(&e)),
            _ => FlagsError::Bad(first_line(&e.to_string())),
        })?;
        let identity = DeviceIdentity::parse(&flags.open_id, &flags.product_id, &flags.node_eui)
            .map_err(|e| {
                let flag = match e.field {
                    "OpenID" => "--open-id",
                    "ProductID" => "--product-id",
                    _ => "--node-eui",
                };
                FlagsError::Bad(format!("{flag}: {e}"))
            })?;
        let registration: RegistrationType = flags
            .registration
            .parse()
            .map_err(|e| FlagsError::Bad(format!("--type: {e}")))?;
        // Keys are checked here so that their errors name the flag (they never quote it).
        x_sdk::protocol::ProductKey::from_hex(&flags.product_key)
            .map_err(|e| FlagsError::Bad(format!("--product-key: {e}")))?;
        if let Some(secret) = &flags.device_secret {
            x_sdk::protocol::DeviceSecret::from_hex(secret)
                .map_err(|e| FlagsError::Bad(format!("--device-secret: {e}")))?;
        }
        if let Err(e) = flags.broker.parse::<x_sdk::runtime::BrokerAddr>() {
            return Err(FlagsError::Bad(format!("--broker: {e}")));
        }
        Ok(Checked {
            flags,
            identity,
            registration,
        })
    }
}

/// One line naming the first missing flag, its variable and the others missing.
fn missing(e: &clap::Error) -> String {
    let names: Vec<String> = match e.get(clap::error::ContextKind::InvalidArg) {
        Some(clap::error::ContextValue::Strings(args)) => args
            .iter()
            .filter_map(|a| a.split_whitespace().next())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    let Some((first, rest)) = names.split_first() else {
        return first_line(&e.to_string());
    };
    let variable = format!(
        "X_{}",
        first
            .trim_start_matches("--")
            .replace('-', "_")
            .to_uppercase()
    );
    let mut line = format!("{first}: required (give the flag or set {variable})");
    if !rest.is_empty() {
        line.push_str(&format!("; also missing: {}", rest.join(", ")));
    }
    line
}

fn first_line(text: &str) -> String {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(text)
        .trim_start_matches("error: ")
        .to_owned()
}

/// Runs the device until Ctrl-C or the configured time.
///
/// # Errors
/// The device could not be started (state directory, TLS).
pub async fn run(checked: Checked) -> Result<(), Box<dyn std::error::Error>> {
    let Checked {
        flags,
        identity,
        registration,
    } = checked;
    let mut relay = Relay { energy: 12.345 };
    let mut builder =
        Device::<SmartPlug, SmartPlugService>::builder(identity, flags.product_key.parse()?)
            .broker(&flags.broker)?
            .registration(registration)
            .encrypted(flags.encrypted)
            .firmware("SP16A-HW2", "1.4.0")
            .services(move |call: SmartPlugService| call.dispatch(&mut relay));
    if let Some(secret) = &flags.device_secret {
        builder = builder.device_secret(secret.parse()?);
    }
    if let Some(dir) = &flags.state_dir {
        builder = builder.state_dir(dir);
    }
    if let Some(ca) = &flags.ca_file {
        builder = builder.ca_file(ca);
    }
    let device = builder.start()?;
    let until = flags
        .seconds
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut states = device.connection();
    let mut ticker = tokio::time::interval(Duration::from_secs(flags.report_every.max(1)));
    let mut power = 20.0_f32;
    loop {
        let deadline = async {
            match until {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = deadline => break,
            changed = states.changed() => {
                if changed.is_err() {
                    break;
                }
                let state = states.borrow_and_update().clone();
                println!("state: {}", describe(&state));
            }
            _ = ticker.tick() => {
                if device.is_online() {
                    power = (power + 3.7) % 2000.0;
                    let report = SmartPlugReport::default().with_power(power);
                    match device.report(report).await {
                        Ok(delivery) => {
                            let result = delivery.await;
                            println!("report power={power:.1}: {}", match result {
                                Ok(_) => "acked".to_owned(),
                                Err(e) => e.to_string(),
                            });
                        }
                        Err(e) => println!("report not sent: {e}"),
                    }
                }
            }
            request = device.next_request() => match request {
                Some(Request::PropertiesSet(set)) => println!("platform set {set:?}"),
                Some(Request::ConfigChanged(settings)) => println!("config now {settings:?}"),
                Some(Request::Passthrough(data)) => println!("passthrough {data}"),
                Some(Request::OtaNotify(n)) => println!("OTA offered: {} ({} bytes)", n.soft_ver, n.soft_size),
                Some(other) => println!("{other:?}"),
                None => break,
            },
        }
    }
    let c = device.counters().session;
    println!(
        "stopping: {} sent, {} acked, {} received, {} reconnects",
        c.sent,
        c.acked,
        c.received,
        c.connects.saturating_sub(1)
    );
    device.shutdown().await;
    Ok(())
}

fn describe(state: &ConnectionState) -> String {
    match state {
        ConnectionState::Offline { reason, retry_in } => {
            format!("offline ({reason}), retrying in {retry_in:?}")
        }
        ConnectionState::Refused { reason, retry_in } => {
            format!("refused: {reason}; retrying in {retry_in:?}")
        }
        other => format!("{other:?}"),
    }
}
