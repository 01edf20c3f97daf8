"""Workload 2 — 1-asset ``materialize()`` latency: warm runtime and cold.

Workload: one sync asset returning 1, ``Executor.in_process()``, default SQLite
storage in a temporary ``RIVERS_HOME``. "warm" is ``await rt.materialize()`` on a
runtime that already ran once (10 x ``--repeat`` samples); "cold" is a blocking
``repo.materialize()`` that starts and stops a runtime each time (2 x ``--repeat``
samples, after one unmeasured run). ``--quick`` takes a third of the samples.

Run: ``python -m benchmarks.latency [--repeat 5] [--quick]``.
"""

from __future__ import annotations

import time

import rivers as rs
from benchmarks.figures import Figure, module_main
from rivers.materialize import run_sync

WARM_PER_REPEAT = 10
COLD_PER_REPEAT = 2


@rs.Asset
def single() -> int:
    return 1


def collect(repeat: int, quick: bool) -> list[Figure]:
    """Return the warm and cold latencies, in milliseconds."""
    scale = 3 if quick else 1
    repo = rs.CodeRepository([single], executor=rs.Executor.in_process())

    async def warm_runs() -> list[float]:
        times = []
        async with rs.Runtime(repo) as rt:
            await rt.materialize()
            for _ in range(max(1, repeat * WARM_PER_REPEAT // scale)):
                began = time.perf_counter()
                await rt.materialize()
                times.append((time.perf_counter() - began) * 1000)
        return times

    warm: list[float] = run_sync(warm_runs)
    repo.materialize()
    cold = []
    for _ in range(max(1, repeat * COLD_PER_REPEAT // scale)):
        began = time.perf_counter()
        repo.materialize()
        cold.append((time.perf_counter() - began) * 1000)
    return [
        Figure("latency", "1 asset, warm runtime", "ms", warm),
        Figure("latency", "1 asset, cold repo.materialize()", "ms", cold),
    ]


if __name__ == "__main__":
    module_main(collect, __doc__)
