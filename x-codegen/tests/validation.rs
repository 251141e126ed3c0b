//! Broken models: every problem is reported, each with the JSON path of what is wrong.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

/// Wraps one property in a model.
fn prop(data_type: Value) -> Value {
    json!({"properties":[{"identifier":"p","name":"P","accessMode":"rw","dataType":data_type}]})
}

/// The diagnostics of a model, as `path: message` lines.
fn errors(model: &str) -> Vec<String> {
    match x_codegen::load(model, "Test") {
        Ok(_) => panic!("model should be invalid: {model}"),
        Err(diags) => diags.iter().map(ToString::to_string).collect(),
    }
}

/// Asserts that some diagnostic starts with `path: ` and contains `message`.
fn assert_error(model: Value, path: &str, message: &str) {
    let errs = errors(&model.to_string());
    assert!(
        errs.iter()
            .any(|e| e.starts_with(&format!("{path}: ")) && e.contains(message)),
        "expected `{path}: ...{message}...` in {errs:#?}"
    );
}

#[test]
fn not_json_or_not_an_object() {
    assert!(errors("{")[0].starts_with("not valid JSON"));
    assert_eq!(errors("[]"), ["expected an object, got a list"]);
    assert_error(
        json!({"properties": {}}),
        "properties",
        "expected a list, got an object",
    );
}

#[test]
fn identifiers_and_names() {
    assert_error(
        json!({"properties":[{"name":"P","accessMode":"r","dataType":{"type":"int"}}]}),
        "properties[0].identifier",
        "is required",
    );
    assert_error(
        json!({"properties":[{"identifier":"power-now","name":"P","accessMode":"r","dataType":{"type":"int"}}]}),
        "properties[0].identifier",
        "\"power-now\" is not a valid identifier",
    );
    assert_error(
        json!({"properties":[{"identifier":"p","name":"","accessMode":"r","dataType":{"type":"int"}}]}),
        "properties[0].name",
        "must not be empty",
    );
    assert_error(
        json!({"properties":[
            {"identifier":"p","name":"P","accessMode":"r","dataType":{"type":"int"}},
            {"identifier":"p","name":"Q","accessMode":"r","dataType":{"type":"int"}}
        ]}),
        "properties[1].identifier",
        "duplicate property identifier \"p\" (first at properties[0])",
    );
    assert_error(
        json!({"properties":[
            {"identifier":"childLock","name":"A","accessMode":"r","dataType":{"type":"bool"}},
            {"identifier":"child_lock","name":"B","accessMode":"r","dataType":{"type":"bool"}}
        ]}),
        "properties[1].identifier",
        "both become the Rust name `child_lock`",
    );
}

/// The model reader, the derives and `x_protocol::Identifier` share one identifier rule:
/// a model file accepts exactly the identifiers a topic level accepts.
#[test]
fn one_identifier_rule_for_model_files_and_topics() {
    let long = "x".repeat(50);
    let too_long = "x".repeat(51);
    let candidates = [
        "a", "temp_1", "A9", &long, "", "1st", "_x", "a-b", "a/b", "a+b", "a#", "ä", &too_long,
    ];
    for id in candidates {
        let model = json!({"events":[{"identifier":id,"name":"E","type":"info","outputData":[]}]});
        let accepted = x_codegen::load(&model.to_string(), "Test").is_ok();
        let identifier = x_protocol::Identifier::new(id);
        assert_eq!(
            accepted,
            identifier.is_ok(),
            "{id:?}: model file {accepted}, Identifier {identifier:?}"
        );
        assert_eq!(
            x_codegen::names::check_identifier(id).is_ok(),
            identifier.is_ok()
        );
    }
}

/// Model files spell the vocabulary by the tables the derives and x-protocol use: every
/// spelling of each table reads as its value.
#[test]
fn every_spelling_of_the_vocabulary_reads() {
    use x_codegen::ir::{Access, ByteOrder, CallType, EventKind, HexMode, Spelled};
    let load = |model: Value| x_codegen::load(&model.to_string(), "Test").unwrap();
    for (access, s) in Access::SPELLINGS {
        let m = load(
            json!({"properties":[{"identifier":"p","name":"P","accessMode":s,"dataType":{"type":"bool"}}]}),
        );
        assert_eq!(m.properties[0].access, *access);
    }
    for (kind, s) in EventKind::SPELLINGS {
        let m = load(json!({"events":[{"identifier":"e","name":"E","type":s,"outputData":[]}]}));
        assert_eq!(m.events[0].kind, *kind);
    }
    for (call, s) in CallType::SPELLINGS {
        let m = load(
            json!({"services":[{"identifier":"s","name":"S","callType":s,"inputData":[],"outputData":[]}]}),
        );
        assert_eq!(m.services[0].call, *call);
    }
    for (order, s) in ByteOrder::SPELLINGS {
        for (mode, t) in HexMode::SPELLINGS {
            let m = load(
                json!({"hex":{"mode":t,"byteOrder":s},"properties":[{"identifier":"p","name":"P","accessMode":"r","dataType":{"type":"bool"}}]}),
            );
            assert_eq!(m.hex.map(|h| (h.mode, h.byte_order)), Some((*mode, *order)));
        }
    }
}

