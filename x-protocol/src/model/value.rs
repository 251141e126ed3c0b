//! The wire form of thing-model values: how each Rust type is written to JSON and read back
//! with the coercions the protocol allows (bool as 0/1 or true/false, numbers and enum keys
//! as numeric strings, dates as integer milliseconds).

use serde_json::Value;

use super::error::ValueError;
use super::spec::Spec;

/// The thing-model data type a Rust type stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ValueKind {
    /// `int`: `i32`.
    Int,
    /// `float`: `f32`.
    Float,
    /// `double`: `f64`.
    Double,
    /// `bool`: `bool`, 0 or 1 on the wire.
    Bool,
    /// `enum`: a generated or derived enum, its integer key on the wire.
    Enum,
    /// `text`: `String`.
    Text,
    /// `date`: [`Date`], integer milliseconds on the wire.
    Date,
    /// `struct`: a generated or derived struct, an object on the wire.
    Struct,
    /// `array`: `Vec<T>`, a list on the wire.
    Array,
}

impl ValueKind {
    /// The model's name for the type (`int`, `float`, ...).
    pub const fn model_name(self) -> &'static str {
        match self {
            Self::Int => "int",
            Self::Float => "float",
            Self::Double => "double",
            Self::Bool => "bool",
            Self::Enum => "enum",
            Self::Text => "text",
            Self::Date => "date",
            Self::Struct => "struct",
            Self::Array => "array",
        }
    }

    /// `==` usable in `const` contexts.
    pub const fn same(self, other: ValueKind) -> bool {
        self as u8 == other as u8
    }
}

/// A Rust type that can hold a thing-model value.
///
/// Implemented here for `i32`, `f32`, `f64`, `bool`, `String`, [`Date`] and `Vec<T>`, and by
/// generated or derived enums and structs.
pub trait ThingValue: Sized {
    /// The model data type this Rust type stands for.
    const KIND: ValueKind;

    /// The value as it goes on the wire.
    fn to_json(&self) -> Value;

    /// Reads a value from the wire, with the protocol's coercions.
    ///
    /// # Errors
    /// [`ValueError`] saying what was expected and what arrived.
    fn from_json(value: &Value) -> Result<Self, ValueError>;

    /// Checks the declared constraints. Types without constraints accept everything.
    ///
    /// # Errors
    /// [`ValueError`] naming the violated constraint.
    #[inline]
    fn check(&self, spec: &Spec) -> Result<(), ValueError> {
        let _ = spec;
        Ok(())
    }
}

/// Reads a value and checks its constraints: what generated code does for every field.
///
/// # Errors
/// The coercion or constraint error.
pub fn decode_field<T: ThingValue>(value: &Value, spec: &Spec) -> Result<T, ValueError> {
    let v = T::from_json(value)?;
    v.check(spec)?;
    Ok(v)
}

/// Reads an enum key: an integer or a string of digits.
///
/// # Errors
/// A type error for anything else.
pub fn decode_enum_key(value: &Value) -> Result<i64, ValueError> {
    integer(value, "an enum key (integer)")
}

/// The error for an enum key that names no variant, listing the declared ones.
pub fn unknown_enum_key(key: i64, variants: &[(i64, &str)]) -> ValueError {
    let allowed = variants
        .iter()
        .map(|(k, label)| format!("{k}={label}"))
        .collect::<Vec<_>>()
        .join(", ");
    ValueError::new(super::error::ValueProblem::UnknownEnumKey { key, allowed })
}

/// A number from a JSON number or a numeric string.
fn number(value: &Value, expected: &'static str) -> Result<f64, ValueError> {
    let n = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    n.filter(|n| n.is_finite())
        .ok_or_else(|| ValueError::type_mismatch(expected, value))
}

/// An integer from a JSON integer, an integral JSON number, or a string of digits.
fn integer(value: &Value, expected: &'static str) -> Result<i64, ValueError> {
    let n = match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    n.ok_or_else(|| ValueError::type_mismatch(expected, value))
}

impl ThingValue for i32 {
    const KIND: ValueKind = ValueKind::Int;

    fn to_json(&self) -> Value {
        Value::from(*self)
    }

    fn from_json(value: &Value) -> Result<Self, ValueError> {
        const EXPECTED: &str = "a 32-bit integer";
        let n = integer(value, EXPECTED)?;
        i32::try_from(n).map_err(|_| ValueError::type_mismatch(EXPECTED, value))
    }

    #[inline]
    fn check(&self, spec: &Spec) -> Result<(), ValueError> {
        spec.check_number(f64::from(*self))
    }
}

/// An `f32` widened to the `f64` with the same shortest decimal text (23.7, not
/// 23.700000762939453), so that JSON and error messages show what the device meant.
pub(crate) fn f32_to_f64(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(f64::from(v))
}

impl ThingValue for f32 {
    const KIND: ValueKind = ValueKind::Float;

    fn to_json(&self) -> Value {
        Value::from(f32_to_f64(*self))
    }

    fn from_json(value: &Value) -> Result<Self, ValueError> {
        const EXPECTED: &str = "a number (float)";
        let n = number(value, EXPECTED)?;
        if n.abs() > f64::from(f32::MAX) {
            return Err(ValueError::type_mismatch(EXPECTED, value));
        }
        Ok(n as f32)
    }

