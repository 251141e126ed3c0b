//! The simulator's crash-safe store, on real files: round trips, reopening, paging, damaged
//! records, open errors, and a writer killed with SIGKILL.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use x_protocol::RegistrationType;
use x_sim::registry::{Device, Format, ModelSource, Product};
use x_sim::store::{Store, StoreError};

const PRODUCT_KEY: &str = "DB6FACEF35BEBA0517712F0E4BE32936";
const DEVICE_SECRET: &str = "326086233fab8a96566796551eb1dff8";

fn product(id: &str, format: Format, encrypted: bool) -> Product {
    let model = (format != Format::Passthrough)
        .then(|| ModelSource::new("SmartPlug".into(), r#"{"properties":[]}"#.into()).unwrap());
    Product {
        open_id: "7ED01E2A".parse().unwrap(),
        product_id: id.parse().unwrap(),
        product_key: PRODUCT_KEY.parse().unwrap(),
        registration: RegistrationType::DeviceSecretPreRegistered,
        encrypted,
        format,
        model,
        script: (format == Format::Hex).then(|| "function decode(b) { return {}; }".into()),
    }
}

fn device(product_id: &str, node_eui: &str, enabled: bool) -> Device {
    Device {
        product_id: product_id.parse().unwrap(),
        node_eui: node_eui.parse().unwrap(),
        secret: DEVICE_SECRET.parse().unwrap(),
        enabled,
    }
}

/// A product's every field, comparable (`Product` has no `PartialEq`).
fn product_fields(p: &Product) -> Value {
    json!({
        "open_id": p.open_id.as_str(),
        "product_id": p.product_id.as_str(),
        "product_key": p.product_key.expose_hex(),
        "registration": p.registration.code(),
        "encrypted": p.encrypted,
        "format": format!("{:?}", p.format),
        "model": p.model.as_ref().map(|m| (m.name(), m.text())),
        "script": p.script,
    })
}

/// A device's every field, comparable.
fn device_fields(d: &Device) -> Value {
    json!([
        d.product_id.as_str(),
        d.node_eui.as_str(),
        d.secret.expose_hex(),
        d.enabled
    ])
}

fn open(dir: &Path) -> Store {
    Store::open(&dir.join("sim.redb")).unwrap()
}

#[test]
fn products_round_trip_and_put_again_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert!(store.products().unwrap().is_empty());

    let mut written = vec![
        product("AA30C501", Format::Passthrough, false),
        product("AA30C502", Format::Json, true),
        product("AA30C503", Format::Hex, false),
    ];
    written[0].registration = RegistrationType::ProductSecretUnregistered;
    written[1].registration = RegistrationType::ProductSecretPreRegistered;
    for p in &written {
        store.put_product(p).unwrap();
    }
    let read: Vec<Value> = store
        .products()
        .unwrap()
        .iter()
        .map(product_fields)
        .collect();
    let expected: Vec<Value> = written.iter().map(product_fields).collect();
    assert_eq!(read, expected);
    // The key text keeps its letter case.
    let mut lower = product("AA30C502", Format::Hex, false);
    lower.product_key = PRODUCT_KEY.to_lowercase().parse().unwrap();
    lower.script = None;
    store.put_product(&lower).unwrap();
    let read = store.products().unwrap();
    assert_eq!(read.len(), 3);
    assert_eq!(product_fields(&read[1]), product_fields(&lower));
    assert_eq!(read[1].product_key.expose_hex(), PRODUCT_KEY.to_lowercase());
}

#[test]
fn devices_round_trip_and_put_again_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert!(store.devices().unwrap().is_empty());
    let written = [
        device("AA30C505", "20MQTTJ000121", true),
        device("AA30C505", "20MQTTJ000122", false),
        device("BB30C505", "20MQTTJ000121", true),
    ];
    for d in &written {
        store.put_device(d).unwrap();
    }
    let read: Vec<Value> = store.devices().unwrap().iter().map(device_fields).collect();
    let expected: Vec<Value> = written.iter().map(device_fields).collect();
    assert_eq!(read, expected);

    let disabled = device("AA30C505", "20MQTTJ000121", false);
    store.put_device(&disabled).unwrap();
    let read = store.devices().unwrap();
    assert_eq!(read.len(), 3);
    assert_eq!(device_fields(&read[0]), device_fields(&disabled));
}

