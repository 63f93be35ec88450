//! Small text helpers shared by the reporters: durations, counts, token
//! amounts, dollars, first lines, clipping, bounded tails and ANSI styles.
//!
//! Everything here is pure so the reporters' output is deterministic.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Formats a duration for people, always in seconds: one decimal from a
/// tenth of a second up (`0.1s`, `45.3s`, `3725.0s`), three below it
/// (`0.000s`, `0.004s`, `0.099s`).
///
/// Seconds are the summary's pinned unit, and one unit everywhere lets
/// readers and scripts match `\d+(\.\d+)?s`. Below 0.1 s one decimal
/// would say `0.0s`, which reads as "nothing happened", so milliseconds
/// show as three decimals instead. Rounding is to the nearest tenth, done on
/// integers so it never depends on binary floating point.
///
/// # Examples
///
/// ```
/// use agent33_report::format_duration_ms;
/// assert_eq!(format_duration_ms(0), "0.000s");
/// assert_eq!(format_duration_ms(4), "0.004s");
/// assert_eq!(format_duration_ms(99), "0.099s");
/// assert_eq!(format_duration_ms(100), "0.1s");
/// assert_eq!(format_duration_ms(45_349), "45.3s");
/// assert_eq!(format_duration_ms(45_350), "45.4s");
/// ```
#[must_use]
pub fn format_duration_ms(ms: u64) -> String {
    if ms < 100 {
        return format!("0.{ms:03}s");
    }
    let tenths = ms.saturating_add(50) / 100;
    format!("{}.{}s", tenths / 10, tenths % 10)
}

/// Formats a count with a comma between thousands: `1,204`.
///
/// # Examples
///
/// ```
/// use agent33_report::format_count;
/// assert_eq!(format_count(37), "37");
/// assert_eq!(format_count(1_204), "1,204");
/// ```
#[must_use]
pub fn format_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Formats an amount of tokens the way people say it: exact below a
/// thousand, else in `k`, `M` or `B` with one decimal below ten of the unit
/// and none from there (`950`, `1.2k`, `340k`, `1.2M`, `34M`). A `.0` is
/// dropped (`1k`, not `1.0k`). Rounding is to the nearest, on integers.
///
/// # Examples
///
/// ```
/// use agent33_report::format_tokens;
/// assert_eq!(format_tokens(1_204_000), "1.2M");
/// assert_eq!(format_tokens(340_000), "340k");
/// ```
#[must_use]
pub fn format_tokens(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1_000, "k"), (1_000_000, "M"), (1_000_000_000, "B")];
    if n < 1_000 {
        return n.to_string();
    }
    let n = u128::from(n);
    let mut i = UNITS
        .iter()
        .rposition(|&(size, _)| n >= u128::from(size))
        .expect("n is at least a thousand");
    loop {
        let (size, name) = UNITS[i];
        let size = u128::from(size);
        let tenths = (n * 10 + size / 2) / size;
        if tenths < 100 {
            return match tenths % 10 {
                0 => format!("{}{name}", tenths / 10),
                d => format!("{}.{d}{name}", tenths / 10),
            };
        }
        let whole = (n + size / 2) / size;
        // 999,999 rounds to 1000k: that is 1M.
        if whole >= 1_000 && i + 1 < UNITS.len() {
            i += 1;
            continue;
        }
        return format!("{whole}{name}");
    }
}

/// Formats dollars with cents (`$1.27`, `$1,204.50`); an amount below a
/// cent keeps four decimals (`$0.0004`) rather than read as nothing.
///
/// # Examples
///
/// ```
/// use agent33_report::format_dollars;
/// assert_eq!(format_dollars(1.2749), "$1.27");
/// assert_eq!(format_dollars(0.00042), "$0.0004");
/// ```
#[must_use]
pub fn format_dollars(amount: f64) -> String {
    if amount > 0.0 && amount < 0.005 {
        return format!("${amount:.4}");
    }
    let cents = (amount.max(0.0) * 100.0).round() as u64;
    format!("${}.{:02}", format_count(cents / 100), cents % 100)
}

