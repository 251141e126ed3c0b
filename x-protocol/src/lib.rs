//! The X platform's MQTT access protocol v2.0, without I/O: validated identities, the two
//! login phases' credentials, AES-128-ECB payload crypto and SessionKey derivation, JSON
//! frames and typed payloads, every topic of the command table, and message ids.
//!
//! Nothing here opens a socket or needs an async runtime; `x-runtime` drives it over MQTT
//! and `x-sim` plays the platform's side with it.
//!
//! ```
//! use x_protocol::{ConnectType, DeviceIdentity, DeviceSecret, MqttLogin, ProductKey};
//!
//! let device = DeviceIdentity::parse("7ED01E2A", "AA30C505", "20MQTTJ000121")?;
//! let product_key: ProductKey = "DB6FACEF35BEBA0517712F0E4BE32936".parse()?;
//! let secret: DeviceSecret = "326086233FAB8A96566796551EB1DFF8".parse()?;
//! let login = MqttLogin::connect(&device, &product_key, &secret, ConnectType::Unchecked, 1675404867);
//! assert_eq!(login.client_id, "V2_AA30C505.20MQTTJ000121_0_1675404867");
//! assert!(login.password.expose().starts_with("5EB6BBC8"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod credentials;
pub mod crypto;
pub mod frame;
pub mod identity;
mod lenient;
pub mod message_id;
pub mod model;
pub mod payload;
pub mod secret;
pub mod topic;

pub use credentials::{ConnectType, MqttLogin};
pub use crypto::{CryptoError, SessionKeyError, derive_session_key};
pub use frame::{AckCode, AckPayload, Frame, FrameError, HeaderCtrl, MessageId, PROTOCOL_VERSION};
pub use identity::{
    DeviceIdentity, IdentityError, IdentityProblem, NodeEui, OpenId, ProductId, RegistrationType,
};
pub use message_id::MessageIdSource;
pub use secret::{DeviceSecret, ProductKey, SecretString, SessionKey};
pub use topic::{
    IDENTIFIER_MAX_LEN, IDENTIFIER_RULE, Identifier, IdentifierError, Publisher, Reply, Topic,
    TopicError, TopicKind, TopicSpec, check_identifier,
};
