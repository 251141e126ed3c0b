//! The simulator's registry of products and devices: loaded from a TOML file, validated
//! with errors that name the entry and field, and changeable at run time.
//!
//! ```toml
//! [[product]]
//! open_id = "7ED01E2A"
//! product_id = "AA30C505"
//! product_key = "DB6FACEF35BEBA0517712F0E4BE32936"
//! registration = 1            # 0, 1 or 2: how its devices are registered
//! encrypted = false
//! format = "json"             # "passthrough", "json" or "hex"
//! model = "models/smart-plug.json"
//!
//! [[device]]
//! product_id = "AA30C505"
//! node_eui = "20MQTTJ000121"
//! device_secret = "326086233FAB8A96566796551EB1DFF8"
//! enabled = true
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use x_protocol::crypto;
use x_protocol::{DeviceSecret, NodeEui, OpenId, ProductId, ProductKey, RegistrationType};

/// Why a registry file or change was refused. The message names the entry and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {problem}")]
pub struct RegistryError {
    /// Where: `product[0].product_key`, `device[2]`, or the file.
    pub at: String,
    /// What is wrong.
    pub problem: String,
}

impl RegistryError {
    fn new(at: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            at: at.into(),
            problem: problem.into(),
        }
    }
}

/// How a product's messages are formatted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Passthrough: application data in HeaderCtrl 4 and 7, no thing model.
    Passthrough,
    /// Thing model, JSON payloads.
    Json,
    /// Thing model, HEX payloads through the product's parsing script.
    Hex,
}

/// Why a product cannot be built: the field and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductProblem {
    /// `model` or `script`.
    pub field: &'static str,
    /// What is wrong.
    pub problem: String,
}

impl std::fmt::Display for ProductProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl Format {
    /// The format's name in registry files and the HTTP API.
    pub fn name(self) -> &'static str {
        match self {
            Self::Passthrough => "passthrough",
            Self::Json => "json",
            Self::Hex => "hex",
        }
    }

    /// A format by name.
    ///
    /// # Errors
    /// Names the accepted values.
    pub fn parse(name: &str) -> Result<Self, String> {
        [Self::Passthrough, Self::Json, Self::Hex]
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| format!("expected \"passthrough\", \"json\" or \"hex\", got {name:?}"))
    }
}

impl Product {
    /// A product, checked: JSON and HEX products need a thing model, and a HEX product
    /// without a supplied parsing script gets the one generated from its model.
    ///
    /// # Errors
    /// A missing model, or a model the script generator refuses.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        open_id: OpenId,
        product_id: ProductId,
        product_key: ProductKey,
        registration: RegistrationType,
        encrypted: bool,
        format: Format,
        model: Option<ModelSource>,
        script: Option<String>,
    ) -> Result<Self, ProductProblem> {
        let problem = |field, problem: String| ProductProblem { field, problem };
        if format != Format::Passthrough && model.is_none() {
            return Err(problem(
                "model",
                "a json or hex product needs its thing model".into(),
            ));
        }
        let script = match (script, format, &model) {
            (Some(s), _, _) => Some(s),
            (None, Format::Hex, Some(m)) => Some(
                x_codegen::script::script(m.model(), m.name())
                    .map_err(|e| problem("model", e.to_string()))?,
            ),
            (None, _, _) => None,
        };
        Ok(Self {
            open_id,
            product_id,
            product_key,
            registration,
            encrypted,
            format,
            model,
            script,
        })
    }
}

/// A registered product.
#[derive(Debug, Clone)]
pub struct Product {
    /// The vendor account.
    pub open_id: OpenId,
    /// The product.
    pub product_id: ProductId,
    /// Its secret.
    pub product_key: ProductKey,
    /// How its devices are registered.
    pub registration: RegistrationType,
    /// Whether payloads are encrypted with a SessionKey.
    pub encrypted: bool,
    /// Message format.
    pub format: Format,
    /// The thing model (JSON and HEX products), validated when the registry was loaded.
    pub model: Option<ModelSource>,
    /// The HEX parsing script's source: a supplied file, or generated from the model.
    pub script: Option<String>,
}

/// A product's thing model: its JSON text (what the store and the API keep) and the
/// validated IR built from it once, when the product is registered or loaded. The IR is
/// plain data (`Send + Sync`), so every thread of the platform shares the one `Arc`.
#[derive(Debug, Clone)]
pub struct ModelSource {
    name: String,
    text: String,
    model: Arc<x_codegen::Model>,
}

