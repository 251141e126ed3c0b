//! HEX layout resolution: a field's declared `"hex"` settings combined with its data type's
//! defaults into the encoding both emitters (Rust codec and parsing script) use, and the
//! checks that reject what the codec could not honour.

use crate::ir::{DataType, Diagnostic, Field, HexType, Loc, Model, Numeric, WireType};

/// How one value is encoded, after defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoding {
    /// The wire form.
    pub wire: WireForm,
    /// Scale (1 when unscaled).
    pub scale: f64,
    /// Offset (0 when unscaled).
    pub offset: f64,
    /// Decimal places of scale and offset.
    pub decimals: u32,
}

/// The wire form of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireForm {
    /// A number of this wire type (ints, floats, enum keys, dates).
    Number(WireType),
    /// One byte, 0 or 1.
    Bool,
    /// u8 length, then UTF-8.
    Text,
    /// Exactly N bytes, zero-padded.
    TextFixed(u32),
    /// The struct's fields in order.
    Struct,
    /// A user type in a derive: its own `HexValue` decides.
    External,
}

impl Encoding {
    fn plain(wire: WireForm) -> Self {
        Self {
            wire,
            scale: 1.0,
            offset: 0.0,
            decimals: 0,
        }
    }

    /// Whether numbers are scaled or offset.
    pub fn scaled(&self) -> bool {
        self.scale != 1.0 || self.offset != 0.0
    }
}

/// The encoding of a data type (of the items, for arrays) with its declared settings.
///
/// # Errors
/// Why the settings cannot apply to the type.
pub fn resolve(ty: &DataType, hex: &crate::ir::HexField) -> Result<Encoding, String> {
    let declared = hex.ty;
    match ty {
        DataType::Array { item, .. } => resolve(item, hex),
        DataType::Int(_) | DataType::Float(_) | DataType::Double(_) => number(ty, hex),
        DataType::Bool(_) => {
            no_scaling(hex, "bool")?;
            match declared {
                None | Some(HexType::Bool) | Some(HexType::Number(WireType::U8)) => {
                    Ok(Encoding::plain(WireForm::Bool))
                }
                Some(other) => Err(format!(
                    "bool travels as one byte (bool or u8), not {}",
                    hex_type_name(other)
                )),
            }
        }
        DataType::Enum(_) => {
            no_scaling(hex, "enum")?;
            match declared {
                None => Ok(Encoding::plain(WireForm::Number(WireType::U8))),
                Some(HexType::Number(w)) if int_wire(w) => Ok(Encoding::plain(WireForm::Number(w))),
                Some(other) => Err(format!(
                    "an enum key travels as an integer wire type, not {}",
                    hex_type_name(other)
                )),
            }
        }
        DataType::Date => {
            no_scaling(hex, "date")?;
            match declared {
                None => Ok(Encoding::plain(WireForm::Number(WireType::U64))),
                Some(HexType::Number(w @ (WireType::U64 | WireType::I64))) => {
                    Ok(Encoding::plain(WireForm::Number(w)))
                }
                Some(other) => Err(format!(
                    "a date (milliseconds) travels as u64 or i64, not {}",
                    hex_type_name(other)
                )),
            }
        }
        DataType::Text(_) => {
            no_scaling(hex, "text")?;
            match declared {
                None | Some(HexType::Text) => Ok(Encoding::plain(WireForm::Text)),
                Some(HexType::TextFixed(n)) => Ok(Encoding::plain(WireForm::TextFixed(n))),
                Some(other) => Err(format!(
                    "text travels as text or text:N, not {}",
                    hex_type_name(other)
                )),
            }
        }
        DataType::Struct(_) => {
            if declared.is_some() || scaled(hex) {
                return Err(
                    "a struct travels as its fields in order; put hex settings on the fields"
                        .into(),
                );
            }
            Ok(Encoding::plain(WireForm::Struct))
        }
        DataType::External(_) => external(hex),
    }
}

/// Whether `scale` or `offset` is declared.
fn scaled(hex: &crate::ir::HexField) -> bool {
    hex.scale.is_some() || hex.offset.is_some()
}

/// Refuses `scale` and `offset` on a type `what` that is not a number.
fn no_scaling(hex: &crate::ir::HexField, what: &str) -> Result<(), String> {
    if scaled(hex) {
        Err(format!(
            "scale and offset apply only to numbers, not {what}"
        ))
    } else {
        Ok(())
    }
}

/// Whether a wire type holds integers.
fn int_wire(w: WireType) -> bool {
    w.int_range().is_some()
}

