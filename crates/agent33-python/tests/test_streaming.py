"""Tasks from generators and async iterables: streamed into the engine as
it has room, never read whole, checked against the tasks before them (and
read whole only when a task names one that has not come yet)."""

import asyncio
import itertools

import pytest

from agent33_parallel import AgentTask, ParallelExecutor


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


class Counting:
    """A task source that counts how many tasks were pulled from it, and
    an agent that records, at each task's end, how far the source was
    read ahead of the finished tasks."""

    def __init__(self):
        self.pulled = 0
        self.finished = 0
        self.lead = 0

    def tasks(self, n, agent="w"):
        for i in range(n):
            self.pulled += 1
            yield AgentTask(agent, str(i))

    async def atasks(self, n, agent="w"):
        for i in range(n):
            await asyncio.sleep(0)
            self.pulled += 1
            yield AgentTask(agent, str(i))

    async def agent(self, task):
        # A few turns of the loop, so that tasks overlap and the feeder
        # gets every chance to run ahead.
        for _ in range(3):
            await asyncio.sleep(0)
        self.lead = max(self.lead, self.pulled - self.finished)
        self.finished += 1


@pytest.mark.parametrize("source", ["generator", "async generator"])
def test_a_generator_is_read_only_a_little_ahead_of_the_finished_tasks(source):
    limit = 16
    n = 20000
    c = Counting()
    tasks = c.tasks(n) if source == "generator" else c.atasks(n)
    r = run(ParallelExecutor(parallel_limit=limit, agents={"w": c.agent}).run_all(tasks))
    assert r.total == n and len(r.succeeded) == n
    assert [t.task.artifact for t in r.succeeded[:3]] == ["0", "1", "2"]
    # The running tasks, the feed's room (the limit) and the one in hand:
    # a small multiple of the limit, not the 20,000 a list would hold.
    assert c.lead <= 3 * limit, c.lead
    assert c.lead >= limit  # it did run tasks side by side


def test_the_events_of_a_streamed_run_are_in_order_and_lazy():
    limit = 4
    c = Counting()

    async def main():
        ex = ParallelExecutor(parallel_limit=limit, agents={"w": c.agent})
        return [e async for e in ex.run(c.tasks(500))]

    events = run(main())
    assert events[-1].kind == "run_finished" and events[-1].results.total == 500
    queued = [e.task.artifact for e in events if e.kind == "queued"]
    assert queued == [str(i) for i in range(500)]
    assert c.lead <= 4 * limit, c.lead


def test_fail_fast_stops_reading_an_endless_generator():
    pulled = itertools.count()

    def endless():
        for i in itertools.count():
            next(pulled)
            yield AgentTask("w", str(i))

    async def work(task):
        await asyncio.sleep(0)
        if task.artifact == "50":
            raise RuntimeError("boom")

    r = run(ParallelExecutor(parallel_limit=4, agents={"w": work}).run_all(endless()))
    assert [t.task.artifact for t in r.failed] == ["50"]
    # The stream is abandoned at the stop: what was never read is not part
    # of the run, and reading stopped near where the failure was.
    assert r.total == len(r.succeeded) + len(r.failed) + len(r.cancelled)
    assert next(pulled) < 100


def test_a_stop_ends_the_run_while_an_async_iterable_waits_for_more():
    """A queue-fed async iterable may wait forever for its next task: a
    stop (here fail-fast) ends the run all the same, and the iterable is
    closed."""
    closed = []

    async def arriving():
        try:
            yield AgentTask("w", "ok")
            yield AgentTask("w", "bad")
            await asyncio.Event().wait()  # nothing more arrives
        finally:
            closed.append(True)

    async def work(task):
        if task.artifact == "bad":
            raise RuntimeError("boom")

    async def main():
        r = await ParallelExecutor(parallel_limit=2, agents={"w": work}).run_all(arriving())
        # The feeder's cancellation reaches the generator at the loop's next turn.
        for _ in range(10):
            await asyncio.sleep(0)
        return r

    r = run(main())
    assert [t.task.artifact for t in r.failed] == ["bad"]
    assert closed == [True]


def test_streamed_tasks_may_depend_on_earlier_ones():
    order = []

    async def work(task):
        await asyncio.sleep(0.01 if task.artifact == "slow" else 0)
        if task.artifact == "bad":
            raise ValueError("no")
        order.append(task.id)

    def tasks():
        yield AgentTask("w", "slow", id="slow")
        yield AgentTask("w", "bad", id="bad")
        yield AgentTask("w", "after-slow", id="after", depends_on=["slow"])
        yield AgentTask("w", "after-bad", id="skipped", depends_on=["bad"])
        yield AgentTask("w", "last", id="last", depends_on=("skipped",))

    r = run(ParallelExecutor(parallel_limit=4, respect_dependencies=True,
                             continue_on_error=True, agents={"w": work}).run_all(tasks()))
    assert order.index("after") > order.index("slow")
    assert [t.task.id for t in r.skipped] == ["skipped", "last"]
    assert r.skipped[0].error == "skipped: dependency `bad` did not succeed"
    assert r.skipped[1].error == "skipped: dependency `skipped` did not succeed"


