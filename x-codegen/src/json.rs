//! Reads an exported thing model (TSL-shaped JSON) into the IR, collecting every structural
//! problem with its JSON path instead of stopping at the first.

use serde_json::{Map, Value};

use crate::ir::{
    Access, CallType, DataType, Diagnostic, EnumType, Event, EventKind, Field, HexField, HexLayout,
    HexType, Loc, Model, Numeric, Property, RustType, Service, Spelled, StructType, Variant,
};
use crate::names;

/// Parses model JSON text into an unvalidated IR (see [`crate::validate`]), with `name` as
/// the Rust name of the state type.
///
/// # Errors
/// Every structural problem found, each naming its JSON path.
pub fn parse(text: &str, name: &str) -> Result<Model, Vec<Diagnostic>> {
    match parse_partial(text, name) {
        (Some(m), diags) if diags.is_empty() => Ok(m),
        (_, diags) => Err(diags),
    }
}

/// Parses as much of the model as can be read, for reporting every problem at once: the
/// model with the unreadable parts left out (`None` if the text is not a JSON object), and
/// every structural problem. A value that is present but wrong (an unknown access mode, an
/// event type, a malformed identifier) is reported and replaced by a default, so the rest of
/// the item is still checked.
pub fn parse_partial(text: &str, name: &str) -> (Option<Model>, Vec<Diagnostic>) {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return (
                None,
                vec![Diagnostic::new("", format!("not valid JSON: {e}"))],
            );
        }
    };
    let mut p = Parser::default();
    let model = p.model(&value, name);
    (model, p.diags)
}

/// Where a data type sits, which decides what it may contain and how its types are named.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// A property, parameter or array item outside any struct.
    Top,
    /// A struct field (no struct, no array of struct).
    InStruct,
    /// An array item (no array).
    ArrayItem,
}

#[derive(Default)]
struct Parser {
    diags: Vec<Diagnostic>,
}

