//! The platform's login rules, as pure decisions over the registry: who may CONNECT (auth
//! phase or V2), and the auth reply (HeaderCtrl 1) a device gets. The broker front end asks
//! these; they hold no sockets.

use x_protocol::payload::{AuthCode, AuthReply, AuthRequest, SessionGrant};
use x_protocol::{
    ConnectType, DeviceIdentity, MqttLogin, NodeEui, OpenId, ProductId, RegistrationType,
    SecretString,
};

use crate::registry::Registry;

/// How far in the future a type-1 login timestamp may be (clock skew), in seconds.
pub const CLOCK_SKEW_SECS: u64 = 5;

/// Who a successful CONNECT is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// The auth phase (product credentials): may publish `/sys/device/auth` and subscribe
    /// its own downlink only.
    Auth {
        /// The device the client id names.
        device: DeviceIdentity,
    },
    /// A device's V2 login: its own topics.
    Device {
        /// The device.
        device: DeviceIdentity,
        /// Whether the timestamp was checked.
        connect_type: ConnectType,
        /// The login timestamp (Unix seconds).
        timestamp: u64,
    },
}

/// Why a CONNECT was refused. The broker answers with "bad user name or password"
/// (CONNACK 4) for credential problems and "not authorized" (5) for the rest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The client id or user name does not have either login's shape.
    #[error("client id {client_id:?} / user name {username:?}: not an auth-phase or V2 login")]
    Malformed {
        /// The client id.
        client_id: String,
        /// The user name.
        username: String,
    },
    /// The client id and user name name different devices or products.
    #[error("client id and user name disagree: {0}")]
    Mismatch(String),
    /// No such product (or the OpenID is not its owner's).
    #[error("product {0} is not registered")]
    UnknownProduct(String),
    /// No such device.
    #[error("device {0} is not registered")]
    UnknownDevice(String),
    /// The device is disabled.
    #[error("device {0} is disabled")]
    DeviceDisabled(String),
    /// Wrong password.
    #[error("wrong password for {0}")]
    BadPassword(String),
    /// A type-1 timestamp not later than the device's last offline time.
    #[error(
        "timestamp {timestamp} is not later than the device's last offline time {last_offline}"
    )]
    StaleTimestamp {
        /// The login's timestamp.
        timestamp: u64,
        /// The device's last offline time.
        last_offline: u64,
    },
    /// A type-1 timestamp in the future.
    #[error("timestamp {timestamp} is in the future (now {now})")]
    FutureTimestamp {
        /// The login's timestamp.
        timestamp: u64,
        /// The platform's time.
        now: u64,
    },
}

impl Refusal {
    /// The CONNACK return code a strict broker sends: 4 (bad user name or password) or 5
    /// (not authorized).
    pub fn connack_code(&self) -> u8 {
        match self {
            Self::BadPassword(_) | Self::Malformed { .. } | Self::Mismatch(_) => 4,
            _ => 5,
        }
    }
}