/// The encoding of an int, float or double: its wire type (i32, f32 or f64 by default),
/// and scale and offset on integer wire types.
fn number(ty: &DataType, hex: &crate::ir::HexField) -> Result<Encoding, String> {
    let default = match ty {
        DataType::Int(_) => WireType::I32,
        DataType::Float(_) => WireType::F32,
        _ => WireType::F64,
    };
    let wire = match hex.ty {
        None => default,
        Some(HexType::Number(w)) => w,
        Some(other) => {
            return Err(format!(
                "{} cannot travel as {}",
                ty.model_name(),
                hex_type_name(other)
            ));
        }
    };
    if !int_wire(wire) && scaled(hex) {
        return Err(format!(
            "scale and offset need an integer wire type, not {}",
            wire.name()
        ));
    }
    if matches!(ty, DataType::Int(_)) && !int_wire(wire) {
        return Err(format!(
            "an int travels as an integer wire type, not {}",
            wire.name()
        ));
    }
    if matches!(ty, DataType::Double(_)) && wire == WireType::F32 {
        return Err("a double would lose precision as f32; use f64 or a scaled integer".into());
    }
    let scale = hex.scale.unwrap_or(1.0);
    let offset = hex.offset.unwrap_or(0.0);
    if scale <= 0.0 {
        return Err(format!("scale must be positive, got {scale}"));
    }
    if matches!(ty, DataType::Int(_)) && (scale.fract() != 0.0 || offset.fract() != 0.0) {
        return Err("an int's scale and offset must be whole numbers".into());
    }
    Ok(Encoding {
        wire: WireForm::Number(wire),
        scale,
        offset,
        decimals: decimals(scale).max(decimals(offset)),
    })
}

/// The encoding of a derive's user type: its own `HexValue`, or an integer key type.
fn external(hex: &crate::ir::HexField) -> Result<Encoding, String> {
    if scaled(hex) {
        return Err("scale and offset apply only to numbers".into());
    }
    match hex.ty {
        None => Ok(Encoding::plain(WireForm::External)),
        Some(HexType::Number(w)) if int_wire(w) => Ok(Encoding::plain(WireForm::Number(w))),
        Some(other) => Err(format!(
            "a user type travels as its own encoding or an integer key type, not {}",
            hex_type_name(other)
        )),
    }
}

/// The model's name of a declared hex type.
pub fn hex_type_name(t: HexType) -> String {
    match t {
        HexType::Number(w) => w.name().to_owned(),
        HexType::Bool => "bool".into(),
        HexType::Text => "text".into(),
        HexType::TextFixed(n) => format!("text:{n}"),
    }
}

/// Decimal places of a number as written (`0.1` -> 1, `0.25` -> 2, `5` -> 0).
pub fn decimals(v: f64) -> u32 {
    let text = format!("{v}");
    match text.split_once('.') {
        Some((_, frac)) => frac.len() as u32,
        None => 0,
    }
}

/// The properties' ids: declared, or position + 1.
pub fn property_ids(model: &Model) -> Vec<u32> {
    model
        .properties
        .iter()
        .enumerate()
        .map(|(i, p)| p.field.hex.id.unwrap_or(i as u32 + 1))
        .collect()
}

/// The events' ids: declared, or position + 1.
pub fn event_ids(model: &Model) -> Vec<u32> {
    model
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| e.hex_id.unwrap_or(i as u32 + 1))
        .collect()
}

/// The services' ids: declared, or position + 1.
pub fn service_ids(model: &Model) -> Vec<u32> {
    model
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| s.hex_id.unwrap_or(i as u32 + 1))
        .collect()
}

/// Checks a HEX product's layout: ids, and every field's encoding.
pub fn validate(model: &Model, diags: &mut Vec<Diagnostic>) {
    if model.hex.is_none() {
        return;
    }
    let ids = property_ids(model);
    let places: Vec<(&str, Loc)> = model
        .properties
        .iter()
        .map(|p| (p.field.path.as_str(), p.field.loc))
        .collect();
    unique_ids(&ids, &places, "property", diags);
    let ids = event_ids(model);
    let places: Vec<(&str, Loc)> = model
        .events
        .iter()
        .map(|e| (e.path.as_str(), e.loc))
        .collect();
    unique_ids(&ids, &places, "event", diags);
    let ids = service_ids(model);
    let places: Vec<(&str, Loc)> = model
        .services
        .iter()
        .map(|s| (s.path.as_str(), s.loc))
        .collect();
    unique_ids(&ids, &places, "service", diags);
    for p in &model.properties {
        field(&p.field, diags);
    }
    for e in &model.events {
        e.outputs.iter().for_each(|f| field(f, diags));
    }
    for s in &model.services {
        s.inputs
            .iter()
            .chain(&s.outputs)
            .for_each(|f| field(f, diags));
    }
}