    #[inline]
    fn check(&self, spec: &Spec) -> Result<(), ValueError> {
        // Fast and exact: without a step, a value inside the range by more than half an f32
        // ulp is inside whatever decimal it prints as. Otherwise check the decimal.
        if spec.step.is_none() && self.is_finite() {
            let wide = f64::from(*self);
            let half_ulp = (wide.abs() * 5.960_464_477_539_063e-8).max(7.1e-46);
            let above_min = spec.min.is_none_or(|m| wide - half_ulp > m);
            let below_max = spec.max.is_none_or(|m| wide + half_ulp < m);
            if above_min && below_max {
                return Ok(());
            }
        }
        spec.check_number(f32_to_f64(*self))
    }
}

impl ThingValue for f64 {
    const KIND: ValueKind = ValueKind::Double;

    fn to_json(&self) -> Value {
        Value::from(*self)
    }

    fn from_json(value: &Value) -> Result<Self, ValueError> {
        number(value, "a number (double)")
    }

    #[inline]
    fn check(&self, spec: &Spec) -> Result<(), ValueError> {
        spec.check_number(*self)
    }
}

impl ThingValue for bool {
    const KIND: ValueKind = ValueKind::Bool;

    fn to_json(&self) -> Value {
        Value::from(u8::from(*self))
    }

    fn from_json(value: &Value) -> Result<Self, ValueError> {
        match value {
            Value::Bool(b) => Ok(*b),
            Value::Number(n) if n.as_f64() == Some(0.0) => Ok(false),
            Value::Number(n) if n.as_f64() == Some(1.0) => Ok(true),
            Value::String(s) => match s.trim() {
                "0" | "false" => Ok(false),
                "1" | "true" => Ok(true),
                _ => Err(ValueError::type_mismatch("0 or 1", value)),
            },
            _ => Err(ValueError::type_mismatch("0 or 1", value)),
        }
    }
}

impl ThingValue for String {
    const KIND: ValueKind = ValueKind::Text;

    fn to_json(&self) -> Value {
        Value::from(self.as_str())
    }

    fn from_json(value: &Value) -> Result<Self, ValueError> {
        match value {
            Value::String(s) => Ok(s.clone()),
            _ => Err(ValueError::type_mismatch("a string", value)),
        }
    }

    #[inline]
    fn check(&self, spec: &Spec) -> Result<(), ValueError> {
        spec.check_length(self)
    }
}

impl<T: ThingValue> ThingValue for Vec<T> {
    const KIND: ValueKind = ValueKind::Array;

    fn to_json(&self) -> Value {
        Value::Array(self.iter().map(ThingValue::to_json).collect())
    }

    fn from_json(value: &Value) -> Result<Self, ValueError> {
        let Value::Array(items) = value else {
            return Err(ValueError::type_mismatch("a list", value));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| T::from_json(item).map_err(|e| e.in_element(i)))
            .collect()
    }

    #[inline]
    fn check(&self, spec: &Spec) -> Result<(), ValueError> {
        spec.check_size(self.len())?;
        let item = spec.item();
        for (i, v) in self.iter().enumerate() {
            v.check(item).map_err(|e| e.in_element(i))?;
        }
        Ok(())
    }
}

/// A thing-model `date`: milliseconds since the Unix epoch, an integer on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Date(i64);

impl Date {
    /// The date `millis` milliseconds after the Unix epoch (negative: before).
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// The current system time.
    pub fn now() -> Self {
        Self::from(std::time::SystemTime::now())
    }
}

impl From<std::time::SystemTime> for Date {
    fn from(t: std::time::SystemTime) -> Self {
        let millis = match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        };
        Self(millis)
    }
}

impl ThingValue for Date {
    const KIND: ValueKind = ValueKind::Date;

    fn to_json(&self) -> Value {
        Value::from(self.0)
    }

    fn from_json(value: &Value) -> Result<Self, ValueError> {
        integer(value, "a date in integer milliseconds").map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn coercions() {
        assert_eq!(i32::from_json(&json!("100")).unwrap(), 100);
        assert_eq!(i32::from_json(&json!(7.0)).unwrap(), 7);
        assert_eq!(
            i32::from_json(&json!("1.5")).unwrap_err().to_string(),
            "expected a 32-bit integer, got \"1.5\""
        );
        assert!(i32::from_json(&json!(4294967296u64)).is_err());
        assert!(bool::from_json(&json!(1)).unwrap());
        assert!(!bool::from_json(&json!("false")).unwrap());
        assert!(bool::from_json(&json!(2)).is_err());
        assert_eq!(f32::from_json(&json!("23.7")).unwrap(), 23.7);
        assert_eq!(23.7f32.to_json(), json!(23.7));
        assert!(f64::from_json(&json!("NaN")).is_err());
        assert_eq!(
            Date::from_json(&json!("1524448722000")).unwrap().millis(),
            1524448722000
        );
        assert!(String::from_json(&json!(5)).is_err());
        assert_eq!(true.to_json(), json!(1));
    }

    #[test]
    fn array_errors_name_the_element() {
        let spec = Spec {
            size: Some(2),
            item: Some(&Spec {
                max: Some(10.0),
                ..Spec::NONE
            }),
            ..Spec::NONE
        };
        let e = decode_field::<Vec<i32>>(&json!([1, "x"]), &spec).unwrap_err();
        assert_eq!(e.to_string(), "[1]: expected a 32-bit integer, got \"x\"");
        let e = decode_field::<Vec<i32>>(&json!([1, 11]), &spec).unwrap_err();
        assert_eq!(e.to_string(), "[1]: 11 is above the maximum 10");
        let e = decode_field::<Vec<i32>>(&json!([1, 2, 3]), &spec).unwrap_err();
        assert_eq!(e.to_string(), "3 elements, at most 2 allowed");
    }
}
