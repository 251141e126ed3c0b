//! The thing-model contract between generated (or derived) bindings and the runtime: value
//! coercion and range checks, and the traits that encode reports and events, decode property
//! sets and service calls, answer property asks and build history entries.
//!
//! Bindings come from `x-codegen` (model JSON) or from the `x-macros` derives; both emit
//! implementations of these traits through one emitter, and neither needs an async runtime.

#[macro_use]
mod spelling;
mod error;
pub mod hex;
mod spec;
mod traits;
mod value;

pub use error::{Rejection, RejectionReason, Rejections, ValueError, ValueProblem};
pub use spec::Spec;
pub use spelling::Spelled;
pub use traits::{
    Access, CallType, EventKind, FromPayload, PropertyDesc, ServiceFailure, ThingEnum, ThingEvent,
    ThingModel, ThingServices, ThingStruct, ToPayload, event_history, history_entry,
};
pub use value::{Date, ThingValue, ValueKind, decode_enum_key, decode_field, unknown_enum_key};

/// One entry of a property set, as the runtime hands it to [`ThingModel::decode_set`].
pub use crate::payload::PropertyValue;

/// The JSON library the bindings are written against, re-exported so generated code needs
/// no dependency of its own.
pub use serde_json as json;

/// Compile-time helpers used by `#[thing(model = "...")]` checks in derived code.
#[doc(hidden)]
pub mod check;
