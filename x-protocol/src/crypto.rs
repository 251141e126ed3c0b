//! The protocol's one cipher: AES-128-ECB with PKCS#7 padding, to and from uppercase hex,
//! and the SessionKey derivation for encrypted products.

use aes::Aes128;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyInit, block_padding::Pkcs7};

use crate::secret::{Key, KeyKind, ProductKey, SessionKey};

type EcbEnc = ecb::Encryptor<Aes128>;
type EcbDec = ecb::Decryptor<Aes128>;

/// Why a ciphertext could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The text is not hex: an odd number of digits or a non-hex character.
    #[error("ciphertext: not hex ({reason})")]
    Hex {
        /// What is wrong with the hex text.
        reason: String,
    },
    /// The decoded ciphertext is empty or not a whole number of 16-byte AES blocks.
    #[error("ciphertext: {len} bytes is not a positive multiple of the 16-byte AES block")]
    Length {
        /// Decoded length in bytes.
        len: usize,
    },
    /// The last block does not end in valid PKCS#7 padding: usually the wrong key.
    #[error("ciphertext: bad PKCS#7 padding after decryption (wrong key or corrupted data)")]
    Padding,
}

/// Encrypts `plaintext` with AES-128-ECB/PKCS#7 and returns uppercase hex, as the platform
/// expects for passwords and encrypted payloads.
///
/// ```
/// use x_protocol::{crypto, SessionKey};
///
/// let key: SessionKey = "A9AB8E82D2D4A60E67C99D3A446D6088".parse()?;
/// let hex = crypto::encrypt_hex(&key, br#"{"power":99}"#);
/// assert_eq!(hex.len() % 32, 0);
/// assert_eq!(crypto::decrypt_hex(&key, &hex.to_lowercase())?, br#"{"power":99}"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn encrypt_hex<K: KeyKind>(key: &Key<K>, plaintext: &[u8]) -> String {
    hex::encode_upper(encrypt(key, plaintext))
}

/// Encrypts `plaintext` with AES-128-ECB/PKCS#7 and returns the raw ciphertext.
pub fn encrypt<K: KeyKind>(key: &Key<K>, plaintext: &[u8]) -> Vec<u8> {
    EcbEnc::new(key.expose_bytes().into()).encrypt_padded_vec::<Pkcs7>(plaintext)
}

/// Decrypts hex text (either case) produced by [`encrypt_hex`].
///
/// # Errors
/// [`CryptoError::Hex`], [`CryptoError::Length`] or [`CryptoError::Padding`].
pub fn decrypt_hex<K: KeyKind>(key: &Key<K>, hex_text: &str) -> Result<Vec<u8>, CryptoError> {
    let bytes = hex::decode(hex_text).map_err(|e| CryptoError::Hex {
        reason: e.to_string(),
    })?;
    decrypt(key, &bytes)
}

/// Decrypts raw AES-128-ECB/PKCS#7 ciphertext.
///
/// # Errors
/// [`CryptoError::Length`] or [`CryptoError::Padding`].
pub fn decrypt<K: KeyKind>(key: &Key<K>, ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(16) {
        return Err(CryptoError::Length {
            len: ciphertext.len(),
        });
    }
    EcbDec::new(key.expose_bytes().into())
        .decrypt_padded_vec::<Pkcs7>(ciphertext)
        .map_err(|_| CryptoError::Padding)
}

/// Why a SessionKey could not be derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionKeyError {
    /// `SessionID + hex(Nonce)` is 16 bytes or longer, so its ciphertext is more than one
    /// block and the protocol does not say which 16 bytes would be the key.
    #[error(
        "SessionID: SessionID + hex(Nonce) is {len} bytes; the SessionKey derivation is only defined for inputs under 16 bytes"
    )]
    InputTooLong {
        /// Length of `SessionID + hex(Nonce)` in bytes.
        len: usize,
    },
}

/// Derives the SessionKey of an encrypted product from the auth reply's (or a HeaderCtrl 3
/// rotation's) SessionID and Nonce.
///
/// The vendor text gives only pseudo-code,
/// `SessionKey = ENCRYPT(ProductKey, SessionID + nonce.toHex)`. This function takes it, as
/// PROTOCOL-NOTES.md settles it, to mean:
/// `SessionKey = AES-128-ECB-PKCS#7(key = ProductKey bytes, plaintext = UTF-8 of
/// SessionID followed by the Nonce in lowercase hex without padding)`, where the Nonce is a
/// Java `int` formatted like `Integer.toHexString` (so a negative nonce is its 32-bit two's
/// complement, e.g. -1 is `ffffffff`). For the short inputs the platform issues, the
/// ciphertext is exactly one 16-byte block and that block is the key.
///
/// **This reading is an assumption**, unverified against the platform: no test vector is
/// published. It lives only here so that one edit fixes every user if it proves wrong.
///
/// # Errors
/// [`SessionKeyError::InputTooLong`] when `SessionID + hex(Nonce)` is 16 bytes or more, since
/// the ciphertext would then be longer than a key and the protocol does not say how to cut it.
pub fn derive_session_key(
    product_key: &ProductKey,
    session_id: &str,
    nonce: i32,
) -> Result<SessionKey, SessionKeyError> {
    // Java's Integer.toHexString: lowercase, no padding, two's complement for negatives.
    let plaintext = zeroize::Zeroizing::new(format!("{session_id}{:x}", nonce as u32));
    if plaintext.len() >= 16 {
        return Err(SessionKeyError::InputTooLong {
            len: plaintext.len(),
        });
    }
    let block = encrypt(product_key, plaintext.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&block[..16]);
    let key = SessionKey::from_bytes(bytes);
    zeroize::Zeroize::zeroize(&mut bytes);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_uplink_example_is_a_prefix_of_the_full_ciphertext() {
        let key = SessionKey::from_hex("A9AB8E82D2D4A60E67C99D3A446D6088").unwrap();
        let out = encrypt_hex(&key, br#"{"deviceId":"10000001","power":99}"#);
        assert_eq!(out.len(), 96, "33 bytes of JSON pad to 3 blocks");
        assert!(out.starts_with("CB96395F5065FD121D88B1593EFE"), "{out}");
        assert_eq!(
            decrypt_hex(&key, &out.to_lowercase()).unwrap(),
            br#"{"deviceId":"10000001","power":99}"#
        );
    }

    #[test]
    fn session_key_is_one_block_and_matches_its_definition() {
        let pk = ProductKey::from_hex("DB6FACEF35BEBA0517712F0E4BE32936").unwrap();
        let sk = derive_session_key(&pk, "3788433", 4).unwrap();
        let expected = &encrypt(&pk, b"37884334")[..16];
        assert_eq!(sk.expose_bytes(), expected);
        let neg = derive_session_key(&pk, "ab", -1).unwrap();
        assert_eq!(neg.expose_bytes(), &encrypt(&pk, b"abffffffff")[..16]);
        let nonce_128 = derive_session_key(&pk, "4655434B", 128).unwrap();
        assert_eq!(nonce_128.expose_bytes(), &encrypt(&pk, b"4655434B80")[..16]);
    }

    #[test]
    fn session_key_rejects_long_input() {
        let pk = ProductKey::from_hex("DB6FACEF35BEBA0517712F0E4BE32936").unwrap();
        assert_eq!(
            derive_session_key(&pk, "0123456789abcdef", 1),
            Err(SessionKeyError::InputTooLong { len: 17 })
        );
    }
}
