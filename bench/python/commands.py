"""2,000 x CommandAgent(["true"]) at limit 8 through agent33_parallel, and
the same through `agent-33 run`, in one process run.

Usage: python commands.py TASKS LIMIT AGENT33_BINARY

Prints two JSON lines (impl agent33-python-command, agent33-cli): wall
seconds of the whole run. The CLI is timed from outside (spawn to exit),
the package from run_all's call to its return; the package's interpreter
start-up is not counted, the CLI's start-up is (a few ms).
"""

import asyncio
import json
import subprocess
import sys
import time

from agent33_parallel import AgentTask, CommandAgent, ParallelExecutor


async def package(n, limit):
    tasks = [AgentTask("true", str(i)) for i in range(n)]
    executor = ParallelExecutor(parallel_limit=limit, agents={"true": CommandAgent(["true"])})
    start = time.monotonic()
    results = await executor.run_all(tasks)
    secs = time.monotonic() - start
    assert len(results.succeeded) == n, results
    return secs


def cli(n, limit, binary):
    args = [binary, "run", "-j", str(limit), "--command", "true", ":::"] + [str(i) for i in range(n)]
    start = time.monotonic()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - start


def main():
    n, limit = int(sys.argv[1]), int(sys.argv[2])
    binary = sys.argv[3]
    for name, secs in (("agent33-cli", cli(n, limit, binary)),
                       ("agent33-python-command", asyncio.run(package(n, limit)))):
        print(json.dumps({"impl": name, "tasks": n, "limit": limit, "seconds": round(secs, 3),
                          "tasks_per_sec": round(n / secs)}))


if __name__ == "__main__":
    main()
