//! The validated model IR: what a thing model means, independent of where it came from (a
//! platform export or a hand-written Rust type). Every emitter reads only this.
//!
//! The IR is plain data: `Clone + Send + Sync`, serializable with serde, and free of
//! compiler tokens. Where a derive wrote an item, the item carries a [`Loc`], a key into the
//! derive's own table of spans and type tokens (`x_codegen::rust::Sources`), as typify keeps
//! tokens out of its `TypeSpace` until output; a Rust type is kept as its text
//! ([`RustType`]).

use serde::{Deserialize, Serialize};

/// The runtime vocabulary the IR shares with the bindings: x-protocol's types, not copies,
/// each with its one table of model spellings (`SPELLINGS`, `model_name`,
/// `from_model_name`).
pub use x_protocol::model::hex::{ByteOrder, WireType};
pub use x_protocol::model::{Access, CallType, EventKind, Spelled};

/// A whole thing model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// The Rust name of the property state type, e.g. `SmartPlug`.
    pub name: String,
    /// Properties, in model order.
    pub properties: Vec<Property>,
    /// Events, in model order.
    pub events: Vec<Event>,
    /// Services, in model order.
    pub services: Vec<Service>,
    /// The HEX layout, for HEX products (a top-level `"hex"` object); `None` for JSON-only
    /// products.
    pub hex: Option<HexLayout>,
}

/// How a HEX product lays out its frames (docs/hex-format.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HexLayout {
    /// Tagged (ids before values) or positional (property reports without ids).
    #[serde(with = "spelled")]
    pub mode: HexMode,
    /// Byte order of multi-byte values.
    #[serde(with = "spelled")]
    pub byte_order: ByteOrder,
}

/// Tagged or positional property reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HexMode {
    /// `"tagged"`: every value follows its id (the default).
    #[default]
    Tagged,
    /// `"positional"`: a property report carries every property in id order, without ids.
    Positional,
}

impl Spelled for HexMode {
    const SPELLINGS: &'static [(Self, &'static str)] =
        &[(Self::Tagged, "tagged"), (Self::Positional, "positional")];
}

impl HexMode {
    /// Its spelling in a model file.
    pub fn model_name(self) -> &'static str {
        self.spelling()
    }

    /// The mode a model file's spelling names, if any.
    pub fn from_model_name(name: &str) -> Option<Self> {
        Self::from_spelling(name)
    }
}

/// A field's `"hex"` settings as declared (resolved against defaults by the emitters).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HexField {
    /// The id of a property (parameters have none: they travel in order).
    pub id: Option<u32>,
    /// The declared wire type.
    pub ty: Option<HexType>,
    /// Scale of numbers on integer wire types.
    pub scale: Option<f64>,
    /// Offset of numbers on integer wire types.
    pub offset: Option<f64>,
}

/// A declared HEX wire type; serialized as its model spelling (`"u16"`, `"text:8"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HexType {
    /// A number type.
    Number(WireType),
    /// `bool`: one byte, 0 or 1.
    Bool,
    /// `text`: u8 length prefix, then UTF-8.
    Text,
    /// `text:N`: exactly N bytes, zero-padded.
    TextFixed(u32),
}

impl HexType {
    /// The declared wire types a model file may spell, for messages: `u8, ..., f64, bool,
    /// text or text:N`.
    pub fn choices() -> String {
        let names: Vec<&str> = WireType::SPELLINGS.iter().map(|(_, n)| *n).collect();
        format!("{}, bool, text or text:N", names.join(", "))
    }

    /// The wire type a model file's spelling names (`u8` ... `f64`, `bool`, `text`,
    /// `text:N`), if any: the one parser of model files and derive attributes.
    pub fn from_model_name(name: &str) -> Option<Self> {
        match name {
            "bool" => Some(Self::Bool),
            "text" => Some(Self::Text),
            _ => match name.strip_prefix("text:") {
                Some(n) => n.parse().ok().filter(|n| *n > 0).map(Self::TextFixed),
                None => WireType::from_model_name(name).map(Self::Number),
            },
        }
    }
}

