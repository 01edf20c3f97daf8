"""Workload 9 — the limit advisor: a recorded pool replayed at its own limit, and its cost.

A: 48 async assets in pool ``p`` (limit 3), each sleeping a known 20-80 ms (seeded
uniform), in one run on a fresh SQLite storage; every step arrives at the pool at
once, so most wait. The run's events give the measured wait of each step
(``STEP_POOL_CLAIMED.waited_s``); ``rivers pools advise`` rebuilds the holds from
the same events (``holds_from_events``) and replays them through the pool core at
limit 3 (``rivers.core.advisor.replay``). Reported: the replayed p50 and p95 wait
against the measured ones (absolute error in ms, over every repeat).
B: the advisor's own cost: 10,000 synthetic holds (Poisson arrivals, 50 ms mean
hold, 1 slot) replayed at every limit ``advise`` tries (up to the peak demand),
wall time of one ``advise`` call.
``--quick``: 12 steps; 1,000 holds.

Run: ``python -m benchmarks.advisor [--repeat 5] [--quick]``.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import anyio

import rivers as rs
from benchmarks.figures import Figure, module_main, percentile
from rivers.cli.advise import holds_from_events
from rivers.core.advisor import Hold, advise, replay
from rivers.materialize import run_sync

STEPS, QUICK_STEPS = 48, 12
HOLDS, QUICK_HOLDS = 10_000, 1_000
LIMIT = 3


def _pooled(index: int, ms: int) -> rs.Asset[[], Coroutine[Any, Any, None]]:
    async def body() -> None:
        await anyio.sleep(ms / 1000)

    body.__name__ = f"step_{index:02d}"
    return rs.Asset(pool="p")(body)


async def _replay_errors(
    folder: Path, rng: random.Random, count: int
) -> tuple[float, float]:
    """(|replayed p50 - measured p50|, same for p95), in seconds, for one run."""
    assets = [_pooled(i, rng.randint(20, 80)) for i in range(count)]
    repo = rs.CodeRepository(
        assets,
        pool_limits={"p": LIMIT},
        executor=rs.Executor.parallel(max_workers=1, max_async_concurrent=count),
        backend=rs.RunBackendConfig(storage=str(folder / "advisor.db")),
    )
    async with rs.Runtime(repo) as rt:
        result = await rt.materialize()
        events = await rt.storage.get_events(run_id=result.run_id)
    measured = [
        float(e.data["waited_s"]) for e in events if e.kind == "STEP_POOL_CLAIMED"
    ]
    holds = holds_from_events(events, "p", time.time())
    replayed = list(replay(holds, LIMIT).waits)
    return (
        abs(percentile(replayed, 0.5) - percentile(measured, 0.5)),
        abs(percentile(replayed, 0.95) - percentile(measured, 0.95)),
    )


def _advise_seconds(rng: random.Random, count: int) -> float:
    at = 0.0
    holds = []
    for index in range(count):
        at += rng.expovariate(1 / 0.02)  # a step every 20 ms on average
        holds.append(Hold(f"h{index}", at, rng.expovariate(1 / 0.05)))
    began = time.perf_counter()
    advise(holds, current=LIMIT)
    return time.perf_counter() - began


def collect(repeat: int, quick: bool) -> list[Figure]:
    """Return the replay error at the limit that ran, and the advisor's cost."""
    steps = QUICK_STEPS if quick else STEPS
    p50: list[float] = []
    p95: list[float] = []
    costs: list[float] = []
    for seed in range(repeat):
        with tempfile.TemporaryDirectory(prefix="rivers-advisor-") as folder:
            err50, err95 = run_sync(
                _replay_errors, Path(folder), random.Random(seed), steps
            )
        p50.append(err50 * 1000)
        p95.append(err95 * 1000)
        costs.append(
            _advise_seconds(random.Random(seed), QUICK_HOLDS if quick else HOLDS)
        )
    holds = QUICK_HOLDS if quick else HOLDS
    return [
        Figure(
            "advisor",
            f"replay at the limit that ran: p50 wait error ({steps} steps)",
            "ms",
            p50,
        ),
        Figure(
            "advisor",
            f"replay at the limit that ran: p95 wait error ({steps} steps)",
            "ms",
            p95,
        ),
        Figure("advisor", f"advise over {holds:,} recorded holds", "s", costs),
    ]


if __name__ == "__main__":
    module_main(collect, __doc__)
