//! [`NoServices`]: the service type of products whose thing model has no services.

use serde_json::{Map, Value};
use x_protocol::model::hex::{ByteOrder, DecodedReply, HexError, HexServices};
use x_protocol::model::{CallType, Rejection, RejectionReason, Rejections, ThingServices};

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
