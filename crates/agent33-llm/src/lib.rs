//! agent-33's LLM agent: calls to any OpenAI-compatible chat completions
//! endpoint (OpenAI, vLLM, Ollama, llama.cpp's server, LiteLLM's proxy,
//! OpenRouter), and one adaptive limiter per provider, shared by every task
//! that uses it, which follows what the provider says.
//!
//! It retries nothing by itself: the engine's retry policy is the only
//! retry loop, and a rate-limit refusal goes back to the engine as well.
//! It keeps the API key out of everything it prints, logs or returns.

pub mod agent;
pub mod api;
pub mod classify;
pub mod headers;
pub mod limiter;
pub mod manifest;
pub mod provider;
pub mod template;

pub use agent::{LlmAgent, LlmRequestSpec, Observation, Price, Said, Transport};
pub use limiter::{LimiterSettings, LimiterState};
pub use provider::{ApiKey, Endpoint, ProviderLimiter, StatsSnapshot};
