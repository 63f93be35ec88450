"""Timeouts, fail-fast, deadlines and cancellation reach coroutines as
CancelledError; swallowed cancellations are abandoned, never successes."""

import asyncio

import pytest

from agent33_parallel import AgentTask, ParallelExecutor


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_timeout_cancels_the_coroutine_and_finally_runs():
    cleaned = []

    async def forever(task):
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append(task.id)

    r = run(ParallelExecutor(timeout_seconds=0.1).run_all(
        [AgentTask("f", "a")], agents={"f": forever}))
    assert r.failed[0].status == "timeout"
    assert r.failed[0].error.startswith("timed out after")
    assert cleaned == ["f:a"]


def test_task_timeout_beats_the_global_one():
    async def forever(task):
        await asyncio.Event().wait()

    r = run(ParallelExecutor(timeout_seconds=0).run_all(
        [AgentTask("f", "a", timeout_seconds=0.1)], agents={"f": forever}))
    assert r.failed[0].status == "timeout"


def test_fail_fast_cancels_the_others():
    cleaned = []

    async def main():
        blocker_started = asyncio.Event()

        async def block(task):
            blocker_started.set()
            try:
                await asyncio.Event().wait()
            finally:
                cleaned.append(task.id)

        async def fail(task):
            await blocker_started.wait()
            raise RuntimeError("boom")

        return await ParallelExecutor(parallel_limit=2).run_all(
            [AgentTask("block", "a"), AgentTask("fail", "b"), AgentTask("block", "c")],
            agents={"block": block, "fail": fail})

    r = run(main())
    assert [t.status for t in r.failed] == ["failed"]
    assert [(t.task.id, t.status) for t in r.cancelled] == [("block:a", "cancelled"), ("block:c", "cancelled")]
    assert r.cancelled[1].started_at is None
    assert cleaned == ["block:a"]


def test_deadline_cancels_running_coroutines():
    cleaned = []

    async def forever(task):
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append(1)

    r = run(ParallelExecutor(deadline_seconds=0.1, timeout_seconds=0).run_all(
        [AgentTask("f", "a")], agents={"f": forever}))
    assert r.cancelled[0].status == "cancelled"
    assert cleaned == [1]
    assert "deadline" in r.to_json()


@pytest.mark.parametrize("then_return", [False, True])
def test_swallowed_cancellation_is_abandoned_never_a_success(then_return):
    async def main():
        release = asyncio.Event()
        told = []
        finished = asyncio.Event()

        async def stubborn(task):
            try:
                while True:
                    try:
                        await release.wait()
                        break
                    except asyncio.CancelledError:
                        told.append(1)
                        if then_return:
                            return "late but returned"
            finally:
                finished.set()
            return "after release"

        r = await ParallelExecutor(timeout_seconds=0.1, kill_grace_seconds=0.2).run_all(
            [AgentTask("s", "a")], agents={"s": stubborn})
        # The run is over; let the abandoned coroutine end now.
        release.set()
        await asyncio.wait_for(finished.wait(), 60)
        return r, told

    r, told = run(main())
    assert told, "the coroutine was told to stop"
    assert not r.succeeded
    assert r.failed[0].status == "timeout"
    assert r.failed[0].output is None


def test_cancelling_the_awaiting_task_stops_the_run_and_cleans_up():
    cleaned = []

    async def main():
        started = asyncio.Event()

        async def forever(task):
            started.set()
            try:
                await asyncio.Event().wait()
            finally:
                cleaned.append(task.id)

        outer = asyncio.ensure_future(ParallelExecutor().run_all(
            [AgentTask("f", "a")], agents={"f": forever}))
        await started.wait()
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer

    run(main())
    assert cleaned == ["f:a"]


def test_retries_give_the_slot_back_and_count_attempts():
    attempts = []

    async def flaky(task, ctx):
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise RuntimeError(f"attempt {ctx.attempt}")
        return "ok"

    r = run(ParallelExecutor(retries=2, retry_backoff_seconds=0).run_all(
        [AgentTask("flaky", "a")], agents={"flaky": flaky}))
    assert attempts == [1, 2, 3]
    assert r.succeeded[0].attempts == 3
    assert r.metrics["counters"]["task_retry_count"] == 2


def test_a_coroutine_that_never_stops_is_closed_after_the_grace(tmp_path):
    """Abandoned after kill_grace_seconds: closed (its finally runs), so
    neither the run nor asyncio.run's shutdown waits for it forever."""
    import subprocess
    import sys
    import textwrap

    from conftest import HANG

    script = tmp_path / "main.py"
    script.write_text(textwrap.dedent("""
        import asyncio
        from agent33_parallel import AgentTask, ParallelExecutor

        async def stubborn(task):
            try:
                while True:
                    try:
                        await asyncio.Event().wait()
                    except asyncio.CancelledError:
                        print("swallowed", flush=True)
            finally:
                print("finally", flush=True)

        async def main():
            r = await ParallelExecutor(timeout_seconds=0.1, kill_grace_seconds=0.1).run_all(
                [AgentTask("s", "x")], agents={"s": stubborn})
            print(r.failed[0].status, len(r.succeeded), flush=True)

        asyncio.run(main())
        print("exited", flush=True)
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=HANG).stdout.split("\n")
    assert out[0] == "swallowed"
    assert "finally" in out and "timeout 0" in out and out[-2] == "exited"
