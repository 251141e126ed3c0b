//! Why a thing-model value or request was rejected; the text of these errors is what the
//! runtime sends back in a "4001" ack, so it names the identifier and the value.

use std::fmt;

/// What is wrong with one value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueProblem {
    /// The JSON value has the wrong type or cannot be coerced.
    #[error("expected {expected}, got {got}")]
    Type {
        /// What the model declares, e.g. "an integer".
        expected: &'static str,
        /// The value as received (JSON text, shortened).
        got: String,
    },
    /// NaN or an infinity: no model value is, and JSON cannot carry it.
    #[error("{value} is not a finite number")]
    NotFinite {
        /// The value.
        value: String,
    },
    /// Below `min`.
    #[error("{value} is below the minimum {min}")]
    BelowMin {
        /// The value.
        value: String,
        /// The declared minimum.
        min: String,
    },
    /// Above `max`.
    #[error("{value} is above the maximum {max}")]
    AboveMax {
        /// The value.
        value: String,
        /// The declared maximum.
        max: String,
    },
    /// Not on the declared step grid (counted from `min`, or 0 without one).
    #[error("{value} is not a multiple of the step {step} from {base}")]
    OffStep {
        /// The value.
        value: String,
        /// The declared step.
        step: String,
        /// Where the grid starts.
        base: String,
    },
    /// An enum key the model does not declare.
    #[error("unknown enum key {key} (allowed: {allowed})")]
    UnknownEnumKey {
        /// The key received.
        key: i64,
        /// The declared keys and labels.
        allowed: String,
    },
    /// Text longer than the declared length (in bytes of UTF-8).
    #[error("text of {len} bytes is longer than the maximum {max}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The declared maximum.
        max: u32,
    },
    /// An array with more elements than the declared size.
    #[error("{len} elements, at most {max} allowed")]
    TooMany {
        /// Its element count.
        len: usize,
        /// The declared maximum.
        max: u32,
    },
    /// A struct value without one of its fields.
    #[error("missing field {field:?}")]
    MissingField {
        /// The field's identifier.
        field: String,
    },
    /// A struct value with a field the model does not declare.
    #[error("unknown field {field:?}")]
    UnknownField {
        /// The field's identifier.
        field: String,
    },
}

/// A rejected value: where inside the value (empty at the top, `lat` or `[2].lat` inside a
/// struct or array) and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ValueError {
    /// Location inside the value: empty, `field`, `[index]`, or a chain of them.
    pub at: String,
    /// The problem.
    pub problem: ValueProblem,
}

impl ValueError {
    /// An error at the top of the value.
    pub fn new(problem: ValueProblem) -> Self {
        Self {
            at: String::new(),
            problem,
        }
    }

    /// A type error: expected `expected`, got `got` (shortened JSON text).
    pub fn type_mismatch(expected: &'static str, got: &serde_json::Value) -> Self {
        let mut text = got.to_string();
        if text.len() > 40 {
            let cut = (0..=40)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            text.truncate(cut);
            text.push('…');
        }
        Self::new(ValueProblem::Type {
            expected,
            got: text,
        })
    }

    /// The same error, located inside struct field `field`.
    pub fn in_field(mut self, field: &str) -> Self {
        self.at = if self.at.is_empty() {
            field.to_owned()
        } else if self.at.starts_with('[') {
            format!("{field}{}", self.at)
        } else {
            format!("{field}.{}", self.at)
        };
        self
    }

    /// The same error, located inside array element `index`.
    pub fn in_element(mut self, index: usize) -> Self {
        self.at = if self.at.is_empty() || self.at.starts_with('[') {
            format!("[{index}]{}", self.at)
        } else {
            format!("[{index}].{}", self.at)
        };
        self
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.at.is_empty() {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "{}: {}", self.at, self.problem)
        }
    }
}

/// Why one entry of a property set, service call or property ask was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RejectionReason {
    /// The value is wrong.
    #[error("{0}")]
    Value(ValueError),
    /// No property, parameter or service has this identifier.
    #[error("unknown {0}")]
    Unknown(&'static str),
    /// A property set tried to write a read-only property.
    #[error("read-only property")]
    ReadOnly,
    /// A service call lacks one of its inputs.
    #[error("missing")]
    Missing,
    /// The same identifier appears twice in one request.
    #[error("given more than once")]
    Duplicate,
}

/// One rejected entry: its identifier and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{identifier}: {reason}")]
pub struct Rejection {
    /// The property, parameter or service identifier.
    pub identifier: String,
    /// Why.
    pub reason: RejectionReason,
}

impl Rejection {
    /// A rejection of `identifier` for `reason`.
    pub fn new(identifier: impl Into<String>, reason: RejectionReason) -> Self {
        Self {
            identifier: identifier.into(),
            reason,
        }
    }
}

/// Every rejected entry of one request; its `Display` (entries joined with "; ") is the
/// `Msg` of the "4001" ack. Requests are all-or-nothing: one rejection rejects the request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rejections(pub Vec<Rejection>);

impl Rejections {
    /// Adds one rejection.
    pub fn push(&mut self, identifier: impl Into<String>, reason: RejectionReason) {
        self.0.push(Rejection::new(identifier, reason));
    }

    /// The value of a decode, or `None` after recording its error under `identifier`.
    pub fn take<T>(&mut self, identifier: &str, result: Result<T, ValueError>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(identifier, RejectionReason::Value(e));
                None
            }
        }
    }

    /// Records `identifier` as missing when `value` is `None` (and not already rejected).
    pub fn require<T>(&mut self, identifier: &str, value: &Option<T>) {
        if value.is_none() && !self.0.iter().any(|r| r.identifier == identifier) {
            self.push(identifier, RejectionReason::Missing);
        }
    }

    /// Records that `identifier` appears twice when `already` holds a value.
    pub fn once<T>(&mut self, identifier: &str, already: &Option<T>) -> bool {
        if already.is_some() {
            self.push(identifier, RejectionReason::Duplicate);
            false
        } else {
            true
        }
    }

    /// The first rejection as a [`ValueError`] located at its field: how a struct value that
    /// failed to decode reports inside an enclosing property or parameter.
    pub fn into_value_error(self) -> ValueError {
        let Some(first) = self.0.into_iter().next() else {
            return ValueError::new(ValueProblem::MissingField {
                field: String::new(),
            });
        };
        match first.reason {
            RejectionReason::Value(e) => e.in_field(&first.identifier),
            RejectionReason::Unknown(_) => ValueError::new(ValueProblem::UnknownField {
                field: first.identifier,
            }),
            RejectionReason::Missing | RejectionReason::ReadOnly | RejectionReason::Duplicate => {
                ValueError::new(ValueProblem::MissingField {
                    field: first.identifier,
                })
            }
        }
    }

    /// Whether nothing was rejected.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was rejected, else `Err(self)`.
    pub fn into_result<T>(self, value: impl FnOnce() -> T) -> Result<T, Self> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for Rejections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejections {}

impl From<Rejection> for Rejections {
    fn from(r: Rejection) -> Self {
        Self(vec![r])
    }
}
