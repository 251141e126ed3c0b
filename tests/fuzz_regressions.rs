//! The fuzz targets' inputs as regression tests: every file of the committed corpus
//! (`fuzz/corpus/<target>/`) and every crash or slow input found (`fuzz/artifacts/<target>/`)
//! through the same checks the fuzzer runs (`fuzz/checks.rs`), on the stable toolchain,
//! without libFuzzer. See `fuzz/README.md` for running the fuzzer itself.
#![allow(clippy::unwrap_used)]

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

/// Runs `check` on every input kept for `target`; returns how many there were.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for dir in ["corpus", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{} fails its check", path.display());
            count += 1;
        }
    }
    count
}

macro_rules! replays {
    ($($target:ident),* $(,)?) => {
        $(
            #[test]
            fn $target() {
                let n = replay(stringify!($target), checks::$target);
                assert!(n > 0, "no inputs kept for {}", stringify!($target));
            }
        )*
    };
}

replays!(
    frame,
    decrypt,
    topic,
    hex_meter,
    hex_env_sensor,
    model_json,
    registry,
    session,
    broker,
    model_structured,
    frame_structured,
);
