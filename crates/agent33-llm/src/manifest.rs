//! The manifest's `providers:` section and an agent's `llm:` block, as
//! serde types that refuse unknown keys, and the checks that need more than
//! one value (a provider that exists, a key variable that is set, a prompt
//! that uses the artifact).
//!
//! Positions are the CLI's business (its YAML layer knows file:line:col);
//! every [`ConfigError`] names the key it is about as a path
//! (`providers.openai.api_key_env`) for the CLI to point at.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::agent::{LlmRequestSpec, Price};
use crate::limiter::LimiterSettings;
use crate::provider::ApiKey;

/// One entry of `providers:`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The API's base, before `/chat/completions`.
    pub base_url: String,
    /// The environment variable that holds the key; none for servers that
    /// need no key (a local Ollama).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The limiter's ceiling and start; default: the run's limit.
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    /// Requests per minute to pace to when the server sends no headers.
    #[serde(default)]
    pub rpm: Option<f64>,
    /// Tokens per minute, likewise.
    #[serde(default)]
    pub tpm: Option<f64>,
    /// Prices per model.
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
    /// Shares one limiter among the models (and providers) that name the
    /// same key; default: one per base URL, key and model.
    #[serde(default)]
    pub limit_key: Option<String>,
}

/// An agent's `llm:` block.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LlmBlock {
    /// A name from `providers:`.
    pub provider: String,
    /// The model's name at the provider.
    pub model: String,
    /// The system message.
    #[serde(default)]
    pub system: Option<String>,
    /// The user message's template.
    pub prompt: String,
    /// The answer's length limit.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Where to write the answer; default: the task's output.
    #[serde(default)]
    pub output: Option<String>,
}

/// A setting that cannot be used, and the key it is about.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// The key, as a path from the manifest's root
    /// (`agents.refine.llm.provider`).
    pub path: Vec<String>,
    /// What is wrong, naming the thing.
    pub message: String,
}

impl ConfigError {
    fn new(path: &[&str], message: String) -> Self {
        Self {
            path: path.iter().map(|p| (*p).to_owned()).collect(),
            message,
        }
    }
}

impl ProviderConfig {
    /// Checks the values and reads the key from the environment through
    /// `env` (the CLI passes `std::env::var`).
    ///
    /// # Errors
    ///
    /// An empty `base_url`, a `max_concurrency` of 0, a non-positive
    /// `rpm`/`tpm`, or an `api_key_env` that is not set.
    pub fn check(
        &self,
        name: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<ApiKey>, ConfigError> {
        let at = |key: &'static str| ["providers", name, key];
        if self.base_url.trim().is_empty() {
            return Err(ConfigError::new(
                &at("base_url"),
                format!("provider `{name}` has an empty base_url"),
            ));
        }
        if self.max_concurrency == Some(0) {
            return Err(ConfigError::new(
                &at("max_concurrency"),
                format!("max_concurrency of provider `{name}` must be at least 1"),
            ));
        }
        for (key, value) in [("rpm", self.rpm), ("tpm", self.tpm)] {
            if value.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                return Err(ConfigError::new(
                    &["providers", name, key],
                    format!("{key} of provider `{name}` must be a positive number"),
                ));
            }
        }
        match &self.api_key_env {
            None => Ok(None),
            Some(var) => match env(var) {
                Some(key) if !key.is_empty() => Ok(Some(ApiKey::new(key))),
                _ => Err(ConfigError::new(
                    &at("api_key_env"),
                    format!("the key of provider `{name}` is read from ${var}, which is not set"),
                )),
            },
        }
    }

    /// The limiter's settings, with the run's limit as the default ceiling.
    #[must_use]
    pub fn limiter_settings(&self, run_limit: usize) -> LimiterSettings {
        LimiterSettings {
            max_concurrency: self.max_concurrency.unwrap_or(run_limit).max(1),
            rpm: self.rpm,
            tpm: self.tpm,
        }
    }

    /// The key of the limiter a model of this provider shares: `limit_key`
    /// when set, else the base URL, the key's fingerprint (or, without the
    /// key, its variable's name) and the model.
    #[must_use]
    pub fn limit_key(&self, key: Option<&ApiKey>, model: &str) -> String {
        self.limit_key.clone().unwrap_or_else(|| {
            // A distributed run's coordinator has no key: the variable it
            // is read from tells the keys apart there.
            let print = key.map_or_else(
                || {
                    self.api_key_env
                        .as_ref()
                        .map_or_else(|| "no-key".to_owned(), |var| format!("${var}"))
                },
                ApiKey::fingerprint,
            );
            format!("{}|{print}|{model}", self.base_url.trim_end_matches('/'))
        })
    }
}

