//! Rust names for model identifiers: snake_case fields and methods, CamelCase types and
//! variants, with keywords escaped, so any valid identifier yields a valid Rust name.

use heck::{ToLowerCamelCase, ToSnakeCase, ToUpperCamelCase};
/// The thing model's identifier rule, x-protocol's: the model reader and the derives check
/// identifiers with the function [`x_protocol::Identifier`] uses.
pub use x_protocol::{IDENTIFIER_RULE, check_identifier};

/// Rust keywords of every edition that can be written as raw identifiers (`r#type`).
const RAW_KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "dyn", "else", "enum", "extern", "false",
    "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub",
    "ref", "return", "static", "struct", "trait", "true", "type", "unsafe", "use", "where",
    "while", "abstract", "become", "box", "do", "final", "macro", "override", "priv", "try",
    "typeof", "unsized", "virtual", "yield",
];

/// Keywords that cannot be raw identifiers; they get a trailing underscore.
const RESERVED: &[&str] = &["self", "Self", "super", "crate", "_"];

/// The Rust field or method name for a model identifier: snake_case, `r#` for keywords.
pub fn field_name(identifier: &str) -> String {
    let snake = identifier.to_snake_case();
    let snake = if snake.is_empty() || snake.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{snake}")
    } else {
        snake
    };
    escape(snake)
}

/// The Rust type or variant name for a sequence of identifier parts: UpperCamelCase.
pub fn type_name(parts: &[&str]) -> String {
    let joined: String = parts.iter().map(|p| p.to_upper_camel_case()).collect();
    if joined.is_empty() || joined.starts_with(|c: char| c.is_ascii_digit()) {
        format!("T{joined}")
    } else if RESERVED.contains(&joined.as_str()) {
        format!("{joined}_")
    } else {
        joined
    }
}

/// The Rust variant name for an enum label, or `Key{key}` when the label makes no Rust name
/// (non-ASCII labels such as `关闭`, or one starting with a digit).
pub fn variant_name(label: &str, key: i64) -> String {
    let camel = label.to_upper_camel_case();
    let usable = !camel.is_empty()
        && camel.chars().all(|c| c.is_ascii_alphanumeric())
        && camel.starts_with(|c: char| c.is_ascii_alphabetic())
        && camel != "Self";
    if usable {
        camel
    } else if key < 0 {
        format!("KeyMinus{}", key.unsigned_abs())
    } else {
        format!("Key{key}")
    }
}

fn escape(name: String) -> String {
    if RESERVED.contains(&name.as_str()) {
        format!("{name}_")
    } else if RAW_KEYWORDS.contains(&name.as_str()) {
        format!("r#{name}")
    } else {
        name
    }
}

/// The default wire identifier for a Rust type or variant name: lowerCamelCase, without a
/// trailing `Event` (`OverheatEvent` -> `overheat`, `SetSchedule` -> `setSchedule`).
pub fn identifier_for(rust_name: &str) -> String {
    let name = unraw(rust_name);
    let name = name
        .strip_suffix("Event")
        .filter(|n| !n.is_empty())
        .unwrap_or(name);
    name.to_lower_camel_case()
}

/// The name without a leading `r#`, for building derived names (`with_type`).
pub fn unraw(name: &str) -> &str {
    name.strip_prefix("r#").unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(field_name("childLock"), "child_lock");
        assert_eq!(field_name("pm25"), "pm25");
        assert_eq!(field_name("type"), "r#type");
        assert_eq!(field_name("self"), "self_");
        assert_eq!(type_name(&["reset", "scope"]), "ResetScope");
        assert_eq!(variant_name("powerCut", 1), "PowerCut");
        assert_eq!(variant_name("关闭", 0), "Key0");
        assert_eq!(variant_name("2G", -1), "KeyMinus1");
    }
}