impl Parser {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.diags.push(Diagnostic::new(path, message));
    }

    fn object<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v Map<String, Value>> {
        match v {
            Value::Object(o) => Some(o),
            other => {
                self.error(path, format!("expected an object, got {}", kind(other)));
                None
            }
        }
    }

    /// A list under `key`; absent is empty.
    fn list<'v>(&mut self, obj: &'v Map<String, Value>, key: &str, path: &str) -> &'v [Value] {
        match obj.get(key) {
            None | Some(Value::Null) => &[],
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.error(
                    &join(path, key),
                    format!("expected a list, got {}", kind(other)),
                );
                &[]
            }
        }
    }

    fn string(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        path: &str,
        required: bool,
    ) -> Option<String> {
        match obj.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            Some(Value::String(_)) if required => {
                self.error(&join(path, key), "must not be empty");
                None
            }
            None | Some(Value::Null) if required => {
                self.error(&join(path, key), "is required");
                None
            }
            None | Some(Value::Null) | Some(Value::String(_)) => None,
            Some(other) => {
                self.error(
                    &join(path, key),
                    format!("expected a string, got {}", kind(other)),
                );
                None
            }
        }
    }

    /// A value of the model's fixed vocabulary from its spelling (`T::SPELLINGS`, the one
    /// table the derives read too); `None`, with an error naming the spellings, when it is
    /// misspelled, or missing and `required`.
    fn spelled<T: Spelled>(&mut self, v: Option<&Value>, at: &str, required: bool) -> Option<T> {
        match v {
            Some(Value::String(s)) if T::from_spelling(s).is_some() => T::from_spelling(s),
            None if !required => None,
            None => {
                self.error(at, format!("is required ({})", T::choices()));
                None
            }
            Some(other) => {
                self.error(at, format!("expected {}, got {other}", T::choices()));
                None
            }
        }
    }

    fn identifier(&mut self, obj: &Map<String, Value>, path: &str) -> Option<String> {
        let id = self.string(obj, "identifier", path, true)?;
        if names::check_identifier(&id).is_err() {
            self.error(
                &join(path, "identifier"),
                format!(
                    "{id:?} is not a valid identifier ({})",
                    names::IDENTIFIER_RULE
                ),
            );
        }
        // Kept even when invalid, so the rest of the item is still checked.
        Some(id)
    }

    fn model(&mut self, v: &Value, name: &str) -> Option<Model> {
        let obj = self.object(v, "")?;
        let properties = self
            .list(obj, "properties", "")
            .iter()
            .enumerate()
            .filter_map(|(i, p)| self.property(p, &format!("properties[{i}]")))
            .collect();
        let events = self
            .list(obj, "events", "")
            .iter()
            .enumerate()
            .filter_map(|(i, e)| self.event(e, &format!("events[{i}]")))
            .collect();
        let services = self
            .list(obj, "services", "")
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.service(s, &format!("services[{i}]")))
            .collect();
        let hex = match obj.get("hex") {
            None | Some(Value::Null) => None,
            Some(v) => self.hex_layout(v, "hex"),
        };
        Some(Model {
            name: name.to_owned(),
            properties,
            events,
            services,
            hex,
        })
    }

    fn property(&mut self, v: &Value, path: &str) -> Option<Property> {
        let obj = self.object(v, path)?;
        // Kept as read-only when missing or misspelled, so the rest of the property is checked.
        let access = Some(
            self.spelled(obj.get("accessMode"), &join(path, "accessMode"), true)
                .unwrap_or(Access::ReadOnly),
        );
        let required = match obj.get("required") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.error(
                    &join(path, "required"),
                    format!("expected true or false, got {other}"),
                );
                false
            }
        };
        let field = self.field(obj, path, &[], Place::Top, true);
        Some(Property {
            field: field?,
            access: access?,
            required,
        })
    }

    /// Identifier, name, desc and dataType of a property, parameter or struct field.
    /// `owner` names the enclosing event, service or struct type, for type names.
    fn field(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        owner: &[&str],
        place: Place,
        allow_id: bool,
    ) -> Option<Field> {
        let identifier = self.identifier(obj, path);
        let name = self.string(obj, "name", path, true);
        let desc = self.string(obj, "desc", path, false);
        let identifier = identifier?;
        let mut parts = owner.to_vec();
        parts.push(&identifier);
        let ty = match obj.get("dataType") {
            Some(dt) => self.data_type(dt, &join(path, "dataType"), &parts, place),
            None => {
                self.error(&join(path, "dataType"), "is required");
                None
            }
        };
        let hex = match obj.get("hex") {
            None | Some(Value::Null) => HexField::default(),
            Some(v) => self.hex_field(v, &join(path, "hex"), allow_id),
        };
        Some(Field {
            rust_name: names::field_name(&identifier),
            name: name.unwrap_or_else(|| identifier.clone()),
            identifier,
            desc,
            ty: ty?,
            rust_type: None,
            path: path.to_owned(),
            loc: Loc::NONE,
            hex,
        })
    }

    fn params(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        path: &str,
        owner: &str,
    ) -> Vec<Field> {
        let items = self.list(obj, key, path);
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let item_path = format!("{}[{i}]", join(path, key));
                let o = self.object(item, &item_path)?;
                self.field(o, &item_path, &[owner], Place::Top, false)
            })
            .collect()
    }

    fn event(&mut self, v: &Value, path: &str) -> Option<Event> {
        let obj = self.object(v, path)?;
        let identifier = self.identifier(obj, path);
        let name = self.string(obj, "name", path, true);
        let desc = self.string(obj, "desc", path, false);
        let kind: Option<EventKind> = self.spelled(obj.get("type"), &join(path, "type"), true);
        let identifier = identifier?;
        let outputs = self.params(obj, "outputData", path, &identifier);
        let hex_id = self.hex_id(obj, path);
        Some(Event {
            hex_id,
            rust_name: names::type_name(&[&identifier, "event"]),
            name: name.unwrap_or_else(|| identifier.clone()),
            identifier,
            desc,
            kind: kind?,
            outputs,
            path: path.to_owned(),
            loc: Loc::NONE,
        })
    }

    fn service(&mut self, v: &Value, path: &str) -> Option<Service> {
        let obj = self.object(v, path)?;
        let identifier = self.identifier(obj, path);
        let name = self.string(obj, "name", path, true);
        let desc = self.string(obj, "desc", path, false);
        let call: Option<CallType> =
            self.spelled(obj.get("callType"), &join(path, "callType"), true);
        let identifier = identifier?;
        let inputs = self.params(obj, "inputData", path, &identifier);
        let outputs = self.params(obj, "outputData", path, &identifier);
        let output_type = (!outputs.is_empty())
            .then(|| RustType::new(names::type_name(&[&identifier, "output"])));
        let hex_id = self.hex_id(obj, path);
        Some(Service {
            hex_id,
            rust_variant: names::type_name(&[&identifier]),
            rust_method: names::field_name(&identifier),
            name: name.unwrap_or_else(|| identifier.clone()),
            identifier,
            desc,
            call: call?,
            inputs,
            outputs,
            output_type,
            path: path.to_owned(),
            loc: Loc::NONE,
        })
    }

    fn data_type(
        &mut self,
        v: &Value,
        path: &str,
        parts: &[&str],
        place: Place,
    ) -> Option<DataType> {
        let obj = self.object(v, path)?;
        let ty = self.string(obj, "type", path, true)?;
        let specs_path = join(path, "specs");
        let specs = obj.get("specs").filter(|s| !s.is_null());
        match ty.as_str() {
            "int" | "float" | "double" => {
                let n = self.numeric(specs, &specs_path, &ty)?;
                Some(match ty.as_str() {
                    "int" => DataType::Int(n),
                    "float" => DataType::Float(n),
                    _ => DataType::Double(n),
                })
            }
            "bool" => self.bool_labels(specs, &specs_path).map(DataType::Bool),
            "enum" => self
                .enum_type(specs, &specs_path, parts)
                .map(DataType::Enum),
            "text" => {
                let map = self.spec_map(specs, &specs_path, "text", &["length"])?;
                let length = match map.get("length") {
                    Some(l) => Some(self.count(l, &join(&specs_path, "length"))?),
                    None => None,
                };
                Some(DataType::Text(length))
            }
            "date" => {
                self.spec_map(specs, &specs_path, "date", &[])?;
                Some(DataType::Date)
            }
            "struct" => self.struct_type(specs, path, parts, place),
            "array" => self.array_type(specs, path, parts, place),
            other => {
                self.error(
                    &join(path, "type"),
                    format!(
                        "unknown type {other:?} (expected int, float, double, bool, enum, text, date, struct or array)"
                    ),
                );
                None
            }
        }
    }

    /// A struct type: its fields (which may not be structs), named after `parts` (and
    /// `item` as an array's item).
    fn struct_type(
        &mut self,
        specs: Option<&Value>,
        path: &str,
        parts: &[&str],
        place: Place,
    ) -> Option<DataType> {
        let specs_path = join(path, "specs");
        if place == Place::InStruct {
            self.error(
                &join(path, "type"),
                "a struct field cannot be a struct (structs do not nest)",
            );
            return None;
        }
        let fields = match specs {
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.error(
                    &specs_path,
                    format!("struct specs must be a list of fields, got {}", kind(other)),
                );
                return None;
            }
            None => {
                self.error(&specs_path, "a struct needs its list of fields");
                return None;
            }
        };
        if fields.is_empty() {
            self.error(&specs_path, "a struct needs at least one field");
        }
        let type_parts: Vec<&str> = if place == Place::ArrayItem {
            parts.iter().copied().chain(["item"]).collect()
        } else {
            parts.to_vec()
        };
        let rust_name = names::type_name(&type_parts);
        let fields: Vec<Field> = fields
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                let fpath = format!("{specs_path}[{i}]");
                let o = self.object(f, &fpath)?;
                self.field(o, &fpath, &type_parts, Place::InStruct, false)
            })
            .collect();
        Some(DataType::Struct(StructType { rust_name, fields }))
    }

    /// An array type: its `size` and its `item` type (not an array; in a struct, not a
    /// struct).
    fn array_type(
        &mut self,
        specs: Option<&Value>,
        path: &str,
        parts: &[&str],
        place: Place,
    ) -> Option<DataType> {
        let specs_path = join(path, "specs");
        if place == Place::ArrayItem {
            self.error(&join(path, "type"), "arrays of arrays are not supported");
            return None;
        }
        let map = self.spec_map(specs, &specs_path, "array", &["size", "item"])?;
        let size = match map.get("size") {
            Some(s) => Some(self.count(s, &join(&specs_path, "size"))?),
            None => {
                self.error(&join(&specs_path, "size"), "is required for an array");
                None
            }
        };
        let item_path = join(&specs_path, "item");
        let item = match map.get("item") {
            Some(item) => {
                if place == Place::InStruct
                    && item.get("type").and_then(Value::as_str) == Some("struct")
                {
                    self.error(
                        &join(&item_path, "type"),
                        "a struct field cannot be an array of structs (structs do not nest)",
                    );
                    return None;
                }
                self.data_type(item, &item_path, parts, Place::ArrayItem)?
            }
            None => {
                self.error(&item_path, "is required for an array");
                return None;
            }
        };
        Some(DataType::Array {
            size: Some(size?),
            item: Box::new(item),
        })
    }

    /// The top-level `"hex"` layout.
    fn hex_layout(&mut self, v: &Value, path: &str) -> Option<HexLayout> {
        let map = self.spec_map(Some(v), path, "the hex layout", &["mode", "byteOrder"])?;
        let mut layout = HexLayout::default();
        if let Some(mode) = self.spelled(map.get("mode"), &join(path, "mode"), false) {
            layout.mode = mode;
        }
        if let Some(order) = self.spelled(map.get("byteOrder"), &join(path, "byteOrder"), false) {
            layout.byte_order = order;
        }
        Some(layout)
    }

    /// A field's `"hex"` settings: `id` (properties only), `type`, `scale`, `offset`.
    fn hex_field(&mut self, v: &Value, path: &str, allow_id: bool) -> HexField {
        let allowed: &[&str] = if allow_id {
            &["id", "type", "scale", "offset"]
        } else {
            &["type", "scale", "offset"]
        };
        let what = if allow_id {
            "a property's hex settings"
        } else {
            "a parameter's hex settings (parameters travel in declared order, without ids)"
        };
        let Some(map) = self.spec_map(Some(v), path, what, allowed) else {
            return HexField::default();
        };
        let mut hex = HexField::default();
        if let Some(id) = map.get("id") {
            hex.id = self.count(id, &join(path, "id"));
        }
        if let Some(ty) = map.get("type") {
            hex.ty = match ty {
                Value::String(t) => match HexType::from_model_name(t) {
                    Some(t) => Some(t),
                    None => {
                        self.error(
                            &join(path, "type"),
                            format!("unknown hex type {t:?} (expected {})", HexType::choices()),
                        );
                        None
                    }
                },
                other => {
                    self.error(
                        &join(path, "type"),
                        format!("expected a string, got {}", kind(other)),
                    );
                    None
                }
            };
        }
        for (key, slot) in [("scale", &mut hex.scale), ("offset", &mut hex.offset)] {
            if let Some(x) = map.get(key) {
                *slot = self.number(x, &join(path, key));
            }
        }
        hex
    }

    /// The `"hex": {"id": N}` of an event or service.
    fn hex_id(&mut self, obj: &Map<String, Value>, path: &str) -> Option<u32> {
        let v = obj.get("hex").filter(|v| !v.is_null())?;
        let hpath = join(path, "hex");
        let map = self.spec_map(
            Some(v),
            &hpath,
            "an event's or service's hex settings",
            &["id"],
        )?;
        let id = map.get("id")?;
        self.count(id, &join(&hpath, "id"))
    }

    /// The specs object of a type, checking that it has only `allowed` keys.
    fn spec_map(
        &mut self,
        specs: Option<&Value>,
        path: &str,
        ty: &str,
        allowed: &[&str],
    ) -> Option<Map<String, Value>> {
        let map = match specs {
            None => return Some(Map::new()),
            Some(Value::Object(m)) => m,
            Some(other) => {
                self.error(
                    path,
                    format!("{ty} specs must be an object, got {}", kind(other)),
                );
                return None;
            }
        };
        let mut ok = true;
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                ok = false;
                let expected = if allowed.is_empty() {
                    format!("{ty} takes no specs")
                } else {
                    format!("{ty} takes {}", allowed.join(", "))
                };
                self.error(
                    &join(path, key),
                    format!("{key:?} is not a spec of {ty} ({expected})"),
                );
            }
        }
        ok.then(|| map.clone())
    }

    fn numeric(&mut self, specs: Option<&Value>, path: &str, ty: &str) -> Option<Numeric> {
        let map = self.spec_map(specs, path, ty, &["min", "max", "step", "unit", "unitName"])?;
        let mut n = Numeric::default();
        let mut ok = true;
        for (key, slot) in [
            ("min", &mut n.min),
            ("max", &mut n.max),
            ("step", &mut n.step),
        ] {
            if let Some(v) = map.get(key).filter(|v| !is_blank(v)) {
                match self.number(v, &join(path, key)) {
                    Some(x) => *slot = Some(x),
                    None => ok = false,
                }
            }
        }
        for (key, slot) in [("unit", &mut n.unit), ("unitName", &mut n.unit_name)] {
            match map.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => *slot = Some(s.clone()).filter(|s| !s.is_empty()),
                Some(other) => {
                    ok = false;
                    self.error(
                        &join(path, key),
                        format!("expected a string, got {}", kind(other)),
                    );
                }
            }
        }
        ok.then_some(n)
    }

    fn bool_labels(&mut self, specs: Option<&Value>, path: &str) -> Option<Option<[String; 2]>> {
        let Some(specs) = specs else {
            return Some(None);
        };
        let map = self.spec_map(Some(specs), path, "bool", &["0", "1"])?;
        let label = |p: &mut Self, key: &str| match map.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                p.error(
                    &join(path, key),
                    format!("expected a label string, got {}", kind(other)),
                );
                None
            }
            None => {
                p.error(
                    path,
                    format!("a bool needs labels for both \"0\" and \"1\"; {key:?} is missing"),
                );
                None
            }
        };
        let off = label(self, "0");
        let on = label(self, "1");
        Some(Some([off?, on?]))
    }

    fn enum_type(&mut self, specs: Option<&Value>, path: &str, parts: &[&str]) -> Option<EnumType> {
        let map = match specs {
            Some(Value::Object(m)) => m,
            Some(other) => {
                self.error(
                    path,
                    format!("enum specs must map keys to labels, got {}", kind(other)),
                );
                return None;
            }
            None => {
                self.error(path, "an enum needs its keys and labels");
                return None;
            }
        };
        if map.is_empty() {
            self.error(path, "an enum needs at least one key");
            return None;
        }
        let mut variants = Vec::new();
        let mut ok = true;
        for (key, label) in map {
            let kpath = join(path, key);
            let parsed = key
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|k| i32::try_from(*k).is_ok());
            let label = match label {
                Value::String(s) => Some(s.clone()),
                other => {
                    self.error(
                        &kpath,
                        format!("expected a label string, got {}", kind(other)),
                    );
                    None
                }
            };
            match (parsed, label) {
                (Some(k), Some(label)) => variants.push(Variant {
                    rust_name: names::variant_name(&label, k),
                    key: k,
                    label,
                }),
                (None, _) => {
                    ok = false;
                    self.error(&kpath, format!("enum key {key:?} is not a 32-bit integer"));
                }
                _ => ok = false,
            }
        }
        // Labels that give clashing Rust names fall back to Key{n} for every variant.
        let mut seen: Vec<&str> = variants.iter().map(|v| v.rust_name.as_str()).collect();
        seen.sort_unstable();
        if seen.windows(2).any(|w| w[0] == w[1]) {
            for v in &mut variants {
                v.rust_name = names::variant_name("", v.key);
            }
        }
        let mut keys: Vec<i64> = variants.iter().map(|v| v.key).collect();
        keys.sort_unstable();
        if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
            ok = false;
            self.error(path, format!("enum key {} appears more than once", w[0]));
        }
        ok.then(|| EnumType {
            rust_name: names::type_name(parts),
            variants,
        })
    }

    /// A number, written as a JSON number or a numeric string.
    fn number(&mut self, v: &Value, path: &str) -> Option<f64> {
        let n = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match n.filter(|n| n.is_finite()) {
            Some(n) => Some(n),
            None => {
                self.error(path, format!("expected a number, got {v}"));
                None
            }
        }
    }

    /// A positive count (`length`, `size`), as a number or a numeric string.
    fn count(&mut self, v: &Value, path: &str) -> Option<u32> {
        let n = self.number(v, path)?;
        if n.fract() != 0.0 || n < 1.0 || n > f64::from(u32::MAX) {
            self.error(path, format!("expected a positive whole number, got {v}"));
            return None;
        }
        Some(n as u32)
    }
}

fn is_blank(v: &Value) -> bool {
    matches!(v, Value::Null) || matches!(v, Value::String(s) if s.trim().is_empty())
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