#[test]
fn last_offline_round_trip_and_set_again_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert!(store.last_offline().unwrap().is_empty());
    store
        .set_last_offline("7ED01E2A/AA30C505/20MQTTJ000122", 1_700_000_100)
        .unwrap();
    store
        .set_last_offline("7ED01E2A/AA30C505/20MQTTJ000121", 1_700_000_000)
        .unwrap();
    store
        .set_last_offline("7ED01E2A/AA30C505/20MQTTJ000122", u64::MAX)
        .unwrap();
    assert_eq!(
        store.last_offline().unwrap(),
        [
            ("7ED01E2A/AA30C505/20MQTTJ000121".to_owned(), 1_700_000_000),
            ("7ED01E2A/AA30C505/20MQTTJ000122".to_owned(), u64::MAX),
        ]
    );
}

#[test]
fn state_maps_are_separate_and_replace_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert!(store.state("config").unwrap().is_empty());
    // Map names that prefix one another, and keys with the separator-like characters.
    store
        .put_state("ota", "b", &json!({"progress": 10}))
        .unwrap();
    store.put_state("ota", "a/x", &json!(null)).unwrap();
    store.put_state("ota2", "a", &json!([1, 2])).unwrap();
    store.put_state("ot", "a", &json!("short")).unwrap();
    store.put_state("", "", &json!(0)).unwrap();
    store
        .put_state("ota", "b", &json!({"progress": 55}))
        .unwrap();
    assert_eq!(
        store.state("ota").unwrap(),
        [
            ("a/x".to_owned(), json!(null)),
            ("b".to_owned(), json!({"progress": 55})),
        ]
    );
    assert_eq!(
        store.state("ota2").unwrap(),
        [("a".to_owned(), json!([1, 2]))]
    );
    assert_eq!(
        store.state("ot").unwrap(),
        [("a".to_owned(), json!("short"))]
    );
    assert_eq!(store.state("").unwrap(), [(String::new(), json!(0))]);

    store.remove_state("ota", "b").unwrap();
    store.remove_state("ota", "never there").unwrap();
    store.remove_state("nothing", "b").unwrap();
    assert_eq!(
        store.state("ota").unwrap(),
        [("a/x".to_owned(), json!(null))]
    );
    assert_eq!(store.state("ota2").unwrap().len(), 1);
}

#[test]
fn received_records_page_in_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(store.received_count().unwrap(), 0);
    assert!(store.received(0, 10).unwrap().is_empty());
    for n in 1..=10u64 {
        let seq = store
            .append_received(&json!({"n": n, "topic": "up/json"}))
            .unwrap();
        assert_eq!(seq, n);
    }
    assert_eq!(store.received_count().unwrap(), 10);

    let seqs = |page: &[(u64, Value)]| page.iter().map(|(s, _)| *s).collect::<Vec<_>>();
    let first = store.received(0, 4).unwrap();
    assert_eq!(seqs(&first), [1, 2, 3, 4]);
    assert_eq!(first[0].1, json!({"n": 1, "topic": "up/json"}));
    assert_eq!(seqs(&store.received(4, 4).unwrap()), [5, 6, 7, 8]);
    assert_eq!(seqs(&store.received(8, 4).unwrap()), [9, 10]);
    assert!(store.received(10, 4).unwrap().is_empty());
    assert!(store.received(u64::MAX, 4).unwrap().is_empty());
    assert!(store.received(0, 0).unwrap().is_empty());
    assert_eq!(store.received(0, usize::MAX).unwrap().len(), 10);
    // Every page's records are the ones appended under those numbers.
    for (seq, record) in store.received(0, 100).unwrap() {
        assert_eq!(record["n"], json!(seq));
    }
}

