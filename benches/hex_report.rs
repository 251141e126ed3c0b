//! Encode and decode of a 20-property HEX report (benches/models/hex-bench-20.json, tagged,
//! big-endian): the generated codec, a hand-written encoder/decoder of the same layout with
//! the same checks, and serde_json of the same values, in one run.
//!
//! `cargo bench --bench hex_report`; BENCHMARKS.md records the ratios.

use criterion::{Criterion, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};
use std::hint::black_box;
use x_sdk::model::hex::HexModel;

#[allow(dead_code, missing_docs, clippy::all)]
#[rustfmt::skip]
#[path = "support/hex_bench_model.rs"]
mod generated;

use generated::{Bench, BenchReport, Mode13, Mode14};

/// The same 20 values as a plain struct: the hand-written codec's and serde_json's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Plain {
    temp1: f32,
    temp2: f32,
    temp3: f32,
    temp4: f32,
    count5: i32,
    count6: i32,
    count7: i32,
    count8: i32,
    flag9: u8,
    flag10: u8,
    flag11: u8,
    flag12: u8,
    mode13: u8,
    mode14: u8,
    level15: f32,
    level16: f32,
    energy17: f64,
    energy18: f64,
    reg19: i32,
    reg20: i32,
}

fn plain() -> Plain {
    Plain {
        temp1: 21.5,
        temp2: 22.3,
        temp3: 99.9,
        temp4: 0.1,
        count5: -12345,
        count6: 99_999,
        count7: 0,
        count8: 42,
        flag9: 1,
        flag10: 0,
        flag11: 1,
        flag12: 1,
        mode13: 2,
        mode14: 3,
        level15: -12.75,
        level16: 333.25,
        energy17: 123_456.78,
        energy18: 9_876_543.21,
        reg19: 65_535,
        reg20: 258,
    }
}

fn report(p: &Plain) -> BenchReport {
    BenchReport {
        temp1: Some(p.temp1),
        temp2: Some(p.temp2),
        temp3: Some(p.temp3),
        temp4: Some(p.temp4),
        count5: Some(p.count5),
        count6: Some(p.count6),
        count7: Some(p.count7),
        count8: Some(p.count8),
        flag9: Some(p.flag9 == 1),
        flag10: Some(p.flag10 == 1),
        flag11: Some(p.flag11 == 1),
        flag12: Some(p.flag12 == 1),
        mode13: Mode13::from_key(i64::from(p.mode13)),
        mode14: Mode14::from_key(i64::from(p.mode14)),
        level15: Some(p.level15),
        level16: Some(p.level16),
        energy17: Some(p.energy17),
        energy18: Some(p.energy18),
        reg19: Some(p.reg19),
        reg20: Some(p.reg20),
    }
}

/// Hand-written: what a firmware engineer writes for this layout (ids, big-endian, scaled
/// u16/u32, range checks).
mod manual {
    use super::Plain;

    #[derive(Debug)]
    pub struct Error;

    fn scaled(v: f64, scale: f64, max: f64) -> Result<f64, Error> {
        let raw = (v / scale).round();
        if !(0.0..=max).contains(&raw) {
            return Err(Error);
        }
        Ok(raw)
    }

    pub fn encode(p: &Plain, out: &mut [u8]) -> Result<usize, Error> {
        let mut n = 0;
        let mut put = |bytes: &[u8]| -> Result<(), Error> {
            let slot = out.get_mut(n..n + bytes.len()).ok_or(Error)?;
            slot.copy_from_slice(bytes);
            n += bytes.len();
            Ok(())
        };
        put(&[0x01])?;
        for (id, v) in [(1u8, p.temp1), (2, p.temp2), (3, p.temp3), (4, p.temp4)] {
            let raw = scaled(f64::from(v), 0.1, 65535.0)? as u16;
            put(&[id])?;
            put(&raw.to_be_bytes())?;
        }
        for (id, v) in [(5u8, p.count5), (6, p.count6), (7, p.count7), (8, p.count8)] {
            put(&[id])?;
            put(&v.to_be_bytes())?;
        }
        for (id, v) in [
            (9u8, p.flag9),
            (10, p.flag10),
            (11, p.flag11),
            (12, p.flag12),
            (13, p.mode13),
            (14, p.mode14),
        ] {
            put(&[id, v])?;
        }
        for (id, v) in [(15u8, p.level15), (16, p.level16)] {
            put(&[id])?;
            put(&v.to_be_bytes())?;
        }
        for (id, v) in [(17u8, p.energy17), (18, p.energy18)] {
            let raw = scaled(v, 0.01, 4_294_967_295.0)? as u32;
            put(&[id])?;
            put(&raw.to_be_bytes())?;
        }
        for (id, v) in [(19u8, p.reg19), (20, p.reg20)] {
            let raw = u16::try_from(v).map_err(|_| Error)?;
            put(&[id])?;
            put(&raw.to_be_bytes())?;
        }
        Ok(n)
    }

