//! `const fn` comparisons that derived code evaluates at compile time to check user types
//! (enums, structs) against an exported model file. Not for direct use.

use super::value::ValueKind;

/// Byte-wise string equality usable in `const` contexts.
pub const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether two enum variant lists have the same keys in the same order.
pub const fn variants_eq(a: &[(i64, &str)], b: &[(i64, &str)]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i].0 != b[i].0 {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether two struct field lists have the same identifiers and kinds in the same order.
pub const fn fields_eq(a: &[(&str, ValueKind)], b: &[(&str, ValueKind)]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if !str_eq(a[i].0, b[i].0) || !a[i].1.same(b[i].1) {
            return false;
        }
        i += 1;
    }
    true
}