#[test]
fn reopening_keeps_everything_and_sequence_continues() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store
            .put_product(&product("AA30C505", Format::Hex, true))
            .unwrap();
        store
            .put_device(&device("AA30C505", "20MQTTJ000121", true))
            .unwrap();
        store
            .set_last_offline("7ED01E2A/AA30C505/20MQTTJ000121", 42)
            .unwrap();
        store
            .put_state("config", "AA30C505/20MQTTJ000121", &json!({"v": 3}))
            .unwrap();
        for n in 0..3 {
            store.append_received(&json!({"n": n})).unwrap();
        }
        // A clone shares the open database; both are dropped here.
        let clone = store.clone();
        assert_eq!(clone.received_count().unwrap(), 3);
    }
    let store = open(dir.path());
    assert_eq!(
        store
            .products()
            .unwrap()
            .iter()
            .map(product_fields)
            .collect::<Vec<_>>(),
        [product_fields(&product("AA30C505", Format::Hex, true))]
    );
    assert_eq!(
        store
            .devices()
            .unwrap()
            .iter()
            .map(device_fields)
            .collect::<Vec<_>>(),
        [device_fields(&device("AA30C505", "20MQTTJ000121", true))]
    );
    assert_eq!(
        store.last_offline().unwrap(),
        [("7ED01E2A/AA30C505/20MQTTJ000121".to_owned(), 42)]
    );
    assert_eq!(
        store.state("config").unwrap(),
        [("AA30C505/20MQTTJ000121".to_owned(), json!({"v": 3}))]
    );
    assert_eq!(
        store.received(0, 10).unwrap(),
        [
            (1, json!({"n": 0})),
            (2, json!({"n": 1})),
            (3, json!({"n": 2}))
        ]
    );
    assert_eq!(store.append_received(&json!("later")).unwrap(), 4);
    drop(store);
    assert_eq!(
        open(dir.path()).append_received(&json!("again")).unwrap(),
        5
    );
}

/// Writes raw values into a store's table with redb itself, as damage would leave them.
fn write_raw(path: &Path, table: &str, entries: &[(&str, &str)]) {
    let db = redb::Database::create(path).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new(table);
        let mut t = tx.open_table(def).unwrap();
        for (key, value) in entries {
            t.insert(key.as_bytes(), value.as_bytes()).unwrap();
        }
    }
    tx.commit().unwrap();
}

fn record_error(result: Result<impl std::fmt::Debug, StoreError>) -> (String, String, String) {
    let e = result.unwrap_err();
    let message = e.to_string();
    match e {
        StoreError::Record { table, key, .. } => (table, key, message),
        other => panic!("expected a record error, got {other:?}"),
    }
}

#[test]
fn damaged_records_give_typed_errors_naming_table_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.redb");
    drop(Store::open(&path).unwrap());
    let short_key = &PRODUCT_KEY[..31];
    let bad_product = json!({"open_id": "7ED01E2A", "product_id": "AA30C505",
        "product_key": short_key, "registration": 1, "encrypted": false, "format": "json",
        "model": {"name": "M", "text": "{}"}, "script": null});
    write_raw(&path, "products", &[("AA30C505", &bad_product.to_string())]);
    write_raw(
        &path,
        "devices",
        &[(
            "AA30C505/20MQTTJ000121",
            r#"{"product_id":"AA30C505","node_eui":"20MQTTJ000121","#,
        )],
    );

    let store = Store::open(&path).unwrap();
    let (table, key, message) = record_error(store.products());
    assert_eq!((table.as_str(), key.as_str()), ("products", "AA30C505"));
    assert_eq!(
        message,
        "store table products, key AA30C505: product_key: expected 32 hex characters (16 bytes), got 31 characters"
    );
    assert!(!message.contains(short_key), "{message}");

    // The first damaged device in key order: JSON cut short.
    let (table, key, message) = record_error(store.devices());
    assert_eq!(
        (table.as_str(), key.as_str()),
        ("devices", "AA30C505/20MQTTJ000121")
    );
    assert!(
        message.starts_with("store table devices, key AA30C505/20MQTTJ000121: EOF while parsing"),
        "{message}"
    );
    // Other tables still read.
    assert!(store.last_offline().unwrap().is_empty());
    assert_eq!(store.append_received(&json!(1)).unwrap(), 1);
}

