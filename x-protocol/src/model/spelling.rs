//! How a thing model spells its fixed vocabulary (`"rw"`, `"sync"`, `"alert"`, `"u16"`,
//! ...): one table per type, written once with [`spellings!`], which the model reader, the
//! derive attributes, the emitters and messages all read.
//! (`choices`, `from_spelling` and `spelling` come with [`Spelled`].)

/// A value of a thing model's fixed vocabulary, spelled by one table.
pub trait Spelled: Copy + PartialEq + 'static {
    /// Every value with its spelling in a model file: the one table that model files and
    /// derive attributes are parsed with.
    const SPELLINGS: &'static [(Self, &'static str)];

    /// The value a model file's spelling names, if any.
    fn from_spelling(name: &str) -> Option<Self> {
        Self::SPELLINGS
            .iter()
            .find(|(_, spelling)| *spelling == name)
            .map(|(value, _)| *value)
    }

    /// Its spelling in a model file.
    fn spelling(self) -> &'static str {
        Self::SPELLINGS
            .iter()
            .find(|(value, _)| *value == self)
            .map_or("", |(_, spelling)| spelling)
    }

    /// The spellings as a phrase for messages: `"r" or "rw"`.
    fn choices() -> String {
        let quoted: Vec<String> = Self::SPELLINGS
            .iter()
            .map(|(_, s)| format!("{s:?}"))
            .collect();
        match quoted.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => quoted.join(""),
        }
    }
}

/// Gives a fieldless enum its table of model spellings ([`Spelled`]) and the inherent
/// `model_name` and `from_model_name` that read it.
macro_rules! spellings {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $crate::model::Spelled for $ty {
            const SPELLINGS: &'static [(Self, &'static str)] = &[$((Self::$variant, $name)),+];
        }

        impl $ty {
            /// Its spelling in a model file (from its [`Spelled`](crate::model::Spelled)
            /// table).
            pub const fn model_name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }

            /// The value a model file's spelling names, if any.
            pub fn from_model_name(name: &str) -> ::core::option::Option<Self> {
                <Self as $crate::model::Spelled>::from_spelling(name)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::Spelled;
    use crate::model::hex::{ByteOrder, WireType};
    use crate::model::{Access, CallType, EventKind};

    #[test]
    fn every_value_has_one_spelling_and_parses_back() {
        fn check<T: Copy + PartialEq + std::fmt::Debug>(
            table: &[(T, &str)],
            name: fn(T) -> &'static str,
            parse: fn(&str) -> Option<T>,
        ) {
            for (value, spelling) in table {
                assert_eq!(name(*value), *spelling);
                assert_eq!(parse(spelling), Some(*value));
                assert_eq!(table.iter().filter(|(v, _)| v == value).count(), 1);
            }
            assert_eq!(parse("nonsense"), None);
        }
        check(
            Access::SPELLINGS,
            Access::model_name,
            Access::from_model_name,
        );
        check(
            EventKind::SPELLINGS,
            EventKind::model_name,
            EventKind::from_model_name,
        );
        check(
            CallType::SPELLINGS,
            CallType::model_name,
            CallType::from_model_name,
        );
        check(
            ByteOrder::SPELLINGS,
            ByteOrder::model_name,
            ByteOrder::from_model_name,
        );
        check(
            WireType::SPELLINGS,
            WireType::model_name,
            WireType::from_model_name,
        );
        assert_eq!(WireType::SPELLINGS.len(), 10);
    }

    #[test]
    fn choices_read_as_a_phrase() {
        assert_eq!(Access::choices(), r#""r" or "rw""#);
        assert_eq!(EventKind::choices(), r#""info", "alert" or "error""#);
    }
}
