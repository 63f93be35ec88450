"""`async for event in executor.run(...)`, its backpressure, and the CLI's
report files written from Python."""

import asyncio
import json
import subprocess
import time

from agent33_parallel import AgentTask, CommandAgent, ExecutionResults, ParallelExecutor

from conftest import HANG, cli_binary, process_gone


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_events_come_in_order_and_end_with_the_results():
    async def flaky(task, ctx):
        if task.artifact == "r" and ctx.attempt == 1:
            raise RuntimeError("once")
        return task.artifact

    async def main():
        ex = ParallelExecutor(parallel_limit=2, retries=1, retry_backoff_seconds=0)
        return [e async for e in ex.run(
            [AgentTask("a", "x"), AgentTask("a", "r")], agents={"a": flaky})]

    events = run(main())
    kinds = [e.kind for e in events]
    assert set(kinds) <= {"queued", "started", "retrying", "finished", "run_finished"}
    assert kinds[-1] == "run_finished" and kinds.count("run_finished") == 1
    assert isinstance(events[-1].results, ExecutionResults)
    assert events[-1].results.total == 2 and events[-1].task is None
    for artifact in ("x", "r"):
        mine = [e.kind for e in events if e.task is not None and e.task.artifact == artifact]
        expected = ["queued", "started", "finished"]
        if artifact == "r":
            expected = ["queued", "started", "retrying", "started", "finished"]
        assert mine == expected, (artifact, mine)
    fin = [e for e in events if e.kind == "finished"]
    assert all(e.result.status == "success" for e in fin)
    assert {e.result.output for e in fin} == {"x", "r"}
    retry = next(e for e in events if e.kind == "retrying")
    assert retry.attempt == 1 and "once" in retry.error


def test_retrying_says_how_and_why_the_attempt_failed():
    async def flaky(task, ctx):
        if ctx.attempt == 1:
            if task.artifact == "slow":
                await asyncio.Event().wait()
            raise RuntimeError("once")
        return task.artifact

    async def main():
        ex = ParallelExecutor(parallel_limit=4, retries=1, retry_backoff_seconds=0.01,
                              timeout_seconds=0.2, continue_on_error=True)
        tasks = [AgentTask("a", "raise"), AgentTask("a", "slow"),
                 AgentTask("exit", "x", retries=1)]
        agents = {"a": flaky, "exit": CommandAgent("exit 3", shell=True)}
        return [e async for e in ex.run(tasks, agents=agents) if e.kind == "retrying"]

    retrying = {e.task.artifact: e for e in run(main())}
    raised, slow, exited = retrying["raise"], retrying["slow"], retrying["x"]
    assert (raised.status, raised.reason, raised.error) == ("failed", "agent_error",
                                                            "RuntimeError: once")
    assert (slow.status, slow.reason) == ("timeout", "timeout")
    assert slow.error.startswith("timed out after")
    assert (exited.status, exited.reason) == ("failed", "exit_code")
    assert "3" in exited.error
    for e in (raised, slow, exited):
        assert e.attempt == 1 and e.delay_seconds >= 0.01 and e.result is None


def test_a_slow_reader_slows_the_run():
    n = 60000
    started = 0

    async def count(task):
        nonlocal started
        started += 1

    async def main():
        ex = ParallelExecutor(parallel_limit=64, agents={"c": count})
        events = ex.run([AgentTask("c", str(i)) for i in range(n)])
        it = events.__aiter__()
        consumed = 0
        await it.__anext__()
        consumed += 1
        # Stall: the loop keeps running agents meanwhile, for long enough
        # that an unbounded run would finish several times over.
        stall_until = time.monotonic() + 1.5
        while time.monotonic() < stall_until:
            await asyncio.sleep(0.001)
        lead = started
        async for _ in it:
            consumed += 1
        return lead, consumed

    lead, consumed = run(main())
    # queued + started + finished per task, and run_finished.
    assert consumed == 3 * n + 1
    # Unread events are bounded (1024 here, 8192 in the engine), so the
    # run cannot get far ahead of its reader.
    assert lead < 10000, lead


def test_breaking_out_of_the_events_stops_the_run():
    cleaned = []

    async def main():
        running = asyncio.Event()

        async def forever(task):
            running.set()
            try:
                await asyncio.Event().wait()
            finally:
                cleaned.append(task.id)

        it = ParallelExecutor(parallel_limit=2).run(
            [AgentTask("f", str(i)) for i in range(4)], agents={"f": forever})
        async for e in it:
            if e.kind == "started":
                break
        # A task cancelled before its coroutine first ran has no finally to
        # run: wait until one runs.
        await running.wait()
        await it.aclose()

    run(main())
    assert cleaned


