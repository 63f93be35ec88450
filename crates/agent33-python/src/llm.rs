//! `Provider` and `LlmAgent`: agent33-llm's agent and per-provider limiter
//! as Python classes.
//!
//! The binding has no logic of its own: a `Provider`'s keyword arguments
//! are the manifest's `providers:` keys, read by agent33-llm's own serde
//! type and checked by its checks (so the messages are the CLI's, without
//! file:line:col); an `LlmAgent`'s are the `llm:` block's. Every task of
//! every agent on one `Provider` object shares one limiter per limit key
//! (base URL, key and model, or `limit_key`), as in the CLI, and keeps it
//! across runs so what it learnt about the server is not forgotten.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use agent33_llm::manifest::{LlmBlock, ProviderConfig};
use agent33_llm::{ApiKey, Endpoint, LlmAgent, ProviderLimiter, StatsSnapshot};
use agent33_parallel::{AgentSpec, Event, Metrics};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The label the `llm:` block's checks name the agent by: a Python agent's
/// name is only known when it is put in `agents=`.
const AGENT_LABEL: &str = "LlmAgent";

/// Reads a dict of keyword arguments as one of agent33-llm's serde types,
/// through JSON, so unknown and mistyped values get its messages.
fn from_kwargs<T: serde::de::DeserializeOwned>(
    py: Python<'_>,
    what: &str,
    kwargs: &Bound<'_, PyDict>,
) -> PyResult<T> {
    let json: String = py
        .import("json")?
        .call_method1("dumps", (kwargs,))
        .map_err(|e| PyValueError::new_err(format!("{what}: {}", e.value(py))))?
        .extract()?;
    serde_json::from_str(&json).map_err(|e| PyValueError::new_err(format!("{what}: {e}")))
}

/// `Provider(base_url=..., api_key_env=..., max_concurrency=..., rpm=...,
/// tpm=..., prices=..., limit_key=..., name=...)`: an OpenAI-compatible
/// endpoint and the limiters its agents share.
#[pyclass(frozen, module = "agent33_parallel._native", name = "Provider")]
pub struct PyProvider {
    name: String,
    config: ProviderConfig,
    key: Option<ApiKey>,
    endpoint: Arc<Endpoint>,
    /// One limiter per limit key, made on first use (its default ceiling
    /// is the first run's `parallel_limit`).
    limiters: Mutex<Vec<(String, Arc<ProviderLimiter>)>>,
}

impl PyProvider {
    /// The limiter `model`'s requests go through, shared with every agent
    /// on this provider that has the same limit key.
    fn limiter(&self, model: &str, run_limit: usize) -> Arc<ProviderLimiter> {
        let key = self.config.limit_key(self.key.as_ref(), model);
        let mut limiters = self.limiters.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, limiter)) = limiters.iter().find(|(k, _)| *k == key) {
            return Arc::clone(limiter);
        }
        let limiter = ProviderLimiter::new(&self.name, self.config.limiter_settings(run_limit));
        limiters.push((key, Arc::clone(&limiter)));
        limiter
    }
}

/// A provider's default name: its base URL's host, which is what the
/// progress bar and the messages show.
fn host(base_url: &str) -> String {
    let rest = base_url
        .split_once("://")
        .map_or(base_url, |(_, rest)| rest);
    let host = rest.split('/').next().unwrap_or(rest);
    if host.is_empty() {
        base_url.to_owned()
    } else {
        host.to_owned()
    }
}