#[test]
fn a_bad_secret_is_named_but_never_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.redb");
    drop(Store::open(&path).unwrap());
    let bad = format!("{}Z", &DEVICE_SECRET[..31]);
    let record = json!({"product_id": "AA30C505", "node_eui": "20MQTTJ000122",
        "secret": bad, "enabled": true});
    write_raw(
        &path,
        "devices",
        &[("AA30C505/20MQTTJ000122", &record.to_string())],
    );
    let store = Store::open(&path).unwrap();
    let e = store.devices().unwrap_err();
    assert_eq!(
        e.to_string(),
        "store table devices, key AA30C505/20MQTTJ000122: secret: expected hex digits, found a non-hex character at position 31"
    );
    assert!(!format!("{e:?}").contains(&DEVICE_SECRET[..31]));
}

#[test]
fn damaged_received_records_and_state_values_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.redb");
    {
        let store = Store::open(&path).unwrap();
        store.append_received(&json!("fine")).unwrap();
        store.put_state("ota", "dev", &json!(1)).unwrap();
    }
    {
        let db = redb::Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let received: redb::TableDefinition<u64, &[u8]> =
                redb::TableDefinition::new("received");
            tx.open_table(received)
                .unwrap()
                .insert(2, &b"{not json"[..])
                .unwrap();
            let state: redb::TableDefinition<(&[u8], &[u8]), &[u8]> =
                redb::TableDefinition::new("state");
            tx.open_table(state)
                .unwrap()
                .insert((&b"ota"[..], &b"dev"[..]), &b"\xff"[..])
                .unwrap();
        }
        tx.commit().unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.received(0, 1).unwrap(), [(1, json!("fine"))]);
    let (table, key, _) = record_error(store.received(0, 10));
    assert_eq!((table.as_str(), key.as_str()), ("received", "2"));
    let (table, key, _) = record_error(store.state("ota"));
    assert_eq!((table.as_str(), key.as_str()), ("state", "ota/dev"));
}

#[test]
fn open_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no such dir").join("sim.redb");
    let e = Store::open(&missing).unwrap_err();
    assert!(matches!(e, StoreError::Open { .. }), "{e:?}");
    let message = e.to_string();
    assert!(
        message.starts_with(&format!("cannot open store {}: ", missing.display())),
        "{message}"
    );

    // Longer and shorter than redb's magic number.
    for (name, text) in [
        ("notes.txt", "not a database\n".repeat(100)),
        ("tiny", "x".into()),
    ] {
        let not_a_store = dir.path().join(name);
        std::fs::write(&not_a_store, &text).unwrap();
        let e = Store::open(&not_a_store).unwrap_err();
        assert!(matches!(e, StoreError::NotAStore { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!(
                "cannot open store {}: the file is not a redb database",
                not_a_store.display()
            )
        );
        assert_eq!(
            std::fs::read_to_string(&not_a_store).unwrap(),
            text,
            "left alone"
        );
    }

    let e = Store::open(dir.path()).unwrap_err();
    assert!(matches!(e, StoreError::Open { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with(&format!("cannot open store {}: ", dir.path().display())),
        "{e}"
    );
}

#[test]
fn a_store_open_twice_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.redb");
    let _store = Store::open(&path).unwrap();
    let e = Store::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::Open { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with(&format!("cannot open store {}: ", path.display())),
        "{e}"
    );
}

#[test]
fn debug_shows_the_path_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .put_product(&product("AA30C505", Format::Json, true))
        .unwrap();
    assert_eq!(store.path(), dir.path().join("sim.redb"));
    assert_eq!(
        format!("{store:?}"),
        format!("Store {{ path: {:?} }}", dir.path().join("sim.redb"))
    );
}

/// Names the store file a crash-test writer appends to; unset, the writer test does nothing.
const WRITER_ENV: &str = "X_SIM_STORE_CRASH_WRITER";

/// Not a test on its own: the child process of [`a_killed_writer_loses_nothing_it_reported`].
/// Appends records until killed, printing each sequence number once it is committed.
#[test]
fn crash_writer() {
    let Some(path) = std::env::var_os(WRITER_ENV) else {
        return;
    };
    let store = Store::open(Path::new(&path)).unwrap();
    // Bounded, so that a writer whose parent died does not run forever.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut n = 0u64;
    while Instant::now() < deadline {
        let seq = store.append_received(&writer_record(n)).unwrap();
        println!("appended {seq} {n}");
        n += 1;
    }
}

fn writer_record(n: u64) -> Value {
    json!({"n": n, "topic": "7ED01E2A/AA30C505/20MQTTJ000121/up", "pad": "x".repeat(300)})
}

#[test]
fn a_killed_writer_loses_nothing_it_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.redb");
    let mut reported: Vec<(u64, u64)> = Vec::new();
    // Two rounds: the second writer starts from a store recovered after a kill.
    for _ in 0..2 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store::crash_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WRITER_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let before = reported.len();
        for line in lines {
            let line = line.unwrap();
            let Some(rest) = line.strip_prefix("appended ") else {
                continue;
            };
            let (seq, n) = rest.split_once(' ').unwrap();
            reported.push((seq.parse().unwrap(), n.parse().unwrap()));
            if reported.len() - before == 300 {
                break;
            }
        }
        assert_eq!(reported.len() - before, 300, "the writer stopped early");
        child.kill().unwrap(); // SIGKILL: no destructor, no flush, mid-write or not.
        child.wait().unwrap();
    }

    let store = Store::open(&path).unwrap();
    let stored = store.received(0, usize::MAX).unwrap();
    let mut stored_iter = stored.iter().peekable();
    for &(seq, n) in &reported {
        // Every reported record is there, with what was written under that number.
        let (_, record) = loop {
            let entry = stored_iter
                .next()
                .unwrap_or_else(|| panic!("seq {seq} is missing"));
            if entry.0 == seq {
                break entry;
            }
            assert!(entry.0 < seq, "seq {seq} is missing");
        };
        assert_eq!(record, &writer_record(n), "seq {seq}");
    }
    // Numbers are 1, 2, 3, … with nothing lost or reused across the kills.
    let seqs: Vec<u64> = stored.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(store.received_count().unwrap(), seqs.len() as u64);
    let last_reported = reported.last().unwrap().0;
    let next = store.append_received(&json!("after the crash")).unwrap();
    assert!(next > last_reported);
    assert_eq!(next, seqs.len() as u64 + 1);
}