def test_break_out_of_async_for_cancels_the_run_and_leaves_no_process(tmp_path):
    """Nothing calls aclose() after ``break``: dropping the iterator stops
    the run as aclose() would. Coroutines get CancelledError (their
    finally runs), commands' processes are gone, unstarted tasks never
    start."""
    cleaned = []

    async def until(condition):
        # A hang detector around a condition; the loop must keep turning.
        deadline = time.monotonic() + HANG
        while not condition():
            assert time.monotonic() < deadline, "hang"
            await asyncio.sleep(0.005)

    async def main():
        running = []

        async def forever(task):
            running.append(task.id)
            try:
                await asyncio.Event().wait()
            finally:
                cleaned.append(task.id)

        sleeper = CommandAgent('echo $$ > "$1.tmp" && mv "$1.tmp" "$1" && exec sleep 1000',
                               shell=True)
        pidfiles = [tmp_path / f"pid{i}" for i in range(2)]
        tasks = [AgentTask("sleep", str(p)) for p in pidfiles]
        tasks += [AgentTask("forever", str(i)) for i in range(2)]
        tasks += [AgentTask("sleep", str(tmp_path / "never"))]
        ex = ParallelExecutor(parallel_limit=4, agents={"sleep": sleeper, "forever": forever})
        async for e in ex.run(tasks):
            if e.kind == "started" and e.task.artifact == "1":
                await until(lambda: len(running) == 2 and all(p.exists() for p in pidfiles))
                break
        pids = [int(p.read_text()) for p in pidfiles]
        await until(lambda: len(cleaned) == 2)
        await until(lambda: all(process_gone(pid) for pid in pids))

    run(main())
    assert sorted(cleaned) == ["forever:0", "forever:1"]
    assert not (tmp_path / "never").exists()


def make_results():
    async def agent(task):
        if task.artifact == "bad":
            raise ValueError("missing title")
        return 42

    return run(ParallelExecutor(respect_dependencies=True, continue_on_error=True).run_all(
        [AgentTask("a", "ok"), AgentTask("a", "bad"), AgentTask("a", "skip", depends_on=["a:bad"])],
        agents={"a": agent}))


def test_to_json_has_exactly_the_cli_report_schema(tmp_path):
    r = make_results()
    doc = json.loads(r.to_json())
    cli = cli_binary()
    report = tmp_path / "cli.json"
    subprocess.run(
        [cli, "run", "--parallel", "--continue-on-error", "--report", str(report),
         "--shell", "--command", 'test "$1" = ok', ":::", "ok", "bad"],
        capture_output=True, timeout=60)
    expected = json.loads(report.read_text())
    assert set(doc) == set(expected)
    assert set(doc["succeeded"][0]) == set(expected["succeeded"][0])
    assert set(doc["failed"][0]) == set(expected["failed"][0])
    assert set(doc["succeeded"][0]["task"]) == set(expected["succeeded"][0]["task"])
    assert set(doc["attempts"][0]) == set(expected["attempts"][0])
    assert set(doc["metrics"]) == set(expected["metrics"])
    assert doc["succeeded"][0]["output"] == "42"
    assert doc["failed"][0]["error"] == "ValueError: missing title"
    assert doc["total"] == 3 and len(doc["skipped"]) == 1


def test_report_files_are_the_clis_and_it_reads_them(tmp_path):
    r = make_results()
    paths = {k: tmp_path / f"run.{k}" for k in ("json", "xml", "html", "trace")}
    r.write_report(paths["json"])
    r.write_junit(str(paths["xml"]))
    r.write_timings(paths["html"])
    r.write_trace(paths["trace"])
    assert json.loads(paths["json"].read_text()) == json.loads(r.to_json())
    assert "<testsuite" in paths["xml"].read_text()
    assert "<html" in paths["html"].read_text().lower()
    assert json.loads(paths["trace"].read_text())
    cli = cli_binary()
    out = subprocess.run([cli, "report", str(paths["json"]), "--timings", str(tmp_path / "again.html")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode in (0, 1), out.stderr
    assert (tmp_path / "again.html").exists()
