//! Validated identities: OpenID, ProductID, NodeEui, the registration type, and the
//! triple that names one device on the platform.
//!
//! Every identity ends up inside MQTT topic strings and credentials, so each one is checked
//! when it is built: a value containing `/`, `+`, `#` or non-ASCII can never reach a topic.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why an identity (or a key, see [`crate::secret`]) was rejected: the field and the
/// problem. Displays as `{field}: {problem}`.
///
/// For public identities the problem quotes the offending value; for secrets it never does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct IdentityError {
    /// The protocol name of the field, e.g. `OpenID` or `ProductKey`.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: IdentityProblem,
}

/// What is wrong with an identity or key; see [`IdentityError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityProblem {
    /// The value has the wrong number of characters.
    #[error("expected {expected} characters, got {got} in {value:?}")]
    Length {
        /// What the protocol requires, e.g. `8` or `4-32`.
        expected: &'static str,
        /// How many characters the value has.
        got: usize,
        /// The rejected value.
        value: String,
    },
    /// The value contains a character the field does not allow.
    #[error("{what} expected, found {found:?} at position {position} in {value:?}")]
    Character {
        /// The kind of characters the field allows.
        what: &'static str,
        /// The first offending character.
        found: char,
        /// Its character position (0-based).
        position: usize,
        /// The rejected value.
        value: String,
    },
    /// A secret key has the wrong length. The value itself is never quoted.
    #[error("expected 32 hex characters (16 bytes), got {got} characters")]
    KeyLength {
        /// How many characters the value has.
        got: usize,
    },
    /// A secret key contains a non-hex character. The value itself is never quoted.
    #[error("expected hex digits, found a non-hex character at position {position}")]
    KeyCharacter {
        /// Character position (0-based) of the first non-hex character.
        position: usize,
    },
    /// The registration type is not 0, 1 or 2.
    #[error("expected registration type 0, 1 or 2, got {value:?}")]
    RegistrationType {
        /// The rejected value, as given.
        value: String,
    },
}

impl IdentityError {
    fn new(field: &'static str, problem: IdentityProblem) -> Self {
        Self { field, problem }
    }

    pub(crate) fn registration_type(value: String) -> Self {
        Self::new("Type", IdentityProblem::RegistrationType { value })
    }
}

/// Checks that `value` has a length in `range` and only characters accepted by `allowed`.
fn check(
    field: &'static str,
    value: &str,
    len: std::ops::RangeInclusive<usize>,
    expected: &'static str,
    what: &'static str,
    allowed: fn(char) -> bool,
) -> Result<(), IdentityError> {
    if let Some((position, found)) = value.chars().enumerate().find(|&(_, c)| !allowed(c)) {
        return Err(IdentityError::new(
            field,
            IdentityProblem::Character {
                what,
                found,
                position,
                value: value.to_owned(),
            },
        ));
    }
    // All characters are ASCII from here on, so bytes == characters.
    if !len.contains(&value.len()) {
        return Err(IdentityError::new(
            field,
            IdentityProblem::Length {
                expected,
                got: value.len(),
                value: value.to_owned(),
            },
        ));
    }
    Ok(())
}

/// Defines a validated string identity with `FromStr`, `Display`, serde and `as_str`.
macro_rules! string_identity {
    (
        $(#[$doc:meta])*
        $name:ident, field = $field:literal, len = $len:expr, expected = $expected:literal,
        what = $what:literal, allowed = $allowed:expr
    ) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The protocol's name for this field, used in error messages.
            pub const FIELD: &'static str = $field;

            /// Validates `value` and wraps it.
            ///
            /// # Errors
            /// [`IdentityError`] naming the field and the offending value.
            pub fn new(value: impl Into<String>) -> Result<Self, IdentityError> {
                let value = value.into();
                check($field, &value, $len, $expected, $what, $allowed)?;
                Ok(Self(value))
            }

            /// The identity exactly as it travels in topics and credentials.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdentityError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdentityError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_identity! {
    /// The vendor account id the platform assigns: exactly 8 hex characters.
    OpenId, field = "OpenID", len = 8..=8, expected = "8", what = "hex digit",
    allowed = |c: char| c.is_ascii_hexdigit()
}

string_identity! {
    /// The product id the platform assigns: exactly 8 hex characters.
    ProductId, field = "ProductID", len = 8..=8, expected = "8", what = "hex digit",
    allowed = |c: char| c.is_ascii_hexdigit()
}

string_identity! {
    /// The device id (NodeEui / DeviceID): 4 to 32 ASCII letters and digits.
    NodeEui, field = "NodeEui", len = 4..=32, expected = "4-32", what = "ASCII letter or digit",
    allowed = |c: char| c.is_ascii_alphanumeric()
}

/// How a device is registered with the platform (`Type` in the auth request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegistrationType {
    /// 0: one secret per product, not pre-registered; the device registers itself at auth.
    ProductSecretUnregistered,
    /// 1: one secret per product, pre-registered.
    ProductSecretPreRegistered,
    /// 2: one secret per device, pre-registered; DeviceSecret is burned in at the factory.
    DeviceSecretPreRegistered,
}