#[pymethods]
impl PyProvider {
    #[new]
    #[pyo3(signature = (
        base_url, *, api_key_env=None, max_concurrency=None, rpm=None, tpm=None, prices=None,
        limit_key=None, name=None,
    ))]
    #[expect(
        clippy::too_many_arguments,
        reason = "the manifest's provider keys, as keyword arguments"
    )]
    fn new(
        py: Python<'_>,
        base_url: &Bound<'_, PyAny>,
        api_key_env: Option<&Bound<'_, PyAny>>,
        max_concurrency: Option<&Bound<'_, PyAny>>,
        rpm: Option<&Bound<'_, PyAny>>,
        tpm: Option<&Bound<'_, PyAny>>,
        prices: Option<&Bound<'_, PyAny>>,
        limit_key: Option<&Bound<'_, PyAny>>,
        name: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let kwargs = PyDict::new(py);
        kwargs.set_item("base_url", base_url)?;
        for (key, value) in [
            ("api_key_env", api_key_env),
            ("max_concurrency", max_concurrency),
            ("rpm", rpm),
            ("tpm", tpm),
            ("prices", prices),
            ("limit_key", limit_key),
        ] {
            if let Some(value) = value.filter(|v| !v.is_none()) {
                kwargs.set_item(key, value)?;
            }
        }
        let config: ProviderConfig = from_kwargs(py, "Provider", &kwargs)?;
        let name = match name.filter(|v| !v.is_none()) {
            Some(name) => crate::task::string("name", name)?,
            None => host(&config.base_url),
        };
        let key = config
            .check(&name, |var| std::env::var(var).ok())
            .map_err(|e| PyValueError::new_err(e.message))?;
        let endpoint = Endpoint::new(&name, &config.base_url, key.as_ref())
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(Self {
            name,
            config,
            key,
            endpoint: Arc::new(endpoint),
            limiters: Mutex::default(),
        })
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    #[getter]
    fn base_url(&self) -> &str {
        &self.config.base_url
    }

    fn __repr__(&self) -> String {
        // The key variable's name only: the key itself is never shown.
        format!(
            "Provider({:?}, name={:?}, api_key_env={:?})",
            self.config.base_url, self.name, self.config.api_key_env
        )
    }
}

/// `LlmAgent(provider, model=..., prompt=..., system=None, max_tokens=None,
/// temperature=None, output=None)`: the CLI's `llm:` agent.
#[pyclass(frozen, module = "agent33_parallel._native", name = "LlmAgent")]
pub struct PyLlmAgent {
    provider: Py<PyProvider>,
    block: LlmBlock,
}

impl PyLlmAgent {
    /// The engine's agent for one run, bound to its provider's limiter;
    /// artifacts and output files are relative to the working directory.
    /// Also returns the limiter and whether the model has a price, for the
    /// run's metrics.
    pub fn bind(&self, run_limit: usize) -> (AgentSpec, Arc<ProviderLimiter>, bool) {
        let provider = self.provider.get();
        let limiter = provider.limiter(&self.block.model, run_limit);
        let price = provider.config.prices.get(&self.block.model).copied();
        let spec = LlmAgent::new(
            self.block.request_spec(),
            Arc::clone(&provider.endpoint),
            Arc::clone(&limiter),
            PathBuf::new(),
        )
        .price(price)
        .spec();
        (spec, limiter, price.is_some())
    }
}

/// One LLM agent of a run, for the run's metrics.
struct LlmUse {
    name: String,
    limiter: Arc<ProviderLimiter>,
    priced: bool,
    /// Whether the run had a task of this agent.
    used: bool,
}

/// The `llm_*` metrics of one run, as the CLI adds them to its own: the
/// counters of the limiters of the LLM agents the run's tasks named.
///
/// A `Provider` keeps its limiters across runs, so its counters are the
/// provider's since it was made: the run's share is what they grew by
/// during the run, and its timer the waits recorded meanwhile. (Two runs
/// at once on one provider each count both.)
#[derive(Default)]
pub struct LlmMetrics {
    agents: Vec<LlmUse>,
    /// Each limiter's counters when the run started, by limiter.
    baselines: Vec<(Arc<ProviderLimiter>, StatsSnapshot)>,
}