impl ModelSource {
    /// Reads and validates a model's JSON `text`, `name` being the Rust name x-codegen
    /// gives it (from the file name).
    ///
    /// # Errors
    /// Every problem of the model, each naming its JSON path.
    pub fn new(name: String, text: String) -> Result<Self, Vec<x_codegen::Diagnostic>> {
        let model = Arc::new(x_codegen::load(&text, &name)?);
        Ok(Self { name, text, model })
    }

    /// The Rust name x-codegen gives the model (from the file name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The model JSON.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The validated model IR, shared.
    pub fn model(&self) -> &Arc<x_codegen::Model> {
        &self.model
    }
}

/// The diagnostics of a model that does not load, as one line.
pub fn diagnostics_line(diags: &[x_codegen::Diagnostic]) -> String {
    diags
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A registered device.
#[derive(Debug, Clone)]
pub struct Device {
    /// Its product.
    pub product_id: ProductId,
    /// Its id.
    pub node_eui: NodeEui,
    /// Its secret.
    pub secret: DeviceSecret,
    /// Disabled devices are refused at auth and at connect.
    pub enabled: bool,
}

/// Products and devices.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    products: BTreeMap<String, Product>,
    devices: BTreeMap<(String, String), Device>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProduct {
    open_id: String,
    product_id: String,
    product_key: String,
    registration: i64,
    #[serde(default)]
    encrypted: bool,
    format: Format,
    model: Option<PathBuf>,
    script: Option<PathBuf>,
}

/// A device as a registry file or the HTTP API gives it, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceEntry {
    /// Its product.
    pub product_id: String,
    /// Its id.
    pub node_eui: String,
    /// Its secret in hex; without it the platform issues one.
    pub device_secret: Option<String>,
    /// Whether it may log in (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl DeviceEntry {
    /// Registers the entry's device; errors are named `{at}.{field}` (or `at` for a
    /// refusal of the whole entry).
    ///
    /// # Errors
    /// A malformed field, an unknown product, or a device registered twice.
    pub fn register(self, registry: &mut Registry, at: &str) -> Result<Device, RegistryError> {
        let field = |f: &str| format!("{at}.{f}");
        let product_id: ProductId = self
            .product_id
            .parse()
            .map_err(id_err(field("product_id")))?;
        let node_eui: NodeEui = self.node_eui.parse().map_err(id_err(field("node_eui")))?;
        let secret = match self.device_secret {
            Some(s) => Some(s.parse().map_err(id_err(field("device_secret")))?),
            None => None,
        };
        registry
            .register_device(&product_id, node_eui, secret, self.enabled)
            .cloned()
            .map_err(|e| RegistryError::new(at, e.problem))
    }
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    product: Vec<FileProduct>,
    #[serde(default)]
    device: Vec<DeviceEntry>,
}