impl RegistrationType {
    /// The number that travels in the `Type` field.
    pub fn code(self) -> u8 {
        match self {
            Self::ProductSecretUnregistered => 0,
            Self::ProductSecretPreRegistered => 1,
            Self::DeviceSecretPreRegistered => 2,
        }
    }

    /// Parses the `Type` number.
    ///
    /// # Errors
    /// [`IdentityProblem::RegistrationType`] for anything but 0, 1 or 2.
    pub fn from_code(code: i64) -> Result<Self, IdentityError> {
        match code {
            0 => Ok(Self::ProductSecretUnregistered),
            1 => Ok(Self::ProductSecretPreRegistered),
            2 => Ok(Self::DeviceSecretPreRegistered),
            other => Err(IdentityError::registration_type(other.to_string())),
        }
    }

    /// Whether a device of this type must run the auth phase to learn its DeviceSecret.
    ///
    /// Devices of encrypted products always run it (to get SessionID and Nonce), whatever
    /// this says.
    pub fn needs_auth_for_secret(self) -> bool {
        !matches!(self, Self::DeviceSecretPreRegistered)
    }
}

impl FromStr for RegistrationType {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().parse::<i64>() {
            Ok(code) => Self::from_code(code),
            Err(_) => Err(IdentityError::registration_type(s.to_owned())),
        }
    }
}

impl fmt::Display for RegistrationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

impl Serialize for RegistrationType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.code())
    }
}

impl<'de> Deserialize<'de> for RegistrationType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_code(i64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The triple that names one device: OpenID, ProductID and NodeEui.
///
/// It is what every device topic is built from (`/sys/{OpenID}/{ProductID}/{NodeEui}/...`).
///
/// ```
/// use x_protocol::DeviceIdentity;
///
/// let device = DeviceIdentity::parse("7ED01E2A", "AA30C505", "20MQTTJ000121")?;
/// assert_eq!(device.to_string(), "7ED01E2A/AA30C505/20MQTTJ000121");
/// let bad = DeviceIdentity::parse("7ED01E2A", "AA30C505", "no spaces").unwrap_err();
/// assert_eq!(bad.field, "NodeEui");
/// # Ok::<(), x_protocol::IdentityError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceIdentity {
    /// The vendor account.
    pub open_id: OpenId,
    /// The product.
    pub product_id: ProductId,
    /// The device.
    pub node_eui: NodeEui,
}

impl DeviceIdentity {
    /// Bundles three validated ids.
    pub fn new(open_id: OpenId, product_id: ProductId, node_eui: NodeEui) -> Self {
        Self {
            open_id,
            product_id,
            node_eui,
        }
    }

    /// Validates three strings and bundles them.
    ///
    /// # Errors
    /// The first [`IdentityError`] among the three, naming its field.
    pub fn parse(open_id: &str, product_id: &str, node_eui: &str) -> Result<Self, IdentityError> {
        Ok(Self::new(
            open_id.parse()?,
            product_id.parse()?,
            node_eui.parse()?,
        ))
    }

    /// The topic prefix `/sys/{OpenID}/{ProductID}/{NodeEui}`.
    pub fn topic_prefix(&self) -> String {
        format!(
            "/sys/{}/{}/{}",
            self.open_id, self.product_id, self.node_eui
        )
    }
}

impl fmt::Display for DeviceIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.open_id, self.product_id, self.node_eui)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_notes_vector() {
        let d = DeviceIdentity::parse("7ED01E2A", "AA30C505", "20MQTTJ000121").unwrap();
        assert_eq!(d.topic_prefix(), "/sys/7ED01E2A/AA30C505/20MQTTJ000121");
    }

    #[test]
    fn errors_name_field_and_value() {
        let e = OpenId::new("7ED01E2").unwrap_err();
        assert_eq!(
            e.to_string(),
            "OpenID: expected 8 characters, got 7 in \"7ED01E2\""
        );
        let e = NodeEui::new("dev/1").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("NodeEui: ASCII letter or digit expected, found '/'")
        );
    }
}