/// Every id in 1..=255 and used once; each problem at its item's path and location.
fn unique_ids(ids: &[u32], places: &[(&str, Loc)], what: &str, diags: &mut Vec<Diagnostic>) {
    for (i, id) in ids.iter().enumerate() {
        let (path, loc) = places[i];
        let path = format!("{path}.hex.id");
        if *id == 0 || *id > 255 {
            diags.push(
                Diagnostic::new(
                    path,
                    format!("{what} id {id} does not fit in one byte (1..=255)"),
                )
                .at(loc),
            );
        } else if let Some(first) = ids[..i].iter().position(|x| x == id) {
            diags.push(
                Diagnostic::new(
                    path,
                    format!("{what} id {id} is already used by {}", places[first].0),
                )
                .at(loc),
            );
        }
    }
}

/// Checks one field's encoding (recursing into struct fields).
pub fn field(f: &Field, diags: &mut Vec<Diagnostic>) {
    let path = format!("{}.hex", f.path);
    let mut err = |m: String| diags.push(Diagnostic::new(path.clone(), m).at(f.loc));
    let enc = match resolve(&f.ty, &f.hex) {
        Ok(enc) => enc,
        Err(m) => return err(m),
    };
    let item = match &f.ty {
        DataType::Array { size, item } => {
            if size.is_some_and(|s| s > 255) {
                err(format!(
                    "an array of {} items does not fit its u8 count",
                    size.unwrap_or(0)
                ));
            }
            item.as_ref()
        }
        other => other,
    };
    match (item, enc.wire) {
        (DataType::Int(n) | DataType::Float(n) | DataType::Double(n), WireForm::Number(w)) => {
            if let Some(m) = range_problem(item, n, &enc, w) {
                err(m);
            }
        }
        (DataType::Enum(e), WireForm::Number(w)) => {
            if let Some((lo, hi)) = int_range(w)
                && let Some(v) = e
                    .variants
                    .iter()
                    .find(|v| (v.key as f64) < lo || (v.key as f64) > hi)
            {
                err(format!("enum key {} does not fit {}", v.key, w.name()));
            }
        }
        (DataType::Text(len), WireForm::Text) => {
            if let Some(len) = len.filter(|l| *l > 255) {
                err(format!(
                    "text of up to {len} bytes does not fit its u8 length prefix (at most 255); use text:N"
                ));
            }
        }
        (DataType::Text(len), WireForm::TextFixed(n)) => {
            if let Some(len) = len.filter(|l| l > &n) {
                err(format!("text of up to {len} bytes does not fit text:{n}"));
            }
        }
        (DataType::Struct(s), _) => {
            for sf in &s.fields {
                field(sf, diags);
            }
        }
        _ => {}
    }
}

/// The raw integer range of a wire type, as numbers of the model (`None` for floats).
fn int_range(w: WireType) -> Option<(f64, f64)> {
    w.int_range().map(|(lo, hi)| (lo as f64, hi as f64))
}

/// Why a number's declared range does not fit its wire type after scaling, if it does not.
fn range_problem(ty: &DataType, n: &Numeric, enc: &Encoding, w: WireType) -> Option<String> {
    let (lo, hi) = int_range(w)?;
    let natural = match ty {
        DataType::Int(_) => Some((f64::from(i32::MIN), f64::from(i32::MAX))),
        _ => None,
    };
    let (min, max) = match (n.min, n.max, natural) {
        (Some(a), Some(b), _) => (a, b),
        (a, b, Some((nlo, nhi))) => (a.unwrap_or(nlo), b.unwrap_or(nhi)),
        _ => {
            return Some(format!(
                "a {} on {} needs min and max in its specs, to check that every value fits",
                ty.model_name(),
                w.name()
            ));
        }
    };
    let raw = |v: f64| ((v - enc.offset) / enc.scale).round();
    let (rmin, rmax) = (raw(min), raw(max));
    if rmin < lo || rmax > hi {
        let scaling = if enc.scaled() {
            format!(" with scale {} and offset {}", enc.scale, enc.offset)
        } else {
            String::new()
        };
        return Some(format!(
            "the range {min} ..= {max}{scaling} needs raw values {rmin} ..= {rmax}, which do not fit {} ({lo} ..= {hi})",
            w.name()
        ));
    }
    None
}