/// A task's name within its agent: its id without the `agent:` prefix, so
/// that repeated artifacts stay apart (`x`, `x#2`) where the artifact alone
/// would not; an id that lacks the prefix (a manifest's own `id:`) is the
/// name whole.
pub(crate) fn name_in_agent(task: &agent33_parallel::AgentTask) -> &str {
    let id = task.id.as_str();
    id.strip_prefix(task.agent.as_str())
        .and_then(|rest| rest.strip_prefix(':'))
        .filter(|name| !name.is_empty())
        .unwrap_or(id)
}

/// The first line of `text` (without its line ending).
pub(crate) fn first_line(text: &str) -> &str {
    let line = text.split('\n').next().unwrap_or_default();
    line.strip_suffix('\r').unwrap_or(line)
}

/// `text` cut to at most `max` characters, with `…` when cut.
pub(crate) fn clip(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => Cow::Borrowed(text),
        Some((at, _)) => {
            let mut s = String::with_capacity(at + 3);
            s.push_str(&text[..at]);
            s.push('…');
            Cow::Owned(s)
        }
    }
}

/// The one-line reason a task did not succeed: the first line of its error,
/// clipped so one verbose agent cannot flood a summary line.
pub(crate) fn reason(error: Option<&str>, fallback: &str) -> String {
    match error.map(first_line) {
        Some(line) if !line.is_empty() => clip(line, 200).into_owned(),
        _ => fallback.to_owned(),
    }
}

const MARKER_START: &str = "[agent-33: ";
const MARKER_END: &str = " bytes truncated]\n";

/// Keeps at most `limit` bytes of the tail of `text`, with the engine's
/// truncation marker in front when anything was dropped.
///
/// When `text` already starts with the engine's marker, the counts are added
/// so the marker still tells how much the task really wrote beyond what is
/// shown. The cut moves forward to a character boundary, so slightly fewer
/// than `limit` bytes may be kept.
pub(crate) fn bounded_tail(text: &str, limit: usize) -> Cow<'_, str> {
    if text.len() <= limit {
        return Cow::Borrowed(text);
    }
    let (already, body) = split_marker(text);
    let mut cut = body.len().saturating_sub(limit);
    while !body.is_char_boundary(cut) {
        cut += 1;
    }
    let dropped = already + cut as u64;
    let mut out = String::with_capacity(body.len() - cut + 40);
    let _ = write!(out, "{MARKER_START}{dropped}{MARKER_END}");
    out.push_str(&body[cut..]);
    Cow::Owned(out)
}

/// Splits the engine's leading truncation marker off, returning the count it
/// names (0 without a marker) and the rest.
fn split_marker(text: &str) -> (u64, &str) {
    let Some(rest) = text.strip_prefix(MARKER_START) else {
        return (0, text);
    };
    let Some(end) = rest.find(MARKER_END) else {
        return (0, text);
    };
    match rest[..end].parse::<u64>() {
        Ok(n) => (n, &rest[end + MARKER_END.len()..]),
        Err(_) => (0, text),
    }
}

