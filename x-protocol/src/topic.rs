//! Every MQTT topic of the protocol, described once in a table ([`TopicKind::ALL`] with
//! [`TopicKind::spec`]) that both builds topic strings for a device and parses incoming
//! topics back into (device, kind, event or service identifier).

use std::fmt;

use crate::frame::HeaderCtrl;
use crate::identity::{DeviceIdentity, IdentityError};

/// The topic of the auth phase, shared by every device.
pub const AUTH_TOPIC: &str = "/sys/device/auth";

/// The auth phase's reply travels on the device's downlink with the request's HeaderCtrl (1).
pub const AUTH_REPLY: Reply = Reply {
    request: HeaderCtrl::Auth,
    topic: TopicKind::Downlink,
    header_ctrl: HeaderCtrl::Auth,
    is_ack: false,
};

/// Who publishes on a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Publisher {
    /// The device publishes; the platform subscribes.
    Device,
    /// The platform publishes; the device subscribes.
    Platform,
}

/// The thing model's identifier rule, as a phrase for messages.
pub const IDENTIFIER_RULE: &str =
    "ASCII letters, digits and '_', starting with a letter, at most 50 characters";

/// The longest identifier a thing model may declare.
pub const IDENTIFIER_MAX_LEN: usize = 50;

/// Checks an identifier against the thing model's rule ([`IDENTIFIER_RULE`]): the one rule
/// for properties, events, services, parameters and struct fields, which the model reader,
/// the derives and [`Identifier`] all apply.
///
/// # Errors
/// What is wrong with it: empty, a character other than ASCII letters, digits and `_` (so
/// never `/`, `+` or `#`), not starting with a letter, or longer than
/// [`IDENTIFIER_MAX_LEN`].
pub fn check_identifier(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        Err("is empty")
    } else if !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Err("may contain only ASCII letters, digits and '_'")
    } else if !value.starts_with(|c: char| c.is_ascii_alphabetic()) {
        Err("must start with an ASCII letter")
    } else if value.len() > IDENTIFIER_MAX_LEN {
        Err("is longer than 50 characters")
    } else {
        Ok(())
    }
}

/// An event or service identifier from the thing model, as it appears in a topic level:
/// valid by [`check_identifier`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identifier(String);

/// Why an event or service identifier was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("identifier {value:?}: {reason}")]
pub struct IdentifierError {
    /// The rejected identifier.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Identifier {
    /// Validates a thing-model identifier.
    ///
    /// # Errors
    /// [`IdentifierError`] with the reason [`check_identifier`] gives.
    pub fn new(value: impl Into<String>) -> Result<Self, IdentifierError> {
        let value = value.into();
        match check_identifier(&value) {
            Ok(()) => Ok(Self(value)),
            Err(reason) => Err(IdentifierError { value, reason }),
        }
    }

    /// The identifier text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Identifier {
    type Err = IdentifierError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// The answer a request on a topic gets: on which topic, with which HeaderCtrl. The event or
/// service identifier of the request's topic, if any, carries over to the answer's topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The request's HeaderCtrl.
    pub request: HeaderCtrl,
    /// The topic the answer travels on.
    pub topic: TopicKind,
    /// The answer's HeaderCtrl.
    pub header_ctrl: HeaderCtrl,
    /// Whether the answer is an ack (`{Code, Msg, Data?}`) rather than a report that answers
    /// (a property report answering an ask, a config or firmware report).
    pub is_ack: bool,
}

/// The row of the command table that describes one topic kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    /// The levels after the device prefix `/sys/{OpenID}/{ProductID}/{NodeEui}`, with `{id}`
    /// where an event or service identifier goes. Empty for the auth topic.
    pub suffix: &'static str,
    /// Who publishes on it.
    pub publisher: Publisher,
    /// The commands that travel on it.
    pub header_ctrls: &'static [HeaderCtrl],
    /// What answers each request on it, in the order of the command table. A request may
    /// have more than one accepted answer (a HEX service call is answered by a service reply
    /// on the HEX report topic, or acked on the HEX downlink ack): the first one listed is
    /// the form this SDK sends. Commands without an entry get no answer (auth replies,
    /// SessionKey updates, acks themselves).
    pub replies: &'static [Reply],
}

