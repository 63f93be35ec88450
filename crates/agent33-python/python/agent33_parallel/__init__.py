"""Parallel execution control for AGENT-33's agents, on the agent-33 engine.

The seed's example keeps its shape::

    @agent("refinement")
    async def refine(task):
        return f"refined {task.artifact}"

    results = await ParallelExecutor(parallel_limit=4).run_all(
        [AgentTask("refinement", artifact="core/prompts/SYSTEM.md")])

The engine (the Rust crate agent33-parallel) decides admission, limits,
timeouts, fail-fast, retries, dependencies and the results; this module
only finds each task's agent, runs coroutine agents on the caller's running
event loop, and turns Ctrl-C into the CLI's SIGINT stop. See the package's
contract, PRODUCT-python.md.
"""

from __future__ import annotations

import asyncio
import collections.abc
import inspect
import signal
import threading
from collections import deque
from typing import (
    Any,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Deque,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Set,
    Tuple,
    TypeVar,
    Union,
)

from ._native import (
    AgentTask,
    CommandAgent,
    Event,
    ExecutionResults,
    LlmAgent,
    Provider,
    TaskContext,
    TaskResult,
)
from ._native import Executor as _Executor
from ._native import Run as _Run

__all__ = [
    "AgentTask",
    "CommandAgent",
    "Event",
    "ExecutionResults",
    "LlmAgent",
    "ParallelExecutor",
    "Provider",
    "TaskContext",
    "TaskResult",
    "agent",
    "registered_agents",
]

AgentFunction = Callable[..., Any]
"""An agent: ``async def f(task)`` or ``async def f(task, ctx)``, or a plain
``def`` (run in a worker thread)."""

AgentLike = Union[AgentFunction, CommandAgent, LlmAgent]

F = TypeVar("F", bound=AgentFunction)

_REGISTRY: Dict[str, AgentLike] = {}


def agent(name: str) -> Callable[[F], F]:
    """Registers the decorated function process-wide as the agent ``name``.

    An ``agents={name: fn}`` mapping given to ``ParallelExecutor`` or
    ``run_all`` wins over the registry.
    """
    if not isinstance(name, str):
        raise TypeError(f"agent name must be a str, got {type(name).__name__}")

    def register(fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"@agent({name!r}) must decorate a function, got {type(fn).__name__}")
        _REGISTRY[name] = fn
        return fn

    return register


def registered_agents() -> Dict[str, AgentLike]:
    """A copy of the process-wide registry filled by ``@agent``."""
    return dict(_REGISTRY)


def _check_agents(agents: Optional[Mapping[str, AgentLike]]) -> Dict[str, AgentLike]:
    if agents is None:
        return {}
    if not isinstance(agents, Mapping):
        raise TypeError(f"agents must be a mapping of name to agent, got {type(agents).__name__}")
    for name, fn in agents.items():
        if not isinstance(name, str):
            raise TypeError(f"agents: names must be str, got {type(name).__name__}")
        if not (isinstance(fn, (CommandAgent, LlmAgent)) or callable(fn)):
            raise TypeError(
                f"agents[{name!r}] must be a function, a CommandAgent or an LlmAgent, got {type(fn).__name__}"
            )
    return dict(agents)


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)
    )


