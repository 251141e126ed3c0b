//! What a logged payload may show: the one place that takes secrets out of payloads before
//! they reach a log line, in either direction.
//!
//! An auth reply carries the DeviceSecret (and, for encrypted products, SessionID and Nonce,
//! from which the SessionKey is derived); a SessionKey update (HeaderCtrl 3) carries
//! SessionID and Nonce. Their values are written as `"[redacted]"`, at any depth, whatever
//! the case of the key.

use std::fmt;

use serde_json::Value;

/// Keys whose values are secrets wherever a payload carries them (compared ignoring ASCII
/// case).
const SECRET_KEYS: [&str; 6] = [
    "DeviceSecret",
    "SessionID",
    "Nonce",
    "SessionKey",
    "ProductKey",
    "Password",
];

/// What a secret's value is logged as.
pub(crate) const REDACTED: &str = "[redacted]";

/// A payload as it may be logged: `Display` writes its JSON with every secret value
/// replaced by `"[redacted]"`. Built only when the log line is enabled (tracing formats its
/// arguments lazily), and clones nothing when the payload holds no secret.
pub(crate) struct Redacted<'a>(pub(crate) &'a Value);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if holds_secret(self.0) {
            write!(f, "{}", redacted(self.0))
        } else {
            write!(f, "{}", self.0)
        }
    }
}

fn is_secret_key(key: &str) -> bool {
    SECRET_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key))
}

fn holds_secret(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(k, v)| is_secret_key(k) || holds_secret(v)),
        Value::Array(items) => items.iter().any(holds_secret),
        _ => false,
    }
}

/// `value` with every secret's value replaced by `"[redacted]"`.
pub(crate) fn redacted(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) {
                        Value::String(REDACTED.to_owned())
                    } else {
                        redacted(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_redacted_at_any_depth_and_in_any_case() {
        let reply = json!({
            "Code": 0,
            "DeviceSecret": "326086233FAB8A96566796551EB1DFF8",
            "SessionID": "0A1B2C3D",
            "Nonce": 4711,
            "nested": [{"sessionid": "0A1B2C3D", "keep": 1}],
        });
        let text = Redacted(&reply).to_string();
        for secret in ["326086233FAB8A96566796551EB1DFF8", "0A1B2C3D", "4711"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(text.contains("\"Code\":0"), "{text}");
        assert!(text.contains("\"keep\":1"), "{text}");
        assert_eq!(text.matches(REDACTED).count(), 4, "{text}");
    }

    #[test]
    fn payloads_without_secrets_are_logged_as_they_are() {
        let report = json!({"power": 23.5, "switch": true, "list": [1, 2]});
        assert_eq!(Redacted(&report).to_string(), report.to_string());
        let text = json!("68AA0011");
        assert_eq!(Redacted(&text).to_string(), "\"68AA0011\"");
    }
}
