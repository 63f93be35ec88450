//! Setting values and where they came from: the parsers shared by flags,
//! environment variables and the manifest, so that one setting accepts the
//! same values and fails with the same words wherever it is written.

use std::fmt;
use std::num::IntErrorKind;
use std::time::Duration;

use crate::error::UsageError;

/// Where a setting's value came from. Shown in error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag, spelled as in `--help` (`-j/--parallel-limit`).
    Flag(&'static str),
    /// An environment variable, as the settings table names it.
    Env(&'static str),
    /// The manifest, at this place.
    Manifest(Place),
    /// The built-in default.
    Default,
}

impl Source {
    /// Precedence rank: higher wins (flags 3, environment 2, manifest 1,
    /// default 0).
    #[must_use]
    pub fn rank(&self) -> u8 {
        match self {
            Self::Flag(_) => 3,
            Self::Env(_) => 2,
            Self::Manifest(_) => 1,
            Self::Default => 0,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag(flag) => write!(f, "flag {flag}"),
            Self::Env(var) => write!(f, "environment variable {var}"),
            Self::Manifest(place) => write!(f, "manifest {place}"),
            Self::Default => f.write_str("default"),
        }
    }
}

/// A place in a file: the file as the user named it and, when known, the
/// 1-based line and column. Displays as `agent33.yaml:14:5` (or just the
/// file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The file, as given (`-f` or the default `agent33.yaml`).
    pub file: String,
    /// 1-based line and column, when the place is known.
    pub line_col: Option<(usize, usize)>,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line_col {
            Some((line, col)) => write!(f, "{}:{line}:{col}", self.file),
            None => f.write_str(&self.file),
        }
    }
}

/// A value together with the place it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Sourced<T> {
    /// The validated value.
    pub value: T,
    /// Where it came from.
    pub source: Source,
}

impl<T> Sourced<T> {
    /// Pairs a value with its source.
    pub fn new(value: T, source: Source) -> Self {
        Self { value, source }
    }
}

/// What a setting accepts, phrased for "expected …" in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `true/false/1/0/yes/no/on/off`, any case.
    Bool,
    /// A whole number ≥ 1.
    Positive,
    /// A whole number ≥ 0.
    Count,
    /// A whole number that fits 64 bits (the text was a larger one).
    WithinU64,
    /// A number of seconds ≥ 0, fractions allowed.
    Seconds,
    /// The manifest's `mode:` shorthand.
    Mode,
}

impl Kind {
    /// The "expected …" phrase.
    #[must_use]
    pub fn expected(self) -> &'static str {
        match self {
            Self::Bool => "expected true/false/1/0/yes/no/on/off",
            Self::Positive => "expected a whole number ≥ 1",
            Self::Count => "expected a whole number ≥ 0",
            Self::WithinU64 => "expected a whole number ≤ 18446744073709551615",
            Self::Seconds => "expected a number of seconds ≥ 0",
            Self::Mode => "expected sequential, parallel or dependency-aware",
        }
    }
}

/// The error for a value that does not fit its setting. Flags and
/// variables: `invalid value "abc" for parallel_limit (from flag
/// -j/--parallel-limit): expected a whole number ≥ 1`; the
/// manifest, like every manifest error, starts with its place:
/// `agent33.yaml:3:19: invalid value 0 for parallel_limit: expected …`.
/// `shown` is the value as the user wrote it (quoted if it was text).
#[must_use]
pub fn invalid_value(setting: &str, shown: &str, source: &Source, kind: Kind) -> UsageError {
    let expected = kind.expected();
    match source {
        Source::Manifest(place) => UsageError::new(format_args!(
            "{place}: invalid value {shown} for {setting}: {expected}"
        )),
        _ => UsageError::new(format_args!(
            "invalid value {shown} for {setting} (from {source}): {expected}"
        )),
    }
}

/// Parses a boolean word: `true/false/1/0/yes/no/on/off`, any case,
/// surrounding blanks ignored.
#[must_use]
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Parses a whole number ≥ `min`; see [`whole`].
#[must_use]
pub fn parse_whole<T: TryFrom<u64>>(s: &str, min: u64) -> Option<T> {
    whole(s, min).ok()
}

/// Parses a whole number ≥ `min` that fits a `u64`, for a setting held in
/// a `T`. Accepts an optional `+` (as Rust's integer parsing does); rejects
/// fractions and exponents. A number beyond `T` becomes `T`'s largest
/// value: counts that large are unlimited in practice (no run reaches 2³²
/// failures or retries), and refusing one with "expected a whole number
/// ≥ 1" would contradict itself. The error is the [`Kind`] to report.
pub fn whole<T: TryFrom<u64>>(s: &str, min: u64) -> Result<T, Kind> {
    let below = if min == 0 {
        Kind::Count
    } else {
        Kind::Positive
    };
    let n: u64 = match s.trim().parse() {
        Ok(n) => n,
        Err(e) if *e.kind() == IntErrorKind::PosOverflow => return Err(Kind::WithinU64),
        Err(_) => return Err(below),
    };
    if n < min {
        return Err(below);
    }
    saturating(n).ok_or(below)
}

/// `n` as a `T`, or `T`'s largest value when `n` is beyond it. `T` is only
/// known to convert from `u64` (that is all the manifest's parsers ask
/// of it), so its largest value is found among the integer types' own.
#[must_use]
pub fn saturating<T: TryFrom<u64>>(n: u64) -> Option<T> {
    const LARGEST: [u64; 8] = [
        u64::MAX,
        i64::MAX as u64,
        u32::MAX as u64,
        i32::MAX as u64,
        u16::MAX as u64,
        i16::MAX as u64,
        u8::MAX as u64,
        i8::MAX as u64,
    ];
    T::try_from(n)
        .ok()
        .or_else(|| LARGEST.into_iter().find_map(|max| T::try_from(max).ok()))
}

