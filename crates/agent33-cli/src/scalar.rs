//! One YAML scalar of the manifest, kept untyped until the setting it
//! belongs to says what it must be, so a bad value in the manifest gets the
//! same message shape as a bad flag or variable.
//!
//! It does not know which setting it is for: the settings table
//! ([`crate::settings`]) and the manifest's agent and task entries decide.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Visitor};

use crate::values::{Kind, parse_bool, parse_seconds, saturating, seconds, whole};

/// A single YAML scalar, typed later so that a bad value gets the same
/// message shape as a bad flag or variable.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// `true`, `false`.
    Bool(bool),
    /// A whole number.
    Int(i128),
    /// A number with a fraction or exponent.
    Float(f64),
    /// Text.
    Str(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(i) => write!(f, "{i}"),
            // `4.0`, not `4`: "invalid value 4 for parallel_limit: expected
            // a whole number" would contradict itself.
            Self::Float(x) => write!(f, "{x:?}"),
            Self::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl Scalar {
    /// Booleans: YAML's `true`/`false`, and the environment's words
    /// (`yes`, `on`, `1`, …) for people used to YAML 1.1.
    pub fn to_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
            Self::Int(0) => Some(false),
            Self::Int(1) => Some(true),
            Self::Str(s) => parse_bool(s),
            _ => None,
        }
    }

    /// Whole numbers, as [`whole`] takes them from text; a float such as
    /// `4.0` is refused (it is not a count). The error is what to report.
    pub fn to_whole<T: TryFrom<u64>>(&self, min: u64) -> std::result::Result<T, Kind> {
        let below = if min == 0 {
            Kind::Count
        } else {
            Kind::Positive
        };
        match self {
            Self::Int(i) if *i > i128::from(u64::MAX) => Err(Kind::WithinU64),
            // YAML reads a whole number beyond 128 bits as a float; it is
            // refused for its size, not for being a fraction.
            Self::Float(x) if x.fract() == 0.0 && *x >= 18_446_744_073_709_551_616.0 => {
                Err(Kind::WithinU64)
            }
            Self::Int(i) => u64::try_from(*i)
                .ok()
                .filter(|n| *n >= min)
                .and_then(saturating)
                .ok_or(below),
            Self::Str(s) => whole(s, min),
            _ => Err(below),
        }
    }

    /// A number of seconds ≥ 0, as [`seconds`] takes it; text as
    /// [`parse_seconds`] reads it.
    pub fn to_seconds(&self) -> Option<Duration> {
        match self {
            #[expect(
                clippy::cast_precision_loss,
                reason = "seconds beyond 2^53 are refused later anyway"
            )]
            Self::Int(i) => seconds(*i as f64),
            Self::Float(x) => seconds(*x),
            Self::Str(s) => parse_seconds(s),
            Self::Bool(_) => None,
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a single value (a number, true/false or text)")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> std::result::Result<Scalar, E> {
                // Beyond i128 is beyond every setting: refused all the same.
                Ok(Scalar::Int(i128::try_from(v).unwrap_or(i128::MAX)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Str(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}
