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
//!
//! A distributed run splits a task in two: the worker sends the request
//! ([`LlmAgent::exchange`]) and reports what the provider said (an
//! [`Observation`]); the coordinator's agent ([`LlmAgent::remote`]) waits
//! for the limiter before handing the attempt over, and settles the
//! observation there, so that one limiter serves every machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agent33_parallel::{
    Agent, AgentError, AgentOutput, AgentResult, AgentSpec, AgentTask, BoxFuture, TaskContext,
};

use crate::api::{ChatRequest, Message, Usage};
use crate::classify::Refusal;
use crate::headers::RateLimitInfo;
use crate::limiter::Ticket;
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

    /// The request `task` sends, and what it may spend of a token window
    /// as providers count it at admission: the prompt (about 4 bytes a
    /// token) and the most the answer may take.
    async fn request(&self, task: &AgentTask) -> Result<(ChatRequest, f64), AgentError> {
        let messages = self
            .render_messages(&task.artifact, task.agent.as_str(), task.id.as_str())
            .await?;
        let prompt_bytes: usize = messages.iter().map(|m| m.content.len()).sum();
        let tokens = self.tokens(prompt_bytes);
        let request = ChatRequest {
            model: self.spec.model.clone(),
            messages,
            temperature: self.spec.temperature,
            max_tokens: self.spec.max_tokens,
        };
        Ok((request, tokens))
    }

    /// About how many bytes `task`'s messages take, without reading the
    /// artifact (the worker that sends the request reads it): the
    /// templates, and the file's size for `{content}` (none when it is not
    /// on this machine).
    async fn prompt_size(&self, task: &AgentTask) -> usize {
        let content = if self.spec.prompt.contains("{content}") {
            let path = self.base_dir.join(&task.artifact);
            tokio::fs::metadata(&path)
                .await
                .map_or(0, |m| usize::try_from(m.len()).unwrap_or(usize::MAX))
        } else {
            0
        };
        self.spec.system.as_ref().map_or(0, String::len) + self.spec.prompt.len() + content
    }

    fn tokens(&self, prompt_bytes: usize) -> f64 {
        prompt_bytes.div_ceil(4) as f64 + f64::from(self.spec.max_tokens.unwrap_or(0))
    }

    /// Waits for the provider's limiter to let a request start.
    async fn acquire(&self, ctx: &TaskContext, tokens: f64) -> Result<Ticket, AgentError> {
        match self
            .limiter
            .acquire(tokens, ctx.deferred_at(), ctx.token())
            .await
        {
            Ok(ticket) => Ok(ticket),
            Err(AcquireError::QuotaExhausted) => {
                Err(AgentError::new("provider quota exhausted").no_retry())
            }
            Err(AcquireError::Stopped) => {
                Err(AgentError::new("stopped before the request was sent"))
            }
        }
    }

    async fn run_task(&self, ctx: TaskContext) -> AgentResult {
        let (request, tokens) = self.request(ctx.task()).await?;
        let ticket = self.acquire(&ctx, tokens).await?;
        let (result, observation) = self.call(&ctx, &request).await;
        self.settle(&ctx, &ticket, result, Some(observation))
    }

    /// Sends `request` once, outside the limiter: the task's result when
    /// it was answered (the answer written where the spec says), and what
    /// the provider said, for [`Self::settle`].
    async fn call(&self, ctx: &TaskContext, request: &ChatRequest) -> (AgentResult, Observation) {
        let answer = tokio::select! {
            answer = self.endpoint.send(request) => answer,
            () = ctx.token().cancelled() => {
                // Dropping the request closed its connection; what the
                // provider billed for it is unknown.
                let stopped = AgentError::with_output(
                    "stopped during the request",
                    AgentOutput { notes: vec![STOPPED_NOTE.to_owned()], ..AgentOutput::default() },
                );
                return (Err(stopped), Observation::new(Said::Stopped, RateLimitInfo::default()));
            }
        };
        match answer {
            Answer::Completed(response, info) => {
                let result = self.finish(ctx.task(), &response).await;
                let said = Said::Answered {
                    usage: response.usage,
                };
                (result, Observation::new(said, info))
            }
            Answer::Refused(refusal, info) => {
                // Only the provider's words: what the refusal means for the
                // task (a deferral, a final failure) is for `settle`, on
                // the machine that holds the limiter.
                let result = Err(AgentError::new(refusal.message()));
                (result, Observation::new(Said::Refused(refusal), info))
            }
            Answer::Failed(message) => (
                Err(AgentError::new(message)),
                Observation::new(Said::NoAnswer, RateLimitInfo::default()),
            ),
        }
    }

    /// The half of a task a distributed run's worker does: renders the
    /// request and sends it once, with no limiter (the coordinator's is
    /// the one limit). What the provider said goes back to the
    /// coordinator's [`Self::remote`] agent. A refusal is an ordinary
    /// failure here, never a deferral: the coordinator decides.
    pub async fn exchange(&self, ctx: TaskContext) -> (AgentResult, Option<Observation>) {
        match self.request(ctx.task()).await {
            Ok((request, _)) => {
                let (result, observation) = self.call(&ctx, &request).await;
                (result, Some(observation))
            }
            Err(e) => (Err(e), None),
        }
    }

    /// The agent for the engine whose requests another machine sends
    /// through `transport` (a distributed run's worker, running
    /// [`Self::exchange`]): each attempt waits for this limiter here, and
    /// what the provider said there updates it, so that the limiter stays
    /// the one limit of every machine.
    #[must_use]
    pub fn remote(self, transport: Arc<dyn Transport>) -> AgentSpec {
        let limit = self.limiter.shared_limit();
        AgentSpec::new(Remote {
            agent: self,
            transport,
        })
        .shared_limit(limit)
    }

    /// Applies what the provider said to the limiter and the counters, and
    /// turns it into the engine's result: a rate-limit refusal defers the
    /// task, an exhausted quota trips the provider, a client error is
    /// final, a server's `Retry-After` travels with the failure. Without an
    /// observation (the request was never sent, or its worker was lost)
    /// the request's place in the limiter is given back and `result`
    /// stands.
    fn settle(
        &self,
        ctx: &TaskContext,
        ticket: &Ticket,
        result: AgentResult,
        observation: Option<Observation>,
    ) -> AgentResult {
        let Some(Observation { said, info }) = observation else {
            self.limiter.other(ticket, &RateLimitInfo::default());
            return result;
        };
        match said {
            Said::Answered { usage } => {
                self.limiter.success(ticket, &info);
                self.used(ctx, usage);
                result
            }
            Said::Refused(refusal) => {
                let pause = match &refusal {
                    Refusal::RateLimited { .. } => self.limiter.rate_limited(ticket, &info),
                    Refusal::QuotaExhausted { message } => {
                        self.limiter.quota_exhausted(ticket, message);
                        Duration::ZERO
                    }
                    Refusal::Transient { .. } | Refusal::Permanent { .. } => {
                        self.limiter.other(ticket, &info);
                        Duration::ZERO
                    }
                };
                Err(refused(&refusal, pause))
            }
            Said::NoAnswer | Said::Stopped => {
                self.limiter.other(ticket, &info);
                result
            }
            Said::NotSent { message } => {
                self.limiter.other(ticket, &info);
                Err(AgentError::new(message).no_retry())
            }
        }
    }

    /// Counts an answer's usage, spent whatever happens to the answer next:
    /// the task's result sums it over attempts.
    fn used(&self, ctx: &TaskContext, usage: Option<Usage>) {
        let tokens = usage.unwrap_or_default();
        let cost = self.price.map(|p| p.cost(tokens));
        self.limiter.stats().used(tokens, cost);
        if usage.is_some() {
            ctx.report_usage(
                agent33_parallel::Usage {
                    prompt_tokens: tokens.prompt_tokens,
                    completion_tokens: tokens.completion_tokens,
                    total_tokens: tokens.total_tokens,
                },
                cost,
            );
        }
    }

    /// The answer as the task's output: written to the spec's `output`
    /// file, or kept as its standard output.
    async fn finish(&self, task: &AgentTask, response: &crate::api::ChatResponse) -> AgentResult {
        let (artifact, agent, id) = (&task.artifact, task.agent.as_str(), task.id.as_str());
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

/// What the provider said to one request, as the limiter needs it. In a
/// distributed run it travels from the worker that sent the request to the
/// coordinator that holds the limiter.
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct Observation {
    /// How the request ended.
    pub said: Said,
    /// The response's rate-limit headers.
    #[serde(default)]
    pub info: RateLimitInfo,
}

impl Observation {
    fn new(said: Said, info: RateLimitInfo) -> Self {
        Self { said, info }
    }
}

/// How a request ended, for the limiter.
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Said {
    /// Answered, with the usage the provider counted.
    Answered {
        /// The answer's usage, when the provider gave one.
        usage: Option<Usage>,
    },
    /// Refused, for the reason given.
    Refused(Refusal),
    /// No answer: the connection failed or the body was unreadable.
    NoAnswer,
    /// Not sent where it was to go, for the reason given (the worker has
    /// no key for the provider): the coordinator sends it itself when it
    /// has the key.
    NotSent {
        /// Why, for the task's error when nobody can send it.
        message: String,
    },
    /// Stopped while in flight (a timeout or a stop).
    Stopped,
}

/// The error of a refused request: a deferral for rate (after `pause`), a
/// final failure for quota and client errors, an ordinary failure that the
/// retry policy may repeat (not sooner than the server asked) otherwise.
fn refused(refusal: &Refusal, pause: Duration) -> AgentError {
    match refusal {
        Refusal::RateLimited { .. } => AgentError::deferred(Some(pause)),
        Refusal::QuotaExhausted { message } | Refusal::Permanent { message } => {
            AgentError::new(message.clone()).no_retry()
        }
        Refusal::Transient {
            message,
            retry_after,
        } => {
            let error = AgentError::new(message.clone());
            match retry_after {
                Some(after) => error.retry_after(*after),
                None => error,
            }
        }
    }
}

/// How an attempt reaches the machine that sends its request: it runs
/// [`LlmAgent::exchange`] there and returns the task's result with the
/// provider's [`Observation`] (`None` when no request went out).
pub trait Transport: Send + Sync + 'static {
    /// Runs one attempt elsewhere.
    fn send<'a>(
        &'a self,
        ctx: &'a TaskContext,
    ) -> BoxFuture<'a, (AgentResult, Option<Observation>)>;
}

