//! The LLM agent: renders a task's prompt, sends it through the provider's
//! limiter, and turns the answer into the task's output, usage and notes.
//!
//! A rate-limit refusal is not a failure: the request was not served, so
//! the attempt is a deferral ([`AgentError::deferred`]): the task goes back
//! to the engine's ready tasks, holds no slot while the provider's limit is
//! paused, uses none of its `retries`, and fails after 20 deferrals with
//! `rate limited 20 times`. Every other failure is returned to the engine,
//! whose retry policy is the only retry loop; a server's `Retry-After`
//! travels with it, and a client error or an exhausted quota is final
//! ([`AgentError::no_retry`]). Bind the agent to its provider's limit with
//! [`LlmAgent::spec`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent33_parallel::{
    Agent, AgentError, AgentOutput, AgentResult, AgentSpec, BoxFuture, TaskContext,
};

use crate::api::{ChatRequest, Message, Usage};
use crate::classify::Refusal;
use crate::headers::RateLimitInfo;
use crate::provider::{AcquireError, Answer, Endpoint, ProviderLimiter};
use crate::template::{Fields, render};

/// The note of a stopped request.
pub const STOPPED_NOTE: &str = "usage unknown: the request was stopped";

/// Prices of one model, in dollars per million tokens.
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Per million prompt tokens.
    pub prompt_per_mtok: f64,
    /// Per million completion tokens.
    pub completion_per_mtok: f64,
}

impl Price {
    /// What `usage` costs.
    #[must_use]
    pub fn cost(&self, usage: Usage) -> f64 {
        (usage.prompt_tokens as f64 * self.prompt_per_mtok
            + usage.completion_tokens as f64 * self.completion_per_mtok)
            / 1e6
    }
}

/// What an LLM agent asks of its model.
#[derive(Clone, Debug, PartialEq)]
pub struct LlmRequestSpec {
    /// The model's name at the provider.
    pub model: String,
    /// The system message, if any.
    pub system: Option<String>,
    /// The user message's template: `{content}` (the artifact file's
    /// text), `{artifact}`, `{agent}`, `{id}`.
    pub prompt: String,
    /// The answer's length limit in tokens.
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Where to write the answer (a template like the prompt's, without
    /// `{content}`), relative to the base folder; `None`: the answer is the
    /// task's output.
    pub output: Option<String>,
}

/// An agent that calls an OpenAI-compatible chat completions endpoint.
#[derive(Clone, Debug)]
pub struct LlmAgent {
    spec: Arc<LlmRequestSpec>,
    endpoint: Arc<Endpoint>,
    limiter: Arc<ProviderLimiter>,
    price: Option<Price>,
    base_dir: PathBuf,
}

/// What one task's requests added up to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskUsage {
    /// Tokens, summed over the answered requests.
    pub usage: Usage,
    /// Their cost, when a price is known.
    pub cost_usd: Option<f64>,
}

