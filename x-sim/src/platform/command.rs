//! Platform commands and the device's answers: property set, service call, property ask,
//! passthrough downlink, config ask and set, firmware ask and OTA notify. JSON commands of
//! HEX products go through the product's parsing script (20/21/23 become 22/24/25 on the HEX
//! downlink), as on the real platform. The answer is matched by MessageId and checked: set
//! acks and service outputs against the thing model, answers to a property ask for the asked
//! properties, an OTA ack for its DownID. An answer that fails a check is a violation of the
//! device, kept in the violation log with its frame.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use x_protocol::payload::{FirmwareReport, OtaNotify};
use x_protocol::{
    AckPayload, DeviceIdentity, Frame, HeaderCtrl, Identifier, MessageId, Topic, TopicKind,
};

use super::violations::Evidence;
use super::{Broken, Platform, Rule};
use crate::registry::Format;
use crate::sync::{lock, read};

/// A platform command, in thing-model JSON terms.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Property set (20; HEX products 22): `{"id": value, ..}` or `{"params":[{"identify",
    /// "value"}]}`.
    SetProperties(Value),
    /// Service call (21; HEX products 24).
    CallService {
        /// The service identifier.
        service: String,
        /// Its input parameters (an object).
        params: Value,
    },
    /// Property ask (23; HEX products 25).
    AskProperties(Vec<String>),
    /// Passthrough downlink (7): `{"data": ..}`.
    Passthrough(Value),
    /// Config ask (14 on `ask_config`).
    AskConfig,
    /// Config set (14 on `down_config`): the settings object.
    SetConfig(Value),
    /// Firmware ask (13).
    AskFirmware,
    /// OTA notify (9).
    NotifyOta(OtaNotify),
    /// Any frame on any platform topic, unchecked (for tests of a device's error handling).
    Raw {
        /// The topic kind.
        kind: TopicKind,
        /// The topic's identifier, for kinds that have one.
        identifier: Option<String>,
        /// The command.
        header_ctrl: HeaderCtrl,
        /// The plain payload.
        payload: Value,
    },
}

/// A device's answer to a command.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The topic it came on.
    pub topic: String,
    /// Its HeaderCtrl.
    pub header_ctrl: HeaderCtrl,
    /// Its MessageId (the command's).
    pub message_id: MessageId,
    /// The plain payload (decrypted); for HEX answers, the script's decoding.
    pub payload: Value,
    /// HEX answers: the hex as it came.
    pub raw: Option<String>,
}

impl Answer {
    /// The payload as an ack (`{Code, Msg?, Data?}`), when it is one.
    pub fn ack(&self) -> Option<AckPayload> {
        serde_json::from_value(self.payload.clone()).ok()
    }
}

/// Why a command failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    /// No answer within the timeout.
    #[error("no answer from {device} within {timeout:?}")]
    Timeout {
        /// The device.
        device: String,
        /// How long the platform waited.
        timeout: Duration,
    },
    /// The device is not registered.
    #[error("device {0} is not registered")]
    UnknownDevice(String),
    /// An encrypted product's device has not authenticated (no SessionKey).
    #[error("{0} has no SessionKey yet: it must run the auth phase first")]
    NoSession(String),
    /// The command could not be built (bad identifier, the script refused it, ...).
    #[error("{0}")]
    Build(String),
    /// The device answered, but not as the protocol and the model say.
    #[error("bad answer from {device}: {reason}")]
    BadAnswer {
        /// The device.
        device: String,
        /// What is wrong.
        reason: String,
        /// The answer.
        answer: Box<Answer>,
    },
}

/// A device's answer as it reaches the command waiting for it.
pub(super) struct Delivered {
    /// The answer.
    pub answer: Answer,
    /// Its bytes as they came.
    pub bytes: Bytes,
    /// The rule its frame broke (a HeaderCtrl not of its topic, a plain or undecryptable
    /// payload), for a checked command to report.
    pub broken: Option<Broken>,
}

/// A command waiting for its answer.
pub(super) struct Waiting {
    /// Where the answer goes.
    pub tx: oneshot::Sender<Delivered>,
    /// Whether the command checks the answer (and so records its violations).
    pub checked: bool,
}

