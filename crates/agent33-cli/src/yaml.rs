//! YAML helpers for the manifest: error messages in `file:line:col: …`
//! form, and a locator that finds the line and column of a node.
//!
//! serde_norway reports positions only inside its own errors; it has no
//! spanned values. Errors found after deserialising (an unknown agent, a
//! duplicate id, `mode` together with `parallel`) still deserve a position,
//! so [`locate`] walks the document again with a seed that deliberately
//! fails at the wanted node: serde_norway stamps that failure with the
//! node's mark, which is exactly the position we want. It runs only for
//! the few nodes that need a place, so the re-parse costs nothing that
//! matters.
//!
//! Repeated keys get the same treatment: serde notices one only in the
//! mapping's visitor, so serde_norway stamps it with the mapping's mark,
//! not the repeat's. [`duplicate_key`] walks the document and fails at the
//! repeated key itself.

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One step of a path into a YAML document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seg<'a> {
    /// A mapping's value under this key.
    Key(&'a str),
    /// A sequence's element at this index (0-based).
    Index(usize),
}

/// The message our failing seed raises, so a real error is never taken for
/// a found node.
const FOUND: &str = "\u{0}agent33: located";

/// The 1-based line and column of the node at `path` (or, with `key`, of
/// the key that ends the path), or `None` when there is no such node.
///
/// serde_norway parses the whole document for every walk, so a walk in a
/// manifest with thousands of tasks is not free. When the path starts in
/// a block-style top-level section (`execution:` at column 0), only that
/// section is parsed; if that fails for any reason (flow style, an alias
/// to an anchor outside it), the whole document is.
pub(crate) fn locate(text: &str, path: &[Seg<'_>], key: bool) -> Option<(usize, usize)> {
    // (No let chains: the workspace's rust-version is 1.85.)
    let in_section = match path.first() {
        Some(Seg::Key(top)) => top_level_section(text, top).and_then(|(lines_before, section)| {
            locate_in(section, path, key).map(|(line, col)| (line + lines_before, col))
        }),
        _ => None,
    };
    in_section.or_else(|| locate_in(text, path, key))
}

/// The text of the top-level block `key:` (from its line at column 0 to the
/// next line at column 0 that is not a comment or a `-` item), and the
/// number of lines before it. Lines of a block mapping's values are
/// indented (or are `-` items), so they never end the section early; a
/// section cut wrongly just fails to parse and [`locate`] falls back.
fn top_level_section<'t>(text: &'t str, key: &str) -> Option<(usize, &'t str)> {
    let mut start: Option<(usize, usize)> = None;
    let mut offset = 0;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        match start {
            None => {
                let is_key_line = line
                    .strip_prefix(key)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .is_some_and(|after| {
                        after.is_empty() || after.starts_with([' ', '\t', '\r', '\n', '#'])
                    });
                if is_key_line {
                    start = Some((n, offset));
                }
            }
            Some((lines_before, from)) => {
                let continues =
                    line.is_empty() || line.starts_with([' ', '\t', '#', '-', '\r', '\n']);
                if !continues {
                    return Some((lines_before, &text[from..offset]));
                }
            }
        }
        offset += line.len();
    }
    start.map(|(lines_before, from)| (lines_before, &text[from..]))
}