def _wants_context(fn: Any) -> bool:
    """Whether the agent declares a second positional parameter."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = 0
    for p in params:
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            return True
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            positional += 1
    return positional >= 2


def _agent_specs(
    tasks: Optional[List[AgentTask]], *mappings: Dict[str, AgentLike]
) -> List[Tuple[str, str, Any, bool]]:
    """(name, kind, agent, wants_context) for each agent the tasks name and
    some mapping has (every agent of the mappings for streamed tasks, whose
    names are not known yet); later mappings win. A name nobody has is left
    out: the engine fails its tasks with ``no agent named `x` ``."""
    found: Dict[str, AgentLike] = {}
    for mapping in mappings:
        found.update(mapping)
    names = found.keys() if tasks is None else {t.agent for t in tasks}
    specs: List[Tuple[str, str, Any, bool]] = []
    for name in names:
        fn = found.get(name)
        if fn is None:
            continue
        if isinstance(fn, CommandAgent):
            specs.append((name, "command", fn, False))
        elif isinstance(fn, LlmAgent):
            specs.append((name, "llm", fn, False))
        else:
            specs.append((name, "async" if _is_async(fn) else "sync", fn, _wants_context(fn)))
    return specs


Tasks = Union[Iterable[AgentTask], AsyncIterable[AgentTask]]
"""What ``run_all`` and ``run`` take: a list or tuple (checked whole before
the run starts), or any other iterable or async iterable, such as a
generator (streamed: read as the run wants tasks)."""


def _known(tasks: Tasks) -> Optional[List[AgentTask]]:
    """The tasks of a list or tuple (or any sized collection), checked as
    the CLI checks them; None for an iterator or async iterable, which is
    streamed."""
    if isinstance(tasks, collections.abc.Collection):
        return _Executor.check(tasks)
    if isinstance(tasks, (collections.abc.Iterable, collections.abc.AsyncIterable)):
        return None
    raise TypeError(f"tasks must be an iterable of AgentTask, got {type(tasks).__name__}")


class _Feeder:
    """Hands streamed tasks to a run as the engine reads them: the next
    task is pulled only when the run has room for it (a few ahead of the
    running tasks), so a generator is never read whole. A task naming one
    that has not come yet needs the whole list, as the CLI's checks do: the
    rest is read and checked with everything before it. A task that does
    not pass the checks, or an exception of the iterator itself, stops the
    run; ``error`` keeps it for the caller to raise once the run is over."""

    def __init__(self, run: _Run, tasks: Tasks, loop: asyncio.AbstractEventLoop) -> None:
        self.error: Optional[BaseException] = None
        self._run = run
        self._loop = loop
        self._task = loop.create_task(self._feed(tasks))

    async def _wanted(self) -> bool:
        """Waits until the run wants another task; False once it reads no
        more."""
        run = self._run
        while not run.has_room():
            if run.input_closed():
                return False
            fut = self._loop.create_future()
            run.wait_room(fut)
            await fut
        return True

    async def _feed(self, tasks: Tasks) -> None:
        run = self._run
        try:
            if isinstance(tasks, collections.abc.AsyncIterable):
                items = tasks.__aiter__()
                while await self._wanted():
                    try:
                        task = await items.__anext__()
                    except StopAsyncIteration:
                        break
                    if run.push(task) is None:
                        rest = [task]
                        while True:
                            try:
                                rest.append(await items.__anext__())
                            except StopAsyncIteration:
                                break
                        run.push_all(rest)
                        break
            else:
                it = iter(tasks)
                while await self._wanted():
                    for task in it:
                        room = run.push(task)
                        if room is None:
                            run.push_all([task, *it])
                            return
                        if not room:
                            break  # full: wait for room before pulling more
                    else:
                        break  # the iterator ended
        except asyncio.CancelledError:
            pass  # the run is over or being stopped: nothing to keep
        except BaseException as e:
            self.error = e
            run.interrupt(False)
        finally:
            run.end_input()

    def cancel(self) -> None:
        """Stops pulling tasks (an iterator may wait forever for its next)."""
        self._task.cancel()


async def _drive(coro: Awaitable[Any], done: Any) -> None:
    """Runs one attempt of a coroutine agent as an asyncio task and tells
    the engine how it ended (CancelledError included)."""
    try:
        value = await coro
    except BaseException as e:
        done.error(e)
        if not isinstance(e, (Exception, asyncio.CancelledError)):
            raise  # KeyboardInterrupt, SystemExit: not the agent's to keep
    else:
        done.ok(value)


class _Sigint:
    """Ctrl-C while runs are going on stops them as SIGINT stops the CLI's
    run (a second Ctrl-C kills), instead of asyncio's default of cancelling
    the main task at whatever it awaits. Installed while at least one run of
    this thread's loop is active, in the main thread only."""

    active: Set["_Sigint"] = set()
    saved: Any = None
    installed = False

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.count = 0

    @classmethod
    def _handler(cls, signum: int, frame: Any) -> None:
        for guard in list(cls.active):
            guard.count += 1
            if guard.count == 1:
                guard.run.interrupt(True)
            else:
                guard.run.kill(True)

    def __enter__(self) -> "_Sigint":
        cls = _Sigint
        if not cls.active and threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous is not signal.SIG_IGN:
                try:
                    signal.signal(signal.SIGINT, cls._handler)
                    cls.saved, cls.installed = previous, True
                except ValueError:
                    cls.installed = False
        cls.active.add(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        cls = _Sigint
        cls.active.discard(self)
        if not cls.active and cls.installed:
            signal.signal(signal.SIGINT, cls.saved)
            cls.saved, cls.installed = None, False

    @property
    def interrupted(self) -> bool:
        return self.count > 0


class _Default(int):
    """A default that shows as its number in the signature but can be told
    apart from the same number given explicitly: giving ``parallel_limit``
    means parallel, and ``max_failures`` conflicts with
    ``continue_on_error=True``, whatever value is given."""


_LIMIT = _Default(4)
_MAX_FAILURES = _Default(1)


def _given(value: Any) -> Any:
    return None if isinstance(value, _Default) else value


class ParallelExecutor:
    """Runs agent tasks with the engine's guarantees.

    Every setting of PRODUCT.md is a keyword with the same name and
    default: ``parallel`` (False; giving ``parallel_limit`` or
    ``respect_dependencies=True`` means parallel unless ``parallel`` is
    given), ``parallel_limit`` (4), ``respect_dependencies`` (False),
    ``timeout_seconds`` (300; 0 or None: none), ``continue_on_error``
    (False), ``max_failures`` (1; not together with
    ``continue_on_error=True``), ``fail_fast`` (True), ``retries`` (0),
    ``retry_backoff_seconds`` (1), ``kill_grace_seconds`` (5),
    ``deadline_seconds`` (0: none), ``output_limit_bytes`` (1048576), plus
    ``agent_limits`` ({agent: limit}) and ``agents`` ({name: agent}, which
    wins over the ``@agent`` registry).
    """

    def __init__(
        self,
        *,
        parallel: Optional[bool] = None,
        parallel_limit: int = _LIMIT,
        respect_dependencies: bool = False,
        timeout_seconds: Optional[float] = 300,
        continue_on_error: bool = False,
        max_failures: int = _MAX_FAILURES,
        fail_fast: bool = True,
        retries: int = 0,
        retry_backoff_seconds: float = 1,
        kill_grace_seconds: float = 5,
        deadline_seconds: Optional[float] = 0,
        output_limit_bytes: int = 1024 * 1024,
        agent_limits: Optional[Mapping[str, int]] = None,
        agents: Optional[Mapping[str, AgentLike]] = None,
    ) -> None:
        self._native = _Executor(
            parallel=parallel,
            parallel_limit=_given(parallel_limit),
            respect_dependencies=respect_dependencies,
            timeout_seconds=0 if timeout_seconds is None else timeout_seconds,
            continue_on_error=continue_on_error,
            max_failures=_given(max_failures),
            fail_fast=fail_fast,
            retries=retries,
            retry_backoff_seconds=retry_backoff_seconds,
            kill_grace_seconds=kill_grace_seconds,
            deadline_seconds=0 if deadline_seconds is None else deadline_seconds,
            output_limit_bytes=output_limit_bytes,
            agent_limits=agent_limits,
        )
        self._agents = _check_agents(agents)

    @property
    def settings(self) -> Dict[str, Any]:
        """The effective settings, by name."""
        return self._native.settings()

    def _start(
        self, tasks: Tasks, known: Optional[List[AgentTask]], agents: Dict[str, AgentLike],
        events: bool,
    ) -> Tuple[_Run, asyncio.AbstractEventLoop, Optional[_Feeder]]:
        """Starts the run over the checked list ``known``, or, when None,
        over ``tasks`` streamed by a feeder."""
        loop = asyncio.get_running_loop()
        specs = _agent_specs(known, _REGISTRY, self._agents, agents)
        run = self._native.start(known, specs, loop, _drive, events)
        feeder = None if known is not None else _Feeder(run, tasks, loop)
        return run, loop, feeder

    async def run_all(
        self,
        tasks: Tasks,
        *,
        agents: Optional[Mapping[str, AgentLike]] = None,
    ) -> ExecutionResults:
        """Runs every task and returns the results.

        A list or tuple is checked before anything runs: duplicate ids,
        unknown dependencies and cycles raise ValueError with the CLI's
        message. Any other iterable, a generator or an async iterable, is
        streamed: read as the run has room, so it is never held whole. Each
        streamed task is checked against those before it; one naming a task
        that has not come yet makes the rest be read and checked whole, as
        a list is. A task that fails the checks stops the run, and once it
        is over the ValueError is raised (the CLI's message), as is anything
        the iterator raised. When a run stops
        early, a list's unstarted tasks are reported ``cancelled``; a
        stream's tasks not yet read are not read at all. Ctrl-C stops the run
        like SIGINT stops the CLI's, then raises KeyboardInterrupt;
        cancelling the awaiting task stops it the same way, then raises
        CancelledError.
        """
        known = _known(tasks)
        extra = _check_agents(agents)
        run, loop, feeder = self._start(tasks, known, extra, events=False)
        cancelled = False
        try:
            with _Sigint(run) as sigint:
                while not run.finished():
                    fut = loop.create_future()
                    run.wait(fut)
                    try:
                        await fut
                    except asyncio.CancelledError:
                        # Stop, and still wait for the agents' cleanup; a
                        # second cancellation kills.
                        if cancelled:
                            run.kill(False)
                        else:
                            run.interrupt(False)
                        cancelled = True
        finally:
            if feeder is not None:
                feeder.cancel()
            run.close(loop)
        if sigint.interrupted:
            raise KeyboardInterrupt
        if cancelled:
            raise asyncio.CancelledError
        if feeder is not None and feeder.error is not None:
            raise feeder.error
        return run.results()

    def run(
        self,
        tasks: Tasks,
        *,
        agents: Optional[Mapping[str, AgentLike]] = None,
    ) -> "EventIterator":
        """The run's events, for ``async for``: ``queued``, ``started``,
        ``retrying``, ``finished`` per task, then ``run_finished`` with the
        results. A slow consumer slows the run. A list or tuple is checked
        now; other iterables are streamed as in ``run_all``, from the first
        event on, and what stops their run is raised by the iterator."""
        return EventIterator(self, tasks, _known(tasks), _check_agents(agents))


class EventIterator:
    """The events of one run (``ParallelExecutor.run``); the run starts at
    the first ``__anext__``."""

    def __init__(
        self,
        executor: ParallelExecutor,
        tasks: Tasks,
        known: Optional[List[AgentTask]],
        agents: Dict[str, AgentLike],
    ) -> None:
        self._executor = executor
        self._tasks = tasks
        self._known = known
        self._agents = agents
        self._run: Optional[_Run] = None
        self._feeder: Optional[_Feeder] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._sigint: Optional[_Sigint] = None
        self._buffer: Deque[Event] = deque()
        self._closed = False

    def __aiter__(self) -> "EventIterator":
        return self

    async def __anext__(self) -> Event:
        if self._buffer:
            return self._buffer.popleft()
        if self._closed:
            raise StopAsyncIteration
        if self._run is None:
            self._run, self._loop, self._feeder = self._executor._start(
                self._tasks, self._known, self._agents, events=True)
            self._sigint = _Sigint(self._run).__enter__()
        run, loop = self._run, self._loop
        assert loop is not None
        while True:
            events = run.take_events()
            if events is None:
                interrupted = self._finish()
                if interrupted:
                    raise KeyboardInterrupt
                error = self._failed()
                if error is not None:
                    raise error
                raise StopAsyncIteration
            if events:
                if events[-1].kind == "run_finished" and self._failed() is not None:
                    continue  # the feeder's error is raised instead
                self._buffer.extend(events)
                return self._buffer.popleft()
            fut = loop.create_future()
            run.wait(fut)
            try:
                await fut
            except asyncio.CancelledError:
                await self._stop()
                raise

    def _failed(self) -> Optional[BaseException]:
        """What stopped the streamed input, if anything did."""
        return None if self._feeder is None else self._feeder.error

    def _finish(self) -> bool:
        self._closed = True
        if self._feeder is not None:
            self._feeder.cancel()
        interrupted = False
        if self._sigint is not None:
            self._sigint.__exit__(None, None, None)
            interrupted = self._sigint.interrupted
            self._sigint = None
        if self._run is not None and self._loop is not None:
            self._run.close(self._loop)
        return interrupted

    async def _stop(self) -> None:
        """Stops the run and waits for it, reading no more events."""
        run, loop = self._run, self._loop
        if run is None or loop is None or self._closed:
            self._closed = True
            return
        run.interrupt(False)
        killed = False
        while not run.finished():
            run.take_events()
            fut = loop.create_future()
            run.wait(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if not killed:
                    run.kill(False)
                    killed = True
        self._finish()

    async def aclose(self) -> None:
        """Stops the run if it is still going, and waits for its agents."""
        await self._stop()

    def __del__(self) -> None:
        """Dropped mid-run, as ``break`` out of ``async for`` leaves it:
        the run is stopped as ``aclose()`` stops it (agents cancelled,
        processes given their grace), in a task of its own, as the loop
        does for an abandoned async generator. Off its loop's thread, or
        with the loop gone, it can only be killed."""
        if self._run is None or self._closed:
            return
        try:
            running: Optional[asyncio.AbstractEventLoop] = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and running is self._loop and not running.is_closed():
            task = running.create_task(self._stop())
            _STOPPING.add(task)
            task.add_done_callback(_STOPPING.discard)
            return
        self._run.kill(False)
        try:
            self._finish()
        except Exception:
            pass


_STOPPING: Set["asyncio.Task[None]"] = set()
"""Runs being stopped after their event iterator was dropped: the loop
keeps only weak references to tasks."""