    fn take<const N: usize>(b: &[u8], at: &mut usize) -> Result<[u8; N], Error> {
        let s = b.get(*at..*at + N).ok_or(Error)?;
        *at += N;
        let mut out = [0; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    fn unscale(raw: f64, scale: f64, decimals: i32) -> f64 {
        let p = 10f64.powi(decimals);
        ((raw * scale) * p).round() / p
    }

    pub fn decode(b: &[u8]) -> Result<Plain, Error> {
        if b.first() != Some(&0x01) {
            return Err(Error);
        }
        let mut p = super::plain();
        let mut at = 1;
        while at < b.len() {
            let id = b[at];
            at += 1;
            match id {
                1..=4 => {
                    let v = unscale(f64::from(u16::from_be_bytes(take(b, &mut at)?)), 0.1, 1);
                    if !(0.0..=6553.5).contains(&v) {
                        return Err(Error);
                    }
                    let v = v as f32;
                    match id {
                        1 => p.temp1 = v,
                        2 => p.temp2 = v,
                        3 => p.temp3 = v,
                        _ => p.temp4 = v,
                    }
                }
                5..=8 => {
                    let v = i32::from_be_bytes(take(b, &mut at)?);
                    if !(-100_000..=100_000).contains(&v) {
                        return Err(Error);
                    }
                    match id {
                        5 => p.count5 = v,
                        6 => p.count6 = v,
                        7 => p.count7 = v,
                        _ => p.count8 = v,
                    }
                }
                9..=14 => {
                    let [v] = take(b, &mut at)?;
                    if (id <= 12 && v > 1) || v > 3 {
                        return Err(Error);
                    }
                    match id {
                        9 => p.flag9 = v,
                        10 => p.flag10 = v,
                        11 => p.flag11 = v,
                        12 => p.flag12 = v,
                        13 => p.mode13 = v,
                        _ => p.mode14 = v,
                    }
                }
                15 | 16 => {
                    let v = f32::from_be_bytes(take(b, &mut at)?);
                    if !(-1000.0..=1000.0).contains(&v) {
                        return Err(Error);
                    }
                    if id == 15 {
                        p.level15 = v
                    } else {
                        p.level16 = v
                    }
                }
                17 | 18 => {
                    let v = unscale(f64::from(u32::from_be_bytes(take(b, &mut at)?)), 0.01, 2);
                    if !(0.0..=40_000_000.0).contains(&v) {
                        return Err(Error);
                    }
                    if id == 17 {
                        p.energy17 = v
                    } else {
                        p.energy18 = v
                    }
                }
                19 | 20 => {
                    let v = i32::from(u16::from_be_bytes(take(b, &mut at)?));
                    if id == 19 { p.reg19 = v } else { p.reg20 = v }
                }
                _ => return Err(Error),
            }
        }
        Ok(p)
    }
}

fn benches(c: &mut Criterion) {
    let values = plain();
    let report = report(&values);
    let mut buf = [0u8; 128];

    // All three must carry the same values; the two HEX codecs the same bytes.
    let n = Bench::encode_report(&report, &mut buf).expect("generated encode");
    let wire = buf[..n].to_vec();
    let m = manual::encode(&values, &mut buf).expect("manual encode");
    assert_eq!(
        &buf[..m],
        &wire[..],
        "hand-written and generated layouts differ"
    );
    assert_eq!(
        Bench::decode_report(&wire).expect("generated decode"),
        report
    );
    assert_eq!(manual::decode(&wire).expect("manual decode"), values);
    let json = serde_json::to_vec(&values).expect("serde_json encode");
    assert_eq!(
        serde_json::from_slice::<Plain>(&json).expect("serde_json decode"),
        values
    );

    let mut g = c.benchmark_group("encode 20-property report");
    g.bench_function("generated", |b| {
        b.iter(|| Bench::encode_report(black_box(&report), black_box(&mut buf)))
    });
    g.bench_function("hand-written", |b| {
        b.iter(|| manual::encode(black_box(&values), black_box(&mut buf)).map_err(drop))
    });
    let mut out = Vec::with_capacity(1024);
    g.bench_function("serde_json", |b| {
        b.iter(|| {
            out.clear();
            serde_json::to_writer(&mut out, black_box(&values)).map(|()| out.len())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("decode 20-property report");
    g.bench_function("generated", |b| {
        b.iter(|| Bench::decode_report(black_box(&wire)))
    });
    g.bench_function("hand-written", |b| {
        b.iter(|| manual::decode(black_box(&wire)).map_err(drop))
    });
    g.bench_function("serde_json", |b| {
        b.iter(|| serde_json::from_slice::<Plain>(black_box(&json)))
    });
    g.finish();
}

criterion_group!(hex, benches);
criterion_main!(hex);
