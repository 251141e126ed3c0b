//! The IR is plain data (issue 10, item 3): no compiler tokens, `Clone + Send + Sync`,
//! serializable, and a model that went through JSON is the same model to every emitter.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use x_codegen::ir::{DataType, Loc, RustType};
use x_codegen::{Diagnostic, Model};

/// Compiles only for plain data: the bounds x-sim relies on to share one model between its
/// threads, and serde both ways.
fn assert_plain_data<T: Clone + Send + Sync + Serialize + DeserializeOwned + 'static>() {}

#[test]
fn model_and_diagnostics_are_plain_data() {
    assert_plain_data::<Model>();
    assert_plain_data::<Diagnostic>();
    assert_plain_data::<RustType>();
    assert_plain_data::<Loc>();
}

fn models() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "the example models: {files:?}");
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (x_codegen::model_name_for(&p), text)
        })
        .collect()
}

#[test]
fn every_example_model_round_trips_through_json() {
    for (name, text) in models() {
        let model = x_codegen::load(&text, &name).unwrap();
        let json = serde_json::to_string(&model).unwrap();
        let back: Model = serde_json::from_str(&json).unwrap();
        assert_eq!(back, model, "{name} after a JSON round trip");
        // The same model to the emitters that read it.
        if model.hex.is_some() {
            assert_eq!(
                x_codegen::script::script(&back, &name).unwrap(),
                x_codegen::script::script(&model, &name).unwrap()
            );
        }
        assert_eq!(
            x_codegen::doc::markdown(&back, &name),
            x_codegen::doc::markdown(&model, &name)
        );
        #[cfg(feature = "rust")]
        {
            let opts = x_codegen::rust::Options::default();
            assert_eq!(
                x_codegen::rust::module(&back, &opts).to_string(),
                x_codegen::rust::module(&model, &opts).to_string(),
                "{name}: the emitted module"
            );
        }
    }
}

#[test]
fn the_vocabulary_is_serialized_as_model_spellings() {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/env-sensor-hex.json"),
    )
    .unwrap();
    let model = x_codegen::load(&text, "EnvSensorHex").unwrap();
    let json = serde_json::to_value(&model).unwrap();
    let layout = &json["hex"];
    assert!(
        layout["byte_order"] == "big" || layout["byte_order"] == "little",
        "{layout}"
    );
    assert!(json["properties"][0]["access"] == "r" || json["properties"][0]["access"] == "rw");
    let wrong = json.to_string().replacen(
        &format!("\"access\":{}", json["properties"][0]["access"]),
        "\"access\":\"write\"",
        1,
    );
    let err = serde_json::from_str::<Model>(&wrong).unwrap_err();
    assert!(
        err.to_string()
            .contains(r#"expected "r" or "rw", got "write""#),
        "{err}"
    );
}

#[test]
fn a_hex_type_is_serialized_as_its_spelling() {
    let hex: x_codegen::ir::HexField =
        serde_json::from_str(r#"{"id":3,"ty":"text:8","scale":null,"offset":null}"#).unwrap();
    assert_eq!(hex.ty, Some(x_codegen::ir::HexType::TextFixed(8)));
    assert_eq!(
        serde_json::to_value(&hex).unwrap()["ty"],
        serde_json::json!("text:8")
    );
    let err = serde_json::from_str::<x_codegen::ir::HexField>(r#"{"id":3,"ty":"u7"}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains(r#"unknown hex type "u7""#), "{err}");
}

#[test]
fn one_model_is_shared_between_threads() {
    let (name, text) = models().swap_remove(0);
    let model = Arc::new(x_codegen::load(&text, &name).unwrap());
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let model = Arc::clone(&model);
            std::thread::spawn(move || x_codegen::validate::validate(&model).len())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 0);
    }
}

#[test]
fn a_rust_type_is_its_text() {
    let ty = RustType::new("Vec < crate :: Mode >");
    assert_eq!(ty.display(), "Vec<crate::Mode>");
    assert!(ty.loc.is_none());
    let external = DataType::External(ty.clone());
    let back: DataType = serde_json::from_str(&serde_json::to_string(&external).unwrap()).unwrap();
    assert_eq!(back, external);
}

#[cfg(feature = "rust")]
#[test]
fn the_emitter_maps_locations_back_through_the_side_table() {
    use x_codegen::rust::Sources;
    let mut sources = Sources::default();
    let original: proc_macro2::TokenStream = "Vec<crate::Mode>".parse().unwrap();
    let ty = sources.rust_type(original.clone(), proc_macro2::Span::call_site());
    assert!(!ty.loc.is_none());
    assert_eq!(ty.text, original.to_string());
    assert_eq!(sources.tokens(&ty).to_string(), original.to_string());
    // Without the table (a model that went through JSON), the text parses back.
    let plain = Sources::default();
    assert_eq!(plain.tokens(&ty).to_string(), original.to_string());
    // A text that does not lex becomes a compile error naming it, not a panic.
    let broken = plain.tokens(&RustType::new("Vec<\"unterminated"));
    assert!(broken.to_string().contains("compile_error"), "{broken}");
    let loc = sources.locate(proc_macro2::Span::call_site());
    assert_ne!(loc, ty.loc);
}
