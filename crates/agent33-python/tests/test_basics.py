"""Agents, the registry, tasks, settings, results and validation."""

import asyncio
import datetime
import inspect
import pathlib
import subprocess
import sys
import threading

import pytest

import agent33_parallel
from agent33_parallel import AgentTask, ParallelExecutor, TaskResult, agent

from conftest import REPO


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_the_seed_example_prints_its_summary():
    out = subprocess.run(
        [sys.executable, str(REPO / "examples" / "refine.py")],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert out == "Completed: 2/3\nFailed: ['core/agents/worker.md']\n"


def test_package_is_typed():
    folder = pathlib.Path(agent33_parallel.__file__).parent
    assert (folder / "py.typed").exists()
    assert (folder / "_native.pyi").exists()


def test_registry_and_mapping_the_mapping_wins():
    @agent("t-reg")
    async def registered(task):
        return "registry"

    async def mapped(task):
        return "mapping"

    async def main():
        r1 = await ParallelExecutor().run_all([AgentTask("t-reg", "a")])
        r2 = await ParallelExecutor(agents={"t-reg": mapped}).run_all([AgentTask("t-reg", "a")])
        r3 = await ParallelExecutor().run_all([AgentTask("t-reg", "a")], agents={"t-reg": mapped})
        return r1, r2, r3

    r1, r2, r3 = run(main())
    assert [r.succeeded[0].output for r in (r1, r2, r3)] == ["registry", "mapping", "mapping"]


def test_unknown_agent_fails_as_in_rust():
    r = run(ParallelExecutor(continue_on_error=True).run_all([AgentTask("nobody-has-this", "a")]))
    assert r.failed[0].status == "failed"
    assert r.failed[0].error == "no agent named `nobody-has-this`"
    assert r.failed[0].started_at is None


def test_context_second_parameter():
    seen = []

    async def two(task, ctx):
        seen.append((ctx.attempt, ctx.task_id, ctx.run_id))
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return ctx.attempt

    r = run(ParallelExecutor(retries=1, retry_backoff_seconds=0).run_all(
        [AgentTask("two", "x", id="my-id")], agents={"two": two}))
    assert r.succeeded[0].output == 2
    assert r.succeeded[0].attempts == 2
    assert [s[:2] for s in seen] == [(1, "my-id"), (2, "my-id")]
    assert seen[0][2] and seen[0][2] == seen[1][2]


def test_output_is_the_python_object_and_json_writes_str():
    import json

    async def obj(task):
        return {"n": 1} if task.artifact == "d" else None

    r = run(ParallelExecutor().run_all(
        [AgentTask("o", "d"), AgentTask("o", "none")], agents={"o": obj}))
    assert r.succeeded[0].output == {"n": 1}
    assert r.succeeded[1].output is None
    doc = json.loads(r.to_json())
    assert [t["output"] for t in doc["succeeded"]] == ["{'n': 1}", ""]


def test_exception_is_a_failed_task_with_its_traceback():
    async def bad(task):
        raise ValueError("missing title")

    r = run(ParallelExecutor().run_all([AgentTask("bad", "w.md")], agents={"bad": bad}))
    f = r.failed[0]
    assert (f.status, f.error) == ("failed", "ValueError: missing title")
    assert isinstance(f.traceback, str) and "missing title" in f.traceback
    assert "Traceback" in f.traceback
    assert f.exit_code is None and f.stderr == ""


def test_sync_agent_runs_in_a_worker_thread():
    main_thread = threading.get_ident()

    def plain(task):
        return threading.get_ident()

    r = run(ParallelExecutor().run_all([AgentTask("plain", "a")], agents={"plain": plain}))
    assert r.succeeded[0].output != main_thread


def test_sync_agent_timeout_is_recorded_at_once_and_its_return_discarded():
    release = threading.Event()
    returned = threading.Event()

    def stuck(task):
        release.wait(60)
        returned.set()
        return "late"

    r = run(ParallelExecutor(timeout_seconds=0.2, kill_grace_seconds=30).run_all(
        [AgentTask("stuck", "a")], agents={"stuck": stuck}))
    # The grace is 30 s: the run did not wait for the thread.
    assert r.failed[0].status == "timeout"
    assert r.failed[0].output is None
    release.set()
    assert returned.wait(60)
    assert r.failed[0].status == "timeout" and not r.succeeded


def test_agent_task_fields_and_default_id():
    t = AgentTask("refinement", "core/a.md")
    assert (t.agent, t.artifact, t.id, t.depends_on, t.timeout_seconds, t.retries) == (
        "refinement", "core/a.md", "refinement:core/a.md", (), None, None)
    t = AgentTask("a", artifact="x", id="i", depends_on=["j"], timeout_seconds=1.5, retries=2)
    assert (t.id, t.depends_on, t.timeout_seconds, t.retries) == ("i", ("j",), 1.5, 2)
    with pytest.raises(TypeError):
        AgentTask("a", "x", "positional-id")
    with pytest.raises(ValueError, match="timeout_seconds"):
        AgentTask("a", "x", timeout_seconds=-1)
    with pytest.raises(ValueError, match="retries"):
        AgentTask("a", "x", retries=-1)


def test_settings_defaults_match_the_contract():
    s = ParallelExecutor().settings
    assert s == {
        "parallel": False, "parallel_limit": 4, "respect_dependencies": False,
        "timeout_seconds": 300.0, "continue_on_error": False, "max_failures": 1,
        "fail_fast": True, "retries": 0, "retry_backoff_seconds": 1.0,
        "kill_grace_seconds": 5.0, "deadline_seconds": None,
        "output_limit_bytes": 1048576, "agent_limits": {},
    }
    params = inspect.signature(ParallelExecutor).parameters
    assert set(s) <= set(params)
    for name, value in s.items():
        if name not in ("parallel", "agent_limits"):
            default = params[name].default
            assert default == value or (default == 0 and value is None), name


def test_parallel_limit_means_parallel_unless_parallel_is_given():
    assert ParallelExecutor(parallel_limit=4).settings["parallel"] is True
    assert ParallelExecutor(parallel_limit=4, parallel=False).settings["parallel"] is False
    assert ParallelExecutor(respect_dependencies=True).settings["parallel"] is True
    assert ParallelExecutor(timeout_seconds=0).settings["timeout_seconds"] is None
    assert ParallelExecutor(timeout_seconds=None).settings["timeout_seconds"] is None


@pytest.mark.parametrize("kwargs, error, name", [
    ({"parallel_limit": 0}, ValueError, "parallel_limit"),
    ({"parallel_limit": -3}, ValueError, "parallel_limit"),
    ({"parallel_limit": "8"}, TypeError, "parallel_limit"),
    ({"parallel_limit": 2.5}, ValueError, "parallel_limit"),
    ({"max_failures": 0}, ValueError, "max_failures"),
    ({"timeout_seconds": -1}, ValueError, "timeout_seconds"),
    ({"timeout_seconds": float("nan")}, ValueError, "timeout_seconds"),
    ({"timeout_seconds": "300"}, TypeError, "timeout_seconds"),
    ({"retries": -1}, ValueError, "retries"),
    ({"retry_backoff_seconds": -0.5}, ValueError, "retry_backoff_seconds"),
    ({"kill_grace_seconds": -1}, ValueError, "kill_grace_seconds"),
    ({"deadline_seconds": -1}, ValueError, "deadline_seconds"),
    ({"output_limit_bytes": -1}, ValueError, "output_limit_bytes"),
    ({"fail_fast": "yes"}, TypeError, "fail_fast"),
    ({"parallel": 1}, TypeError, "parallel"),
    ({"agent_limits": {"a": 0}}, ValueError, "agent_limits"),
    ({"agent_limits": [1]}, TypeError, "agent_limits"),
    ({"paralel_limit": 4}, TypeError, "paralel_limit"),
    ({"continue_on_error": True, "max_failures": 3}, ValueError, "max_failures"),
])
def test_invalid_settings_name_the_keyword(kwargs, error, name):
    with pytest.raises(error, match=name):
        ParallelExecutor(**kwargs)


def test_continue_on_error_with_max_failures_is_the_engines_refusal():
    with pytest.raises(ValueError) as e:
        ParallelExecutor(continue_on_error=True, max_failures=3)
    assert str(e.value).startswith(
        "continue_on_error and max_failures (3) cannot be given together"), str(e.value)


def test_continue_on_error_false_with_max_failures_is_fine():
    ParallelExecutor(continue_on_error=False, max_failures=3)


def test_plan_errors_have_the_cli_text_and_nothing_runs():
    ran = []

    async def a(task):
        ran.append(task.id)

    ex = ParallelExecutor(respect_dependencies=True, agents={"a": a})
    cycle = [AgentTask("a", "1", id="x", depends_on=["y"]), AgentTask("a", "2", id="y", depends_on=["x"])]
    with pytest.raises(ValueError, match="^dependency cycle: x → y → x$"):
        run(ex.run_all(cycle))
    with pytest.raises(ValueError, match="^task `x` depends on unknown task `nope`$"):
        run(ex.run_all([AgentTask("a", "1", id="x", depends_on=["nope"])]))
    with pytest.raises(ValueError, match="dependency cycle"):
        ex.run(cycle)
    with pytest.raises(ValueError, match="duplicate task id `a:1`"):
        run(ex.run_all([AgentTask("a", "1"), AgentTask("a", "1")]))
    assert ran == []


def test_results_fields_and_lists_in_input_order():
    async def ok(task):
        if task.artifact == "bad":
            raise RuntimeError("no")
        return task.artifact

    tasks = [AgentTask("ok", str(i)) for i in range(5)] + [
        AgentTask("ok", "bad", id="bad"),
        AgentTask("ok", "after", depends_on=["bad"]),
    ]
    r = run(ParallelExecutor(respect_dependencies=True, continue_on_error=True).run_all(
        tasks, agents={"ok": ok}))
    assert r.total == 7
    assert [t.output for t in r.succeeded] == ["0", "1", "2", "3", "4"]
    assert [t.task.id for t in r.failed] == ["bad"]
    assert [t.status for t in r.skipped] == ["skipped"]
    assert r.skipped[0].started_at is None and r.skipped[0].finished_at is None
    assert r.cancelled == []
    assert r.success_rate == pytest.approx(5 / 7)
    assert isinstance(r.duration_ms, int)
    t = r.succeeded[0]
    assert isinstance(t, TaskResult)
    assert t.task is tasks[0]
    for name in ("task", "status", "duration_ms", "output", "error", "attempts", "started_at",
                 "finished_at", "traceback", "stderr", "exit_code"):
        assert hasattr(t, name), name
    assert t.started_at.tzinfo is not None
    assert t.started_at.utcoffset() == datetime.timedelta(0)
    assert t.finished_at >= t.started_at
    assert (t.error, t.traceback, t.exit_code, t.attempts) == (None, None, None, 1)
    m = r.metrics
    assert m["counters"]["tasks_total"] == 7
    assert m["counters"]["tasks_succeeded"] == 5
    assert m["counters"]["tasks_skipped"] == 1
    assert set(m) == {"counters", "gauges", "timers"}


def test_sequential_by_default_and_agent_limits():
    async def main(executor, n):
        running = 0
        peak = 0

        async def count(task):
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            # Let every task that can start, start, before any ends.
            for _ in range(20):
                await asyncio.sleep(0)
            running -= 1

        await executor.run_all([AgentTask("c", str(i)) for i in range(n)], agents={"c": count})
        return peak

    assert run(main(ParallelExecutor(), 6)) == 1
    assert run(main(ParallelExecutor(parallel_limit=8, agent_limits={"c": 2}), 6)) <= 2
    assert run(main(ParallelExecutor(parallel_limit=3), 12)) <= 3


def test_the_package_and_the_example_type_check_strictly(tmp_path):
    """The stub and the annotations agree: mypy --strict finds nothing."""
    pytest.importorskip("mypy")
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "-p", "agent33_parallel"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", str(REPO / "examples" / "refine.py")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


def test_tasks_may_come_from_a_generator_or_an_async_iterable():
    async def echo(task):
        return task.artifact

    def generated():
        for i in range(3):
            yield AgentTask("echo", f"g{i}")

    async def arriving():
        for i in range(3):
            await asyncio.sleep(0)
            yield AgentTask("echo", f"a{i}")

    async def main():
        executor = ParallelExecutor(parallel_limit=2, agents={"echo": echo})
        from_gen = await executor.run_all(generated())
        from_async = await executor.run_all(arriving())
        seen = [e.result.output async for e in executor.run(arriving()) if e.kind == "finished"]
        return from_gen, from_async, seen

    from_gen, from_async, seen = asyncio.run(main())
    assert [r.output for r in from_gen.succeeded] == ["g0", "g1", "g2"]
    assert [r.output for r in from_async.succeeded] == ["a0", "a1", "a2"]
    assert sorted(seen) == ["a0", "a1", "a2"]
