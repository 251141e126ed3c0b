//! The traits generated and derived bindings implement, which the runtime (and the simulator)
//! use to move typed values in and out of protocol payloads.

use std::fmt;

use serde_json::{Map, Value};

use super::error::Rejections;
use super::value::{Date, ThingValue, ValueKind};
use crate::payload::PropertyValue;

/// Whether the platform may write a property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// `"r"`: the device reports it; a property set is rejected.
    ReadOnly,
    /// `"rw"`: the device reports it and the platform may set it.
    ReadWrite,
}

/// An event's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `"info"`.
    Info,
    /// `"alert"`.
    Alert,
    /// `"error"`.
    Error,
}

/// A service's `callType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallType {
    /// `"sync"`: the platform waits for the ack.
    Sync,
    /// `"async"`: the platform does not wait; the ack still carries the outputs.
    Async,
}

spellings!(Access {
    ReadOnly => "r",
    ReadWrite => "rw",
});

spellings!(EventKind {
    Info => "info",
    Alert => "alert",
    Error => "error",
});

spellings!(CallType {
    Sync => "sync",
    Async => "async",
});

/// One property, as the runtime and tools see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PropertyDesc {
    /// The wire identifier.
    pub identifier: &'static str,
    /// The display name.
    pub name: &'static str,
    /// Whether the platform may set it.
    pub access: Access,
    /// Its data type.
    pub kind: ValueKind,
}

/// A value that becomes a payload object (a report, an event's outputs, a service's outputs).
pub trait ToPayload {
    /// The payload object; for partial types, only the fields that are set.
    fn to_payload(&self) -> Map<String, Value>;
}

/// A value read from a payload object, with every field coerced and checked.
pub trait FromPayload: Sized {
    /// Reads the payload.
    ///
    /// # Errors
    /// [`Rejections`] naming every identifier that is unknown, missing or wrong.
    fn from_payload(payload: &Map<String, Value>) -> Result<Self, Rejections>;
}

/// A thing model's property state: the type holding every property.
///
/// `Report` is a partial report (only set fields go on the wire); `Set` a decoded property
/// set, holding only writable properties.
pub trait ThingModel: Sized {
    /// A full or partial property report (HeaderCtrl 16).
    type Report: ToPayload + FromPayload + Default;
    /// A decoded property set (HeaderCtrl 20).
    type Set: ToPayload + Default;

    /// Every property, in model order.
    const PROPERTIES: &'static [PropertyDesc];

    /// A report of every property's current value.
    fn report(&self) -> Self::Report;

    /// Decodes a property set: every entry must name a writable property, and its value
    /// must coerce to the declared type and meet the declared constraints. All or nothing.
    ///
    /// # Errors
    /// Every rejected entry with its reason; the runtime sends them in a "4001" ack.
    fn decode_set(params: &[PropertyValue]) -> Result<Self::Set, Rejections>;

    /// Writes the values of a decoded set into the state.
    fn apply(&mut self, set: &Self::Set);

    /// Writes the values of a report into the state (what the platform side does).
    fn merge(&mut self, report: &Self::Report);

    /// Answers a property ask (HeaderCtrl 23): the listed properties' current values.
    ///
    /// # Errors
    /// The identifiers that name no property.
    fn ask(&self, identifiers: &[String]) -> Result<Map<String, Value>, Rejections>;
}

/// A thing-model event: its outputs are the payload of HeaderCtrl 17 on
/// `model/event/{IDENTIFIER}/report`.
pub trait ThingEvent: ToPayload + FromPayload {
    /// The event's wire identifier.
    const IDENTIFIER: &'static str;
    /// The event's type.
    const KIND: EventKind;

    /// The event as a HEX event report (frame type 0x02) in `out`, its length; `None` for an
    /// event with no HEX layout. Events of a HEX model (generated, or derived with a HEX id)
    /// answer with their [`HexEvent`](super::hex::HexEvent) encoding, so that one
    /// `Device::event` call sends an event of either kind of product.
    ///
    /// # Errors
    /// A value that does not fit, or a full buffer.
    fn encode_hex_event(&self, out: &mut [u8]) -> Option<Result<usize, super::hex::HexError>> {
        let _ = out;
        None
    }
}

/// The service calls of a thing model, one enum variant per service with its typed inputs.
pub trait ThingServices: Sized {
    /// Every service: wire identifier and call type, in model order.
    const SERVICES: &'static [(&'static str, CallType)];

    /// Decodes a call (HeaderCtrl 21) of service `identifier` with `params`.
    ///
    /// # Errors
    /// An unknown service, or every input that is unknown, missing or wrong.
    fn decode(identifier: &str, params: &Map<String, Value>) -> Result<Self, Rejections>;

    /// The called service's wire identifier.
    fn identifier(&self) -> &'static str;

    /// The inputs as a payload `params` object (to build calls, as the platform does).
    fn to_params(&self) -> Map<String, Value>;
}

/// An enum type of a thing model: integer keys with labels.
pub trait ThingEnum: ThingValue + Copy {
    /// Every variant's key and label, in model order.
    const VARIANTS: &'static [(i64, &'static str)];
}

/// A struct type of a thing model (also the outputs of services).
pub trait ThingStruct: ThingValue + ToPayload + FromPayload {
    /// Every field's identifier and data type, in model order.
    const FIELDS: &'static [(&'static str, ValueKind)];
}

/// Why a service handler failed; its text is the `Msg` of the "4001" ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFailure(pub String);

impl fmt::Display for ServiceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServiceFailure {}

impl From<&str> for ServiceFailure {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for ServiceFailure {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// History entries (HeaderCtrl 27) for values observed at `time`: each payload field
/// becomes `{"<id>": {"value": .., "time": <ms>}}`. Pass a report for property entries;
/// for an event, see [`event_history`].
pub fn history_entry(payload: &impl ToPayload, time: Date) -> Map<String, Value> {
    payload
        .to_payload()
        .into_iter()
        .map(|(id, value)| (id, timed(value, time)))
        .collect()
}

/// The history entry of an event observed at `time`:
/// `{"<event>": {"value": {..outputs}, "time": <ms>}}`.
pub fn event_history<E: ThingEvent>(event: &E, time: Date) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert(
        E::IDENTIFIER.to_owned(),
        timed(Value::Object(event.to_payload()), time),
    );
    map
}

fn timed(value: Value, time: Date) -> Value {
    let mut entry = Map::new();
    entry.insert("value".to_owned(), value);
    entry.insert("time".to_owned(), Value::from(time.millis()));
    Value::Object(entry)
}
