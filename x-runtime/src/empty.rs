//! The model and service types of products without them: [`NoModel`] for passthrough
//! products (application data in HeaderCtrl 4 and 7, no thing model) and [`NoServices`] for
//! models without services.

use serde_json::{Map, Value};
use x_protocol::model::hex::{ByteOrder, DecodedReply, HexError, HexServices};
use x_protocol::model::{
    CallType, FromPayload, PropertyDesc, PropertyValue, Rejection, RejectionReason, Rejections,
    ThingModel, ThingServices, ToPayload,
};

/// The services of a product without any: every call is refused as an unknown service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoServices {}

impl ThingServices for NoServices {
    const SERVICES: &'static [(&'static str, CallType)] = &[];

    fn decode(identifier: &str, _: &Map<String, Value>) -> Result<Self, Rejections> {
        Err(Rejection::new(identifier, RejectionReason::Unknown("service")).into())
    }

    fn identifier(&self) -> &'static str {
        match *self {}
    }

    fn to_params(&self) -> Map<String, Value> {
        match *self {}
    }
}

impl HexServices for NoServices {
    const BYTE_ORDER: ByteOrder = ByteOrder::Big;

    fn decode_call_hex(bytes: &[u8]) -> Result<Self, HexError> {
        Err(HexError::UnknownId {
            at: 1,
            id: bytes.get(1).copied().unwrap_or(0),
            what: "service",
        })
    }

    fn encode_call_hex(&self, _: &mut [u8]) -> Result<usize, HexError> {
        match *self {}
    }

    fn decode_reply_hex(bytes: &[u8]) -> Result<DecodedReply, HexError> {
        Self::decode_call_hex(bytes).map(|call| match call {})
    }
}

/// The "thing model" of a passthrough product: no properties. Property sets, asks and
/// reports name properties it does not have, and are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NoModel;

/// The empty report or set of [`NoModel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NoProperties;

impl ToPayload for NoProperties {
    fn to_payload(&self) -> Map<String, Value> {
        Map::new()
    }
}

impl FromPayload for NoProperties {
    fn from_payload(payload: &Map<String, Value>) -> Result<Self, Rejections> {
        let mut rejections = Rejections::default();
        for key in payload.keys() {
            rejections.push(key.clone(), RejectionReason::Unknown("property"));
        }
        rejections.into_result(|| Self)
    }
}

impl ThingModel for NoModel {
    type Report = NoProperties;
    type Set = NoProperties;
    const PROPERTIES: &'static [PropertyDesc] = &[];

    fn report(&self) -> NoProperties {
        NoProperties
    }

    fn decode_set(params: &[PropertyValue]) -> Result<NoProperties, Rejections> {
        let mut rejections = Rejections::default();
        for p in params {
            rejections.push(p.identify.clone(), RejectionReason::Unknown("property"));
        }
        rejections.into_result(|| NoProperties)
    }

    fn apply(&mut self, _: &NoProperties) {}

    fn merge(&mut self, _: &NoProperties) {}

    fn ask(&self, identifiers: &[String]) -> Result<Map<String, Value>, Rejections> {
        let mut rejections = Rejections::default();
        for id in identifiers {
            rejections.push(id.clone(), RejectionReason::Unknown("property"));
        }
        rejections.into_result(Map::new)
    }
}