fn locate_in(text: &str, path: &[Seg<'_>], key: bool) -> Option<(usize, usize)> {
    let de = serde_norway::Deserializer::from_str(text);
    match (Node { path, key }).deserialize(de) {
        Ok(()) => None,
        // serde_norway prefixes the message with the node's path.
        Err(e) if e.to_string().contains(FOUND) => {
            e.location().map(|loc| (loc.line(), loc.column()))
        }
        Err(_) => None,
    }
}

/// The first repeated mapping key in the document, as a serde_norway
/// error at that key (`agents: duplicate key `t`` at its line and column),
/// or `None` when no key repeats.
///
/// Keys are compared as text, as the manifest reads them (`1` and `"1"`
/// are one key); keys that are not scalars are not compared.
pub(crate) fn duplicate_key(text: &str) -> Option<serde_norway::Error> {
    let hit = Cell::new(false);
    let de = serde_norway::Deserializer::from_str(text);
    match (Walk { hit: &hit }).deserialize(de) {
        // Any other failure (a tag, bad syntax) is not ours to report.
        Err(e) if hit.get() => Some(e),
        _ => None,
    }
}

/// Renders a serde_norway error in `text` as `file:line:col: message` (or
/// `file: message` when it has no position).
///
/// libyaml ends the text with a line break of its own, so an error at the
/// very end can sit one line past the file (`2:1` for the one-line `{`);
/// such a place becomes the end of the text, where an editor can go.
pub(crate) fn error_message(file: &str, text: &str, e: &serde_norway::Error) -> String {
    let msg = e.to_string();
    match e.location() {
        Some(loc) => {
            // serde_norway appends " at line L column C"; the prefix says it.
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            let msg = msg.replacen(&suffix, "", 1);
            let (line, col) = (loc.line(), loc.column()).min(end_of(text));
            format!("{file}:{line}:{col}: {msg}")
        }
        None => format!("{file}: {msg}"),
    }
}

/// How deep `[ ]` and `{ }` may nest in a manifest. A real one needs four
/// levels (`tasks: [{depends_on: [x]}]`), and serde_norway refuses more
/// than 128 levels of any nesting anyway; but libyaml's scanner rechecks
/// every open flow level at each token, so a few hundred kilobytes of
/// `[[[[…` kept it busy for minutes before any error. Checked first, the
/// limit makes such a file a quick usage error.
pub(crate) const MAX_FLOW_DEPTH: usize = 64;

/// The 1-based line and column of the first `[` or `{` that opens a flow
/// collection nested deeper than `max`, or `None`.
///
/// A light scan, not a parser: it skips quoted text, comments and block
/// scalars (`|`, `>`), and outside brackets it counts a bracket only where
/// a node can start (after a blank or at a line's start), so the brackets
/// of `echo a[1]` or `'{print $1}'` do not count. Text a parser would read
/// as a plain scalar can still hold counted brackets (a continuation line
/// that starts with `[`), but it would take more than `max` unclosed ones
/// in a row to be refused.
pub(crate) fn flow_too_deep(text: &str, max: usize) -> Option<(usize, usize)> {
    #[derive(PartialEq)]
    enum In {
        Text,
        Single,
        Double,
    }
    let mut state = In::Text;
    let mut depth = 0usize;
    // Inside a block scalar whose indicator sat on a line indented this much.
    let mut block: Option<usize> = None;
    for (n, line) in text.split('\n').enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        if let Some(parent) = block {
            if line.trim().is_empty() || indent > parent {
                continue;
            }
            block = None;
        }
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let prev = i.checked_sub(1).map(|p| chars[p]);
            match state {
                In::Single if c == '\'' && chars.get(i + 1) == Some(&'\'') => i += 1,
                In::Single if c == '\'' => state = In::Text,
                In::Double if c == '\\' => i += 1,
                In::Double if c == '"' => state = In::Text,
                In::Single | In::Double => {}
                In::Text => {
                    let node_start = prev.is_none_or(|p| {
                        p == ' ' || p == '\t' || (depth > 0 && matches!(p, '[' | '{' | ',' | ':'))
                    });
                    match c {
                        '#' if node_start => break,
                        '\'' if node_start => state = In::Single,
                        '"' if node_start => state = In::Double,
                        '[' | '{' if depth > 0 || node_start => {
                            depth += 1;
                            if depth > max {
                                return Some((n + 1, i + 1));
                            }
                        }
                        ']' | '}' => depth = depth.saturating_sub(1),
                        '|' | '>' if depth == 0 && node_start => {
                            block = Some(indent);
                            break;
                        }
                        _ => {}
                    }
                }
            }
            i += 1;
        }
    }
    None
}

/// Each character of `text` with its 1-based line and column, counting
/// lines as YAML does (CR, LF, CRLF, NEL, LS and PS each end one).
fn places(text: &str) -> impl Iterator<Item = (char, usize, usize)> + '_ {
    let (mut line, mut col) = (1, 1);
    let mut after_cr = false;
    text.chars().map(move |c| {
        let here = (c, line, col);
        match c {
            '\n' if after_cr => {}
            '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}' => (line, col) = (line + 1, 1),
            _ => col += 1,
        }
        after_cr = c == '\r';
        here
    })
}