/// Where a command goes and what it carries.
struct Outgoing {
    topic: Topic,
    header_ctrl: HeaderCtrl,
    payload: Value,
    /// The payload as the JSON text to send instead, when a `Value` cannot hold it (an OTA
    /// notify's MD5 as a 128-bit number).
    text: Option<String>,
}

impl Platform {
    /// Sends a command to a device and waits for its answer (the configured timeout unless
    /// `timeout` is given), then checks the answer.
    ///
    /// # Errors
    /// See [`CommandError`].
    pub async fn send_command(
        &self,
        device: &DeviceIdentity,
        command: Command,
        timeout: Option<Duration>,
    ) -> Result<Answer, CommandError> {
        let format = {
            let registry = read(&self.inner.registry);
            if registry
                .device(device.product_id.as_str(), device.node_eui.as_str())
                .is_none()
            {
                return Err(CommandError::UnknownDevice(device.to_string()));
            }
            registry
                .product(device.product_id.as_str())
                .map(|p| p.format)
        };
        // A HEX command goes through the product's parsing script: on a blocking thread,
        // not on the async workers.
        let outgoing = if format == Some(Format::Hex) {
            let (platform, d, c) = (self.clone(), device.clone(), command.clone());
            tokio::task::spawn_blocking(move || platform.outgoing(&d, &c, format))
                .await
                .map_err(|e| {
                    CommandError::Build(format!("the parsing script task failed: {e}"))
                })??
        } else {
            self.outgoing(device, &command, format)?
        };
        let (topic, header_ctrl) = (outgoing.topic.clone(), outgoing.header_ctrl);
        let Delivered {
            answer,
            bytes,
            broken,
        } = self
            .exchange(
                &outgoing.topic,
                outgoing.header_ctrl,
                (outgoing.payload, outgoing.text),
                timeout.unwrap_or(self.inner.config.command_timeout),
                true,
            )
            .await?;
        // The first rule the answer broke: where it came, how it came, what it says.
        let checked = answered_where_the_table_says(&topic, header_ctrl, &answer)
            .map_err(|reason| Broken::new(Rule::AnswerOffTable, reason))
            .and_then(|()| broken.map_or(Ok(()), Err))
            .and_then(|()| {
                self.check_answer(device, &command, &answer)
                    .map_err(|reason| Broken::new(Rule::BadAnswer, reason))
            });
        match checked {
            Ok(()) => Ok(answer),
            Err(broken) => {
                let frame = Frame::decode(&bytes).ok();
                let evidence = Evidence {
                    frame: frame.as_ref(),
                    plain: frame.as_ref().and_then(|f| self.decrypted(device, f)),
                    ..Evidence::of(&answer.topic, &bytes)
                };
                // The 502 is answered once the violation is stored.
                if let Some(durable) = self.violation(device, &broken, evidence) {
                    let _ = durable.wait().await;
                }
                Err(CommandError::BadAnswer {
                    device: device.to_string(),
                    reason: broken.reason,
                    answer: Box::new(answer),
                })
            }
        }
    }