impl TopicSpec {
    /// Whether the topic has an event or service identifier level.
    pub fn has_identifier(&self) -> bool {
        self.suffix.contains("{id}")
    }

    /// The answer this SDK sends (or expects) for a request with `header_ctrl` on this topic.
    pub fn reply_to(&self, header_ctrl: HeaderCtrl) -> Option<Reply> {
        self.replies
            .iter()
            .find(|r| r.request == header_ctrl)
            .copied()
    }

    /// The answer to a request with `header_ctrl` on this topic that is an ack
    /// (`{Code, Msg, Data?}`), when one is allowed: where a "4001" can go.
    pub fn ack_to(&self, header_ctrl: HeaderCtrl) -> Option<Reply> {
        self.replies_to(header_ctrl).find(|r| r.is_ack)
    }

    /// Every accepted answer for a request with `header_ctrl` on this topic.
    pub fn replies_to(&self, header_ctrl: HeaderCtrl) -> impl Iterator<Item = Reply> + '_ {
        self.replies
            .iter()
            .filter(move |r| r.request == header_ctrl)
            .copied()
    }
}

macro_rules! reply_is_ack {
    (ack) => {
        true
    };
    (report) => {
        false
    };
}

macro_rules! topic_kinds {
    ($( $(#[$doc:meta])* $name:ident => $suffix:literal, $publisher:ident, [$($hc:ident),*]
        $(, replies [$($req:ident => $reply:ident $reply_hc:ident $answer:ident),*])?; )*) => {
        /// Which topic of the protocol a topic is. [`TopicKind::spec`] gives its row of the
        /// command table.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum TopicKind {
            /// `/sys/device/auth`: the auth request (HeaderCtrl 1).
            Auth,
            $( $(#[$doc])* $name, )*
        }

        impl TopicKind {
            /// Every topic kind, in the order of PROTOCOL-NOTES.md's command table.
            pub const ALL: &'static [TopicKind] = &[TopicKind::Auth, $(TopicKind::$name,)*];

            /// This kind's row of the command table.
            pub fn spec(self) -> TopicSpec {
                match self {
                    TopicKind::Auth => TopicSpec {
                        suffix: "",
                        publisher: Publisher::Device,
                        header_ctrls: &[HeaderCtrl::Auth],
                        replies: &[],
                    },
                    $( TopicKind::$name => TopicSpec {
                        suffix: $suffix,
                        publisher: Publisher::$publisher,
                        header_ctrls: &[$(HeaderCtrl::$hc),*],
                        replies: &[$($(Reply {
                            request: HeaderCtrl::$req,
                            topic: TopicKind::$reply,
                            header_ctrl: HeaderCtrl::$reply_hc,
                            is_ack: reply_is_ack!($answer),
                        }),*)?],
                    }, )*
                }
            }
        }
    };
}

topic_kinds! {
    /// `P/downlink`: auth reply (1), SessionKey update (3), passthrough downlink (7).
    Downlink => "downlink", Platform, [Auth, SessionKeyUpdate, Downlink],
        replies [Downlink => DownlinkAck Downlink ack];
    /// `P/uplink`: passthrough uplink (4).
    Uplink => "uplink", Device, [Uplink], replies [Uplink => UplinkAck Uplink ack];
    /// `P/uplink_ack`: ack of a passthrough uplink (4).
    UplinkAck => "uplink_ack", Platform, [Uplink];
    /// `P/downlink_ack`: the device's ack of a passthrough downlink (7).
    DownlinkAck => "downlink_ack", Device, [Downlink];
    /// `P/firmware_report`: firmware report (8).
    FirmwareReport => "firmware_report", Device, [FirmwareReport],
        replies [FirmwareReport => FirmwareReportAck FirmwareReport ack];
    /// `P/firmware_report_ack`: its ack (8).
    FirmwareReportAck => "firmware_report_ack", Platform, [FirmwareReport];
    /// `P/ask_firmware`: the platform asks for the firmware (13).
    AskFirmware => "ask_firmware", Platform, [AskFirmware],
        replies [AskFirmware => FirmwareReport FirmwareReport report];
    /// `P/ota_notify`: OTA notify (9).
    OtaNotify => "ota_notify", Platform, [OtaNotify],
        replies [OtaNotify => OtaNotifyAck OtaNotify report];
    /// `P/ota_notify_ack`: the device's `{DownID}` (9).
    OtaNotifyAck => "ota_notify_ack", Device, [OtaNotify];
    /// `P/ask_config`: the platform asks for the config (14).
    AskConfig => "ask_config", Platform, [Config], replies [Config => ConfigReport Config report];
    /// `P/config_report`: the device's config (14).
    ConfigReport => "config_report", Device, [Config];
    /// `P/down_config`: the platform sets config (14).
    DownConfig => "down_config", Platform, [Config], replies [Config => ConfigReport Config report];
    /// `P/model/property/report`: property report, also the answer to an ask (16).
    PropertyReport => "model/property/report", Device, [PropertyReport],
        replies [PropertyReport => PropertyReportAck PropertyReport ack];
    /// `P/model/property/report_ack`: its ack (16).
    PropertyReportAck => "model/property/report_ack", Platform, [PropertyReport];
    /// `P/model/event/{id}/report`: event report (17).
    EventReport => "model/event/{id}/report", Device, [EventReport],
        replies [EventReport => EventReportAck EventReport ack];
    /// `P/model/event/{id}/report_ack`: its ack (17).
    EventReportAck => "model/event/{id}/report_ack", Platform, [EventReport];
    /// `P/model/property/set`: property set (20).
    PropertySet => "model/property/set", Platform, [PropertySet],
        replies [PropertySet => PropertySetAck PropertySet ack];
    /// `P/model/property/set_ack`: the device's ack (20).
    PropertySetAck => "model/property/set_ack", Device, [PropertySet];
    /// `P/model/service/{id}`: service call (21).
    ServiceCall => "model/service/{id}", Platform, [ServiceCall],
        replies [ServiceCall => ServiceCallAck ServiceCall ack];
    /// `P/model/service/{id}/ack`: the device's ack with outputs (21).
    ServiceCallAck => "model/service/{id}/ack", Device, [ServiceCall];
    /// `P/model/property/ask`: property ask (23); answered with a report (16).
    PropertyAsk => "model/property/ask", Platform, [PropertyAsk],
        replies [PropertyAsk => PropertyReport PropertyReport report];
    /// `P/model/history/data/report`: history upload (27).
    HistoryReport => "model/history/data/report", Device, [HistoryReport],
        replies [HistoryReport => HistoryReportAck HistoryReport ack];
    /// `P/model/history/data/report_ack`: its ack (27).
    HistoryReportAck => "model/history/data/report_ack", Platform, [HistoryReport];
    /// `P/model/hex/report`: HEX property report (18), event report (19), service reply (26).
    HexReport => "model/hex/report", Device, [HexPropertyReport, HexEventReport, HexServiceReply],
        replies [
            HexPropertyReport => HexReportAck HexPropertyReport ack,
            HexEventReport => HexReportAck HexEventReport ack,
            HexServiceReply => HexReportAck HexServiceReply ack
        ];
    /// `P/model/hex/report_ack`: their acks.
    HexReportAck => "model/hex/report_ack", Platform, [HexPropertyReport, HexEventReport, HexServiceReply];
    /// `P/model/hex/downlink`: HEX property set (22), service call (24), property ask (25).
    HexDownlink => "model/hex/downlink", Platform, [HexPropertySet, HexServiceCall, HexPropertyAsk],
        replies [
            HexPropertySet => HexDownlinkAck HexPropertySet ack,
            HexServiceCall => HexReport HexServiceReply report,
            HexServiceCall => HexDownlinkAck HexServiceCall ack,
            HexPropertyAsk => HexReport HexPropertyReport report
        ];
    /// `P/model/hex/downlink_ack`: the device's acks.
    HexDownlinkAck => "model/hex/downlink_ack", Device, [HexPropertySet, HexServiceCall, HexPropertyAsk];
    /// `P/model/hex`: full-HEX report (28), a bare hex string, not a frame.
    FullHex => "model/hex", Device, [FullHexReport],
        replies [FullHexReport => FullHexAck FullHexReport ack];
    /// `P/model/hex_ack`: its ack (28).
    FullHexAck => "model/hex_ack", Platform, [FullHexReport];
    /// `P/update_time`: time sync request (29).
    UpdateTime => "update_time", Device, [TimeSync],
        replies [TimeSync => UpdateTimeAck TimeSync ack];
    /// `P/update_time_ack`: time sync reply (29).
    UpdateTimeAck => "update_time_ack", Platform, [TimeSync];
}

impl TopicKind {
    /// The MQTT subscription filter for this kind on `device`: the topic itself, with `+` in
    /// place of the identifier level for events and services.
    pub fn filter(self, device: &DeviceIdentity) -> String {
        let spec = self.spec();
        if self == TopicKind::Auth {
            return AUTH_TOPIC.to_owned();
        }
        format!(
            "{}/{}",
            device.topic_prefix(),
            spec.suffix.replace("{id}", "+")
        )
    }
}

/// Why a topic could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The topic is not under `/sys/` or has too few levels for a device topic.
    #[error("topic {topic:?}: not a /sys/{{OpenID}}/{{ProductID}}/{{NodeEui}}/... topic")]
    NotDeviceTopic {
        /// The topic.
        topic: String,
    },
    /// One of the device levels is not a valid identity.
    #[error("topic {topic:?}: {source}")]
    Identity {
        /// The topic.
        topic: String,
        /// Which identity is wrong and why.
        source: IdentityError,
    },
    /// The levels after the device prefix match no row of the command table.
    #[error("topic {topic:?}: {suffix:?} is not a topic of the protocol")]
    UnknownSuffix {
        /// The topic.
        topic: String,
        /// The part after the device prefix.
        suffix: String,
    },
    /// The event or service level is not a valid identifier.
    #[error("topic {topic:?}: {source}")]
    Identifier {
        /// The topic.
        topic: String,
        /// What is wrong with the identifier.
        source: IdentifierError,
    },
    /// A well-formed topic of another device.
    #[error("topic {topic:?}: belongs to device {found}, not {expected}")]
    Foreign {
        /// The topic.
        topic: String,
        /// The device this topic belongs to.
        found: String,
        /// The device that parsed it.
        expected: String,
    },
    /// An identifier was given for a kind without one, or none for a kind that needs one.
    #[error("topic kind {kind:?}: {reason}")]
    Shape {
        /// The kind.
        kind: TopicKind,
        /// What does not fit.
        reason: &'static str,
    },
}

/// One concrete topic: a kind, the device it belongs to (none for the auth topic) and, for
/// events and services, the identifier.
///
/// ```
/// use x_protocol::{DeviceIdentity, Identifier, Topic, TopicKind};
///
/// let device = DeviceIdentity::parse("7ED01E2A", "AA30C505", "20MQTTJ000121")?;
/// let event = Topic::with_identifier(device.clone(), TopicKind::EventReport, Identifier::new("overheat")?)?;
/// assert_eq!(event.to_string(), "/sys/7ED01E2A/AA30C505/20MQTTJ000121/model/event/overheat/report");
/// // Parsing names what is wrong with a topic that is not the device's own.
/// assert!(Topic::parse_for("/sys/7ED01E2A/AA30C505/OTHER/model/property/report", &device).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topic {
    kind: TopicKind,
    device: Option<DeviceIdentity>,
    identifier: Option<Identifier>,
}