/// Parses a number of seconds ≥ 0 (`0.5`, `300`, `1e3`) into a duration.
/// Rejects negative, NaN and infinite values; see [`seconds`] for huge
/// ones.
#[must_use]
pub fn parse_seconds(s: &str) -> Option<Duration> {
    let secs: f64 = s.trim().parse().ok()?;
    seconds(secs)
}

/// A finite, non-negative number of seconds as a duration. A number too
/// large for a [`Duration`] (beyond about 5.8·10¹¹ years) becomes
/// [`Duration::MAX`]: it is a valid "number ≥ 0", and the engine treats
/// such absurd timeouts and deadlines as none, so refusing it with
/// "expected a number of seconds ≥ 0" would contradict itself.
///
/// A positive number below a nanosecond becomes one nanosecond, not zero:
/// for `timeout_seconds` and `deadline_seconds` zero means "none", and
/// `--timeout 1e-10` asks for the opposite. Only an exact 0 is zero. (For
/// `kill_grace_seconds` and `retry_backoff_seconds` a nanosecond is as good
/// as none.)
#[must_use]
pub fn seconds(secs: f64) -> Option<Duration> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    let d = Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX);
    if d.is_zero() && secs > 0.0 {
        Some(Duration::from_nanos(1))
    } else {
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_accept_the_documented_words_in_any_case() {
        for (s, want) in [
            ("true", Some(true)),
            ("TRUE", Some(true)),
            ("Yes", Some(true)),
            ("on", Some(true)),
            ("1", Some(true)),
            ("false", Some(false)),
            ("No", Some(false)),
            ("OFF", Some(false)),
            ("0", Some(false)),
            (" true ", Some(true)),
            ("perhaps", None),
            ("", None),
            ("2", None),
            ("y", None),
        ] {
            assert_eq!(parse_bool(s), want, "{s:?}");
        }
    }

    #[test]
    fn whole_numbers_respect_their_minimum_and_type() {
        assert_eq!(parse_whole::<usize>("4", 1), Some(4));
        assert_eq!(parse_whole::<usize>("+4", 1), Some(4));
        assert_eq!(parse_whole::<usize>("0", 1), None);
        assert_eq!(parse_whole::<u32>("0", 0), Some(0));
        assert_eq!(parse_whole::<u32>("-1", 0), None);
        assert_eq!(parse_whole::<u32>("1.5", 0), None);
        assert_eq!(parse_whole::<u32>("abc", 0), None);
        assert_eq!(parse_whole::<u64>("4294967296", 0), Some(4_294_967_296));
    }

    #[test]
    fn whole_numbers_beyond_their_type_are_clamped_and_beyond_u64_refused() {
        assert_eq!(parse_whole::<u32>("4294967296", 0), Some(u32::MAX));
        assert_eq!(parse_whole::<u32>("99999999999", 1), Some(u32::MAX));
        assert_eq!(parse_whole::<u8>("256", 0), Some(u8::MAX));
        assert_eq!(parse_whole::<i32>("2147483648", 0), Some(i32::MAX));
        let max = u64::MAX.to_string();
        assert_eq!(parse_whole::<u64>(&max, 1), Some(u64::MAX));
        assert_eq!(parse_whole::<usize>(&max, 1), Some(usize::MAX));
        assert_eq!(
            whole::<u32>("18446744073709551616", 0),
            Err(Kind::WithinU64)
        );
        assert_eq!(
            whole::<u32>("99999999999999999999999", 1),
            Err(Kind::WithinU64)
        );
        assert_eq!(
            whole::<u32>("-99999999999999999999999", 0),
            Err(Kind::Count)
        );
        assert_eq!(whole::<u32>("0", 1), Err(Kind::Positive));
        assert_eq!(whole::<u32>("1e3", 1), Err(Kind::Positive));
    }

    #[test]
    fn seconds_accept_fractions_and_reject_nonsense() {
        assert_eq!(parse_seconds("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_seconds("300"), Some(Duration::from_secs(300)));
        assert_eq!(parse_seconds("0"), Some(Duration::ZERO));
        for bad in ["-1", "-0.5", "abc", "", "NaN", "inf", "infinity", "1e400"] {
            assert_eq!(parse_seconds(bad), None, "{bad:?}");
        }
        // Below a nanosecond but positive: the smallest duration, not zero
        // (which means "none"); only an exact zero is zero.
        let ns = Some(Duration::from_nanos(1));
        for tiny in ["1e-10", "0.0000000001", "5e-324", "+1e-300"] {
            assert_eq!(parse_seconds(tiny), ns, "{tiny:?}");
        }
        for zero in ["0.0", "0e5", "-0", "-0.0"] {
            assert_eq!(parse_seconds(zero), Some(Duration::ZERO), "{zero:?}");
        }
        assert_eq!(seconds(1e-10), ns);
        // Huge but finite: valid, saturated.
        assert_eq!(parse_seconds("1e20"), Some(Duration::MAX));
        assert_eq!(parse_seconds("1e300"), Some(Duration::MAX));
    }

    #[test]
    fn sources_display_where_a_value_came_from() {
        assert_eq!(
            Source::Flag("-j/--parallel-limit").to_string(),
            "flag -j/--parallel-limit"
        );
        assert_eq!(
            Source::Env("AGENT33_PARALLEL").to_string(),
            "environment variable AGENT33_PARALLEL"
        );
        let place = Place {
            file: "agent33.yaml".into(),
            line_col: Some((3, 19)),
        };
        assert_eq!(
            Source::Manifest(place).to_string(),
            "manifest agent33.yaml:3:19"
        );
    }
}
