//! Checks what a device reports against its product's thing model, as the platform does:
//! unknown identifiers, values of the wrong type, values out of range. The rules and the
//! messages are the SDK's own (`x_protocol::model`), driven by the model IR instead of
//! generated types, so a device and the simulator agree on every "4001" reason.

use serde::Deserialize;
use serde_json::{Map, Value};
use x_codegen::ir::{DataType, Field, Model, Numeric};
use x_protocol::model::{
    Date, RejectionReason, Rejections, Spec, ThingValue, ValueError, ValueProblem, decode_enum_key,
    unknown_enum_key,
};

/// Checks a property report (HeaderCtrl 16) payload.
///
/// # Errors
/// Every unknown property and every bad value.
pub fn property_report(model: &Model, payload: &Value) -> Result<(), Rejections> {
    let Value::Object(map) = payload else {
        return Err(not_an_object(payload));
    };
    let fields: Vec<&Field> = model.properties.iter().map(|p| &p.field).collect();
    params(&fields, map, "property", false)
}

/// Checks an event report (HeaderCtrl 17) payload of event `identifier`.
///
/// # Errors
/// An unknown event, and every unknown, missing or bad output.
pub fn event_report(model: &Model, identifier: &str, payload: &Value) -> Result<(), Rejections> {
    let Some(event) = model.events.iter().find(|e| e.identifier == identifier) else {
        return Err(Rejections::from(x_protocol::model::Rejection::new(
            identifier,
            RejectionReason::Unknown("event"),
        )));
    };
    let Value::Object(map) = payload else {
        return Err(not_an_object(payload));
    };
    let fields: Vec<&Field> = event.outputs.iter().collect();
    params(&fields, map, "output", true)
}

/// Checks the outputs a device returns from service `service` (the `Data` of a successful
/// service ack): every declared output present and valid, nothing undeclared.
///
/// # Errors
/// An unknown service, and every unknown, missing or bad output.
pub fn service_outputs(model: &Model, service: &str, data: &Value) -> Result<(), Rejections> {
    let Some(service) = model.services.iter().find(|s| s.identifier == service) else {
        return Err(Rejections::from(x_protocol::model::Rejection::new(
            service,
            RejectionReason::Unknown("service"),
        )));
    };
    let Value::Object(map) = data else {
        return Err(not_an_object(data));
    };
    let fields: Vec<&Field> = service.outputs.iter().collect();
    params(&fields, map, "output", true)
}

/// Checks a history upload (HeaderCtrl 27): every property entry against its property and
/// every event entry against its event, each with an integer millisecond `time`.
///
/// # Errors
/// Every bad entry, named by its batch's position in `params` and its identifier
/// (`params[3].properties.power: ..`, `params[0].events.overheat.action: ..`), so that a
/// device that sends one entry per batch (as the SDK's runtime does) can tell exactly which
/// entries were refused. A payload that is not a history upload names no entry.
pub fn history(model: &Model, payload: &Value) -> Result<(), Rejections> {
    use x_protocol::payload::TimedValue;
    let upload: x_protocol::payload::HistoryUpload = serde_json::from_value(payload.clone())
        .map_err(|e| {
            let mut r = Rejections::default();
            r.push(
                "Payload",
                RejectionReason::Value(ValueError::new(ValueProblem::Type {
                    expected: "a history upload {params: [{properties, events}]}",
                    got: e.to_string(),
                })),
            );
            r
        })?;
    let mut rejections = Rejections::default();
    let untimed = |why: String| {
        RejectionReason::Value(ValueError::new(ValueProblem::Type {
            expected: "{value, time}",
            got: why,
        }))
    };
    // Entry by entry: a malformed one does not hide the others of its batch.
    for (b, batch) in upload.params.iter().enumerate() {
        for (id, entry) in batch.properties.iter().flatten() {
            let at = format!("params[{b}].properties.{id}");
            let timed = match TimedValue::deserialize(entry) {
                Ok(t) => t,
                Err(e) => {
                    rejections.push(at, untimed(e.to_string()));
                    continue;
                }
            };
            match model.properties.iter().find(|p| p.field.identifier == *id) {
                Some(p) => {
                    if let Err(e) = value_of(&p.field.ty, &timed.value) {
                        rejections.push(at, RejectionReason::Value(e));
                    }
                }
                None => rejections.push(at, RejectionReason::Unknown("property")),
            }
        }
        for (id, entry) in batch.events.iter().flatten() {
            let timed = match TimedValue::deserialize(entry) {
                Ok(t) => t,
                Err(e) => {
                    rejections.push(format!("params[{b}].events.{id}"), untimed(e.to_string()));
                    continue;
                }
            };
            if let Err(r) = event_report(model, id, &timed.value) {
                for one in r.0 {
                    rejections.push(
                        format!("params[{b}].events.{id}.{}", one.identifier),
                        one.reason,
                    );
                }
            }
        }
    }
    rejections.into_result(|| ())
}