#[test]
fn property_fields() {
    assert_error(
        json!({"properties":[{"identifier":"p","name":"P","accessMode":"w","dataType":{"type":"int"}}]}),
        "properties[0].accessMode",
        "expected \"r\" or \"rw\"",
    );
    assert_error(
        json!({"properties":[{"identifier":"p","name":"P","accessMode":"r"}]}),
        "properties[0].dataType",
        "is required",
    );
    assert_error(
        prop(json!({"type":"integer"})),
        "properties[0].dataType.type",
        "unknown type \"integer\"",
    );
}

#[test]
fn numeric_specs() {
    assert_error(
        prop(json!({"type":"int","specs":{"min":"10","max":"5"}})),
        "properties[0].dataType.specs.max",
        "max (5) is less than min (10)",
    );
    assert_error(
        prop(json!({"type":"float","specs":{"min":"abc"}})),
        "properties[0].dataType.specs.min",
        "expected a number, got \"abc\"",
    );
    assert_error(
        prop(json!({"type":"int","specs":{"step":"0.5"}})),
        "properties[0].dataType.specs.step",
        "is not a whole number",
    );
    assert_error(
        prop(json!({"type":"int","specs":{"max":3000000000u64}})),
        "properties[0].dataType.specs.max",
        "does not fit in int (i32)",
    );
    assert_error(
        prop(json!({"type":"double","specs":{"step":-1}})),
        "properties[0].dataType.specs.step",
        "step must be positive",
    );
    assert_error(
        prop(json!({"type":"int","specs":{"mx":5}})),
        "properties[0].dataType.specs.mx",
        "\"mx\" is not a spec of int",
    );
}

#[test]
fn specs_of_other_types() {
    assert_error(
        prop(json!({"type":"bool","specs":{"0":"off","1":"on","min":0}})),
        "properties[0].dataType.specs.min",
        "\"min\" is not a spec of bool",
    );
    assert_error(
        prop(json!({"type":"bool","specs":{"0":"off"}})),
        "properties[0].dataType.specs",
        "\"1\" is missing",
    );
    assert_error(
        prop(json!({"type":"enum","specs":{"0":"a","one":"b"}})),
        "properties[0].dataType.specs.one",
        "enum key \"one\" is not a 32-bit integer",
    );
    assert_error(
        prop(json!({"type":"enum","specs":{}})),
        "properties[0].dataType.specs",
        "at least one key",
    );
    assert_error(
        prop(json!({"type":"text","specs":{"length":"0"}})),
        "properties[0].dataType.specs.length",
        "expected a positive whole number",
    );
    assert_error(
        prop(json!({"type":"date","specs":{"unit":"ms"}})),
        "properties[0].dataType.specs.unit",
        "date takes no specs",
    );
}

#[test]
fn structs_and_arrays() {
    assert_error(
        prop(json!({"type":"array","specs":{"item":{"type":"int"}}})),
        "properties[0].dataType.specs.size",
        "is required for an array",
    );
    assert_error(
        prop(
            json!({"type":"array","specs":{"size":2,"item":{"type":"array","specs":{"size":2,"item":{"type":"int"}}}}}),
        ),
        "properties[0].dataType.specs.item.type",
        "arrays of arrays are not supported",
    );
    assert_error(
        prop(json!({"type":"struct","specs":[
            {"identifier":"a","name":"A","dataType":{"type":"int"}},
            {"identifier":"b","name":"B","dataType":{"type":"struct","specs":[]}}
        ]})),
        "properties[0].dataType.specs[1].dataType.type",
        "structs do not nest",
    );
    assert_error(
        prop(json!({"type":"struct","specs":[
            {"identifier":"a","name":"A","dataType":{"type":"int"}},
            {"identifier":"a","name":"B","dataType":{"type":"int"}}
        ]})),
        "properties[0].dataType.specs[1].identifier",
        "duplicate struct field identifier \"a\"",
    );
    assert_error(
        prop(
            json!({"type":"array","specs":{"size":"3","item":{"type":"int","specs":{"min":5,"max":1}}}}),
        ),
        "properties[0].dataType.specs.item.specs.max",
        "max (1) is less than min (5)",
    );
}