/// A property: a field plus access mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Property {
    /// Identifier, names, type and constraints.
    pub field: Field,
    /// Read-only or read-write.
    #[serde(with = "spelled")]
    pub access: Access,
    /// The model's `required` flag (documentation only).
    pub required: bool,
}

/// A named, typed value: a property, an event or service parameter, or a struct field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field {
    /// The wire identifier.
    pub identifier: String,
    /// The display name.
    pub name: String,
    /// The model's description.
    pub desc: Option<String>,
    /// The data type with its constraints.
    pub ty: DataType,
    /// The Rust field name (snake_case, raw identifier for keywords).
    pub rust_name: String,
    /// The Rust type as written in a derive input; `None` for model files, where the type
    /// follows from `ty`.
    pub rust_type: Option<RustType>,
    /// Where the field is: its JSON path (`properties[3]`) in a model file, or the Rust
    /// field's description in a derive.
    pub path: String,
    /// The Rust field's location key in a derive; [`Loc::NONE`] for model files.
    pub loc: Loc,
    /// HEX settings (only used by HEX products).
    pub hex: HexField,
}

/// Numeric constraints and unit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Numeric {
    /// Smallest value.
    pub min: Option<f64>,
    /// Largest value.
    pub max: Option<f64>,
    /// Grid step, counted from `min` (or 0).
    pub step: Option<f64>,
    /// Unit symbol, e.g. `W`.
    pub unit: Option<String>,
    /// Unit name, e.g. `瓦特`.
    pub unit_name: Option<String>,
}

/// A data type with its specs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DataType {
    /// `int`: i32.
    Int(Numeric),
    /// `float`: f32.
    Float(Numeric),
    /// `double`: f64.
    Double(Numeric),
    /// `bool`, with labels for 0 and 1.
    Bool(Option<[String; 2]>),
    /// `enum`.
    Enum(EnumType),
    /// `text`, with its maximum length in bytes.
    Text(Option<u32>),
    /// `date`: milliseconds since the epoch.
    Date,
    /// `struct`.
    Struct(StructType),
    /// `array` of at most `size` items.
    Array {
        /// Maximum element count.
        size: Option<u32>,
        /// The element type.
        item: Box<DataType>,
    },
    /// A user type in a derive (an enum or struct deriving `ThingEnum`/`ThingStruct`),
    /// known only by its Rust type; the compiler checks its kind.
    External(RustType),
}

impl DataType {
    /// The model's name of the type.
    pub fn model_name(&self) -> &'static str {
        match self {
            Self::Int(_) => "int",
            Self::Float(_) => "float",
            Self::Double(_) => "double",
            Self::Bool(_) => "bool",
            Self::Enum(_) => "enum",
            Self::Text(_) => "text",
            Self::Date => "date",
            Self::Struct(_) => "struct",
            Self::Array { .. } => "array",
            Self::External(_) => "a user type",
        }
    }

    /// The numeric specs of int, float and double.
    pub fn numeric(&self) -> Option<&Numeric> {
        match self {
            Self::Int(n) | Self::Float(n) | Self::Double(n) => Some(n),
            _ => None,
        }
    }
}

/// An enum type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnumType {
    /// The Rust type name.
    pub rust_name: String,
    /// The variants, in model order.
    pub variants: Vec<Variant>,
}

impl EnumType {
    /// Its variants as `key = label`, comma-separated, in model order (as messages and docs
    /// list them).
    #[must_use]
    pub fn listing(&self) -> String {
        self.variants
            .iter()
            .map(|v| format!("{} = {}", v.key, v.label))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One enum variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// The integer key on the wire.
    pub key: i64,
    /// The label.
    pub label: String,
    /// The Rust variant name.
    pub rust_name: String,
}

/// A struct type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StructType {
    /// The Rust type name.
    pub rust_name: String,
    /// The fields, in model order.
    pub fields: Vec<Field>,
}