impl Topic {
    /// The shared auth topic `/sys/device/auth`.
    pub fn auth() -> Self {
        Self {
            kind: TopicKind::Auth,
            device: None,
            identifier: None,
        }
    }

    /// A device topic of a kind without identifier.
    ///
    /// # Errors
    /// [`TopicError::Shape`] for [`TopicKind::Auth`] (use [`Topic::auth`]) and for kinds
    /// that need an identifier (use [`Topic::with_identifier`]).
    pub fn new(device: DeviceIdentity, kind: TopicKind) -> Result<Self, TopicError> {
        if kind == TopicKind::Auth {
            return Err(TopicError::Shape {
                kind,
                reason: "the auth topic belongs to no device",
            });
        }
        if kind.spec().has_identifier() {
            return Err(TopicError::Shape {
                kind,
                reason: "this topic needs an event or service identifier",
            });
        }
        Ok(Self {
            kind,
            device: Some(device),
            identifier: None,
        })
    }

    /// An event or service topic.
    ///
    /// # Errors
    /// [`TopicError::Shape`] if `kind` has no identifier level.
    pub fn with_identifier(
        device: DeviceIdentity,
        kind: TopicKind,
        identifier: Identifier,
    ) -> Result<Self, TopicError> {
        if !kind.spec().has_identifier() {
            return Err(TopicError::Shape {
                kind,
                reason: "this topic has no identifier level",
            });
        }
        Ok(Self {
            kind,
            device: Some(device),
            identifier: Some(identifier),
        })
    }

