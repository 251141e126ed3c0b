//! The whole local platform in one value: broker (embedded, or an existing one the platform
//! joins as a client), platform logic, crash-safe store, firmware server and HTTP JSON API.
//! This is what `x-sim serve` runs and what tests start in-process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use x_protocol::{DeviceIdentity, SecretString};

use crate::access::PlatformAccess;
use crate::broker::{BrokerConfig, BrokerHandle};
use crate::firmware::Firmware;
use crate::link::Link;
use crate::platform::{Parts, Platform, PlatformConfig, ViolationLog};
use crate::registry::{Device, DeviceEntry, Product, Registry};
use crate::store::{Store, Write};
use crate::sync::{read, write};

/// Where the MQTT side of the platform lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mqtt {
    /// The embedded broker, listening on this address (port 0: a free one), with the
    /// platform's login rules and topic permissions.
    Embedded(SocketAddr),
    /// An existing broker (Mosquitto, ...), joined as a client; the login rules are the
    /// broker's.
    External {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
}

/// How to start the platform.
#[derive(Debug)]
pub struct SimConfig {
    /// Products and devices to start with (a store's registrations are laid over them).
    pub registry: Registry,
    /// The broker.
    pub mqtt: Mqtt,
    /// The embedded broker's limits (CONNECT timeout); unused over an external broker.
    pub broker: BrokerConfig,
    /// The HTTP API, console and firmware server's address; `None`: no HTTP.
    pub http: Option<SocketAddr>,
    /// The token every HTTP request must carry ([`crate::web`]); required when `http` is not
    /// a loopback address. `None` on loopback: open to local users.
    pub http_token: Option<SecretString>,
    /// Where the store and firmware images live; `None`: in memory, no firmware server.
    pub data_dir: Option<PathBuf>,
    /// Platform behaviour.
    pub platform: PlatformConfig,
}

impl SimConfig {
    /// The embedded broker on a free loopback port, HTTP on a free loopback port, in memory.
    pub fn local(registry: Registry) -> Self {
        Self {
            registry,
            mqtt: Mqtt::Embedded(SocketAddr::from(([127, 0, 0, 1], 0))),
            broker: BrokerConfig::default(),
            http: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            http_token: None,
            data_dir: None,
            platform: PlatformConfig::default(),
        }
    }
}

/// Why the platform did not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The firmware directory could not be opened.
    #[error(transparent)]
    Firmware(#[from] crate::firmware::FirmwareError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The external broker could not be joined.
    #[error("{0}")]
    Broker(String),
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The platform's state could not be restored from the store.
    #[error(transparent)]
    Restore(#[from] crate::platform::PlatformError),
    /// A registration was refused.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// The HTTP side was asked to listen beyond this machine with no token.
    #[error(
        "the HTTP API and console would listen on {addr}, which is not a loopback address, \
         with no token: give one (--token or X_SIM_TOKEN), or listen on 127.0.0.1"
    )]
    TokenRequired {
        /// The address.
        addr: SocketAddr,
    },
}

/// A running platform. Dropping it stops the platform logic and the HTTP server (the
/// embedded broker's listener stays until the runtime ends).
#[derive(Debug)]
pub struct Sim {
    platform: Platform,
    broker: Option<BrokerHandle>,
    http_addr: Option<SocketAddr>,
    client_id: Option<String>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Sim {
    /// Starts everything the configuration asks for.
    ///
    /// # Errors
    /// See [`SimError`].
    pub async fn start(config: SimConfig) -> Result<Self, SimError> {
        let store = match &config.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| SimError::DataDir {
                    path: dir.clone(),
                    source,
                })?;
                Some(Store::open(&dir.join("x-sim.redb"))?)
            }
            None => None,
        };
        let firmware = match &config.data_dir {
            Some(dir) => Some(Firmware::open(&dir.join("firmware"))?),
            None => None,
        };
        let mut registry = config.registry;
        if let Some(store) = &store {
            for product in store.products()? {
                registry.put_product(product);
            }
            for device in store.devices()? {
                registry.put_device(device)?;
            }
        }
        let registry = Arc::new(RwLock::new(registry));
        let violations =
            ViolationLog::restore(store.as_ref(), config.platform.violations_per_device)?;

        if let Some(addr) = config.http
            && !addr.ip().is_loopback()
            && config.http_token.is_none()
        {
            return Err(SimError::TokenRequired { addr });
        }
        if let (Some(firmware), Some(token)) = (&firmware, &config.http_token) {
            firmware.sign_urls(crate::web::Signer::new(token));
        }
        let http = match config.http {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| SimError::Listen { addr, source })?,
            ),
            None => None,
        };
        let http_addr = http.as_ref().and_then(|l| l.local_addr().ok());
        let mut platform_config = config.platform;
        if firmware.is_some()
            && platform_config.firmware_url.is_none()
            && let Some(addr) = http_addr
        {
            platform_config.firmware_url = Some(format!("http://{addr}"));
        }

        let mut client_id = None;
        let (access, broker, link, inbox): (_, _, Arc<dyn Link>, _) = match config.mqtt {
            Mqtt::Embedded(addr) => {
                let access = match &store {
                    Some(store) => PlatformAccess::with_store(registry.clone(), store.clone())?,
                    None => PlatformAccess::new(registry.clone()),
                }
                .with_violations(violations.clone());
                let broker =
                    crate::broker::start_with(addr, Arc::new(access.clone()), config.broker)
                        .await
                        .map_err(|source| SimError::Listen { addr, source })?;
                let inbox = broker.subscribe("/sys/#");
                (Some(access), Some(broker.clone()), Arc::new(broker), inbox)
            }
            Mqtt::External { host, port } => {
                // Unique per platform, so that two in one process do not throw each other
                // off the broker.
                static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let id = format!("x-sim-platform-{}-{n}", std::process::id());
                let (link, inbox) =
                    crate::link::connect_client(&host, port, &id, Duration::from_secs(5))
                        .await
                        .map_err(SimError::Broker)?;
                client_id = Some(id);
                (None, None, Arc::new(link), inbox)
            }
        };
        let platform = Platform::new(Parts {
            registry,
            access,
            link,
            store,
            firmware,
            config: platform_config,
            violations,
        })?;
        let mut tasks = vec![platform.serve(inbox)];
        if let Some(listener) = http {
            let router = crate::web::app(platform.clone(), config.http_token);
            tasks.push(tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, router).await {
                    tracing::error!(target: "x_sim", "HTTP server stopped: {e}");
                }
            }));
        }
        Ok(Self {
            platform,
            broker,
            http_addr,
            client_id,
            tasks,
        })
    }

    /// The platform logic: commands, stored data, faults.
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// The embedded broker (`None` over an external broker).
    pub fn broker(&self) -> Option<&BrokerHandle> {
        self.broker.as_ref()
    }

    /// The embedded broker's address.
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.broker.as_ref().map(BrokerHandle::addr)
    }

    /// The platform's MQTT client id on an external broker (`x-sim-platform-{pid}-{n}`).
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// The HTTP API and firmware server's address.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The identity of a registered device.
    pub fn device(&self, product_id: &str, node_eui: &str) -> Option<DeviceIdentity> {
        self.platform.identity(product_id, node_eui)
    }
}

