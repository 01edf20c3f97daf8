"""Workload 1 — 200-asset DAG, in process: per-step overhead including durable events.

Workload: 20 levels x 10 assets; each asset of level L > 0 depends on all 10 assets
of level L-1 and returns the sum of its inputs plus one (level 0 returns 1).
Materialized with ``Executor.in_process()`` on a fresh SQLite storage (the default
backend, under a temporary ``RIVERS_HOME``) and the default
``FilesystemIOManager``, so every event and every value is durable.

Figures: "fresh runtime" is a blocking ``repo.materialize()``, which starts and
stops a runtime each time (after one unmeasured run, so files exist); "warm
runtime" is ``await rt.materialize()`` on a runtime that already ran once. Each
is also given per step (wall / 200: every step's body is trivial, so this is
rivers' overhead per step). ``--quick``: 3 levels x 3.

Run: ``python -m benchmarks.inprocess_dag [--repeat 5] [--quick]``.
"""

from __future__ import annotations

import time
from typing import Any

import rivers as rs
from benchmarks.figures import Figure, make_sync_assets, module_main
from rivers.materialize import run_sync

LEVELS = 20
WIDTH = 10
QUICK_LEVELS = 3
QUICK_WIDTH = 3


def build_assets(
    levels: int = LEVELS, width: int = WIDTH, decorate: Any = None
) -> list[Any]:
    """Return the assets of the levels x width all-to-all DAG (``rs.Asset`` default)."""

    def upstream(name: str) -> list[str]:
        level = int(name.split("_")[1])
        return [f"a_{level - 1}_{i}" for i in range(width)] if level else []

    names = [f"a_{level}_{i}" for level in range(levels) for i in range(width)]
    # Level 0 has no parameters: locals() is empty and the sum is 0.
    return make_sync_assets(
        names, upstream, lambda _: "return sum(locals().values()) + 1", decorate
    )


def build_repository(
    levels: int = LEVELS, width: int = WIDTH, executor: Any = None
) -> rs.CodeRepository:
    """Return the levels x width all-to-all DAG as a repository."""
    return rs.CodeRepository(
        build_assets(levels, width), executor=executor or rs.Executor.in_process()
    )


def collect(repeat: int, quick: bool) -> list[Figure]:
    """Measure the DAG ``repeat`` times with a fresh runtime and with a warm one."""
    levels, width = (QUICK_LEVELS, QUICK_WIDTH) if quick else (LEVELS, WIDTH)
    steps = levels * width
    repo = build_repository(levels, width)
    assert repo.materialize().success
    fresh = []
    for _ in range(repeat):
        began = time.perf_counter()
        result = repo.materialize()
        fresh.append(time.perf_counter() - began)
        assert result.success, result.error

    async def warm_runs() -> list[float]:
        times = []
        async with rs.Runtime(repo) as rt:
            await rt.materialize()
            for _ in range(repeat):
                began = time.perf_counter()
                result = await rt.materialize()
                times.append(time.perf_counter() - began)
                assert result.success, result.error
        return times

    warm: list[float] = run_sync(warm_runs)
    return [
        Figure("inprocess_dag", "materialize, fresh runtime", "s", fresh),
        Figure(
            "inprocess_dag", "per step, fresh runtime", "us", _per_step(fresh, steps)
        ),
        Figure("inprocess_dag", "materialize, warm runtime", "s", warm),
        Figure("inprocess_dag", "per step, warm runtime", "us", _per_step(warm, steps)),
    ]


def _per_step(walls: list[float], steps: int) -> list[float]:
    return [wall / steps * 1e6 for wall in walls]


if __name__ == "__main__":
    module_main(collect, __doc__)
