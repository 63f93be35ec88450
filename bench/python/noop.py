"""No-op async agents through agent33_parallel, in the baseline's format.

Usage: python noop.py TASKS LIMIT

Prints one JSON line like bench/engine/asyncio_baseline.py: tasks/s over
the whole run_all (task objects made before the clock starts, as the
baseline makes its coroutines inside the clock) and peak RSS.
"""

import asyncio
import json
import resource
import sys
import time

from agent33_parallel import AgentTask, ParallelExecutor


async def noop(task):
    return None


async def main(n, limit):
    tasks = [AgentTask("noop", f"a{i}") for i in range(n)]
    executor = ParallelExecutor(parallel_limit=limit, agents={"noop": noop})
    start = time.monotonic()
    results = await executor.run_all(tasks)
    secs = time.monotonic() - start
    assert len(results.succeeded) == n, results
    return secs


def run():
    n, limit = (int(a) for a in sys.argv[1:3])
    secs = asyncio.run(main(n, limit))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"impl": "agent33-python", "tasks": n, "limit": limit, "sleep_ms": 0,
                      "seconds": round(secs, 3), "tasks_per_sec": round(n / secs), "peak_rss_kb": rss}))


if __name__ == "__main__":
    run()
