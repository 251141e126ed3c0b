//! Secret material: the 16-byte AES keys (ProductKey, DeviceSecret, SessionKey) and MQTT
//! passwords. These types redact themselves in `Debug` and `Display` and wipe their memory
//! on drop; reading the secret takes an explicit, greppable `expose_*` call.

use std::fmt;
use std::marker::PhantomData;

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::identity::{IdentityError, IdentityProblem};

/// What a [`Key`] is for. Sealed: the three kinds below are all there are.
pub trait KeyKind: sealed::Sealed {
    /// The protocol's name for the key, used in error messages.
    const FIELD: &'static str;
}

mod sealed {
    pub trait Sealed {}
}

/// Marker kinds for [`Key`].
pub mod kind {
    /// Marker for [`super::ProductKey`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Product {}
    /// Marker for [`super::DeviceSecret`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Device {}
    /// Marker for [`super::SessionKey`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Session {}
}

impl sealed::Sealed for kind::Product {}
impl sealed::Sealed for kind::Device {}
impl sealed::Sealed for kind::Session {}
impl KeyKind for kind::Product {
    const FIELD: &'static str = "ProductKey";
}
impl KeyKind for kind::Device {
    const FIELD: &'static str = "DeviceSecret";
}
impl KeyKind for kind::Session {
    const FIELD: &'static str = "SessionKey";
}

/// A 16-byte AES-128 key, written on the wire and in credentials as 32 hex characters.
///
/// The hex text is kept exactly as it was given (its letter case included), because the
/// auth-phase password is the ProductKey text itself and the V2 password plaintext embeds it.
/// Keys built from bytes use uppercase, as the platform issues them.
///
/// ```
/// use x_protocol::ProductKey;
///
/// let key: ProductKey = "db6facef35beba0517712f0e4be32936".parse()?;
/// assert_eq!(format!("{key:?} {key}"), "ProductKey([redacted]) [redacted]");
/// assert_eq!(key.expose_hex(), "db6facef35beba0517712f0e4be32936"); // as given
/// assert!("DB6F".parse::<ProductKey>().is_err());
/// # Ok::<(), x_protocol::IdentityError>(())
/// ```
#[derive(Clone)]
pub struct Key<K: KeyKind> {
    bytes: [u8; 16],
    text: [u8; 32],
    kind: PhantomData<K>,
}

impl<K: KeyKind> Drop for Key<K> {
    fn drop(&mut self) {
        self.bytes.zeroize();
        self.text.zeroize();
    }
}

impl<K: KeyKind> ZeroizeOnDrop for Key<K> {}

/// The product secret (ProductKey): 32 hex characters, the AES key of the auth phase and of
/// SessionKey derivation.
pub type ProductKey = Key<kind::Product>;
/// The device secret (DeviceSecret): 32 hex characters, the AES key of the V2 password.
pub type DeviceSecret = Key<kind::Device>;
/// The payload key of encrypted products, derived from ProductKey, SessionID and Nonce.
pub type SessionKey = Key<kind::Session>;

impl<K: KeyKind> Key<K> {
    /// Parses 32 hex characters (either case).
    ///
    /// # Errors
    /// [`IdentityProblem::KeyLength`] or [`IdentityProblem::KeyCharacter`], naming the key but
    /// never quoting it.
    pub fn from_hex(text: &str) -> Result<Self, IdentityError> {
        if let Some(position) = text.chars().position(|c| !c.is_ascii_hexdigit()) {
            return Err(IdentityError {
                field: K::FIELD,
                problem: IdentityProblem::KeyCharacter { position },
            });
        }
        if text.len() != 32 {
            return Err(IdentityError {
                field: K::FIELD,
                problem: IdentityProblem::KeyLength { got: text.len() },
            });
        }
        let mut key = Self {
            bytes: [0; 16],
            text: [0; 32],
            kind: PhantomData,
        };
        key.text.copy_from_slice(text.as_bytes());
        // Length and alphabet were checked above, so this cannot fail.
        hex::decode_to_slice(text, &mut key.bytes).map_err(|_| IdentityError {
            field: K::FIELD,
            problem: IdentityProblem::KeyLength { got: text.len() },
        })?;
        Ok(key)
    }

    /// Wraps 16 raw bytes; the hex text is uppercase.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        let mut key = Self {
            bytes,
            text: [0; 32],
            kind: PhantomData,
        };
        // 16 bytes always encode to exactly 32 hex characters.
        let _ = hex::encode_to_slice(bytes, &mut key.text);
        key.text.make_ascii_uppercase();
        key
    }

    /// The raw key bytes. The name makes every use of the secret easy to find.
    pub fn expose_bytes(&self) -> &[u8; 16] {
        &self.bytes
    }

    /// The key's hex text as it was given (or uppercase, for keys built from bytes).
    pub fn expose_hex(&self) -> &str {
        // Only ASCII hex digits are ever stored in `text`.
        std::str::from_utf8(&self.text).unwrap_or_default()
    }
}

impl<K: KeyKind> PartialEq for Key<K> {
    /// Compares key bytes (not letter case) in constant time.
    fn eq(&self, other: &Self) -> bool {
        self.bytes
            .iter()
            .zip(other.bytes.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl<K: KeyKind> Eq for Key<K> {}

impl<K: KeyKind> fmt::Debug for Key<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}([redacted])", K::FIELD)
    }
}

impl<K: KeyKind> fmt::Display for Key<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<K: KeyKind> std::str::FromStr for Key<K> {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

/// A secret string (an MQTT password, a DeviceSecret as received): redacted in `Debug` and
/// `Display`, wiped on drop. Serializing it writes the secret, since that is how it travels.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wraps a secret string.
    pub fn new(secret: String) -> Self {
        Self(Zeroizing::new(secret))
    }

    /// The secret text, for handing to the MQTT client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([redacted])")
    }
}

impl serde::Serialize for SecretString {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for SecretString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <String as serde::Deserialize>::deserialize(d).map(Self::new)
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "DB6FACEF35BEBA0517712F0E4BE32936";

    #[test]
    fn debug_and_display_redact() {
        let k = ProductKey::from_hex(KEY).unwrap();
        let shown = format!("{k:?} {k} {k:#?}");
        assert!(!shown.contains("DB6F"), "{shown}");
        assert!(!shown.to_lowercase().contains("db6f"), "{shown}");
        assert_eq!(format!("{k:?}"), "ProductKey([redacted])");
        let p = SecretString::new("hunter2".into());
        assert_eq!(format!("{p:?} {p}"), "SecretString([redacted]) [redacted]");
    }

    #[test]
    fn keeps_text_case_and_compares_bytes() {
        let upper = DeviceSecret::from_hex(KEY).unwrap();
        let lower = DeviceSecret::from_hex(&KEY.to_lowercase()).unwrap();
        assert_eq!(upper, lower);
        assert_eq!(lower.expose_hex(), KEY.to_lowercase());
        assert_eq!(
            DeviceSecret::from_bytes(*lower.expose_bytes()).expose_hex(),
            KEY
        );
    }

    #[test]
    fn errors_never_quote_the_secret() {
        let e = ProductKey::from_hex("DB6FACEF35BEBA0517712F0E4BE3293").unwrap_err();
        assert_eq!(
            e.to_string(),
            "ProductKey: expected 32 hex characters (16 bytes), got 31 characters"
        );
        let e = DeviceSecret::from_hex("DB6FACEF35BEBA0517712F0E4BE3293Z").unwrap_err();
        assert_eq!(
            e.to_string(),
            "DeviceSecret: expected hex digits, found a non-hex character at position 31"
        );
    }
}
