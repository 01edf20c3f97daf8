"""Chaos: SIGKILL the daemon and its workers at random moments, restart it, and check
that every run is accounted for, no limit was ever exceeded, and nothing stays held.

Runs for a few seconds in the normal suite; set RIVERS_CHAOS_ROUNDS (default 4) to
go longer, e.g. ``RIVERS_CHAOS_ROUNDS=50 pytest tests/chaos``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import psutil
import pytest

import rivers as rs
from rivers._ids import new_run_id
from rivers.storage.sqlite import NewRun

ROUNDS = int(os.environ.get("RIVERS_CHAOS_ROUNDS", "4"))
RUNS = 10 * ROUNDS
MAX_RUNS = 3
POOL_LIMIT = 2
TEAMS = ("a", "b", "c", "d")

PIPELINE = """
import random, time
import anyio
import rivers as rs

@rs.Asset(pool="db")
async def extract(context: rs.StepContext) -> int:
    await anyio.sleep(random.uniform(0.05, 0.25))
    return 1

@rs.Asset
def crunch(extract: int) -> int:
    time.sleep(random.uniform(0.02, 0.1))
    return extract + 1

@rs.Asset(pool="db")
async def load(crunch: int) -> None:
    await anyio.sleep(random.uniform(0.02, 0.1))

repo = rs.CodeRepository(
    [extract, crunch, load],
    run_queue=rs.RunQueueConfig(
        max_concurrent_runs={max_runs},
        dequeue_interval="50ms",
        tag_concurrency_limits=[
            rs.TagConcurrencyLimit(key="team", limit=1, per_unique_value=True)
        ],
    ),
    pool_limits={{"db": {pool_limit}}},
    executor=rs.Executor.parallel(max_workers=2),
    backend=rs.RunBackendConfig(
        storage={storage!r}, lease_duration="1s", lease_gc_interval="0.2s"
    ),
)
"""


class Monitor:
    """Samples storage and records every limit it ever saw exceeded."""

    def __init__(self, storage_path: Path) -> None:
        self.path = storage_path
        self.samples = 0
        self.violations: list[str] = []

    async def run(self) -> None:
        async with rs.open_storage(self.path) as storage:
            while True:
                in_flight = await storage.get_in_flight_tags()
                if len(in_flight) > MAX_RUNS:
                    self.violations.append(f"{len(in_flight)} runs in flight")
                for team in TEAMS:
                    used = sum(1 for tags in in_flight if tags.get("team") == team)
                    if used > 1:
                        self.violations.append(f"team {team}: {used} runs in flight")
                pool = await storage.get_pool_info("db")
                if pool.claimed_slots > POOL_LIMIT:
                    self.violations.append(f"pool db: {pool.claimed_slots} claimed")
                self.samples += 1
                await anyio.sleep(0.01)


def _start_daemon(pipeline: Path, home: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "RIVERS_HOME": str(home)}
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rivers",
                "daemon",
                "-f",
                str(pipeline),
                "--grace",
                "5",
            ],
            env=env,
            stdout=out,
            stderr=out,
        )


def _kill_a_worker(daemon: subprocess.Popen[bytes], rng: random.Random) -> bool:
    try:
        children = psutil.Process(daemon.pid).children()
    except psutil.NoSuchProcess:
        return False
    workers = [
        c for c in children if "rivers.executors._worker_main" in " ".join(c.cmdline())
    ]
    if not workers:
        return False
    rng.choice(workers).send_signal(signal.SIGKILL)
    return True


@pytest.mark.timeout(300)
async def test_kills_lose_no_run_leak_no_slot_and_never_exceed_a_limit(
    tmp_path: Path,
) -> None:
    rng = random.Random(int(os.environ.get("RIVERS_CHAOS_SEED", "7")))
    home = tmp_path / "home"
    storage_path = tmp_path / "chaos.db"
    pipeline = tmp_path / "pipeline.py"
    pipeline.write_text(
        textwrap.dedent(
            PIPELINE.format(
                max_runs=MAX_RUNS, pool_limit=POOL_LIMIT, storage=str(storage_path)
            )
        )
    )
    submitted: list[str] = []
    async with rs.open_storage(storage_path) as storage:
        for index in range(RUNS):
            run_id = new_run_id()
            await storage.create_run(
                NewRun(
                    run_id=run_id,
                    status=rs.RunStatus.QUEUED,
                    repository="default",
                    tags={"team": TEAMS[index % len(TEAMS)]},
                    selection=None,
                    priority=rng.randint(0, 3),
                )
            )
            submitted.append(run_id)

    monitor = Monitor(storage_path)
    log = tmp_path / "daemon.log"
    daemon_kills = worker_kills = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(monitor.run)
        for _ in range(ROUNDS):
            daemon = _start_daemon(pipeline, home, log)
            await anyio.sleep(rng.uniform(0.8, 2.0))
            if _kill_a_worker(daemon, rng):
                worker_kills += 1
            await anyio.sleep(rng.uniform(0.1, 0.8))
            daemon.send_signal(signal.SIGKILL)
            daemon.wait()
            daemon_kills += 1
        final = _start_daemon(pipeline, home, log)
        try:
            async with rs.open_storage(storage_path) as storage:
                with anyio.fail_after(120):
                    while True:
                        runs = await storage.get_runs(limit=None)
                        if all(r.status.is_finished for r in runs):
                            break
                        await anyio.sleep(0.1)
                with anyio.fail_after(10):  # leases of killed holders come back
                    while (await storage.get_pool_info("db")).claimed_slots:
                        await anyio.sleep(0.1)
        finally:
            final.send_signal(signal.SIGTERM)
            assert final.wait(timeout=30) == 0
        tg.cancel_scope.cancel()

    async with rs.open_storage(storage_path) as storage:
        by_id = {r.run_id: r for r in await storage.get_runs(limit=None)}
        started = await storage.get_events(kinds=["RUN_STARTED"])
        pool = await storage.get_pool_info("db")
        holders = await storage.get_pool_slot_holders("db")
    # Every submitted run is accounted for and none vanished.
    assert sorted(by_id) == sorted(submitted)
    for run in by_id.values():
        assert run.status in (rs.RunStatus.SUCCESS, rs.RunStatus.FAILURE), run
        if run.status is rs.RunStatus.FAILURE:
            assert run.reason, run
    # No run ran twice.
    started_ids = [e.run_id for e in started]
    assert len(started_ids) == len(set(started_ids))
    # Nothing is left held, and no limit was ever exceeded.
    assert pool.claimed_slots == 0
    assert pool.pending_steps == 0
    assert holders == []
    assert monitor.samples > 100
    assert monitor.violations == []
    assert daemon_kills == ROUNDS
    successes = sum(r.status is rs.RunStatus.SUCCESS for r in by_id.values())
    assert successes >= RUNS // 2, (successes, worker_kills)
