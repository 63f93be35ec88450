"""The seed specification's reference design in Python asyncio, as a baseline.

Usage: python3 asyncio_baseline.py TASKS LIMIT SLEEP_MS

Like the seed's ParallelExecutor: one asyncio task per agent task created up
front, an asyncio.Semaphore as the gate, asyncio.timeout per task, gather
with return_exceptions, results sorted into succeeded/failed/cancelled.
Prints one JSON line like the Rust benchmark.
"""

import asyncio
import json
import resource
import sys
import time
from dataclasses import dataclass


@dataclass
class TaskResult:
    task: int
    status: str
    duration_ms: int
    output: object = None
    error: object = None


async def agent(sleep_s):
    if sleep_s:
        await asyncio.sleep(sleep_s)
    return "ok"


async def run_all(n, limit, sleep_s, timeout_s=300):
    sem = asyncio.Semaphore(limit)

    async def one(i):
        async with sem:
            start = time.monotonic()
            try:
                async with asyncio.timeout(timeout_s):
                    out = await agent(sleep_s)
                return TaskResult(i, "success", int((time.monotonic() - start) * 1000), out)
            except TimeoutError:
                return TaskResult(i, "timeout", int((time.monotonic() - start) * 1000), error="timeout")
            except asyncio.CancelledError:
                return TaskResult(i, "cancelled", 0)
            except Exception as e:  # noqa: BLE001 - the reference design records any failure
                return TaskResult(i, "failed", int((time.monotonic() - start) * 1000), error=str(e))

    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    succeeded = [r for r in results if isinstance(r, TaskResult) and r.status == "success"]
    failed = [r for r in results if isinstance(r, TaskResult) and r.status in ("failed", "timeout")]
    cancelled = [r for r in results if isinstance(r, TaskResult) and r.status == "cancelled"]
    return succeeded, failed, cancelled


def main():
    n, limit, sleep_ms = (int(a) for a in sys.argv[1:4])
    start = time.monotonic()
    succeeded, _, _ = asyncio.run(run_all(n, limit, sleep_ms / 1000))
    secs = time.monotonic() - start
    assert len(succeeded) == n
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"impl": "python-asyncio", "tasks": n, "limit": limit, "sleep_ms": sleep_ms,
                      "seconds": round(secs, 3), "tasks_per_sec": round(n / secs), "peak_rss_kb": rss}))


if __name__ == "__main__":
    main()