/// The received log of the store in `dir` (see [`open`]).
fn log_path(dir: &Path) -> std::path::PathBuf {
    dir.join("sim.redb.log")
}

/// Files in `dir` whose name starts with `prefix`.
fn files_starting(dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(prefix))
        .collect();
    found.sort();
    found
}

#[test]
fn received_records_go_to_the_log_next_to_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(store.log_path(), log_path(dir.path()));
    let before = std::fs::metadata(log_path(dir.path())).unwrap().len();
    store.append_received(&json!({"n": 1})).unwrap();
    let after = std::fs::metadata(log_path(dir.path())).unwrap().len();
    // A 16-byte header, then the record's JSON.
    assert_eq!(after - before, 16 + br#"{"n":1}"#.len() as u64);
}

/// What a crash leaves of an append that was never reported durable (a frame cut short,
/// or garbage after the last record) is cut off on open and kept in a file of its own,
/// and the log goes on from its last complete record.
#[test]
fn an_append_cut_short_by_a_crash_is_cut_off_and_kept_aside() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        for n in 1..=3 {
            store.append_received(&json!({"n": n})).unwrap();
        }
    }
    let complete = std::fs::metadata(log_path(dir.path())).unwrap().len();
    // Half of a fourth frame: a header promising 100 bytes, and 5 of them.
    let mut torn = Vec::new();
    torn.extend_from_slice(&100u32.to_le_bytes());
    torn.extend_from_slice(&4u64.to_le_bytes());
    torn.extend_from_slice(&0u32.to_le_bytes());
    torn.extend_from_slice(b"{\"n\":");
    {
        use std::io::Write;
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(log_path(dir.path()))
            .unwrap();
        log.write_all(&torn).unwrap();
    }

    let store = open(dir.path());
    assert_eq!(
        store.received(0, 10).unwrap(),
        [
            (1, json!({"n": 1})),
            (2, json!({"n": 2})),
            (3, json!({"n": 3}))
        ]
    );
    assert_eq!(
        std::fs::metadata(log_path(dir.path())).unwrap().len(),
        complete
    );
    let kept = files_starting(dir.path(), "sim.redb.log.torn-");
    assert_eq!(
        kept,
        [dir.path().join(format!("sim.redb.log.torn-{complete}"))]
    );
    assert_eq!(std::fs::read(&kept[0]).unwrap(), torn);
    // The log goes on after its last complete record.
    assert_eq!(store.append_received(&json!({"n": 4})).unwrap(), 4);
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.received_count().unwrap(), 4);
    assert_eq!(store.received(3, 10).unwrap(), [(4, json!({"n": 4}))]);
}