fn not_an_object(payload: &Value) -> Rejections {
    let mut r = Rejections::default();
    r.push(
        "Payload",
        RejectionReason::Value(ValueError::type_mismatch("an object", payload)),
    );
    r
}

fn params(
    fields: &[&Field],
    map: &Map<String, Value>,
    what: &'static str,
    all_required: bool,
) -> Result<(), Rejections> {
    let mut rejections = Rejections::default();
    for (key, value) in map {
        match fields.iter().find(|f| f.identifier == *key) {
            Some(f) => {
                if let Err(e) = value_of(&f.ty, value) {
                    rejections.push(key.as_str(), RejectionReason::Value(e));
                }
            }
            None => rejections.push(key.as_str(), RejectionReason::Unknown(what)),
        }
    }
    if all_required {
        for f in fields {
            if !map.contains_key(&f.identifier) {
                rejections.push(f.identifier.as_str(), RejectionReason::Missing);
            }
        }
    }
    rejections.into_result(|| ())
}

fn spec_of(n: &Numeric) -> Spec {
    Spec {
        min: n.min,
        max: n.max,
        step: n.step,
        ..Spec::NONE
    }
}

/// Checks one value against a data type: the same coercions and checks as generated code.
///
/// # Errors
/// What is wrong, located inside structs and arrays.
pub fn value_of(ty: &DataType, value: &Value) -> Result<(), ValueError> {
    match ty {
        DataType::Int(n) => i32::from_json(value)?.check(&spec_of(n)),
        DataType::Float(n) => f32::from_json(value)?.check(&spec_of(n)),
        DataType::Double(n) => f64::from_json(value)?.check(&spec_of(n)),
        DataType::Bool(_) => bool::from_json(value).map(drop),
        DataType::Enum(e) => {
            let key = decode_enum_key(value)?;
            if e.variants.iter().any(|v| v.key == key) {
                Ok(())
            } else {
                let table: Vec<(i64, &str)> = e
                    .variants
                    .iter()
                    .map(|v| (v.key, v.label.as_str()))
                    .collect();
                Err(unknown_enum_key(key, &table))
            }
        }
        DataType::Text(len) => String::from_json(value)?.check(&Spec {
            length: *len,
            ..Spec::NONE
        }),
        DataType::Date => Date::from_json(value).map(drop),
        DataType::Struct(s) => {
            let Value::Object(map) = value else {
                return Err(ValueError::type_mismatch("an object", value));
            };
            for (key, v) in map {
                let Some(f) = s.fields.iter().find(|f| f.identifier == *key) else {
                    return Err(ValueError::new(ValueProblem::UnknownField {
                        field: key.clone(),
                    }));
                };
                value_of(&f.ty, v).map_err(|e| e.in_field(key))?;
            }
            if let Some(f) = s.fields.iter().find(|f| !map.contains_key(&f.identifier)) {
                return Err(ValueError::new(ValueProblem::MissingField {
                    field: f.identifier.clone(),
                }));
            }
            Ok(())
        }
        DataType::Array { size, item } => {
            let Value::Array(items) = value else {
                return Err(ValueError::type_mismatch("a list", value));
            };
            Spec {
                size: *size,
                ..Spec::NONE
            }
            .check_size(items.len())?;
            for (i, v) in items.iter().enumerate() {
                value_of(item, v).map_err(|e| e.in_element(i))?;
            }
            Ok(())
        }
        DataType::External(_) => Ok(()),
    }
}