#[test]
fn events_and_services() {
    assert_error(
        json!({"events":[{"identifier":"e","name":"E","type":"warning"}]}),
        "events[0].type",
        "expected \"info\", \"alert\" or \"error\"",
    );
    assert_error(
        json!({"services":[{"identifier":"s","name":"S"}]}),
        "services[0].callType",
        "is required",
    );
    assert_error(
        json!({"services":[{"identifier":"s","name":"S","callType":"sync","outputData":[
            {"identifier":"o","name":"O","dataType":{"type":"int"}},
            {"identifier":"o","name":"O2","dataType":{"type":"int"}}
        ]}]}),
        "services[0].outputData[1].identifier",
        "duplicate output identifier \"o\"",
    );
    assert_error(
        json!({"events":[
            {"identifier":"e","name":"E","type":"info"},
            {"identifier":"e","name":"E2","type":"info"}
        ]}),
        "events[1].identifier",
        "duplicate event identifier \"e\"",
    );
    assert_error(
        json!({"events":[{"identifier":"e","name":"E","type":"info","outputData":[
            {"identifier":"v","name":"V","dataType":{"type":"float","specs":{"min":1e40}}}
        ]}]}),
        "events[0].outputData[0].dataType.specs.min",
        "does not fit in float (f32)",
    );
}

#[test]
fn generated_type_names_must_not_collide() {
    assert_error(
        json!({
            "properties":[{"identifier":"overheatEvent","name":"P","accessMode":"r","dataType":{"type":"enum","specs":{"0":"a"}}}],
            "events":[{"identifier":"overheat","name":"E","type":"alert"}]
        }),
        "events[0]",
        "`OverheatEvent` is also generated for properties[0]",
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let model = json!({"properties":[
        {"identifier":"a","name":"A","accessMode":"x","dataType":{"type":"int","specs":{"min":5,"max":1}}},
        {"identifier":"b-c","name":"B","accessMode":"r","dataType":{"type":"text","specs":{"length":0}}},
        {"identifier":"d","name":"D","accessMode":"r","dataType":{"type":"nope"}}
    ]});
    let errs = errors(&model.to_string());
    let paths: Vec<&str> = errs.iter().map(|e| e.split(": ").next().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "properties[0].accessMode",
            "properties[0].dataType.specs.max",
            "properties[1].dataType.specs.length",
            "properties[1].identifier",
            "properties[2].dataType.type",
        ],
        "{errs:#?}"
    );
}

#[test]
fn shipped_models_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        x_codegen::load(&text, "M").unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
    }
}

/// A HEX product with one property of `data_type` and `hex` settings.
fn hex_prop(data_type: Value, hex: Value) -> Value {
    json!({"hex": {}, "properties":[{"identifier":"p","name":"P","accessMode":"rw","dataType":data_type,"hex":hex}]})
}