impl LlmMetrics {
    /// Takes in the LLM agent `name` of the run.
    pub fn add(&mut self, name: String, limiter: Arc<ProviderLimiter>, priced: bool) {
        if !self.baselines.iter().any(|(l, _)| Arc::ptr_eq(l, &limiter)) {
            let now = limiter.stats().snapshot();
            self.baselines.push((Arc::clone(&limiter), now));
        }
        self.agents.push(LlmUse {
            name,
            limiter,
            priced,
            used: false,
        });
    }

    /// Notes which LLM agents the run's tasks name, and completes the
    /// run's metrics on `run_finished`, before anything reads them.
    pub fn observe(&mut self, event: &mut Event) {
        if self.agents.is_empty() {
            return;
        }
        match event {
            Event::TaskQueued { task, .. } => {
                let name = task.agent.as_str();
                if let Some(agent) = self.agents.iter_mut().find(|a| a.name == name) {
                    agent.used = true;
                }
            }
            Event::RunFinished { metrics, .. } => self.add_to(metrics),
            _ => {}
        }
    }

    fn add_to(&self, metrics: &mut Metrics) {
        let mut limiters: Vec<&Arc<ProviderLimiter>> = Vec::new();
        for agent in self.agents.iter().filter(|a| a.used) {
            if !limiters.iter().any(|l| Arc::ptr_eq(l, &agent.limiter)) {
                limiters.push(&agent.limiter);
            }
        }
        if limiters.is_empty() {
            return;
        }
        let mut run = Metrics::default();
        ProviderLimiter::add_to_metrics_since(
            limiters.iter().map(|&limiter| {
                let before = self
                    .baselines
                    .iter()
                    .find(|(l, _)| Arc::ptr_eq(l, limiter))
                    .map(|(_, snap)| *snap)
                    .unwrap_or_default();
                (&**limiter, before)
            }),
            &mut run,
        );
        // As in the CLI, the cost is there only when a price is known.
        if !self.agents.iter().any(|a| a.used && a.priced) {
            run.amounts.remove("llm_cost_usd");
        }
        metrics.counters.extend(run.counters);
        metrics.amounts.extend(run.amounts);
        metrics.timers.extend(run.timers);
    }
}

#[pymethods]
impl PyLlmAgent {
    #[new]
    #[pyo3(signature = (
        provider, *, model, prompt, system=None, max_tokens=None, temperature=None, output=None,
    ))]
    #[expect(
        clippy::too_many_arguments,
        reason = "the manifest's llm keys, as keyword arguments"
    )]
    fn new(
        py: Python<'_>,
        provider: Py<PyProvider>,
        model: &Bound<'_, PyAny>,
        prompt: &Bound<'_, PyAny>,
        system: Option<&Bound<'_, PyAny>>,
        max_tokens: Option<&Bound<'_, PyAny>>,
        temperature: Option<&Bound<'_, PyAny>>,
        output: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let name = provider.get().name.clone();
        let kwargs = PyDict::new(py);
        kwargs.set_item("provider", &name)?;
        kwargs.set_item("model", model)?;
        kwargs.set_item("prompt", prompt)?;
        for (key, value) in [
            ("system", system),
            ("max_tokens", max_tokens),
            ("temperature", temperature),
            ("output", output),
        ] {
            if let Some(value) = value.filter(|v| !v.is_none()) {
                kwargs.set_item(key, value)?;
            }
        }
        let block: LlmBlock = from_kwargs(py, AGENT_LABEL, &kwargs)?;
        let providers = BTreeMap::from([(name, provider.get().config.clone())]);
        block
            .check(AGENT_LABEL, &providers)
            .map_err(|e| PyValueError::new_err(e.message))?;
        Ok(Self { provider, block })
    }

    #[getter]
    fn provider(&self, py: Python<'_>) -> Py<PyProvider> {
        self.provider.clone_ref(py)
    }

    #[getter]
    fn model(&self) -> &str {
        &self.block.model
    }

    fn __repr__(&self) -> String {
        format!(
            "LlmAgent(provider={:?}, model={:?})",
            self.block.provider, self.block.model
        )
    }
}
