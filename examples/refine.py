"""The seed's Quick Example, on the agent-33 engine.

    pip install ./crates/agent33-python
    python examples/refine.py

prints ``Completed: 2/3`` and ``Failed: ['core/agents/worker.md']``.
"""

import asyncio

from agent33_parallel import AgentTask, ParallelExecutor, agent


@agent("refinement")
async def refine(task):
    return f"refined {task.artifact}"  # becomes TaskResult.output


@agent("validation")
async def validate(task):
    raise ValueError("missing title")  # a failed task


async def main():
    executor = ParallelExecutor(
        parallel_limit=4,
        timeout_seconds=300,
        continue_on_error=True,
    )
    results = await executor.run_all([
        AgentTask("refinement", artifact="core/prompts/SYSTEM.md"),
        AgentTask("validation", artifact="core/agents/worker.md"),
        AgentTask("refinement", artifact="core/templates/README.md"),
    ])
    print(f"Completed: {len(results.succeeded)}/{results.total}")
    if results.failed:
        print(f"Failed: {[f.task.artifact for f in results.failed]}")


asyncio.run(main())
