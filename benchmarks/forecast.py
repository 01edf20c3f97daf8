"""Workload 8 — forecast error: the expected starts of ``runs why`` against the real ones.

Workload A (the run queue): a repository with one async asset that sleeps the
number of milliseconds in its run's ``ms`` tag, ``RunQueueConfig(
max_concurrent_runs=2, dequeue_interval="20ms")``, a fresh SQLite storage per
repeat. Service times are known: drawn from a seeded uniform 40-160 ms. 12 runs
go through first (the history a forecast learns from); then 16 runs are submitted
at once and, right away, the forecast ``runs why`` shows is taken for every run
still queued (``rivers.forecasts.queue_forecast``, what ``explain_run`` formats).
Each forecast is compared with when the run really started.
Workload B (a pool): 12 async assets in pool ``p`` (limit 2), each sleeping a known
40-160 ms; one run of all 12 first (history), then a second run; once its steps
wait in the pool's line, the forecast of each waiting step
(``rivers.forecasts.pool_forecast``) is compared with its real start.
Reported per workload: the absolute error in ms, median and p90 over every
forecast of every repeat, and the error relative to the real wait (%), median and p90.
``--quick``: 6 queued runs, 6 pooled steps.

Run: ``python -m benchmarks.forecast [--repeat 5] [--quick]``.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import anyio

import rivers as rs
from benchmarks.figures import Figure, module_main, percentile
from rivers.forecasts import pool_forecast, queue_forecast
from rivers.materialize import run_sync

HISTORY_RUNS = 12
QUEUED_RUNS = 16
POOLED_STEPS = 12
QUICK = 6
LOW_MS, HIGH_MS = 40, 160


@rs.Asset
async def sleeper(context: rs.StepContext) -> None:
    await anyio.sleep(int(context.run_tags["ms"]) / 1000)


def _pooled(index: int, ms: int) -> rs.Asset[[], Coroutine[Any, Any, None]]:
    async def body() -> None:
        await anyio.sleep(ms / 1000)

    body.__name__ = f"step_{index:02d}"
    return rs.Asset(pool="p")(body)


async def _queue_errors(folder: Path, rng: random.Random, count: int) -> list[Errors]:
    repo = rs.CodeRepository(
        [sleeper],
        run_queue=rs.RunQueueConfig(max_concurrent_runs=2, dequeue_interval="20ms"),
        backend=rs.RunBackendConfig(storage=str(folder / "queue.db")),
    )
    errors: list[Errors] = []
    async with rs.Runtime(repo) as rt:
        history = [
            await rt.submit(rs.RunRequest(tags={"ms": str(_ms(rng))}))
            for _ in range(HISTORY_RUNS)
        ]
        for handle in history:
            await handle.wait()
        handles = [
            await rt.submit(rs.RunRequest(tags={"ms": str(_ms(rng))}))
            for _ in range(count)
        ]
        asked = rt.clock.time()
        expected: dict[str, float] = {}
        for handle in handles:
            position = await rt._roles.queue.queue_position(handle.run_id)
            if position is None:
                continue  # already admitted
            forecast = await queue_forecast(rt._roles, position, 2)
            if forecast.seconds is not None:
                expected[handle.run_id] = forecast.seconds
        for handle in handles:
            record = await handle.wait()
            if handle.run_id in expected and record.started_at is not None:
                actual = record.started_at.timestamp() - asked
                errors.append((expected[handle.run_id], actual))
    return errors


async def _pool_errors(folder: Path, rng: random.Random, count: int) -> list[Errors]:
    assets = [_pooled(i, _ms(rng)) for i in range(count)]
    repo = rs.CodeRepository(
        assets,
        pool_limits={"p": 2},
        executor=rs.Executor.parallel(max_workers=1, max_async_concurrent=count),
        backend=rs.RunBackendConfig(storage=str(folder / "pool.db")),
    )
    errors: list[Errors] = []
    async with rs.Runtime(repo) as rt:
        await rt.materialize()  # the history
        async with anyio.create_task_group() as tg:
            results: list[rs.MaterializeResult] = []

            async def run() -> None:
                results.append(await rt.materialize())

            tg.start_soon(run)
            line: list[rs.PendingStep] = []
            with anyio.fail_after(10):
                while len(line) < count - 2:
                    await anyio.sleep(0.002)
                    line = await rt.storage.get_pending_steps("p")
            asked = rt.clock.time()
            expected = {}
            for pending in line:
                forecast = await pool_forecast(
                    rt._roles, "p", 2, pending.run_id, pending.step_key
                )
                if forecast is not None and forecast.seconds is not None:
                    expected[pending.step_key] = forecast.seconds
        for step in results[0].step_records:
            if step.step_key in expected and step.started_at is not None:
                actual = step.started_at.timestamp() - asked
                errors.append((expected[step.step_key], actual))
    return errors


Errors = tuple[float, float]
"""(forecast wait, real wait) in seconds."""


def _ms(rng: random.Random) -> int:
    return rng.randint(LOW_MS, HIGH_MS)


def collect(repeat: int, quick: bool) -> list[Figure]:
    """Return the forecast errors of both workloads."""
    queued = QUICK if quick else QUEUED_RUNS
    pooled = QUICK if quick else POOLED_STEPS
    figures: list[Figure] = []
    for name, measure, count in (
        ("run queue", _queue_errors, queued),
        ("pool", _pool_errors, pooled),
    ):
        pairs: list[Errors] = []
        for seed in range(repeat):
            with tempfile.TemporaryDirectory(prefix="rivers-forecast-") as folder:
                rng = random.Random(seed)
                pairs += run_sync(measure, Path(folder), rng, count)
        absolute = [abs(f - a) * 1000 for f, a in pairs]
        relative = [abs(f - a) / a * 100 for f, a in pairs if a > 0.01]
        figures += [
            Figure(
                "forecast", f"{name}: error, median", "ms", [percentile(absolute, 0.5)]
            ),
            Figure(
                "forecast", f"{name}: error, p90", "ms", [percentile(absolute, 0.9)]
            ),
            Figure(
                "forecast",
                f"{name}: error relative to the wait, median",
                "%",
                [percentile(relative, 0.5) if relative else 0.0],
            ),
            Figure(
                "forecast",
                f"{name}: error relative to the wait, p90",
                "%",
                [percentile(relative, 0.9) if relative else 0.0],
            ),
        ]
    return figures


if __name__ == "__main__":
    module_main(collect, __doc__)