/// ANSI styles, applied only when colour is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Style {
    Bold,
    Red,
    Green,
    Yellow,
    Cyan,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Self::Bold => "1",
            Self::Red => "1;31",
            Self::Green => "32",
            Self::Yellow => "33",
            Self::Cyan => "36",
        }
    }

    /// `text` in this style when `color`, else unchanged.
    pub(crate) fn paint(self, text: &str, color: bool) -> Cow<'_, str> {
        if color {
            Cow::Owned(format!("\x1b[{}m{text}\x1b[0m", self.code()))
        } else {
            Cow::Borrowed(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_seconds_with_three_decimals_below_a_tenth() {
        for (ms, text) in [
            (0, "0.000s"),
            (4, "0.004s"),
            (12, "0.012s"),
            (99, "0.099s"),
            (100, "0.1s"),
            (149, "0.1s"),
            (150, "0.2s"),
            (3_800, "3.8s"),
            (45_300, "45.3s"),
            (300_000, "300.0s"),
            (u64::MAX, "18446744073709551.6s"),
        ] {
            assert_eq!(format_duration_ms(ms), text, "{ms} ms");
        }
    }

    #[test]
    fn counts_have_commas_between_thousands() {
        for (n, text) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (1_204, "1,204"),
            (12_345, "12,345"),
            (1_234_567, "1,234,567"),
        ] {
            assert_eq!(format_count(n), text);
        }
    }

    #[test]
    fn tokens_are_said_in_k_m_and_b() {
        for (n, text) in [
            (0, "0"),
            (950, "950"),
            (999, "999"),
            (1_000, "1k"),
            (1_049, "1k"),
            (1_050, "1.1k"),
            (1_204, "1.2k"),
            (9_949, "9.9k"),
            (9_950, "10k"),
            (340_000, "340k"),
            (340_499, "340k"),
            (999_499, "999k"),
            (999_500, "1M"),
            (1_200_000, "1.2M"),
            (1_249_999, "1.2M"),
            (34_000_000, "34M"),
            (2_500_000_000, "2.5B"),
            (u64::MAX, "18446744074B"),
        ] {
            assert_eq!(format_tokens(n), text, "{n}");
        }
    }

    #[test]
    fn dollars_have_cents_or_four_decimals_below_a_cent() {
        for (amount, text) in [
            (0.0, "$0.00"),
            (1.27, "$1.27"),
            (1.274_9, "$1.27"),
            (1.275_1, "$1.28"),
            (1_204.5, "$1,204.50"),
            (0.004_2, "$0.0042"),
            (0.005, "$0.01"),
        ] {
            assert_eq!(format_dollars(amount), text, "{amount}");
        }
    }

    #[test]
    fn first_line_drops_the_rest_and_the_carriage_return() {
        assert_eq!(first_line("exit code 1\nmore"), "exit code 1");
        assert_eq!(first_line("a\r\nb"), "a");
        assert_eq!(first_line(""), "");
    }

    #[test]
    fn clip_counts_characters_not_bytes() {
        assert_eq!(clip("héllo", 5), "héllo");
        assert_eq!(clip("héllo", 2), "hé…");
    }

    #[test]
    fn reason_falls_back_for_empty_errors() {
        assert_eq!(reason(None, "cancelled"), "cancelled");
        assert_eq!(reason(Some(""), "failed"), "failed");
        assert_eq!(reason(Some("exit code 1\nstack"), "failed"), "exit code 1");
    }

    #[test]
    fn bounded_tail_keeps_short_text() {
        assert_eq!(bounded_tail("abc", 3), "abc");
    }

    #[test]
    fn bounded_tail_marks_what_it_dropped() {
        assert_eq!(
            bounded_tail("0123456789", 4),
            "[agent-33: 6 bytes truncated]\n6789"
        );
    }

    #[test]
    fn bounded_tail_adds_to_the_engines_marker() {
        let text = "[agent-33: 100 bytes truncated]\n0123456789";
        assert_eq!(
            bounded_tail(text, 4),
            "[agent-33: 106 bytes truncated]\n6789"
        );
    }

    #[test]
    fn bounded_tail_cuts_on_a_character_boundary() {
        // "é" is two bytes; a cut inside it moves forward.
        assert_eq!(bounded_tail("aébc", 3), "[agent-33: 3 bytes truncated]\nbc");
    }

    #[test]
    fn paint_only_with_colour() {
        assert_eq!(Style::Red.paint("x", false), "x");
        assert_eq!(Style::Red.paint("x", true), "\x1b[1;31mx\x1b[0m");
    }
}