impl LlmBlock {
    /// Checks the block of agent `agent` against the providers.
    ///
    /// # Errors
    ///
    /// A provider not in `providers:`, or a prompt that uses neither
    /// `{content}` nor `{artifact}`.
    pub fn check(
        &self,
        agent: &str,
        providers: &BTreeMap<String, ProviderConfig>,
    ) -> Result<(), ConfigError> {
        let at = |key: &'static str| ["agents", agent, "llm", key];
        if !providers.contains_key(&self.provider) {
            let known: Vec<_> = providers.keys().map(String::as_str).collect();
            return Err(ConfigError::new(
                &at("provider"),
                format!(
                    "unknown provider `{}` in agent `{agent}` (providers: {})",
                    self.provider,
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
        if !(self.prompt.contains("{content}") || self.prompt.contains("{artifact}")) {
            return Err(ConfigError::new(
                &at("prompt"),
                format!("the prompt of agent `{agent}` uses neither {{content}} nor {{artifact}}"),
            ));
        }
        Ok(())
    }

    /// The request the agent sends.
    #[must_use]
    pub fn request_spec(&self) -> LlmRequestSpec {
        LlmRequestSpec {
            model: self.model.clone(),
            system: self.system.clone(),
            prompt: self.prompt.clone(),
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            output: self.output.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> ProviderConfig {
        serde_json::from_value(serde_json::json!({
            "base_url": "https://api.openai.com/v1",
            "api_key_env": "OPENAI_API_KEY",
            "max_concurrency": 16,
            "rpm": 500,
            "prices": { "gpt-4o-mini": { "prompt_per_mtok": 0.15, "completion_per_mtok": 0.60 } }
        }))
        .expect("the contract's example reads")
    }

    fn block(prompt: &str, provider: &str) -> LlmBlock {
        serde_json::from_value(serde_json::json!({
            "provider": provider, "model": "gpt-4o-mini", "prompt": prompt,
            "system": "You refine prompts.", "max_tokens": 2000, "temperature": 0.2,
            "output": "{artifact}.refined.md"
        }))
        .expect("the contract's example reads")
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = serde_json::from_value::<ProviderConfig>(
            serde_json::json!({ "base_url": "x", "api_key": "sk-…" }),
        )
        .expect_err("api_key is not a key");
        assert!(e.to_string().contains("unknown field `api_key`"), "{e}");
        let e = serde_json::from_value::<LlmBlock>(
            serde_json::json!({ "provider": "p", "model": "m", "prompt": "{content}", "top_p": 1 }),
        )
        .expect_err("top_p is not a key");
        assert!(e.to_string().contains("unknown field `top_p`"), "{e}");
    }

    #[test]
    fn an_unset_key_variable_points_at_api_key_env() {
        let e = provider().check("openai", |_| None).expect_err("unset");
        assert_eq!(e.path, ["providers", "openai", "api_key_env"]);
        assert_eq!(
            e.message,
            "the key of provider `openai` is read from $OPENAI_API_KEY, which is not set"
        );
        let key = provider()
            .check("openai", |_| Some("sk-x".into()))
            .expect("set");
        assert_eq!(key, Some(ApiKey::new("sk-x")));
        let mut local = provider();
        local.api_key_env = None;
        assert_eq!(local.check("ollama", |_| None), Ok(None));
    }

    #[test]
    fn blocks_name_a_provider_and_use_the_artifact() {
        let providers = BTreeMap::from([("openai".to_owned(), provider())]);
        assert_eq!(
            block("Improve:\n\n{content}", "openai").check("refine", &providers),
            Ok(())
        );
        let e = block("{content}", "anthropic")
            .check("refine", &providers)
            .expect_err("unknown");
        assert_eq!(e.path, ["agents", "refine", "llm", "provider"]);
        assert_eq!(
            e.message,
            "unknown provider `anthropic` in agent `refine` (providers: openai)"
        );
        let e = block("Say hi", "openai")
            .check("refine", &providers)
            .expect_err("no artifact");
        assert_eq!(e.path, ["agents", "refine", "llm", "prompt"]);
    }

    #[test]
    fn limit_keys_separate_models_unless_told() {
        let p = provider();
        let key = ApiKey::new("sk-x");
        assert_ne!(p.limit_key(Some(&key), "a"), p.limit_key(Some(&key), "b"));
        assert!(!p.limit_key(Some(&key), "a").contains("sk-x"));
        let shared = ProviderConfig {
            limit_key: Some("org".into()),
            ..p
        };
        assert_eq!(
            shared.limit_key(Some(&key), "a"),
            shared.limit_key(None, "b")
        );
        assert_eq!(shared.limiter_settings(64).max_concurrency, 16);
    }
}