@pytest.mark.parametrize("bad, message, rest_read", [
    (AgentTask("w", "x", id="x", depends_on=["x"]), "task `x` depends on itself", False),
    (AgentTask("w", "first", id="first"),
     "duplicate task id `first` (tasks 1 and 2 in input order)", False),
    # Naming a task not seen yet needs the rest, read and checked whole.
    (AgentTask("w", "x", id="x", depends_on=["later"]),
     "task `x` depends on unknown task `later`", True),
])
@pytest.mark.parametrize("how", ["run_all", "events"])
def test_a_streamed_task_that_fails_the_checks_stops_the_run(bad, message, rest_read, how):
    """The run stops (running agents cancelled, nothing more started) and
    the CLI's message is raised."""
    cleaned = []
    read_after = []

    async def main():
        running = asyncio.Event()

        async def work(task):
            running.set()
            try:
                await asyncio.Event().wait()
            finally:
                cleaned.append(task.id)

        async def tasks():
            yield AgentTask("w", "first", id="first")
            await running.wait()
            yield bad
            read_after.append(True)
            yield AgentTask("w", "never", id="never")

        ex = ParallelExecutor(parallel_limit=2, agents={"w": work})
        if how == "run_all":
            await ex.run_all(tasks())
        else:
            async for e in ex.run(tasks()):
                assert e.kind != "run_finished"

    with pytest.raises(ValueError) as raised:
        run(main())
    assert str(raised.value) == message
    assert cleaned == ["first"]
    assert read_after == ([True] if rest_read else [])


@pytest.mark.parametrize("source", ["generator", "async generator"])
def test_a_cycle_in_a_stream_is_the_clis_error_and_nothing_runs(source):
    ran = []

    async def work(task):
        ran.append(task.id)

    cycle = [AgentTask("w", "a", id="a", depends_on=["b"]),
             AgentTask("w", "b", id="b", depends_on=["a"])]

    async def arriving():
        for task in cycle:
            yield task

    def tasks():
        return iter(cycle) if source == "generator" else arriving()

    async def main():
        executor = ParallelExecutor(respect_dependencies=True, agents={"w": work})
        with pytest.raises(ValueError, match="^dependency cycle: a → b → a$"):
            await executor.run_all(tasks())
        with pytest.raises(ValueError, match="^dependency cycle: a → b → a$"):
            async for _ in executor.run(tasks()):
                pass

    run(main())
    assert ran == []


def test_a_stream_may_name_a_later_task_then_it_is_read_whole():
    order = []

    async def work(task):
        order.append(task.id)

    def tasks():
        yield AgentTask("w", "1", id="early")
        yield AgentTask("w", "2", id="waits", depends_on=["early", "late"])
        yield AgentTask("w", "3", id="late")

    r = run(ParallelExecutor(respect_dependencies=True, agents={"w": work}).run_all(tasks()))
    assert [t.task.id for t in r.succeeded] == ["early", "waits", "late"]
    assert order.index("waits") > order.index("late")


def test_what_the_iterator_raises_stops_the_run_and_is_raised():
    cleaned = []

    async def main():
        running = asyncio.Event()

        async def work(task):
            running.set()
            try:
                await asyncio.Event().wait()
            finally:
                cleaned.append(task.id)

        async def tasks():
            yield AgentTask("w", "first")
            await running.wait()
            raise LookupError("the queue went away")

        await ParallelExecutor(parallel_limit=2, agents={"w": work}).run_all(tasks())

    with pytest.raises(LookupError, match="the queue went away"):
        run(main())
    assert cleaned == ["w:first"]


def test_what_is_not_a_task_is_a_type_error():
    async def work(task):
        return None

    ex = ParallelExecutor(agents={"w": work})
    with pytest.raises(TypeError, match="^tasks must be AgentTask objects, got int$"):
        run(ex.run_all(iter([AgentTask("w", "a"), 3])))
    with pytest.raises(TypeError, match="^tasks must be AgentTask objects, got str$"):
        run(ex.run_all(["a"]))
    with pytest.raises(TypeError, match="^tasks must be an iterable of AgentTask, got int$"):
        run(ex.run_all(3))  # type: ignore[arg-type]


def test_an_empty_generator_is_an_empty_run():
    def none():
        return
        yield

    r = run(ParallelExecutor().run_all(none()))
    assert r.total == 0 and r.success_rate == 0
