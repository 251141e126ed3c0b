//! MQTT CONNECT credentials for the two login phases: the auth phase (HeaderCtrl 1, product
//! credentials) and the V2 connect phase (device credentials, password encrypted with the
//! DeviceSecret).

use std::fmt;

use crate::crypto::encrypt_hex;
use crate::identity::DeviceIdentity;
use crate::secret::{DeviceSecret, ProductKey, SecretString};

/// Client id, user name and password for one MQTT CONNECT.
///
/// `Debug` shows the client id and user name but never the password.
///
/// ```
/// use x_protocol::{ConnectType, DeviceIdentity, DeviceSecret, MqttLogin, ProductKey};
///
/// let device = DeviceIdentity::parse("7ED01E2A", "AA30C505", "20MQTTJ000121")?;
/// let product_key: ProductKey = "DB6FACEF35BEBA0517712F0E4BE32936".parse()?;
/// let secret: DeviceSecret = "326086233FAB8A96566796551EB1DFF8".parse()?;
/// let login = MqttLogin::connect(&device, &product_key, &secret, ConnectType::TimestampChecked, 1675404867);
/// assert_eq!(login.client_id, "V2_AA30C505.20MQTTJ000121_1_1675404867");
/// assert!(!format!("{login:?}").contains(login.password.expose()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttLogin {
    /// The MQTT ClientID.
    pub client_id: String,
    /// The MQTT UserName.
    pub username: String,
    /// The MQTT Password (a secret).
    pub password: SecretString,
}

/// The `type` field of the V2 ClientID: whether the platform checks the login timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectType {
    /// Type 0: the platform does not check the timestamp (it is still part of the ClientID).
    Unchecked,
    /// Type 1: the timestamp is also part of the password, and the platform accepts it only
    /// if it is later than the device's last offline time and not in the future.
    TimestampChecked,
}

impl ConnectType {
    /// The digit that travels in the ClientID.
    pub fn code(self) -> u8 {
        match self {
            Self::Unchecked => 0,
            Self::TimestampChecked => 1,
        }
    }

    /// Parses the ClientID digit.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Unchecked),
            1 => Some(Self::TimestampChecked),
            _ => None,
        }
    }
}

impl fmt::Display for ConnectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

impl MqttLogin {
    /// The auth-phase login: ClientID `{ProductID}-{NodeEui}`, UserName
    /// `AUTH-{OpenID}-{ProductID}`, Password = the ProductKey's hex text.
    ///
    /// With it a device may only publish `/sys/device/auth` and subscribe its own downlink.
    pub fn auth(device: &DeviceIdentity, product_key: &ProductKey) -> Self {
        Self {
            client_id: format!("{}-{}", device.product_id, device.node_eui),
            username: format!("AUTH-{}-{}", device.open_id, device.product_id),
            password: SecretString::new(product_key.expose_hex().to_owned()),
        }
    }

    /// The V2 connect-phase login.
    ///
    /// - ClientID `V2_{ProductID}.{NodeEui}_{type}_{timestamp}` (the timestamp is there for
    ///   both types);
    /// - UserName `{OpenID}-{ProductID}-{NodeEui}`;
    /// - Password = uppercase hex of AES-128-ECB-PKCS#7 under the DeviceSecret of the
    ///   parameter values sorted by parameter name and joined with `_`: `ClientId` and
    ///   `ProductKey` for type 0, plus `Timestamp` for type 1.
    ///
    /// `timestamp` is Unix time in seconds.
    pub fn connect(
        device: &DeviceIdentity,
        product_key: &ProductKey,
        device_secret: &DeviceSecret,
        connect_type: ConnectType,
        timestamp: u64,
    ) -> Self {
        let client_id_param = format!("{}.{}", device.product_id, device.node_eui);
        let timestamp_text = timestamp.to_string();
        let mut params: Vec<(&str, &str)> = vec![
            ("ClientId", &client_id_param),
            ("ProductKey", product_key.expose_hex()),
        ];
        if connect_type == ConnectType::TimestampChecked {
            params.push(("Timestamp", &timestamp_text));
        }
        params.sort_by_key(|&(name, _)| name);
        let content = zeroize::Zeroizing::new(
            params
                .iter()
                .map(|&(_, value)| value)
                .collect::<Vec<_>>()
                .join("_"),
        );
        Self {
            client_id: format!("V2_{client_id_param}_{connect_type}_{timestamp}"),
            username: format!(
                "{}-{}-{}",
                device.open_id, device.product_id, device.node_eui
            ),
            password: SecretString::new(encrypt_hex(device_secret, content.as_bytes())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_password() {
        let d = DeviceIdentity::parse("7ED01E2A", "AA30C505", "20MQTTJ000121").unwrap();
        let pk = ProductKey::from_hex("DB6FACEF35BEBA0517712F0E4BE32936").unwrap();
        let login = MqttLogin::auth(&d, &pk);
        let shown = format!("{login:?}");
        assert!(shown.contains("AA30C505-20MQTTJ000121"), "{shown}");
        assert!(!shown.contains("DB6FACEF"), "{shown}");
    }
}
