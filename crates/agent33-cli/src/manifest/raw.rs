//! The manifest's YAML as written, before validation: strict shapes
//! (unknown keys are errors), keys kept in order and never repeated, and
//! scalars left untyped until their setting says what they must be.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};

use agent33_llm::manifest::{LlmBlock, ProviderConfig};

use crate::scalar::Scalar;
use crate::settings::RawExecution;

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a manifest: a mapping with `execution`, `providers`, `agents` and `tasks`"
)]
pub(super) struct RawManifest {
    pub(super) execution: Option<RawExecution>,
    pub(super) providers: Option<UniqueMap<ProviderConfig>>,
    pub(super) agents: Option<UniqueMap<RawAgent>>,
    pub(super) tasks: Option<Vec<RawTask>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an agent: a mapping with `command` or `llm` and optional `shell`, `parallel_limit`, `timeout_seconds`, `retries`, `env`, `cwd`"
)]
pub(super) struct RawAgent {
    pub(super) command: Option<CommandValue>,
    pub(super) llm: Option<LlmBlock>,
    pub(super) shell: Option<Scalar>,
    pub(super) parallel_limit: Option<Scalar>,
    pub(super) timeout_seconds: Option<Scalar>,
    pub(super) retries: Option<Scalar>,
    pub(super) env: Option<UniqueMap<Word>>,
    pub(super) cwd: Option<Word>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a task: a mapping with `agent` and `artifact` or `artifacts`"
)]
pub(super) struct RawTask {
    pub(super) agent: Word,
    pub(super) artifact: Option<Word>,
    pub(super) artifacts: Option<Words>,
    pub(super) id: Option<Word>,
    pub(super) depends_on: Option<Words>,
    pub(super) timeout_seconds: Option<Scalar>,
    pub(super) retries: Option<Scalar>,
}

/// Text; a number or boolean written without quotes is taken as its text
/// (`env: { WORKERS: 4 }`, `artifact: 2024`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Word(pub(super) String);

impl<'de> Deserialize<'de> for Word {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Word;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("text")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Word, E> {
                Ok(Word(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Word, E> {
                Ok(Word(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Word, E> {
                Ok(Word(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Word, E> {
                Ok(Word(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Word, E> {
                Ok(Word(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// One text or a list of texts (`depends_on: a` or `depends_on: [a, b]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Words {
    One(String),
    List(Vec<String>),
}

impl Words {
    pub(super) fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::List(v) => v,
        }
    }
}

impl<'de> Deserialize<'de> for Words {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Words;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("text or a list of texts")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Words, E> {
                Ok(Words::One(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Words, A::Error> {
                let mut v = Vec::new();
                while let Some(Word(w)) = seq.next_element()? {
                    v.push(w);
                }
                Ok(Words::List(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// An agent's `command`: a string to split, or a list of words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CommandValue {
    Text(String),
    List(Vec<String>),
}

impl<'de> Deserialize<'de> for CommandValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match Words::deserialize(d)? {
            Words::One(s) => Ok(Self::Text(s)),
            Words::List(v) => Ok(Self::List(v)),
        }
    }
}

/// A mapping whose keys keep their order and may not repeat.
#[derive(Debug)]
pub(super) struct UniqueMap<V>(pub(super) Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Vis<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Vis<V> {
            type Value = UniqueMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<UniqueMap<V>, A::Error> {
                let mut out: Vec<(String, V)> = Vec::new();
                while let Some(Word(k)) = map.next_key()? {
                    if out.iter().any(|(seen, _)| *seen == k) {
                        return Err(de::Error::custom(format_args!("duplicate key `{k}`")));
                    }
                    let v = map.next_value()?;
                    out.push((k, v));
                }
                Ok(UniqueMap(out))
            }
        }
        d.deserialize_map(Vis(std::marker::PhantomData))
    }
}
