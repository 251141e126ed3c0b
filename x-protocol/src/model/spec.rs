//! Declared constraints of one value (`min`, `max`, `step`, text `length`, array `size`) and
//! the checks that enforce them.

use super::error::{ValueError, ValueProblem};

/// The constraints of one property or parameter, as generated code declares them in a
/// `const`. Numbers are `f64`, which holds every `i32` exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spec {
    /// Smallest allowed value.
    pub min: Option<f64>,
    /// Largest allowed value.
    pub max: Option<f64>,
    /// Values must lie on a grid of this step, counted from `min` (or 0).
    pub step: Option<f64>,
    /// Maximum text length in UTF-8 bytes.
    pub length: Option<u32>,
    /// Maximum array element count.
    pub size: Option<u32>,
    /// Constraints of each array element.
    pub item: Option<&'static Spec>,
}

impl Spec {
    /// No constraints.
    pub const NONE: Spec = Spec {
        min: None,
        max: None,
        step: None,
        length: None,
        size: None,
        item: None,
    };

    /// Checks a number against `min`, `max` and `step`.
    ///
    /// # Errors
    /// [`ValueProblem::NotFinite`], [`ValueProblem::BelowMin`], [`ValueProblem::AboveMax`] or
    /// [`ValueProblem::OffStep`].
    #[inline(always)]
    pub fn check_number(&self, value: f64) -> Result<(), ValueError> {
        if !value.is_finite() {
            return Err(not_finite(value));
        }
        if let Some(min) = self.min
            && value < min
        {
            return Err(below_min(value, min));
        }
        if let Some(max) = self.max
            && value > max
        {
            return Err(above_max(value, max));
        }
        if let Some(step) = self.step
            && step > 0.0
        {
            let base = self.min.unwrap_or(0.0);
            let steps = (value - base) / step;
            if (steps - steps.round()).abs() > 1e-9 * steps.abs().max(1.0) {
                return Err(off_step(value, step, base));
            }
        }
        Ok(())
    }

    /// Checks a text's length in bytes.
    ///
    /// # Errors
    /// [`ValueProblem::TooLong`].
    pub fn check_length(&self, text: &str) -> Result<(), ValueError> {
        match self.length {
            Some(max) if text.len() > max as usize => Err(ValueError::new(ValueProblem::TooLong {
                len: text.len(),
                max,
            })),
            _ => Ok(()),
        }
    }

    /// Checks an array's element count.
    ///
    /// # Errors
    /// [`ValueProblem::TooMany`].
    pub fn check_size(&self, len: usize) -> Result<(), ValueError> {
        match self.size {
            Some(max) if len > max as usize => {
                Err(ValueError::new(ValueProblem::TooMany { len, max }))
            }
            _ => Ok(()),
        }
    }

    /// The constraints of array elements (none when undeclared).
    pub fn item(&self) -> &Spec {
        self.item.unwrap_or(&Spec::NONE)
    }
}

#[cold]
fn not_finite(value: f64) -> ValueError {
    ValueError::new(ValueProblem::NotFinite {
        value: value.to_string(),
    })
}

#[cold]
fn below_min(value: f64, min: f64) -> ValueError {
    ValueError::new(ValueProblem::BelowMin {
        value: number_text(value),
        min: number_text(min),
    })
}

#[cold]
fn above_max(value: f64, max: f64) -> ValueError {
    ValueError::new(ValueProblem::AboveMax {
        value: number_text(value),
        max: number_text(max),
    })
}

#[cold]
fn off_step(value: f64, step: f64, base: f64) -> ValueError {
    ValueError::new(ValueProblem::OffStep {
        value: number_text(value),
        step: number_text(step),
        base: number_text(base),
    })
}

/// A number as people write it: `2500`, not `2500.0`; `0.1`, not `0.1000000000000000055`.
pub(crate) fn number_text(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POWER: Spec = Spec {
        min: Some(0.0),
        max: Some(2500.0),
        step: Some(0.1),
        ..Spec::NONE
    };

    #[test]
    fn nan_and_infinities_are_never_model_values() {
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let e = POWER.check_number(v).unwrap_err().to_string();
            assert!(e.ends_with("is not a finite number"), "{e}");
            assert!(Spec::NONE.check_number(v).is_err());
        }
    }

    #[test]
    fn range_and_step() {
        assert!(POWER.check_number(0.3).is_ok());
        assert!(POWER.check_number(2500.0).is_ok());
        assert_eq!(
            POWER.check_number(3000.0).unwrap_err().to_string(),
            "3000 is above the maximum 2500"
        );
        assert_eq!(
            POWER.check_number(-1.0).unwrap_err().to_string(),
            "-1 is below the minimum 0"
        );
        assert_eq!(
            POWER.check_number(0.25).unwrap_err().to_string(),
            "0.25 is not a multiple of the step 0.1 from 0"
        );
        let from_ten = Spec {
            min: Some(10.0),
            step: Some(10.0),
            ..Spec::NONE
        };
        assert!(from_ten.check_number(3600.0).is_ok());
        assert!(from_ten.check_number(15.0).is_err());
    }
}