/// A record changed on disk fails its checksum: the log is cut there on open (everything
/// from it kept aside, never deleted), and a record changed while the store is open is
/// reported by its sequence number when read.
#[test]
fn a_damaged_record_is_never_read_as_a_record() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        for n in 1..=3 {
            store.append_received(&json!({"n": n})).unwrap();
        }
        // Record 2's payload starts after the magic (8), frame 1 (16 + 7) and its own
        // header (16): change its digit.
        let at = 8 + 23 + 16 + 5;
        let mut bytes = std::fs::read(log_path(dir.path())).unwrap();
        assert_eq!(bytes[at], b'2');
        bytes[at] = b'7';
        std::fs::write(log_path(dir.path()), &bytes).unwrap();
        assert_eq!(store.received(0, 1).unwrap(), [(1, json!({"n": 1}))]);
        let (table, key, message) = record_error(store.received(0, 10));
        assert_eq!((table.as_str(), key.as_str()), ("received", "2"));
        assert!(message.contains("checksum does not match"), "{message}");
    }
    let store = open(dir.path());
    assert_eq!(store.received(0, 10).unwrap(), [(1, json!({"n": 1}))]);
    let kept = files_starting(dir.path(), "sim.redb.log.torn-");
    assert_eq!(kept.len(), 1);
    assert_eq!(std::fs::read(&kept[0]).unwrap().len(), 2 * 23);
}

#[test]
fn a_file_in_the_log_s_place_that_is_not_a_log_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(log_path(dir.path()), b"some other file").unwrap();
    let e = Store::open(&dir.path().join("sim.redb")).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "received log {}: the file is not an x-sim received log",
            log_path(dir.path()).display()
        )
    );
    assert_eq!(
        std::fs::read(log_path(dir.path())).unwrap(),
        b"some other file"
    );
}

/// A store written before the received log kept its records in the database: they are
/// moved to the log on open, once, with the numbers given out kept (none reused).
#[test]
fn received_records_of_an_older_store_move_to_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.redb");
    let received: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("received");
    let meta: redb::TableDefinition<&[u8], u64> = redb::TableDefinition::new("meta");
    let old_records = |db: &redb::Database| {
        let tx = db.begin_write().unwrap();
        {
            let mut table = tx.open_table(received).unwrap();
            for n in 1..=5u64 {
                table
                    .insert(n, json!({"old": n}).to_string().as_bytes())
                    .unwrap();
            }
            // Numbers up to 7 were given out (6 and 7 were never written).
            tx.open_table(meta)
                .unwrap()
                .insert(&b"received.last_seq"[..], 7)
                .unwrap();
        }
        tx.commit().unwrap();
    };
    old_records(&redb::Database::create(&path).unwrap());

    let store = Store::open(&path).unwrap();
    let expected: Vec<(u64, Value)> = (1..=5).map(|n| (n, json!({"old": n}))).collect();
    assert_eq!(store.received(0, 10).unwrap(), expected);
    assert_eq!(store.last_received_seq().unwrap(), 7);
    assert_eq!(store.append_received(&json!("new")).unwrap(), 8);
    drop(store);
    let db = redb::Database::create(&path).unwrap();
    {
        use redb::{ReadableDatabase, ReadableTableMetadata};
        let tx = db.begin_read().unwrap();
        assert!(tx.open_table(received).unwrap().is_empty().unwrap());
    }
    // A crash after the records reached the log, before the table was emptied: they are
    // in both, and only the table is emptied.
    old_records(&db);
    drop(db);
    let store = Store::open(&path).unwrap();
    let mut expected = expected;
    expected.push((8, json!("new")));
    assert_eq!(store.received(0, 10).unwrap(), expected);
    assert_eq!(store.received_count().unwrap(), 6);
}