impl LlmAgent {
    /// An agent sending `spec` to `endpoint` through `limiter`; artifacts
    /// and output files are relative to `base_dir`.
    #[must_use]
    pub fn new(
        spec: LlmRequestSpec,
        endpoint: Arc<Endpoint>,
        limiter: Arc<ProviderLimiter>,
        base_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            spec: Arc::new(spec),
            endpoint,
            limiter,
            price: None,
            base_dir: base_dir.into(),
        }
    }

    /// Prices the answers.
    #[must_use]
    pub fn price(mut self, price: Option<Price>) -> Self {
        self.price = price;
        self
    }

    /// The agent for the engine, bound to its provider's shared limit.
    #[must_use]
    pub fn spec(self) -> AgentSpec {
        let limit = self.limiter.shared_limit();
        AgentSpec::new(self).shared_limit(limit)
    }

    /// The limiter this agent's tasks share.
    #[must_use]
    pub fn limiter(&self) -> &Arc<ProviderLimiter> {
        &self.limiter
    }

    /// The request a task sends, rendered: its messages in order.
    ///
    /// # Errors
    ///
    /// When the prompt needs the artifact's text and the file cannot be
    /// read.
    pub async fn render_messages(
        &self,
        artifact: &str,
        agent: &str,
        id: &str,
    ) -> Result<Vec<Message>, AgentError> {
        let content = if self.spec.prompt.contains("{content}") {
            let path = self.base_dir.join(artifact);
            Some(tokio::fs::read_to_string(&path).await.map_err(|e| {
                AgentError::new(format!("cannot read artifact {}: {e}", path.display()))
            })?)
        } else {
            None
        };
        let fields = Fields {
            content: content.as_deref(),
            artifact,
            agent,
            id,
        };
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = &self.spec.system {
            messages.push(Message::new("system", system.clone()));
        }
        messages.push(Message::new("user", render(&self.spec.prompt, &fields)));
        Ok(messages)
    }

    async fn run_task(&self, ctx: TaskContext) -> AgentResult {
        let task = ctx.task();
        let (artifact, agent, id) = (
            task.artifact.clone(),
            task.agent.as_str().to_owned(),
            task.id.as_str().to_owned(),
        );
        let messages = self.render_messages(&artifact, &agent, &id).await?;
        let prompt_bytes: usize = messages.iter().map(|m| m.content.len()).sum();
        // What the request may spend of a token window, as providers count
        // it at admission: the prompt (about 4 bytes a token) and the most
        // the answer may take.
        let tokens = prompt_bytes.div_ceil(4) as f64 + f64::from(self.spec.max_tokens.unwrap_or(0));
        let request = ChatRequest {
            model: self.spec.model.clone(),
            messages,
            temperature: self.spec.temperature,
            max_tokens: self.spec.max_tokens,
        };
        let token = ctx.token().clone();
        let ticket = match self
            .limiter
            .acquire(tokens, ctx.deferred_at(), &token)
            .await
        {
            Ok(ticket) => ticket,
            Err(AcquireError::QuotaExhausted) => {
                return Err(AgentError::new("provider quota exhausted").no_retry());
            }
            Err(AcquireError::Stopped) => {
                return Err(AgentError::new("stopped before the request was sent"));
            }
        };
        let answer = tokio::select! {
            answer = self.endpoint.send(&request) => answer,
            () = token.cancelled() => {
                // Dropping the request closed its connection; what the
                // provider billed for it is unknown.
                self.limiter.other(&ticket, &RateLimitInfo::default());
                return Err(AgentError::with_output(
                    "stopped during the request",
                    AgentOutput { notes: vec![STOPPED_NOTE.to_owned()], ..AgentOutput::default() },
                ));
            }
        };
        match answer {
            Answer::Completed(response, info) => {
                self.limiter.success(&ticket, &info);
                self.finish(&ctx, &response, &artifact, &agent, &id).await
            }
            Answer::Refused(Refusal::RateLimited { .. }, info) => {
                let pause = self.limiter.rate_limited(&ticket, &info);
                Err(AgentError::deferred(Some(pause)))
            }
            Answer::Refused(Refusal::QuotaExhausted { message }, _) => {
                self.limiter.quota_exhausted(&ticket, &message);
                Err(AgentError::new(message).no_retry())
            }
            Answer::Refused(
                Refusal::Transient {
                    message,
                    retry_after,
                },
                info,
            ) => {
                self.limiter.other(&ticket, &info);
                let error = AgentError::new(message);
                Err(match retry_after {
                    Some(after) => error.retry_after(after),
                    None => error,
                })
            }
            Answer::Refused(Refusal::Permanent { message }, info) => {
                self.limiter.other(&ticket, &info);
                Err(AgentError::new(message).no_retry())
            }
            Answer::Failed(message) => {
                self.limiter.other(&ticket, &RateLimitInfo::default());
                Err(AgentError::new(message))
            }
        }
    }

    async fn finish(
        &self,
        ctx: &TaskContext,
        response: &crate::api::ChatResponse,
        artifact: &str,
        agent: &str,
        id: &str,
    ) -> AgentResult {
        let usage = response.usage.unwrap_or_default();
        let cost = self.price.map(|p| p.cost(usage));
        self.limiter.stats().used(usage, cost);
        // Spent whatever happens to the answer next: the task's result
        // sums it over attempts.
        if response.usage.is_some() {
            ctx.report_usage(
                agent33_parallel::Usage {
                    prompt_tokens: usage.prompt_tokens,
                    completion_tokens: usage.completion_tokens,
                    total_tokens: usage.total_tokens,
                },
                cost,
            );
        }
        let choice = response.choices.first();
        let text = choice
            .and_then(|c| c.message.content.clone())
            .unwrap_or_default();
        let mut notes = Vec::new();
        if choice.and_then(|c| c.finish_reason.as_deref()) == Some("length") {
            let at = self
                .spec
                .max_tokens
                .map_or_else(String::new, |m| format!(" ({m} tokens)"));
            notes.push(format!("answer cut at max_tokens{at}"));
        }
        let stdout = match &self.spec.output {
            None => text,
            Some(template) => {
                let fields = Fields {
                    content: None,
                    artifact,
                    agent,
                    id,
                };
                let path = self.base_dir.join(render(template, &fields));
                write_atomically(&path, text.as_bytes())
                    .await
                    .map_err(|e| {
                        AgentError::new(format!("cannot write {}: {e}", path.display()))
                    })?;
                String::new()
            }
        };
        Ok(AgentOutput {
            stdout,
            notes,
            ..AgentOutput::default()
        })
    }
}

/// Writes through a temporary file in the same folder and a rename, so a
/// reader never sees half an answer.
async fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    tokio::fs::write(&temp, bytes).await?;
    match tokio::fs::rename(&temp, path).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = tokio::fs::remove_file(&temp).await;
            Err(e)
        }
    }
}

impl Agent for LlmAgent {
    fn run(&self, ctx: TaskContext) -> BoxFuture<'static, AgentResult> {
        let agent = self.clone();
        Box::pin(async move { agent.run_task(ctx).await })
    }
}