/// An event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The wire identifier (also a topic level).
    pub identifier: String,
    /// The display name.
    pub name: String,
    /// The description.
    pub desc: Option<String>,
    /// Its type.
    #[serde(with = "spelled")]
    pub kind: EventKind,
    /// Output parameters.
    pub outputs: Vec<Field>,
    /// The Rust type name.
    pub rust_name: String,
    /// JSON path or Rust location.
    pub path: String,
    /// The derive's location key; [`Loc::NONE`] for model files.
    pub loc: Loc,
    /// The declared HEX id (default: position + 1).
    pub hex_id: Option<u32>,
}

/// A service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// The wire identifier (also a topic level).
    pub identifier: String,
    /// The display name.
    pub name: String,
    /// The description.
    pub desc: Option<String>,
    /// Sync or async.
    #[serde(with = "spelled")]
    pub call: CallType,
    /// Input parameters.
    pub inputs: Vec<Field>,
    /// Output parameters.
    pub outputs: Vec<Field>,
    /// The Rust variant name in the service enum.
    pub rust_variant: String,
    /// The Rust handler method name.
    pub rust_method: String,
    /// The output type: a generated struct name, or the derive's `output = Type`; `None`
    /// when the service has no outputs.
    pub output_type: Option<RustType>,
    /// JSON path or Rust location.
    pub path: String,
    /// The derive's location key; [`Loc::NONE`] for model files.
    pub loc: Loc,
    /// The declared HEX id (default: position + 1).
    pub hex_id: Option<u32>,
}

/// One problem found in a model: where (JSON path, or a Rust item with its location key)
/// and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// The JSON path (`properties[3].dataType.specs.max`) or Rust location.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// The location key a derive reports it at (its span, through the derive's table);
    /// [`Loc::NONE`] for model files.
    pub loc: Loc,
}

impl Diagnostic {
    /// A diagnostic at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            loc: Loc::NONE,
        }
    }

    /// The same diagnostic reported at the item `loc` keys.
    pub fn at(mut self, loc: Loc) -> Self {
        self.loc = loc;
        self
    }
}

/// Where a derive wrote an item: a key into the derive's own table of source locations
/// (spans and type tokens, `x_codegen::rust::Sources`), so that the IR stays plain data.
/// [`Loc::NONE`] for items of model files, whose places are their JSON paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Loc(pub u32);

impl Loc {
    /// No source location: an item of a model file.
    pub const NONE: Loc = Loc(0);

    /// Whether this is [`Loc::NONE`].
    pub fn is_none(self) -> bool {
        self == Self::NONE
    }
}

/// A Rust type named by the IR: a derive's field type or `output = Type`, a user type, or
/// a generated output struct's name. Kept as its source text (tokens printed, e.g.
/// `Vec < crate :: Mode >`), which parses back into the type; `loc` keys the derive's
/// original tokens, which the emitter uses where it has them (for their spans).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RustType {
    /// The type's tokens as text.
    pub text: String,
    /// The derive's key of the original tokens; [`Loc::NONE`] when there are none.
    pub loc: Loc,
}

impl RustType {
    /// A type known only by its text (generated names).
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            loc: Loc::NONE,
        }
    }

    /// The type as messages show it, without the spaces of printed tokens: `Vec<Mode>`.
    pub fn display(&self) -> String {
        self.text.replace(' ', "")
    }
}

impl std::fmt::Display for RustType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

/// Serde for the model's fixed vocabulary ([`Spelled`]): a value is written as its
/// spelling in a model file (`"rw"`, `"alert"`, `"little"`) and read through the same table.
mod spelled {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Spelled;

    pub fn serialize<T: Spelled, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(value.spelling())
    }

    pub fn deserialize<'de, T: Spelled, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        let text = String::deserialize(d)?;
        T::from_spelling(&text)
            .ok_or_else(|| D::Error::custom(format!("expected {}, got {text:?}", T::choices())))
    }
}

impl Serialize for HexType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::hex::hex_type_name(*self))
    }
}

impl<'de> Deserialize<'de> for HexType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::from_model_name(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown hex type {text:?} (expected {})",
                Self::choices()
            ))
        })
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}