impl Platform {
    /// Registers a product; persisted when a store is attached, before the registry has
    /// it. Blocks until the store has it: on an async worker, call it from a blocking
    /// thread (the HTTP API does).
    ///
    /// # Errors
    /// The ProductID is taken, or the store cannot write it.
    pub fn register_product(&self, product: Product) -> Result<(), SimError> {
        // Registrations one at a time; the registry itself is never locked while the store
        // writes.
        let _one_at_a_time = self.registering();
        if read(self.registry())
            .product(product.product_id.as_str())
            .is_some()
        {
            return Err(SimError::Registry(crate::registry::RegistryError {
                at: "product".into(),
                problem: format!("ProductID {} is already registered", product.product_id),
            }));
        }
        if let Some(store) = self.store() {
            store.write_durably(Write::product(&product)?)?;
        }
        tracing::info!(target: "x_sim", "product {} registered", product.product_id);
        write(self.registry()).put_product(product);
        Ok(())
    }

    /// Registers a device (the platform issues a secret when the entry has none); persisted
    /// when a store is attached, before the registry has it. Errors are named `{at}.{field}`.
    /// Blocks until the store has it, as [`Platform::register_product`].
    ///
    /// # Errors
    /// A malformed field, an unknown product, a device registered twice, or a store
    /// failure.
    pub fn register_device(&self, entry: DeviceEntry, at: &str) -> Result<Device, SimError> {
        let _one_at_a_time = self.registering();
        // Checked against a registry of the device's product (and the device, if it is
        // registered already) alone: the same checks and errors, without the registry
        // locked for the store write.
        let mut trial = Registry::default();
        {
            let registry = read(self.registry());
            // Looked up as the entry's fields parse (a field that does not parse is named
            // by `register`).
            let product_id = entry.product_id.parse::<x_protocol::ProductId>().ok();
            let node_eui = entry.node_eui.parse::<x_protocol::NodeEui>().ok();
            if let Some(product) = product_id.and_then(|p| registry.product(p.as_str())) {
                trial.put_product(product.clone());
                if let Some(d) =
                    node_eui.and_then(|n| registry.device(product.product_id.as_str(), n.as_str()))
                {
                    trial.put_device(d.clone())?;
                }
            }
        }
        let device = entry.register(&mut trial, at)?;
        if let Some(store) = self.store() {
            store.write_durably(Write::device(&device)?)?;
        }
        write(self.registry()).put_device(device.clone())?;
        tracing::info!(target: "x_sim", "device {}/{} registered", device.product_id, device.node_eui);
        Ok(device)
    }

    /// Enables or disables a device; persisted when a store is attached, before the
    /// registry changes. Blocks until the store has it, as [`Platform::register_product`].
    ///
    /// # Errors
    /// An unknown device, or a store failure.
    pub fn set_enabled(
        &self,
        product_id: &str,
        node_eui: &str,
        enabled: bool,
    ) -> Result<(), SimError> {
        let _one_at_a_time = self.registering();
        let changed = read(self.registry())
            .device(product_id, node_eui)
            .cloned()
            .map(|mut d| {
                d.enabled = enabled;
                d
            });
        if let (Some(store), Some(device)) = (self.store(), &changed) {
            store.write_durably(Write::device(device)?)?;
        }
        write(self.registry()).set_enabled(product_id, node_eui, enabled)?;
        // A disabled device is put off the platform, not only refused at its next login.
        if !enabled && let Some(identity) = self.identity(product_id, node_eui) {
            self.drop_device(&identity);
        }
        Ok(())
    }

    /// The full identity (with the product's OpenID) of a registered device.
    pub fn identity(&self, product_id: &str, node_eui: &str) -> Option<DeviceIdentity> {
        let registry = read(self.registry());
        let product = registry.product(product_id)?;
        let device = registry.device(product_id, node_eui)?;
        Some(DeviceIdentity {
            open_id: product.open_id.clone(),
            product_id: device.product_id.clone(),
            node_eui: device.node_eui.clone(),
        })
    }
}