    /// The topic, command and payload of a command. Thing-model commands of HEX products
    /// (20, 21, 23) are encoded by the parsing script and go as 22, 24, 25 on the HEX
    /// downlink.
    fn outgoing(
        &self,
        device: &DeviceIdentity,
        command: &Command,
        format: Option<Format>,
    ) -> Result<Outgoing, CommandError> {
        let build = |e: &dyn std::fmt::Display| CommandError::Build(e.to_string());
        let (kind, identifier, header_ctrl, payload) = match command {
            Command::SetProperties(v) => (
                TopicKind::PropertySet,
                None,
                HeaderCtrl::PropertySet,
                json!({"params": set_params(v)?}),
            ),
            Command::CallService { service, params } => (
                TopicKind::ServiceCall,
                Some(service.as_str()),
                HeaderCtrl::ServiceCall,
                json!({"serviceIdentify": service, "params": params}),
            ),
            Command::AskProperties(ids) => (
                TopicKind::PropertyAsk,
                None,
                HeaderCtrl::PropertyAsk,
                json!({"params": ids}),
            ),
            Command::Passthrough(data) => (
                TopicKind::Downlink,
                None,
                HeaderCtrl::Downlink,
                json!({"data": data}),
            ),
            Command::AskConfig => (TopicKind::AskConfig, None, HeaderCtrl::Config, json!({})),
            Command::SetConfig(settings) => (
                TopicKind::DownConfig,
                None,
                HeaderCtrl::Config,
                json!({"Settings": settings}),
            ),
            Command::AskFirmware => (
                TopicKind::AskFirmware,
                None,
                HeaderCtrl::AskFirmware,
                json!({}),
            ),
            Command::NotifyOta(n) => (
                TopicKind::OtaNotify,
                None,
                HeaderCtrl::OtaNotify,
                serde_json::to_value(n).map_err(|e| build(&e))?,
            ),
            Command::Raw {
                kind,
                identifier,
                header_ctrl,
                payload,
            } => (*kind, identifier.as_deref(), *header_ctrl, payload.clone()),
        };
        let hex_ctrl = match header_ctrl {
            HeaderCtrl::PropertySet => Some(HeaderCtrl::HexPropertySet),
            HeaderCtrl::ServiceCall => Some(HeaderCtrl::HexServiceCall),
            HeaderCtrl::PropertyAsk => Some(HeaderCtrl::HexPropertyAsk),
            _ => None,
        };
        if format == Some(Format::Hex)
            && !matches!(command, Command::Raw { .. })
            && let Some(hex_ctrl) = hex_ctrl
        {
            let hex = self.encode_hex(device, header_ctrl, &payload)?;
            return Ok(Outgoing {
                topic: Topic::new(device.clone(), TopicKind::HexDownlink).map_err(|e| build(&e))?,
                header_ctrl: hex_ctrl,
                payload: Value::String(hex),
                text: None,
            });
        }
        // The vendor document's example sends MD5 as a number; with `ota_md5_number` the
        // notify does too, written as text (39 digits do not fit a `Value`).
        let text = match command {
            Command::NotifyOta(n) if self.inner.config.ota_md5_number => {
                let text = n.to_json_md5_as_number();
                if text.is_none() {
                    tracing::warn!(target: "x_sim", md5 = %n.md5, "OTA notify: MD5 is not a digest, sent as a string");
                }
                text
            }
            _ => None,
        };
        let topic = match identifier {
            Some(id) => Identifier::new(id).map_err(|e| build(&e)).and_then(|id| {
                Topic::with_identifier(device.clone(), kind, id).map_err(|e| build(&e))
            })?,
            None => Topic::new(device.clone(), kind).map_err(|e| build(&e))?,
        };
        Ok(Outgoing {
            topic,
            header_ctrl,
            payload,
            text,
        })
    }

    /// A thing-model JSON command in hex, through the product's parsing script.
    fn encode_hex(
        &self,
        device: &DeviceIdentity,
        header_ctrl: HeaderCtrl,
        payload: &Value,
    ) -> Result<String, CommandError> {
        let script = read(&self.inner.registry)
            .product(device.product_id.as_str())
            .and_then(|p| p.script.clone())
            .ok_or_else(|| {
                CommandError::Build(format!(
                    "product {} has no parsing script",
                    device.product_id
                ))
            })?;
        let message = json!({"HeaderCtrl": header_ctrl.code(), "Payload": payload});
        let bytes = crate::script::with_script(&script, move |s| s.protocol_to_raw_data(&message))
            .map_err(|e| CommandError::Build(e.to_string()))?
            .map_err(|e| CommandError::Build(e.to_string()))?;
        Ok(x_protocol::model::hex::to_hex(&bytes))
    }