/// [`LlmAgent::remote`]'s agent.
#[derive(Clone)]
struct Remote {
    agent: LlmAgent,
    transport: Arc<dyn Transport>,
}

impl Remote {
    async fn run_task(self, ctx: TaskContext) -> AgentResult {
        let agent = &self.agent;
        let ticket = agent
            .acquire(&ctx, agent.tokens(agent.prompt_size(ctx.task()).await))
            .await?;
        let (result, observation) = self.transport.send(&ctx).await;
        if let Some(Observation {
            said: Said::NotSent { .. },
            ..
        }) = &observation
            && agent.endpoint.has_key()
        {
            // The worker has no key and this machine has: the request
            // goes from here, under the same ticket.
            return match agent.request(ctx.task()).await {
                Ok((request, _)) => {
                    let (result, observation) = agent.call(&ctx, &request).await;
                    agent.settle(&ctx, &ticket, result, Some(observation))
                }
                Err(e) => agent.settle(&ctx, &ticket, Err(e), None),
            };
        }
        agent.settle(&ctx, &ticket, result, observation)
    }
}

impl Agent for Remote {
    fn run(&self, ctx: TaskContext) -> BoxFuture<'static, AgentResult> {
        Box::pin(self.clone().run_task(ctx))
    }
}

impl Agent for LlmAgent {
    fn run(&self, ctx: TaskContext) -> BoxFuture<'static, AgentResult> {
        let agent = self.clone();
        Box::pin(async move { agent.run_task(ctx).await })
    }
}