    /// Which topic this is.
    pub fn kind(&self) -> TopicKind {
        self.kind
    }

    /// The device it belongs to; `None` only for the auth topic.
    pub fn device(&self) -> Option<&DeviceIdentity> {
        self.device.as_ref()
    }

    /// The event or service identifier, for the kinds that have one.
    pub fn identifier(&self) -> Option<&Identifier> {
        self.identifier.as_ref()
    }

    /// The topic of the answer to a request with `header_ctrl` on this topic, from the
    /// command table ([`TopicSpec::reply_to`]), with the request's event or service identifier
    /// carried over; `None` when such a request gets no answer.
    pub fn reply_topic(&self, header_ctrl: HeaderCtrl) -> Option<(Topic, Reply)> {
        let reply = self.kind.spec().reply_to(header_ctrl)?;
        self.answer_on(reply).map(|t| (t, reply))
    }

    /// The topic `reply` travels on for this request topic.
    pub fn answer_on(&self, reply: Reply) -> Option<Topic> {
        let device = self.device.clone()?;
        let identifier = if reply.topic.spec().has_identifier() {
            Some(self.identifier.clone()?)
        } else {
            None
        };
        Some(Topic {
            kind: reply.topic,
            device: Some(device),
            identifier,
        })
    }

    /// Parses any protocol topic.
    ///
    /// # Errors
    /// [`TopicError`] naming the topic and what is wrong with it.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        if topic == AUTH_TOPIC {
            return Ok(Self::auth());
        }
        let not_device = || TopicError::NotDeviceTopic {
            topic: topic.to_owned(),
        };
        let rest = topic.strip_prefix("/sys/").ok_or_else(not_device)?;
        let mut levels = rest.splitn(4, '/');
        let (Some(open_id), Some(product_id), Some(node_eui), Some(suffix)) =
            (levels.next(), levels.next(), levels.next(), levels.next())
        else {
            return Err(not_device());
        };
        let device = DeviceIdentity::parse(open_id, product_id, node_eui).map_err(|source| {
            TopicError::Identity {
                topic: topic.to_owned(),
                source,
            }
        })?;
        for &kind in &TopicKind::ALL[1..] {
            if let Some(id) = match_suffix(kind.spec().suffix, suffix) {
                let identifier = id
                    .map(|id| {
                        Identifier::new(id).map_err(|source| TopicError::Identifier {
                            topic: topic.to_owned(),
                            source,
                        })
                    })
                    .transpose()?;
                return Ok(Self {
                    kind,
                    device: Some(device),
                    identifier,
                });
            }
        }
        Err(TopicError::UnknownSuffix {
            topic: topic.to_owned(),
            suffix: suffix.to_owned(),
        })
    }

    /// Parses a topic that must belong to `device` (or be the auth topic).
    ///
    /// # Errors
    /// As [`Topic::parse`], plus [`TopicError::Foreign`] for another device's topic.
    pub fn parse_for(topic: &str, device: &DeviceIdentity) -> Result<Self, TopicError> {
        let parsed = Self::parse(topic)?;
        match &parsed.device {
            Some(found) if found != device => Err(TopicError::Foreign {
                topic: topic.to_owned(),
                found: found.to_string(),
                expected: device.to_string(),
            }),
            _ => Ok(parsed),
        }
    }
}