/// The 1-based line and column just after the last character of `text`.
fn end_of(text: &str) -> (usize, usize) {
    let (mut line, mut col) = (1, 1);
    let mut after_cr = false;
    for c in text.chars() {
        match c {
            '\n' if after_cr => {}
            '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}' => (line, col) = (line + 1, 1),
            _ => col += 1,
        }
        after_cr = c == '\r';
    }
    (line, col)
}

/// The first character that YAML allows nowhere in a document (control
/// characters but tab and line breaks, U+FFFE, U+FFFF), with its line and
/// column. libyaml reports one as a byte offset in a message placed at
/// `1:1`, which sends people to the wrong line.
pub(crate) fn refused_char(text: &str) -> Option<(char, usize, usize)> {
    places(text).find(|(c, _, _)| {
        matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}')
            || matches!(c, '\u{7f}'..='\u{84}' | '\u{86}'..='\u{9f}' | '\u{fffe}' | '\u{ffff}')
    })
}

struct Node<'p> {
    path: &'p [Seg<'p>],
    key: bool,
}

fn found<E: de::Error>() -> E {
    E::custom(FOUND)
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// At the end of the path every visit fails with [`FOUND`]; before it,
/// scalars mean "no such node" and mappings or sequences are walked.
impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.scalar()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return Err(found());
        };
        let Seg::Key(want) = *first else {
            return Ok(());
        };
        let fail = rest.is_empty() && self.key;
        while let Some(matched) = map.next_key_seed(KeySeed { want, fail })? {
            if matched {
                return map.next_value_seed(Node {
                    path: rest,
                    key: self.key,
                });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return Err(found());
        };
        let Seg::Index(want) = *first else {
            return Ok(());
        };
        for _ in 0..want {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        // `None` (too few elements) means there is no such node.
        seq.next_element_seed(Node {
            path: rest,
            key: self.key,
        })?;
        Ok(())
    }
}

impl Node<'_> {
    fn scalar<E: de::Error>(&self) -> Result<(), E> {
        if self.path.is_empty() {
            Err(found())
        } else {
            Ok(())
        }
    }
}

/// Reads a mapping key: `true` when it is the wanted one. With `fail`, the
/// wanted key is itself the target and fails with [`FOUND`].
struct KeySeed<'a> {
    want: &'a str,
    fail: bool,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        if v == self.want {
            if self.fail { Err(found()) } else { Ok(true) }
        } else {
            Ok(false)
        }
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// Walks every node; fails at the first mapping key that repeats, and
/// sets `hit` so that failure is told apart from any other.
#[derive(Clone, Copy)]
struct Walk<'h> {
    hit: &'h Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        Ok(())
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(key) = map.next_key_seed(UniqueKey {
            seen: &seen,
            walk: self,
        })? {
            map.next_value_seed(self)?;
            seen.extend(key);
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
}

/// Reads a mapping key as text (`None` for a key that is not a scalar)
/// and fails, at the key, when it was `seen` before.
struct UniqueKey<'a, 'h> {
    seen: &'a HashSet<String>,
    walk: Walk<'h>,
}

impl UniqueKey<'_, '_> {
    fn check<E: de::Error>(self, key: String) -> Result<Option<String>, E> {
        if self.seen.contains(&key) {
            self.walk.hit.set(true);
            Err(E::custom(format_args!("duplicate key `{key}`")))
        } else {
            Ok(Some(key))
        }
    }
}

impl<'de> DeserializeSeed<'de> for UniqueKey<'_, '_> {
    type Value = Option<String>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_any(self)
    }
}

