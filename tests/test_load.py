"""Load: a deep queue drains through 20 tag limits and 5 pools, every limit held.

``RIVERS_LOAD_RUNS`` runs (default 1,000; the issue's figure is 10,000:
``RIVERS_LOAD_RUNS=10000 pytest tests/test_load.py``) are queued, then one runtime
drains them. Each run has two async steps from five pooled assets. Every step
checks, from inside, how many runs and how many slots of its pools are in use; a
monitor samples the storage meanwhile; the process's peak RSS is sampled too. The
throughput is recorded in the suite's figures.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import psutil
import pytest

import rivers as rs
from rivers._ids import new_run_id
from rivers.storage import open_backend
from rivers.storage.records import NewRun

RUNS = int(os.environ.get("RIVERS_LOAD_RUNS", "1000"))
MAX_RUNS = 16
POOL_LIMITS = {"p0": 2, "p1": 3, "p2": 4, "p3": 5, "p4": 6}
TEAMS = ("a", "b", "c", "d", "e")
REGIONS = ("r0", "r1", "r2", "r3", "r4")
CLASSES = ("c0", "c1", "c2", "c3", "c4")
TAG_LIMITS = (
    rs.TagConcurrencyLimit(key="tenant", limit=2, per_unique_value=True),
    *(rs.TagConcurrencyLimit(key="region", value=r, limit=4) for r in REGIONS),
    *(rs.TagConcurrencyLimit(key="team", value=t, limit=3) for t in TEAMS),
    *(rs.TagConcurrencyLimit(key="class", value=c, limit=5) for c in CLASSES),
    rs.TagConcurrencyLimit(key="lane", limit=6),
    rs.TagConcurrencyLimit(key="env", value="prod", limit=8),
    rs.TagConcurrencyLimit(key="env", value="dev", limit=8),
    rs.TagConcurrencyLimit(key="batch", limit=5, per_unique_value=True),
)
UNFINISHED = (
    rs.RunStatus.QUEUED,
    rs.RunStatus.STARTING,
    rs.RunStatus.STARTED,
    rs.RunStatus.CANCELING,
)
RSS_GROWTH_BOUND_MIB = 64 + RUNS / 100
"""Generous: a few KiB per queued run on top of a fixed allowance."""


class Watch:
    """What the steps see running at once, and any limit exceeded."""

    def __init__(self) -> None:
        self.running: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}
        self.violations: list[str] = []
        self.checks = 0

    def enter(self, context: rs.StepContext, pool: str) -> None:
        self.running[(context.run_id, context.asset_key)] = (pool, context.run_tags)
        self.checks += 1
        runs = {run_id: tags for (run_id, _), (_, tags) in self.running.items()}
        if len(runs) > MAX_RUNS:
            self.violations.append(f"{len(runs)} runs running")
        used = sum(1 for p, _ in self.running.values() if p == pool)
        if used > POOL_LIMITS[pool]:
            self.violations.append(f"pool {pool}: {used} steps")
        for limit in TAG_LIMITS:
            counts: dict[str, int] = {}
            for tags in runs.values():
                value = tags.get(limit.key)
                if value is not None and limit.value in (None, value):
                    bucket = value if limit.per_unique_value else ""
                    counts[bucket] = counts.get(bucket, 0) + 1
            if any(n > (limit.limit or 0) for n in counts.values()):
                self.violations.append(f"tag limit {limit.key}: {counts}")

    def leave(self, context: rs.StepContext) -> None:
        del self.running[(context.run_id, context.asset_key)]


WATCH = Watch()


def _step(pool: str) -> rs.Asset[Any, Any]:
    async def body(context: rs.StepContext) -> None:
        WATCH.enter(context, pool)
        try:
            await anyio.lowlevel.checkpoint()
        finally:
            WATCH.leave(context)

    body.__name__ = f"use_{pool}"
    return rs.Asset(body, pool=pool)


STEPS = [_step(pool) for pool in POOL_LIMITS]


def _tags(rng: random.Random, index: int) -> dict[str, str]:
    tags = {
        "tenant": f"t{index % 40}",
        "region": rng.choice(REGIONS),
        "team": rng.choice(TEAMS),
        "class": rng.choice(CLASSES),
        "env": rng.choice(("prod", "dev")),
    }
    if rng.random() < 0.5:
        tags["lane"] = rng.choice(("fast", "slow"))
    if rng.random() < 0.3:
        tags["batch"] = f"b{rng.randint(0, 3)}"
    return tags


@pytest.mark.timeout(600 + RUNS // 10)
async def test_a_deep_queue_drains_within_every_limit_in_bounded_memory(
    tmp_path: Path, record_figure: Callable[[str], None]
) -> None:
    rng = random.Random(10)
    path = tmp_path / "load.db"
    repo = rs.CodeRepository(
        STEPS,
        run_queue=rs.RunQueueConfig(
            max_concurrent_runs=MAX_RUNS,
            dequeue_interval="50ms",
            tag_concurrency_limits=TAG_LIMITS,
        ),
        pool_limits=POOL_LIMITS,
        executor=rs.Executor.parallel(max_workers=1),
        io_manager=rs.FilesystemIOManager(tmp_path / "values"),
        backend=rs.RunBackendConfig(storage=str(path)),
    )
    names = [step.name for step in STEPS]
    async with open_backend(path) as storage:
        for index in range(RUNS):
            await storage.runs.create_run(
                NewRun(
                    run_id=new_run_id(),
                    status=rs.RunStatus.QUEUED,
                    repository=repo.name,
                    tags=_tags(rng, index),
                    selection=rng.sample(names, 2),
                    priority=rng.randint(0, 2),
                )
            )
    process = psutil.Process()
    peak_rss = baseline_rss = process.memory_info().rss
    samples = 0
    storage_violations: list[str] = []
    began = time.monotonic()
    async with rs.Runtime(repo) as rt, anyio.create_task_group() as tg:

        async def monitor() -> None:
            nonlocal peak_rss, samples
            while True:
                peak_rss = max(peak_rss, process.memory_info().rss)
                in_flight = await rt._roles.queue.get_in_flight_tags()
                if len(in_flight) > MAX_RUNS:
                    storage_violations.append(f"{len(in_flight)} in flight")
                for info in await rt.storage.get_all_pool_infos():
                    limit = POOL_LIMITS[info.name]
                    if info.claimed_slots > limit:
                        storage_violations.append(f"{info.name}: {info.claimed_slots}")
                samples += 1
                await anyio.sleep(0.05)

        tg.start_soon(monitor)
        with anyio.fail_after(60 + RUNS / 10):
            while await rt._roles.runs.count_runs(UNFINISHED):
                await anyio.sleep(0.1)
        drained_s = time.monotonic() - began
        tg.cancel_scope.cancel()
        succeeded = await rt._roles.runs.count_runs([rs.RunStatus.SUCCESS])
        infos = await rt.storage.get_all_pool_infos()
    growth_mib = (peak_rss - baseline_rss) / 2**20
    assert succeeded == RUNS
    assert WATCH.violations == []
    assert storage_violations == []
    assert WATCH.checks == 2 * RUNS
    assert all(i.claimed_slots == 0 and i.pending_steps == 0 for i in infos)
    assert growth_mib < RSS_GROWTH_BOUND_MIB, growth_mib
    record_figure(
        f"load: {RUNS} queued runs ({2 * RUNS} steps), {len(TAG_LIMITS)} tag limits, "
        f"{len(POOL_LIMITS)} pools: drained in {drained_s:.1f}s = "
        f"{RUNS / drained_s:.0f} runs/s; {WATCH.checks} in-step checks, {samples} "
        f"storage samples, no limit exceeded; peak RSS +{growth_mib:.1f} MiB"
    )