/// Decides a CONNECT. `now` is Unix seconds; `last_offline` the device's last offline time.
///
/// # Errors
/// The [`Refusal`].
pub fn check_connect(
    registry: &Registry,
    client_id: &str,
    username: &str,
    password: &str,
    now: u64,
    last_offline: Option<u64>,
) -> Result<Login, Refusal> {
    let malformed = || Refusal::Malformed {
        client_id: client_id.to_owned(),
        username: username.to_owned(),
    };
    if let Some(rest) = username.strip_prefix("AUTH-") {
        let (open_id, product_id) = rest.split_once('-').ok_or_else(malformed)?;
        let (cid_product, node_eui) = client_id.split_once('-').ok_or_else(malformed)?;
        if cid_product != product_id {
            return Err(Refusal::Mismatch(format!(
                "client id product {cid_product}, user name product {product_id}"
            )));
        }
        let device =
            DeviceIdentity::parse(open_id, product_id, node_eui).map_err(|_| malformed())?;
        let product = product_of(registry, &device.open_id, &device.product_id)?;
        if product.product_key.expose_hex() != password {
            return Err(Refusal::BadPassword(format!("product {product_id}")));
        }
        return Ok(Login::Auth { device });
    }
    // V2_{ProductID}.{NodeEui}_{type}_{timestamp}
    let rest = client_id.strip_prefix("V2_").ok_or_else(malformed)?;
    let mut parts = rest.rsplitn(3, '_');
    let (Some(ts), Some(ty), Some(ids)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed());
    };
    let timestamp: u64 = ts.parse().map_err(|_| malformed())?;
    let connect_type = ty
        .parse::<u8>()
        .ok()
        .and_then(ConnectType::from_code)
        .ok_or_else(malformed)?;
    let (product_id, node_eui) = ids.split_once('.').ok_or_else(malformed)?;
    let mut user = username.splitn(3, '-');
    let (Some(open_id), Some(u_product), Some(u_node)) = (user.next(), user.next(), user.next())
    else {
        return Err(malformed());
    };
    if u_product != product_id || u_node != node_eui {
        return Err(Refusal::Mismatch(format!(
            "client id names {product_id}.{node_eui}, user name {u_product}-{u_node}"
        )));
    }
    let device = DeviceIdentity::parse(open_id, product_id, node_eui).map_err(|_| malformed())?;
    let product = product_of(registry, &device.open_id, &device.product_id)?;
    let name = format!("{product_id}/{node_eui}");
    let registered = registry
        .device(product_id, node_eui)
        .ok_or_else(|| Refusal::UnknownDevice(name.clone()))?;
    if !registered.enabled {
        return Err(Refusal::DeviceDisabled(name));
    }
    let expected = MqttLogin::connect(
        &device,
        &product.product_key,
        &registered.secret,
        connect_type,
        timestamp,
    );
    if !constant_time_eq(expected.password.expose().as_bytes(), password.as_bytes()) {
        return Err(Refusal::BadPassword(name));
    }
    if connect_type == ConnectType::TimestampChecked {
        if timestamp > now + CLOCK_SKEW_SECS {
            return Err(Refusal::FutureTimestamp { timestamp, now });
        }
        if let Some(last_offline) = last_offline
            && timestamp <= last_offline
        {
            return Err(Refusal::StaleTimestamp {
                timestamp,
                last_offline,
            });
        }
    }
    Ok(Login::Device {
        device,
        connect_type,
        timestamp,
    })
}

fn product_of<'r>(
    registry: &'r Registry,
    open_id: &OpenId,
    product_id: &ProductId,
) -> Result<&'r crate::registry::Product, Refusal> {
    registry
        .product(product_id.as_str())
        .filter(|p| p.open_id == *open_id)
        .ok_or_else(|| Refusal::UnknownProduct(product_id.to_string()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The auth reply to a HeaderCtrl 1 request from an auth-phase login for `login`'s device.
/// Registers type-0 devices on their first auth. `session` supplies SessionID and Nonce for
/// encrypted products.
pub fn auth_reply(
    registry: &mut Registry,
    login: &DeviceIdentity,
    request: &AuthRequest,
    session: impl FnOnce() -> SessionGrant,
) -> AuthReply {
    let refuse = |code| AuthReply {
        code,
        device_secret: None,
        session_id: None,
        nonce: None,
    };
    // The request must be about the device the login named.
    if request.open_id != login.open_id || request.product_id != login.product_id {
        return refuse(AuthCode::ProductNotRegistered);
    }
    if request.node_eui != login.node_eui {
        return refuse(AuthCode::DeviceRejected);
    }
    let Some(product) = registry
        .product(request.product_id.as_str())
        .filter(|p| p.open_id == request.open_id)
    else {
        return refuse(AuthCode::ProductNotRegistered);
    };
    if product.registration != request.registration_type {
        return refuse(AuthCode::TypeMismatch);
    }
    let encrypted = product.encrypted;
    let node: NodeEui = request.node_eui.clone();
    let secret = match registry.device(request.product_id.as_str(), node.as_str()) {
        Some(d) if !d.enabled => return refuse(AuthCode::DeviceRejected),
        Some(d) => d.secret.clone(),
        None if request.registration_type == RegistrationType::ProductSecretUnregistered => {
            match registry.register_device(&request.product_id, node, None, true) {
                Ok(d) => d.secret.clone(),
                Err(_) => return refuse(AuthCode::Busy),
            }
        }
        None => return refuse(AuthCode::DeviceRejected),
    };
    let grant = encrypted.then(session);
    AuthReply {
        code: AuthCode::Ok,
        device_secret: Some(SecretString::new(secret.expose_hex().to_owned())),
        session_id: grant.as_ref().map(|g| g.session_id.clone()),
        nonce: grant.map(|g| g.nonce),
    }
}