    /// Checks a device's answer against the command and the model.
    fn check_answer(
        &self,
        device: &DeviceIdentity,
        command: &Command,
        answer: &Answer,
    ) -> Result<(), String> {
        let hex = answer.raw.is_some();
        // A HEX answer (18/26) carries the script's decoding; its payload is `Payload`.
        let payload = if hex {
            answer
                .payload
                .get("Payload")
                .cloned()
                .unwrap_or(Value::Null)
        } else {
            answer.payload.clone()
        };
        let model = self.model_of(device, None);
        match command {
            Command::SetProperties(_) | Command::CallService { .. }
                if !hex || answer.header_ctrl == HeaderCtrl::HexServiceReply =>
            {
                let ack: AckPayload = serde_json::from_value(payload.clone())
                    .map_err(|e| format!("not an ack {{Code, Msg, Data}}: {e}"))?;
                if !ack.code.is_success() {
                    // A refusal is a valid answer; the caller reads Code and Msg.
                    return Ok(());
                }
                let Some(model) = model else { return Ok(()) };
                let data = ack.data.clone().unwrap_or_else(|| json!({}));
                match command {
                    Command::CallService { service, .. } => {
                        crate::validate::service_outputs(&model, service, &data)
                    }
                    _ => crate::validate::property_report(&model, &data),
                }
                .map_err(|r| format!("Data: {r}"))
            }
            Command::AskProperties(ids) if answer.header_ctrl != HeaderCtrl::HexPropertyAsk => {
                let missing: Vec<&str> = ids
                    .iter()
                    .filter(|id| payload.get(id.as_str()).is_none())
                    .map(String::as_str)
                    .collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!("the answer lacks {}", missing.join(", ")))
                }
            }
            Command::AskConfig | Command::SetConfig(_) => match payload.get("Settings") {
                Some(Value::Object(_)) => Ok(()),
                Some(Value::String(s))
                    if serde_json::from_str::<serde_json::Map<String, Value>>(s).is_ok() =>
                {
                    Ok(())
                }
                _ => Err(format!(
                    "a config report needs Settings (an object), got {payload}"
                )),
            },
            Command::AskFirmware => serde_json::from_value::<FirmwareReport>(payload)
                .map(|_| ())
                .map_err(|e| format!("not a firmware report: {e}")),
            Command::NotifyOta(n) => match payload.get("DownID") {
                Some(id)
                    if id.as_str() == Some(&n.down_id)
                        || *id == Value::String(n.down_id.clone()) =>
                {
                    Ok(())
                }
                other => Err(format!(
                    "the OTA ack must echo DownID {:?}, got {}",
                    n.down_id,
                    other.cloned().unwrap_or(Value::Null)
                )),
            },
            _ => Ok(()),
        }
    }

    /// Sends one frame on a platform topic and waits for the device's answer with the same
    /// MessageId: the ack on the command's ack topic, or the report that answers it. Payloads
    /// of encrypted products go out encrypted; the answer comes back decrypted. Nothing is
    /// checked; [`Platform::send_command`] is the checked form.
    ///
    /// # Errors
    /// [`CommandError::Timeout`], or [`CommandError::NoSession`] for an encrypted product's
    /// device that has not authenticated.
    pub async fn command(
        &self,
        topic: &Topic,
        header_ctrl: HeaderCtrl,
        payload: Value,
        timeout: Duration,
    ) -> Result<Answer, CommandError> {
        self.exchange(topic, header_ctrl, (payload, None), timeout, false)
            .await
            .map(|d| d.answer)
    }

    /// [`Platform::command`], with the answer's bytes and the rule its frame broke; a
    /// `checked` command records that violation itself. The payload is a `Value`, and
    /// optionally the JSON text to send in its place (what a `Value` cannot hold).
    async fn exchange(
        &self,
        topic: &Topic,
        header_ctrl: HeaderCtrl,
        (payload, text): (Value, Option<String>),
        timeout: Duration,
        checked: bool,
    ) -> Result<Delivered, CommandError> {
        let Some(device) = topic.device().cloned() else {
            return Err(CommandError::Build(
                "the auth topic takes no commands".into(),
            ));
        };
        let id = self.inner.ids.next_id();
        let mut frame = Frame::new(id.clone(), header_ctrl, payload.clone());
        let bytes = if self.is_encrypted(&device) {
            match (self.session_key(&device), &text) {
                (Some(key), Some(text)) => frame.encrypt_payload_text(&key, text),
                (Some(key), None) => frame.encrypt_payload(&key),
                (None, _) => return Err(CommandError::NoSession(device.to_string())),
            }
            frame.encode()
        } else {
            match &text {
                Some(text) => frame
                    .encode_with_payload_text(text)
                    .map_err(|e| CommandError::Build(e.to_string()))?,
                None => frame.encode(),
            }
        };
        let (tx, rx) = oneshot::channel();
        let key = (device.to_string(), id);
        lock(&self.inner.pending).insert(key.clone(), Waiting { tx, checked });
        self.publish_encoded(&topic.to_string(), &frame, &payload, bytes);
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            _ => {
                lock(&self.inner.pending).remove(&key);
                Err(CommandError::Timeout {
                    device: device.to_string(),
                    timeout,
                })
            }
        }
    }
}

