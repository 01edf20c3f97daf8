"""Prefect flows and tasks of the peer workloads (imported by Prefect's subprocesses).

The process-pool task runner pickles a task by reference to this module, and a
process work pool's worker loads ``one`` from this file by its entrypoint
(``benchmarks/peers/prefect_flows.py:one``), so they are module-level and the
module imports nothing but Prefect. The DAG's tasks are the rivers workload's own
functions with Prefect's decorator, so both sides run the same code.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from prefect import flow, task
from prefect.concurrency.asyncio import concurrency
from prefect.task_runners import ProcessPoolTaskRunner

WORKERS = 2
POOL = "db"


def dag_flow(levels: int, width: int) -> Any:
    """Return a flow that submits the levels x width all-to-all DAG as tasks.

    Each task is submitted with its upstream tasks' futures as its arguments, so
    Prefect waits for them and passes their results (the default thread-pool task
    runner runs the tasks).
    """
    from benchmarks.inprocess_dag import build_assets

    tasks = build_assets(levels, width, decorate=task)

    @flow(name="dag")
    def dag() -> None:
        futures: dict[str, Any] = {}
        for each in tasks:
            upstream = inspect.signature(each.fn).parameters
            futures[each.name] = each.submit(
                **{name: futures[name] for name in upstream}
            )
        for future in futures.values():
            future.result()  # raises if the task failed

    return dag


@task
def trivial(index: int) -> int:
    """Return ``index`` (workload 3's step)."""
    return index


@flow(task_runner=ProcessPoolTaskRunner(max_workers=WORKERS))
def parallel(steps: int) -> None:
    """Run ``steps`` trivial tasks on a pool of ``WORKERS`` processes."""
    futures = [trivial.submit(index) for index in range(steps)]
    assert [future.result() for future in futures] == list(range(steps))


@task
async def pooled(sleep_s: float) -> None:
    """Sleep ``sleep_s`` holding one slot of the global concurrency limit ``db``."""
    async with concurrency(POOL, occupy=1):
        await asyncio.sleep(sleep_s)


@flow
def pooled_flow(steps: int, sleep_s: float) -> None:
    """Submit ``steps`` pooled tasks at once and wait for them all."""
    futures = [pooled.submit(sleep_s) for _ in range(steps)]
    for future in futures:
        future.result()


@flow
def one() -> int:
    """Workload 5's one-step flow, run by a process work pool's worker."""
    return 1
