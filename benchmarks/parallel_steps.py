"""Workload 3 — ``Executor.parallel``: 64 trivial sync steps on 2 workers, and throughput.

Workload A: 64 independent sync assets, each returning its index, materialized with
``Executor.parallel(max_workers=2)`` on the default SQLite storage (temporary
``RIVERS_HOME``). "cold" is the first run of a fresh runtime (it starts the worker
processes); "warm" is a later run of the same runtime (workers reused).
Workload B: 1,000 independent trivial sync assets on the same warm runtime;
reported as steps per second. Each repeat uses a new runtime.
``--quick``: 8 and 40 steps.

Run: ``python -m benchmarks.parallel_steps [--repeat 5] [--quick]``.
"""

from __future__ import annotations

import time
from typing import Any

import rivers as rs
from benchmarks.figures import Figure, make_sync_assets, module_main
from rivers.materialize import run_sync

SMALL = 64
LARGE = 1000
QUICK_SMALL = 8
QUICK_LARGE = 40
WORKERS = 2


def trivial_assets(count: int, prefix: str, decorate: Any = None) -> list[Any]:
    """Return ``count`` independent assets that each return their index."""
    names = [f"{prefix}{index}" for index in range(count)]
    return make_sync_assets(
        names, lambda _: (), lambda name: f"return {name[len(prefix) :]}", decorate
    )


def collect(repeat: int, quick: bool) -> list[Figure]:
    """Return the cold and warm walls of the small run, and the large run's rate."""
    small_n, large_n = (QUICK_SMALL, QUICK_LARGE) if quick else (SMALL, LARGE)
    executor = rs.Executor.parallel(max_workers=WORKERS)
    small = rs.CodeRepository(
        trivial_assets(small_n, "s"), executor=executor, name="small"
    )
    large = rs.CodeRepository(
        trivial_assets(large_n, "l"), executor=executor, name="large"
    )

    async def runs() -> tuple[list[float], list[float], list[float]]:
        cold, warm, rates = [], [], []
        for _ in range(repeat):
            async with rs.Runtime(small, large) as rt:
                began = time.perf_counter()
                assert (await rt.materialize(repository=small)).success
                cold.append(time.perf_counter() - began)
                began = time.perf_counter()
                assert (await rt.materialize(repository=small)).success
                warm.append(time.perf_counter() - began)
                began = time.perf_counter()
                assert (await rt.materialize(repository=large)).success
                rates.append(large_n / (time.perf_counter() - began))
        return cold, warm, rates

    cold, warm, rates = run_sync(runs)
    return [
        Figure("parallel_steps", "64 sync steps, 2 workers, cold", "s", cold),
        Figure("parallel_steps", "64 sync steps, 2 workers, warm", "s", warm),
        Figure(
            "parallel_steps",
            "1,000 sync steps, 2 workers",
            "steps/s",
            rates,
            better="higher",
        ),
    ]


if __name__ == "__main__":
    module_main(collect, __doc__)