/// Matches the levels after the prefix against a table suffix. `Some(None)` for a match
/// without identifier, `Some(Some(id))` for a match with one.
fn match_suffix<'a>(pattern: &str, suffix: &'a str) -> Option<Option<&'a str>> {
    let mut pattern_levels = pattern.split('/');
    let mut levels = suffix.split('/');
    let mut identifier = None;
    loop {
        match (pattern_levels.next(), levels.next()) {
            (None, None) => return Some(identifier),
            (Some("{id}"), Some(level)) => identifier = Some(level),
            (Some(p), Some(level)) if p == level => {}
            _ => return None,
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(device) = &self.device else {
            return f.write_str(AUTH_TOPIC);
        };
        let suffix = self.kind.spec().suffix;
        match &self.identifier {
            Some(id) => write!(
                f,
                "{}/{}",
                device.topic_prefix(),
                suffix.replace("{id}", id.as_str())
            ),
            None => write!(f, "{}/{}", device.topic_prefix(), suffix),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> DeviceIdentity {
        DeviceIdentity::parse("7ED01E2A", "AA30C505", "20MQTTJ000121").unwrap()
    }

    #[test]
    fn builds_event_topic() {
        let t = Topic::with_identifier(
            dev(),
            TopicKind::EventReport,
            Identifier::new("overheat").unwrap(),
        )
        .unwrap();
        assert_eq!(
            t.to_string(),
            "/sys/7ED01E2A/AA30C505/20MQTTJ000121/model/event/overheat/report"
        );
        assert_eq!(Topic::parse(&t.to_string()).unwrap(), t);
    }

    #[test]
    fn every_request_has_its_answer_in_the_table() {
        use HeaderCtrl as H;
        use TopicKind as K;
        let cases = [
            (
                K::PropertyReport,
                H::PropertyReport,
                K::PropertyReportAck,
                H::PropertyReport,
            ),
            (K::Uplink, H::Uplink, K::UplinkAck, H::Uplink),
            (K::Downlink, H::Downlink, K::DownlinkAck, H::Downlink),
            (
                K::PropertyAsk,
                H::PropertyAsk,
                K::PropertyReport,
                H::PropertyReport,
            ),
            (
                K::HexDownlink,
                H::HexServiceCall,
                K::HexReport,
                H::HexServiceReply,
            ),
            (
                K::HexDownlink,
                H::HexPropertyAsk,
                K::HexReport,
                H::HexPropertyReport,
            ),
            (
                K::HexDownlink,
                H::HexPropertySet,
                K::HexDownlinkAck,
                H::HexPropertySet,
            ),
            (K::AskConfig, H::Config, K::ConfigReport, H::Config),
            (
                K::FullHex,
                H::FullHexReport,
                K::FullHexAck,
                H::FullHexReport,
            ),
        ];
        for (kind, request, answer, answer_ctrl) in cases {
            let reply = kind.spec().reply_to(request).unwrap();
            assert_eq!(
                (reply.topic, reply.header_ctrl),
                (answer, answer_ctrl),
                "{kind:?}"
            );
        }
        assert!(K::Downlink.spec().reply_to(H::SessionKeyUpdate).is_none());
        assert_eq!(
            K::HexDownlink.spec().replies_to(H::HexServiceCall).count(),
            2
        );
        let call = Topic::with_identifier(dev(), K::ServiceCall, Identifier::new("reset").unwrap())
            .unwrap();
        let (ack, reply) = call.reply_topic(H::ServiceCall).unwrap();
        assert!(reply.is_ack);
        assert_eq!(ack.to_string(), format!("{call}/ack"));
    }

    #[test]
    fn filters_use_plus_for_identifiers() {
        assert_eq!(
            TopicKind::ServiceCall.filter(&dev()),
            "/sys/7ED01E2A/AA30C505/20MQTTJ000121/model/service/+"
        );
    }

    #[test]
    fn foreign_device_is_rejected() {
        let other = DeviceIdentity::parse("7ED01E2A", "AA30C505", "OTHER01").unwrap();
        let t = Topic::new(other, TopicKind::PropertySet)
            .unwrap()
            .to_string();
        assert!(matches!(
            Topic::parse_for(&t, &dev()),
            Err(TopicError::Foreign { .. })
        ));
    }
}
