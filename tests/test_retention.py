"""Bounded storage (issue 23): ``storage.prune``, ``rivers runs prune`` and a daemon's
``RunBackendConfig(retention=...)`` delete old finished runs with their events and
steps, keep live runs whole and every limit held, and give the space back."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

import rivers as rs
from rivers._clock import ManualClock

DAY = 86_400.0


def _repo(tmp_path: Path, *, retention: str | None = None, **options: Any) -> Any:
    @rs.Asset
    def raw() -> list[int]:
        return list(range(10))

    @rs.Asset
    def clean(raw: list[int]) -> list[int]:
        return [x for x in raw if x % 2]

    @rs.Asset
    def report(clean: list[int]) -> int:
        return sum(clean)

    return rs.CodeRepository(
        [raw, clean, report],
        backend=rs.RunBackendConfig(
            storage=str(tmp_path / "rivers.db"), retention=retention
        ),
        **options,
    )


def _count(tmp_path: Path, table: str) -> int:
    with sqlite3.connect(tmp_path / "rivers.db") as conn:
        found: int = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        return found


async def test_prune_deletes_old_finished_runs_and_keeps_everything_else(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    repo = _repo(tmp_path, run_queue=rs.RunQueueConfig(max_concurrent_runs=0))
    async with rs.Runtime(repo, clock=clock) as rt:
        old = [(await rt.materialize()).run_id for _ in range(3)]
        queued = (await rt.submit(rs.RunRequest())).run_id  # the queue is paused
        clock.advance(2 * DAY)
        recent = (await rt.materialize()).run_id
        dry = await rt.storage.prune(older_than="1d", dry_run=True)
        assert {r.run_id for r in await rt.storage.get_runs(limit=None)} == {
            *old,
            queued,
            recent,
        }
        pruned = await rt.storage.prune(older_than="1d")
        left = {r.run_id for r in await rt.storage.get_runs(limit=None)}
        old_events = [await rt.storage.get_events(run_id) for run_id in old]
        recent_events = await rt.storage.get_events(recent)
    assert left == {queued, recent}  # the queued run is old but not finished
    assert old_events == [[], [], []]
    assert recent_events  # the run that stays keeps its history
    assert (pruned.runs, pruned.steps) == (3, 9)
    assert pruned.events == dry.events > 0
    assert (dry.runs, dry.steps, dry.dry_run, pruned.dry_run) == (3, 9, True, False)
    # Three materializations of each asset went; each asset's latest (the recent
    # run's) stays, as the only row of its asset.
    assert pruned.materializations == dry.materializations == 9
    assert _count(tmp_path, "materializations") == 3
    assert _count(tmp_path, "steps") == 3
    assert _count(tmp_path, "run_tags") == 0


async def test_each_assets_latest_materialization_outlives_its_run(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    async with rs.Runtime(_repo(tmp_path), clock=clock) as rt:
        old = (await rt.materialize()).run_id
        clock.advance(2 * DAY)
        recent = (await rt.materialize(["raw"])).run_id
        pruned = await rt.storage.prune(older_than="1d")
    assert (pruned.runs, pruned.materializations) == (1, 1)  # raw's old entry
    with sqlite3.connect(tmp_path / "rivers.db") as conn:
        rows = conn.execute("SELECT asset_key, run_id FROM materializations").fetchall()
    assert sorted(rows) == [("clean", old), ("raw", recent), ("report", old)]


async def test_the_newest_run_and_event_stay_so_no_id_is_used_twice(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    async with rs.Runtime(_repo(tmp_path), clock=clock) as rt:
        first = (await rt.materialize()).run_id
        newest = (await rt.materialize()).run_id
        clock.advance(2 * DAY)
        pruned = await rt.storage.prune(older_than="1d")
        left = [r.run_id for r in await rt.storage.get_runs(limit=None)]
        again = await rt.materialize()  # would reuse the pruned rowids and event ids
        events = await rt.storage.get_events()
    assert pruned.runs == 1
    assert left == [newest]
    assert first != newest
    assert again.success
    ids = [event.event_id for event in events]
    assert ids == sorted(set(ids))


async def test_pruning_gives_the_space_back_to_the_disk(tmp_path: Path) -> None:
    clock = ManualClock()
    async with rs.Runtime(_repo(tmp_path), clock=clock) as rt:
        for _ in range(300):
            await rt.materialize()
    grown = (tmp_path / "rivers.db").stat().st_size  # checkpointed at close
    clock.advance(2 * DAY)
    async with rs.Runtime(_repo(tmp_path), clock=clock) as rt:
        pruned = await rt.storage.prune(older_than="1d")
    with sqlite3.connect(tmp_path / "rivers.db") as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert pruned.runs == 299  # the newest run stays (its rowid is never reused)
    assert pruned.bytes_after < pruned.bytes_before / 4, pruned
    assert (tmp_path / "rivers.db").stat().st_size < grown / 4


async def test_pruning_during_a_busy_run_loses_no_live_state_and_holds_its_pool(
    tmp_path: Path,
) -> None:
    running = 0
    peak = 0

    def make(index: int) -> rs.Asset[Any, Any]:
        async def body() -> int:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await anyio.sleep(0.02)
            running -= 1
            return index

        body.__name__ = f"busy{index}"
        return rs.Asset(body, pool="db")

    clock = ManualClock()
    old_repo = _repo(tmp_path)
    busy = rs.CodeRepository(
        [make(i) for i in range(12)],
        name="busy",
        pool_limits={"db": 1},
        backend=rs.RunBackendConfig(storage=str(tmp_path / "rivers.db")),
    )
    async with rs.Runtime(old_repo, clock=clock) as rt:
        for _ in range(250):  # more than one prune batch
            await rt.materialize()
    clock.advance(2 * DAY)
    async with rs.Runtime(busy, clock=clock) as rt:
        results: list[rs.MaterializeResult] = []
        pruned: list[rs.PruneResult] = []
        async with anyio.create_task_group() as tg:

            async def work() -> None:
                results.append(await rt.materialize())

            async def prune() -> None:
                pruned.append(await rt.storage.prune(older_than="1d"))

            tg.start_soon(work)
            with anyio.fail_after(10):  # the live run is written: it is the newest
                while not await rt.storage.get_runs(status="STARTED"):
                    await anyio.sleep(0.005)
            tg.start_soon(prune)
        live = results[0]
        steps = await rt.storage.get_run(live.run_id)
        events = await rt.storage.get_events(live.run_id)
        holders = await rt.storage.get_pool_slot_holders("db")
    assert live.success
    assert steps is not None
    assert steps.status is rs.RunStatus.SUCCESS
    assert sum(e.kind == "STEP_SUCCESS" for e in events) == 12
    assert peak == 1  # the pool's limit held while the prune ran
    assert holders == []
    assert pruned[0].runs == 250
    assert _count(tmp_path, "runs") == 1


async def test_a_daemon_applies_its_retention_at_start(tmp_path: Path) -> None:
    clock = ManualClock()
    async with rs.Runtime(_repo(tmp_path), clock=clock) as rt:
        old = (await rt.materialize()).run_id
    clock.advance(2 * 3600)
    # A one-off runtime (repo.materialize(), rivers materialize) never prunes: on
    # the real clock the run above is years old.
    assert (await _repo(tmp_path, retention="1h").materialize()).success
    assert _count(tmp_path, "runs") == 2
    kept = _repo(tmp_path, retention="3h")
    async with rs.Runtime(kept, clock=clock) as rt:
        await anyio.sleep(0.3)
        assert await rt.storage.get_run(old) is not None  # 2 h < 3 h: kept
    pruning = _repo(tmp_path, retention="1h")
    async with rs.Runtime(pruning, clock=clock) as rt:
        with anyio.fail_after(10):
            while await rt.storage.get_run(old) is not None:
                await anyio.sleep(0.02)
        assert len(await rt.storage.get_runs(limit=None)) == 1  # the one-off's run


def test_retention_is_checked() -> None:
    assert rs.RunBackendConfig(retention="30d").retention_s == 30 * DAY
    assert rs.RunBackendConfig().retention_s is None
    with pytest.raises(rs.ConfigError, match=r"RunBackendConfig\.retention must be"):
        rs.RunBackendConfig(retention="10s")
    with pytest.raises(rs.ConfigError, match=r"RunBackendConfig\.retention must be"):
        rs.RunBackendConfig(retention="soon")


def test_rivers_runs_prune(tmp_path: Path) -> None:
    _repo(tmp_path).materialize()
    _repo(tmp_path).materialize()  # the newest run always stays
    env = {**os.environ, "RIVERS_HOME": str(tmp_path / "home")}
    cli = [sys.executable, "-m", "rivers", "--storage", str(tmp_path / "rivers.db")]

    def rivers(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cli, "runs", "prune", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    dry = rivers("--older-than", "0s", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("would prune 1 finished run(s) created and ended")
    assert "nothing deleted (--dry-run)" in dry.stdout
    assert _count(tmp_path, "runs") == 2
    done = rivers("--older-than", "0s", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert (document["runs"], document["steps"], document["dry_run"]) == (1, 3, False)
    assert _count(tmp_path, "runs") == 1
    bad = rivers("--older-than", "soon")
    assert bad.returncode == 2
    (line,) = bad.stderr.strip().splitlines()
    assert line.startswith("rivers: error: --older-than must be a duration")