/// Whether an answer came on a topic, and with a HeaderCtrl, that the command table allows
/// for the command (a HEX service call may be answered either way the document shows: a
/// service reply, 26, on `model/hex/report`, or an ack, 24, on `model/hex/downlink_ack`).
///
/// A command the table gives no answer accepts none, with one exception: a frame whose
/// HeaderCtrl its topic does not carry (a raw command) may be refused (a failure Code) on the
/// topic's own ack topic, as x-sim refuses such frames from devices. A success there, or any
/// answer to a frame the topic carries without an answer (a SessionKey update), is off the
/// table.
fn answered_where_the_table_says(
    command: &Topic,
    header_ctrl: HeaderCtrl,
    answer: &Answer,
) -> Result<(), String> {
    let spec = command.kind().spec();
    let on_topic =
        |r: &x_protocol::topic::Reply| Some((command.answer_on(*r)?.to_string(), r.header_ctrl));
    let allowed: Vec<(String, HeaderCtrl)> = spec
        .replies_to(header_ctrl)
        .filter_map(|r| on_topic(&r))
        .collect();
    let matches = |allowed: &[(String, HeaderCtrl)]| {
        allowed
            .iter()
            .any(|(topic, hc)| *topic == answer.topic && *hc == answer.header_ctrl)
    };
    if allowed.is_empty() {
        let refusals: Vec<(String, HeaderCtrl)> = if spec.header_ctrls.contains(&header_ctrl) {
            Vec::new()
        } else {
            spec.replies
                .iter()
                .filter(|r| r.is_ack)
                .filter_map(on_topic)
                .collect()
        };
        let refused = answer.ack().is_some_and(|a| !a.code.is_success());
        if refused && matches(&refusals) {
            return Ok(());
        }
        let but = match refusals.first() {
            Some((topic, hc)) => format!(
                "; only a refusal (a failure Code) with HeaderCtrl {} on {topic} is in order",
                hc.code()
            ),
            None => String::new(),
        };
        return Err(format!(
            "answered with HeaderCtrl {} on {}, but the command table has no answer to \
             HeaderCtrl {} on {}{but}",
            answer.header_ctrl.code(),
            answer.topic,
            header_ctrl.code(),
            command
        ));
    }
    if matches(&allowed) {
        return Ok(());
    }
    let expected: Vec<String> = allowed
        .iter()
        .map(|(topic, hc)| format!("HeaderCtrl {} on {topic}", hc.code()))
        .collect();
    Err(format!(
        "answered with HeaderCtrl {} on {}, the command table says {}",
        answer.header_ctrl.code(),
        answer.topic,
        expected.join(" or ")
    ))
}

/// The `params` list of a property set from `{"id": value}` or `{"params": [..]}`.
fn set_params(v: &Value) -> Result<Value, CommandError> {
    match v {
        Value::Object(m) if m.len() == 1 && m.get("params").is_some_and(Value::is_array) => {
            Ok(m["params"].clone())
        }
        Value::Object(m) => Ok(Value::Array(
            m.iter()
                .map(|(k, v)| json!({"identify": k, "value": v}))
                .collect(),
        )),
        Value::Array(_) => Ok(v.clone()),
        other => Err(CommandError::Build(format!(
            "a property set takes {{\"id\": value}} or {{\"params\": [..]}}, got {other}"
        ))),
    }
}