/// The same texts the manifest's `Word` makes of a scalar.
impl<'de> Visitor<'de> for UniqueKey<'_, '_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Option<String>, E> {
        self.check(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<String>, E> {
        self.check(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<String>, E> {
        self.check(v.to_string())
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Option<String>, E> {
        self.check(v.to_string())
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Option<String>, E> {
        self.check(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Option<String>, E> {
        self.check(v.to_string())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<String>, E> {
        self.check(v.to_owned())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<String>, A::Error> {
        self.walk.visit_map(map).map(|()| None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Option<String>, A::Error> {
        self.walk.visit_seq(seq).map(|()| None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
execution:
  mode: parallel
  parallel_limit: 4
agents:
  lint: { command: \"x {artifact}\" }
tasks:
  - agent: lint
    artifact: a.md
  - agent: nope
    artifact: b.md
";

    #[test]
    fn locates_values_keys_and_sequence_elements() {
        use Seg::{Index, Key};
        assert_eq!(
            locate(DOC, &[Key("execution"), Key("parallel_limit")], false),
            Some((3, 19))
        );
        assert_eq!(
            locate(DOC, &[Key("execution"), Key("mode")], true),
            Some((2, 3))
        );
        assert_eq!(locate(DOC, &[Key("tasks"), Index(1)], false), Some((9, 5)));
        assert_eq!(
            locate(DOC, &[Key("tasks"), Index(1), Key("agent")], false),
            Some((9, 12))
        );
        assert_eq!(
            locate(DOC, &[Key("agents"), Key("lint"), Key("command")], false),
            Some((5, 20))
        );
    }

    #[test]
    fn sections_are_cut_at_the_next_top_level_key() {
        let doc = "# c\nexecution:\n  a: 1\n# x\n\n  b: 2\nagents:\n- x\ntasks:\n  - 1\n";
        assert_eq!(
            top_level_section(doc, "execution"),
            Some((1, "execution:\n  a: 1\n# x\n\n  b: 2\n"))
        );
        assert_eq!(
            top_level_section(doc, "agents"),
            Some((6, "agents:\n- x\n"))
        );
        assert_eq!(
            top_level_section(doc, "tasks"),
            Some((8, "tasks:\n  - 1\n"))
        );
        assert_eq!(top_level_section(doc, "exec"), None);
        assert_eq!(
            locate(doc, &[Seg::Key("execution"), Seg::Key("b")], false),
            Some((6, 6))
        );
    }

    #[test]
    fn flow_style_and_aliases_fall_back_to_the_whole_document() {
        let flow = "execution: {a: 1,\nb: 2}\n";
        assert_eq!(
            locate(flow, &[Seg::Key("execution"), Seg::Key("b")], false),
            locate_in(flow, &[Seg::Key("execution"), Seg::Key("b")], false)
        );
        let alias = "x: &v 3\nexecution:\n  a: *v\n  b: 4\n";
        assert_eq!(
            locate(alias, &[Seg::Key("execution"), Seg::Key("b")], false),
            Some((4, 6))
        );
    }

    #[test]
    fn missing_nodes_have_no_place() {
        use Seg::{Index, Key};
        assert_eq!(locate(DOC, &[Key("nothing")], false), None);
        assert_eq!(locate(DOC, &[Key("tasks"), Index(7)], false), None);
        assert_eq!(
            locate(DOC, &[Key("execution"), Key("mode"), Key("deeper")], false),
            None
        );
    }

    #[test]
    fn duplicate_keys_are_found_at_the_repeat() {
        let at = |text: &str| {
            duplicate_key(text).map(|e| {
                let loc = e.location().expect("a place");
                (loc.line(), loc.column(), e.to_string())
            })
        };
        let (line, col, msg) =
            at("a:\n  - {x: 1}\n  - {x: 1, y: [{z: 1}, {z: 2, z: 3}]}\n").expect("a repeat");
        assert_eq!((line, col), (3, 31));
        assert!(msg.starts_with("a[1].y[1]: duplicate key `z`"), "{msg}");
        let (line, col, _) = at("k: 1\n'k': 2\n").expect("quoting makes no other key");
        assert_eq!((line, col), (2, 1));
        assert!(at(DOC).is_none());
        // Keys of different mappings, and mappings used as keys, are
        // separate.
        assert!(at("- {a: 1}\n- {a: 2}\n? {a: 1}\n: {a: 2}\n").is_none());
        // Other failures are left to the real parse.
        assert!(at("a: !t 1\na: 2\n").is_none());
        assert!(at("a: [\n").is_none());
    }

    #[test]
    fn errors_are_prefixed_with_file_line_and_column() {
        let e = serde_norway::from_str::<Vec<u32>>("[1, x]").unwrap_err();
        let msg = error_message("m.yaml", "[1, x]", &e);
        assert!(msg.starts_with("m.yaml:1:5: "), "{msg}");
        assert!(!msg.contains(" at line "), "{msg}");
    }

    #[test]
    fn deep_flow_nesting_is_found_quickly_and_only_where_it_is() {
        // Found by fuzzing: 100 000 levels kept libyaml busy for minutes.
        let deep = format!("tasks: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let started = std::time::Instant::now();
        assert_eq!(
            flow_too_deep(&deep, MAX_FLOW_DEPTH),
            Some((1, 8 + MAX_FLOW_DEPTH))
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let deep = format!("execution:\n  x: {}1\n", "{a: ".repeat(65));
        assert_eq!(flow_too_deep(&deep, 64), Some((2, 6 + 4 * 64)));
        let at_limit = format!("x: {}{}\n", "[".repeat(64), "]".repeat(64));
        assert_eq!(flow_too_deep(&at_limit, 64), None);
        // Brackets in quotes, comments, block scalars and mid-text do not
        // count; closed ones do not add up.
        let many = |open: &str| open.repeat(100);
        for text in [
            format!("a: '{}'\n", many("[")),
            format!("a: \"{}\\\"{}\"\n", many("{"), many("[")),
            format!("a: 'it''s {}'\n", many("[")),
            format!("a: 1 # {}\n", many("[")),
            format!("a: |\n  {}\n\n  {}\nb: 1\n", many("["), many("{")),
            format!("- >-\n   {}\n", many("[")),
            format!("a: echo{}\n", many("[")),
            format!("a: x{}\n", many("{")),
            format!("a: [{}]\n", many("[x], ")),
            format!("a: {}\n", many("{x: 1} ")),
            format!("a: [\"{}\", '{}']\n", many("["), many("{")),
        ] {
            assert_eq!(flow_too_deep(&text, 64), None, "{text}");
        }
        // Quotes do not hide what follows them.
        let after = format!("a: 'x'\nb: {}\n", many("["));
        assert_eq!(flow_too_deep(&after, 64), Some((2, 4 + 64)));
    }

    #[test]
    fn characters_yaml_refuses_are_found_where_they_are() {
        // Found while fuzzing: libyaml placed these at 1:1.
        assert_eq!(refused_char("a: 1\n  b: x\u{0}y\n"), Some(('\u{0}', 2, 7)));
        assert_eq!(refused_char("é: ab\u{1}"), Some(('\u{1}', 1, 6)));
        assert_eq!(refused_char("a:\r\n b\u{7f}"), Some(('\u{7f}', 2, 3)));
        assert_eq!(refused_char("a: \u{9f}"), Some(('\u{9f}', 1, 4)));
        assert_eq!(refused_char("a: \u{ffff}"), Some(('\u{ffff}', 1, 4)));
        assert_eq!(
            refused_char("\u{feff}a:\tb\r\n\u{85}\u{a0}\u{2028}é🦀\u{fffd}\n"),
            None
        );
        // And YAML agrees on what it refuses.
        let specials = [
            0xd7ff, 0xe000, 0xfeff, 0xfffd, 0xfffe, 0xffff, 0x1_0000, 0x10_ffff,
        ];
        let chars = (0..0x3000).chain(specials).filter_map(char::from_u32);
        for c in chars.filter(|c| *c != '\'') {
            let text = format!("a: 'x{c}'");
            let parsed = serde_norway::from_str::<serde_norway::Value>(&text);
            assert_eq!(
                refused_char(&text).is_some(),
                parsed.is_err(),
                "U+{:04X}: {parsed:?}",
                u32::from(c)
            );
        }
    }

    #[test]
    fn an_error_at_the_end_is_placed_at_the_end_of_the_text() {
        // Found by tests/fuzz.rs: libyaml placed these one line past the
        // file.
        for (text, at) in [
            ("{", "m.yaml:1:2: "),
            ("execution:\nx", "m.yaml:2:2: "),
            ("execution:\r\nx", "m.yaml:2:2: "),
            ("tasks: [\n", "m.yaml:2:1: "),
            ("execution:\nx\n", "m.yaml:3:1: "),
        ] {
            let e = serde_norway::from_str::<serde_norway::Value>(text).unwrap_err();
            let msg = error_message("m.yaml", text, &e);
            assert!(msg.starts_with(at), "{text:?}: {msg}");
        }
        assert_eq!(end_of(""), (1, 1));
        assert_eq!(end_of("ab\r\n"), (2, 1));
        assert_eq!(end_of("ab\r\ncd\re\u{2028}"), (4, 1));
    }
}
