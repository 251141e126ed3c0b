//! The validated model IR: what a thing model means, independent of where it came from (a
//! platform export or a hand-written Rust type). Every emitter reads only this.

use proc_macro2::{Span, TokenStream};

/// The runtime vocabulary the IR shares with the bindings: x-protocol's types, not copies,
/// each with its one table of model spellings (`SPELLINGS`, `model_name`,
/// `from_model_name`).
pub use x_protocol::model::hex::{ByteOrder, WireType};
pub use x_protocol::model::{Access, CallType, EventKind, Spelled};

/// A whole thing model.
#[derive(Debug, Clone)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HexLayout {
    /// Tagged (ids before values) or positional (property reports without ids).
    pub mode: HexMode,
    /// Byte order of multi-byte values.
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
#[derive(Debug, Clone, Default, PartialEq)]
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

/// A declared HEX wire type.
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
#[derive(Debug, Clone)]
pub struct Property {
    /// Identifier, names, type and constraints.
    pub field: Field,
    /// Read-only or read-write.
    pub access: Access,
    /// The model's `required` flag (documentation only).
    pub required: bool,
}

/// A named, typed value: a property, an event or service parameter, or a struct field.
#[derive(Debug, Clone)]
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
    pub rust_type: Option<TokenStream>,
    /// Where the field is: its JSON path (`properties[3]`) in a model file, or the Rust
    /// field's description in a derive.
    pub path: String,
    /// The span of the Rust field in a derive; `Span::call_site()` for model files.
    pub span: Span,
    /// HEX settings (only used by HEX products).
    pub hex: HexField,
}

/// Numeric constraints and unit.
#[derive(Debug, Clone, Default, PartialEq)]
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
#[derive(Debug, Clone)]
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
    /// known only by its Rust tokens; the compiler checks its kind.
    External(TokenStream),
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
#[derive(Debug, Clone)]
pub struct EnumType {
    /// The Rust type name.
    pub rust_name: String,
    /// The variants, in model order.
    pub variants: Vec<Variant>,
}

/// One enum variant.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// The integer key on the wire.
    pub key: i64,
    /// The label.
    pub label: String,
    /// The Rust variant name.
    pub rust_name: String,
}

/// A struct type.
#[derive(Debug, Clone)]
pub struct StructType {
    /// The Rust type name.
    pub rust_name: String,
    /// The fields, in model order.
    pub fields: Vec<Field>,
}

/// An event.
#[derive(Debug, Clone)]
pub struct Event {
    /// The wire identifier (also a topic level).
    pub identifier: String,
    /// The display name.
    pub name: String,
    /// The description.
    pub desc: Option<String>,
    /// Its type.
    pub kind: EventKind,
    /// Output parameters.
    pub outputs: Vec<Field>,
    /// The Rust type name.
    pub rust_name: String,
    /// JSON path or Rust location.
    pub path: String,
    /// The derive's span.
    pub span: Span,
    /// The declared HEX id (default: position + 1).
    pub hex_id: Option<u32>,
}

/// A service.
#[derive(Debug, Clone)]
pub struct Service {
    /// The wire identifier (also a topic level).
    pub identifier: String,
    /// The display name.
    pub name: String,
    /// The description.
    pub desc: Option<String>,
    /// Sync or async.
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
    pub output_type: Option<TokenStream>,
    /// JSON path or Rust location.
    pub path: String,
    /// The derive's span.
    pub span: Span,
    /// The declared HEX id (default: position + 1).
    pub hex_id: Option<u32>,
}

/// One problem found in a model: where (JSON path, or a Rust item with its span) and what.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// The JSON path (`properties[3].dataType.specs.max`) or Rust location.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// The span to report it at in a derive.
    pub span: Span,
}

impl Diagnostic {
    /// A diagnostic at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            span: Span::call_site(),
        }
    }

    /// The same diagnostic reported at `span`.
    pub fn at(mut self, span: Span) -> Self {
        self.span = span;
        self
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
