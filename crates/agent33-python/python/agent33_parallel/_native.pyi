"""Types of the native half of agent33_parallel (the Rust extension)."""

import asyncio
import os
import datetime
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

class AgentTask:
    """One agent on one artifact; the default id is ``agent:artifact``."""

    def __init__(
        self,
        agent: str,
        artifact: str,
        *,
        id: Optional[str] = None,
        depends_on: Iterable[str] = (),
        timeout_seconds: Optional[float] = None,
        retries: Optional[int] = None,
    ) -> None: ...
    @property
    def agent(self) -> str: ...
    @property
    def artifact(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def depends_on(self) -> Tuple[str, ...]: ...
    @property
    def timeout_seconds(self) -> Optional[float]: ...
    @property
    def retries(self) -> Optional[int]: ...

class TaskContext:
    """What an agent that declares a second parameter gets."""

    @property
    def attempt(self) -> int: ...
    @property
    def task_id(self) -> str: ...
    @property
    def run_id(self) -> str: ...

class CommandAgent:
    """The CLI's command agent: ``CommandAgent(["markdownlint", "{artifact}"])``
    or ``CommandAgent('grep -c TODO "$1"', shell=True)``.

    Words take the CLI's placeholders (``{}``/``{artifact}``, ``{.}``,
    ``{/}``, ``{//}``, ``{/.}``, ``{#}``, ``{%}``, ``{agent}``, ``{id}``);
    a str without ``shell=True`` is split into words as a shell would, and
    never run by one; words without any placeholder get the artifact as
    their last argument, as in the CLI. A script gets it as ``"$1"``. Templates the
    CLI refuses (a misspelt placeholder, a placeholder pasted into a shell
    script) raise ``ValueError`` with the CLI's message. Escaped processes
    (``setsid``, double fork) are killed when their task ends."""

    def __init__(self, command: Union[str, Sequence[str]], *, shell: bool = False) -> None: ...

class Provider:
    """An OpenAI-compatible endpoint, by the manifest's ``providers:`` keys:
    ``Provider("https://api.openai.com/v1", api_key_env="OPENAI_API_KEY",
    max_concurrency=16, prices={"gpt-4o-mini": {"prompt_per_mtok": 0.15,
    "completion_per_mtok": 0.60}})``.

    The key is read from ``api_key_env`` now and never shown (not in
    ``repr``, errors or reports); an unset variable raises ``ValueError``
    naming it. Every ``LlmAgent`` on this object shares one adaptive limiter
    per limit key (base URL, key and model, or ``limit_key``), kept across
    runs; ``max_concurrency`` defaults to the first run's
    ``parallel_limit``. ``name`` (default: the base URL's host) is what
    messages and the progress bar call it."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key_env: Optional[str] = None,
        max_concurrency: Optional[int] = None,
        rpm: Optional[float] = None,
        tpm: Optional[float] = None,
        prices: Optional[Mapping[str, Mapping[str, float]]] = None,
        limit_key: Optional[str] = None,
        name: Optional[str] = None,
    ) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def base_url(self) -> str: ...

class LlmAgent:
    """The CLI's ``llm:`` agent: one chat completion per attempt through its
    provider's limiter. ``prompt`` must use ``{content}`` (the artifact
    file's text) or ``{artifact}``; ``{agent}`` and ``{id}`` are filled too.
    A rate-limit 429 defers the task (no retry used); the answer is the
    task's output, or is written to ``output`` (a template) when given."""

    def __init__(
        self,
        provider: Provider,
        *,
        model: str,
        prompt: str,
        system: Optional[str] = None,
        max_tokens: Optional[int] = None,
        temperature: Optional[float] = None,
        output: Optional[str] = None,
    ) -> None: ...
    @property
    def provider(self) -> Provider: ...
    @property
    def model(self) -> str: ...

class TaskResult:
    @property
    def task(self) -> AgentTask: ...
    @property
    def status(self) -> str:
        """``success``, ``failed``, ``timeout``, ``cancelled`` or ``skipped``."""
    @property
    def duration_ms(self) -> int: ...
    @property
    def output(self) -> Any: ...
    @property
    def error(self) -> Optional[str]: ...
    @property
    def attempts(self) -> int: ...
    @property
    def started_at(self) -> Optional[datetime.datetime]: ...
    @property
    def finished_at(self) -> Optional[datetime.datetime]: ...
    @property
    def traceback(self) -> Optional[str]: ...
    @property
    def stderr(self) -> str: ...
    @property
    def exit_code(self) -> Optional[int]: ...
    @property
    def notes(self) -> List[str]: ...
    @property
    def usage(self) -> Optional[Dict[str, int]]:
        """``prompt_tokens``, ``completion_tokens``, ``total_tokens`` of an
        LLM agent's requests, summed over attempts."""
    @property
    def cost_usd(self) -> Optional[float]: ...

class ExecutionResults:
    @property
    def total(self) -> int: ...
    @property
    def succeeded(self) -> List[TaskResult]: ...
    @property
    def failed(self) -> List[TaskResult]: ...
    @property
    def cancelled(self) -> List[TaskResult]: ...
    @property
    def skipped(self) -> List[TaskResult]: ...
    @property
    def duration_ms(self) -> int: ...
    @property
    def success_rate(self) -> float: ...
    @property
    def metrics(self) -> Dict[str, Any]:
        """The metrics catalog's shape: ``counters``, ``gauges``, ``timers``.
        When the run had tasks of an ``LlmAgent``, the CLI's ``llm_requests``,
        ``llm_rate_limited``, ``llm_prompt_tokens``, ``llm_completion_tokens``
        and (when a price is known) ``llm_cost_usd`` counters are this run's
        share of their providers' requests, and the ``rate_limit_wait_ms``
        timer has one wait for each request this run sent."""
    def to_json(self) -> str: ...
    def write_report(self, path: Union[str, "os.PathLike[str]"]) -> None: ...
    def write_junit(self, path: Union[str, "os.PathLike[str]"]) -> None: ...
    def write_timings(self, path: Union[str, "os.PathLike[str]"]) -> None: ...
    def write_trace(self, path: Union[str, "os.PathLike[str]"]) -> None: ...

class Event:
    @property
    def kind(self) -> str:
        """``queued``, ``started``, ``retrying``, ``finished`` or ``run_finished``."""
    @property
    def task(self) -> Optional[AgentTask]: ...
    @property
    def attempt(self) -> Optional[int]: ...
    @property
    def error(self) -> Optional[str]:
        """On ``retrying``: why the attempt failed, in words."""
    @property
    def status(self) -> Optional[str]:
        """On ``retrying``: how the attempt ended, ``failed`` or ``timeout``."""
    @property
    def reason(self) -> Optional[str]:
        """On ``retrying``: why, as a fact: ``timeout``, ``exit_code``,
        ``signal``, ``start_failed``, ``agent_error``, ``panicked``,
        ``execution_lost``, ``worker_lost``…"""
    @property
    def delay_seconds(self) -> Optional[float]:
        """On ``retrying``: the backoff before the next attempt."""
    @property
    def result(self) -> Optional[TaskResult]: ...
    @property
    def results(self) -> Optional[ExecutionResults]: ...

class Run:
    def push(self, task: AgentTask) -> Optional[bool]: ...
    def push_all(self, rest: List[AgentTask]) -> None: ...
    def has_room(self) -> bool: ...
    def input_closed(self) -> bool: ...
    def wait_room(self, fut: "asyncio.Future[None]") -> None: ...
    def end_input(self) -> None: ...
    def interrupt(self, sigint: bool) -> None: ...
    def kill(self, sigint: bool) -> None: ...
    def wait(self, fut: "asyncio.Future[None]") -> None: ...
    def finished(self) -> bool: ...
    def take_events(self) -> Optional[List[Event]]: ...
    def results(self) -> ExecutionResults: ...
    def close(self, event_loop: asyncio.AbstractEventLoop) -> None: ...

class Executor:
    def __init__(
        self,
        *,
        parallel: Optional[bool] = None,
        parallel_limit: Optional[int] = None,
        respect_dependencies: Optional[bool] = None,
        timeout_seconds: Optional[float] = None,
        continue_on_error: Optional[bool] = None,
        max_failures: Optional[int] = None,
        fail_fast: Optional[bool] = None,
        retries: Optional[int] = None,
        retry_backoff_seconds: Optional[float] = None,
        kill_grace_seconds: Optional[float] = None,
        deadline_seconds: Optional[float] = None,
        output_limit_bytes: Optional[int] = None,
        agent_limits: Optional[Mapping[str, int]] = None,
    ) -> None: ...
    def settings(self) -> Dict[str, Any]: ...
    @staticmethod
    def check(tasks: Iterable[AgentTask]) -> List[AgentTask]: ...
    def start(
        self,
        tasks: Optional[List[AgentTask]],
        agents: List[Tuple[str, str, Any, bool]],
        event_loop: asyncio.AbstractEventLoop,
        driver: Any,
        events: bool,
    ) -> Run: ...