#[test]
fn hex_layouts() {
    assert_error(
        json!({"hex": {"mode": "packed"}}),
        "hex.mode",
        "expected \"tagged\" or \"positional\"",
    );
    assert_error(
        json!({"hex": {"byteOrder": "middle"}}),
        "hex.byteOrder",
        "expected \"big\" or \"little\"",
    );
    assert_error(
        json!({"hex": {"order": "big"}}),
        "hex.order",
        "\"order\" is not a spec of the hex layout",
    );
    assert_error(
        hex_prop(
            json!({"type":"int","specs":{"min":0,"max":1000}}),
            json!({"type":"u8"}),
        ),
        "properties[0].hex",
        "the range 0 ..= 1000 needs raw values 0 ..= 1000, which do not fit u8 (0 ..= 255)",
    );
    assert_error(
        hex_prop(
            json!({"type":"float","specs":{"min":0,"max":300}}),
            json!({"type":"u16","scale":0.001}),
        ),
        "properties[0].hex",
        "with scale 0.001 and offset 0 needs raw values 0 ..= 300000, which do not fit u16",
    );
    assert_error(
        hex_prop(json!({"type":"float"}), json!({"type":"i16","scale":0.1})),
        "properties[0].hex",
        "a float on i16 needs min and max in its specs",
    );
    assert_error(
        hex_prop(json!({"type":"text","specs":{"length":300}}), json!({})),
        "properties[0].hex",
        "text of up to 300 bytes does not fit its u8 length prefix",
    );
    assert_error(
        hex_prop(
            json!({"type":"text","specs":{"length":20}}),
            json!({"type":"text:12"}),
        ),
        "properties[0].hex",
        "text of up to 20 bytes does not fit text:12",
    );
    assert_error(
        hex_prop(
            json!({"type":"enum","specs":{"0":"a","300":"b"}}),
            json!({}),
        ),
        "properties[0].hex",
        "enum key 300 does not fit u8",
    );
    assert_error(
        hex_prop(json!({"type":"bool"}), json!({"type":"u16"})),
        "properties[0].hex",
        "bool travels as one byte (bool or u8), not u16",
    );
    assert_error(
        hex_prop(json!({"type":"int"}), json!({"type":"f32"})),
        "properties[0].hex",
        "an int travels as an integer wire type, not f32",
    );
    assert_error(
        hex_prop(
            json!({"type":"int","specs":{"min":0,"max":10}}),
            json!({"type":"u8","scale":0.5}),
        ),
        "properties[0].hex",
        "an int's scale and offset must be whole numbers",
    );
    assert_error(
        hex_prop(json!({"type":"date"}), json!({"type":"u32"})),
        "properties[0].hex",
        "a date (milliseconds) travels as u64 or i64, not u32",
    );
    assert_error(
        hex_prop(
            json!({"type":"double","specs":{"min":0,"max":1}}),
            json!({"type":"f32"}),
        ),
        "properties[0].hex",
        "a double would lose precision as f32",
    );
    assert_error(
        hex_prop(json!({"type":"int"}), json!({"type":"u12"})),
        "properties[0].hex.type",
        "unknown hex type \"u12\"",
    );
    assert_error(
        json!({"hex": {}, "properties":[
            {"identifier":"a","name":"A","accessMode":"r","dataType":{"type":"bool"},"hex":{"id":2}},
            {"identifier":"b","name":"B","accessMode":"r","dataType":{"type":"bool"}}
        ]}),
        "properties[1].hex.id",
        "property id 2 is already used by properties[0]",
    );
    assert_error(
        json!({"hex": {}, "events":[{"identifier":"e","name":"E","type":"info","hex":{"id":300}}]}),
        "events[0].hex.id",
        "event id 300 does not fit in one byte",
    );
    assert_error(
        json!({"hex": {}, "services":[{"identifier":"s","name":"S","callType":"sync","inputData":[
            {"identifier":"x","name":"X","dataType":{"type":"int"},"hex":{"id":1}}
        ]}]}),
        "services[0].inputData[0].hex.id",
        "parameters travel in declared order, without ids",
    );
}

#[test]
fn a_model_without_hex_layout_has_no_script() {
    let model = x_codegen::load(r#"{"properties":[]}"#, "M").unwrap();
    assert!(x_codegen::script::script(&model, "m.json").is_err());
}

#[test]
fn type_names_a_derive_chose_are_not_generated_names() {
    use x_codegen::ir::{CallType, Loc, Model, RustType, Service};
    let service = |id: &str, out: RustType| Service {
        identifier: id.into(),
        name: id.into(),
        desc: None,
        call: CallType::Sync,
        inputs: Vec::new(),
        outputs: Vec::new(),
        rust_variant: id.to_uppercase(),
        rust_method: id.into(),
        output_type: Some(out),
        path: format!("variant `{id}`"),
        loc: Loc::NONE,
        hex_id: None,
    };
    let model = |out: RustType| Model {
        name: "Device".into(),
        properties: Vec::new(),
        events: Vec::new(),
        services: vec![service("a", out.clone()), service("b", out)],
        hex: None,
    };
    // Two services of a model file cannot both generate `Done`.
    let generated = x_codegen::validate::validate(&model(RustType::new("Done")));
    assert!(
        generated.iter().any(|d| d
            .message
            .contains("`Done` is also generated for variant `a`")),
        "{generated:?}"
    );
    // A derive's `output = Done` on both is one user type, shared.
    let derived = RustType {
        text: "Done".into(),
        loc: Loc(3),
    };
    assert_eq!(x_codegen::validate::validate(&model(derived)), Vec::new());
}