impl Registry {
    /// Reads a registry file; model and script paths are relative to the file's directory.
    ///
    /// # Errors
    /// The first problem, naming the entry and field.
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            RegistryError::new(path.display().to_string(), format!("cannot read: {e}"))
        })?;
        Self::from_toml(&text, path.parent().unwrap_or(Path::new(".")))
    }

    /// Parses registry TOML; model and script paths are relative to `base`.
    ///
    /// # Errors
    /// The first problem, naming the entry and field.
    pub fn from_toml(text: &str, base: &Path) -> Result<Self, RegistryError> {
        let file: File = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .and_then(|span| text.get(..span.start))
                .map(|before| before.matches('\n').count() + 1);
            let at = line.map_or_else(|| "registry".to_owned(), |l| format!("registry line {l}"));
            RegistryError::new(at, e.message().to_owned())
        })?;
        let mut registry = Registry::default();
        for (i, p) in file.product.into_iter().enumerate() {
            let at = |field: &str| format!("product[{i}].{field}");
            let model = match &p.model {
                Some(m) => Some(load_model(&base.join(m), &at("model"))?),
                None => None,
            };
            let script = match &p.script {
                Some(s) => Some(std::fs::read_to_string(base.join(s)).map_err(|e| {
                    RegistryError::new(at("script"), format!("cannot read {}: {e}", s.display()))
                })?),
                None => None,
            };
            let product = Product::build(
                p.open_id.parse().map_err(id_err(at("open_id")))?,
                p.product_id.parse().map_err(id_err(at("product_id")))?,
                p.product_key.parse().map_err(id_err(at("product_key")))?,
                RegistrationType::from_code(p.registration).map_err(id_err(at("registration")))?,
                p.encrypted,
                p.format,
                model,
                script,
            )
            .map_err(|e| RegistryError::new(at(e.field), e.problem))?;
            registry
                .add_product(product)
                .map_err(|e| RegistryError::new(format!("product[{i}]"), e.problem))?;
        }
        for (i, d) in file.device.into_iter().enumerate() {
            d.register(&mut registry, &format!("device[{i}]"))?;
        }
        Ok(registry)
    }

    /// Adds a product.
    ///
    /// # Errors
    /// A product with the same ProductID already exists.
    pub fn add_product(&mut self, product: Product) -> Result<(), RegistryError> {
        let key = product.product_id.to_string();
        if self.products.contains_key(&key) {
            return Err(RegistryError::new(
                "product",
                format!("ProductID {key} is registered twice"),
            ));
        }
        self.products.insert(key, product);
        Ok(())
    }

    /// Registers a device of a known product. Without a secret, the platform issues one:
    /// the first 16 bytes of AES-128-ECB(ProductKey, NodeEui), so a simulator restart issues
    /// the same secret again.
    ///
    /// # Errors
    /// An unknown product, or a device registered twice.
    pub fn register_device(
        &mut self,
        product_id: &ProductId,
        node_eui: NodeEui,
        secret: Option<DeviceSecret>,
        enabled: bool,
    ) -> Result<&Device, RegistryError> {
        let Some(product) = self.products.get(product_id.as_str()) else {
            return Err(RegistryError::new(
                "device",
                format!("product {product_id} is not registered"),
            ));
        };
        let key = (product_id.to_string(), node_eui.to_string());
        if self.devices.contains_key(&key) {
            return Err(RegistryError::new(
                "device",
                format!("device {product_id}/{node_eui} is registered twice"),
            ));
        }
        let secret = secret.unwrap_or_else(|| issued_secret(&product.product_key, &node_eui));
        let device = Device {
            product_id: product_id.clone(),
            node_eui,
            secret,
            enabled,
        };
        Ok(self.devices.entry(key).or_insert(device))
    }

    /// Adds or replaces a product (a registration restored from the store, or changed at
    /// run time).
    pub fn put_product(&mut self, product: Product) {
        self.products
            .insert(product.product_id.to_string(), product);
    }

    /// Adds or replaces a device (restored from the store, or changed at run time).
    ///
    /// # Errors
    /// Its product is not registered.
    pub fn put_device(&mut self, device: Device) -> Result<(), RegistryError> {
        if !self.products.contains_key(device.product_id.as_str()) {
            return Err(RegistryError::new(
                "device",
                format!("product {} is not registered", device.product_id),
            ));
        }
        let key = (device.product_id.to_string(), device.node_eui.to_string());
        self.devices.insert(key, device);
        Ok(())
    }

    /// A product by ProductID.
    pub fn product(&self, product_id: &str) -> Option<&Product> {
        self.products.get(product_id)
    }

    /// A device by ProductID and NodeEui.
    pub fn device(&self, product_id: &str, node_eui: &str) -> Option<&Device> {
        self.devices
            .get(&(product_id.to_owned(), node_eui.to_owned()))
    }

    /// Enables or disables a device.
    ///
    /// # Errors
    /// An unknown device.
    pub fn set_enabled(
        &mut self,
        product_id: &str,
        node_eui: &str,
        enabled: bool,
    ) -> Result<(), RegistryError> {
        match self
            .devices
            .get_mut(&(product_id.to_owned(), node_eui.to_owned()))
        {
            Some(d) => {
                d.enabled = enabled;
                Ok(())
            }
            None => Err(RegistryError::new(
                "device",
                format!("device {product_id}/{node_eui} is not registered"),
            )),
        }
    }

    /// Every product.
    pub fn products(&self) -> impl Iterator<Item = &Product> {
        self.products.values()
    }

    /// Every device.
    pub fn devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.values()
    }
}

/// Turns an identity error into a registry error at `at`.
fn id_err(at: String) -> impl FnOnce(x_protocol::IdentityError) -> RegistryError {
    move |e| RegistryError::new(at, e.problem.to_string())
}

/// The DeviceSecret the simulator issues to a device registered without one.
pub fn issued_secret(product_key: &ProductKey, node_eui: &NodeEui) -> DeviceSecret {
    let block = crypto::encrypt(product_key, node_eui.as_str().as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&block[..16]);
    DeviceSecret::from_bytes(bytes)
}

fn load_model(path: &Path, at: &str) -> Result<ModelSource, RegistryError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RegistryError::new(at, format!("cannot read {}: {e}", path.display())))?;
    let name = x_codegen::model_name_for(path);
    ModelSource::new(name, text).map_err(|diags| {
        RegistryError::new(
            at,
            format!(
                "{} is invalid: {}",
                path.display(),
                diagnostics_line(&diags)
            ),
        )
    })
}
