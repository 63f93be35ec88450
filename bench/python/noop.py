"""No-op async agents through agent33_parallel, in the baseline's format.

Usage: python noop.py TASKS LIMIT [list|generator]

Prints one JSON line like bench/engine/asyncio_baseline.py: tasks/s over
the whole run_all and peak RSS. With `list` (the default) the task objects
are made before the clock starts, as the baseline makes its coroutines
inside the clock; with `generator` they come from a generator, streamed
into the run as it has room (made inside the clock), impl
`agent33-python-generator`.
"""

import asyncio
import json
import resource
import sys
import time

from agent33_parallel import AgentTask, ParallelExecutor


async def noop(task):
    return None


async def main(n, limit, source):
    if source == "generator":
        tasks = (AgentTask("noop", f"a{i}") for i in range(n))
    else:
        tasks = [AgentTask("noop", f"a{i}") for i in range(n)]
    executor = ParallelExecutor(parallel_limit=limit, agents={"noop": noop})
    start = time.monotonic()
    results = await executor.run_all(tasks)
    secs = time.monotonic() - start
    assert len(results.succeeded) == n, results
    return secs


def run():
    n, limit = (int(a) for a in sys.argv[1:3])
    source = sys.argv[3] if len(sys.argv) > 3 else "list"
    if source not in ("list", "generator"):
        sys.exit(f"noop.py: the task source is `list` or `generator`, not `{source}`")
    secs = asyncio.run(main(n, limit, source))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    impl = "agent33-python" if source == "list" else "agent33-python-generator"
    print(json.dumps({"impl": impl, "tasks": n, "limit": limit, "sleep_ms": 0,
                      "seconds": round(secs, 3), "tasks_per_sec": round(n / secs), "peak_rss_kb": rss}))


if __name__ == "__main__":
    run()
