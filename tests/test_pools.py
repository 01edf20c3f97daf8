"""Concurrency pools end to end: recorded overlap, leases, cancel, processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import rivers as rs
from rivers.storage import open_backend
from tests._overlap import logged_intervals, peak_overlap, pool_script


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The storage the processes of a cross-process test share: a SQLite file in
    the test's folder, or a fresh PostgreSQL database (separate connections)."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return str(tmp_path / "shared.db")


class Overlap:
    """Counts how many tracked steps run at once (async steps in this process)."""

    def __init__(self) -> None:
        self.running: dict[str, int] = {}
        self.peak: dict[str, int] = {}

    def asset(
        self, name: str, group: str, seconds: float, **options: Any
    ) -> rs.Asset[Any, Any]:
        async def body() -> None:
            self.running[group] = self.running.get(group, 0) + 1
            self.peak[group] = max(self.peak.get(group, 0), self.running[group])
            try:
                await anyio.sleep(seconds)
            finally:
                self.running[group] -= 1

        body.__name__ = name
        return rs.Asset(body, **options)


async def test_limit_two_with_eight_steps_peaks_at_exactly_two() -> None:
    overlap = Overlap()
    repo = rs.CodeRepository(
        [overlap.asset(f"q{i}", "db", 0.1, pool="db") for i in range(8)],
        pool_limits={"db": 2},
    )
    began = time.monotonic()
    result = await repo.materialize()
    assert result.success
    assert overlap.peak["db"] == 2
    assert time.monotonic() - began >= 0.4  # 8 steps, 2 at a time, 0.1 s each


async def test_pool_slots_two_with_limit_four_runs_two_at_once() -> None:
    overlap = Overlap()
    repo = rs.CodeRepository(
        [
            overlap.asset(f"h{i}", "heavy", 0.1, pool="wh", pool_slots=2)
            for i in range(5)
        ],
        pool_limits={"wh": 4},
    )
    assert (await repo.materialize()).success
    assert overlap.peak["heavy"] == 2


async def test_a_step_with_two_pools_waits_for_both() -> None:
    overlap = Overlap()
    assets = [overlap.asset(f"a{i}", "a_only", 0.1, pool="a") for i in range(3)]
    assets += [overlap.asset(f"ab{i}", "both", 0.1, pool=["a", "b"]) for i in range(3)]
    assets += [overlap.asset(f"b{i}", "b_only", 0.1, pool="b") for i in range(3)]
    repo = rs.CodeRepository(assets, pool_limits={"a": 2, "b": 1})

    async with rs.Runtime(repo) as rt:
        result = await rt.materialize()
        assert result.success
        holders = await rt.storage.get_pool_slot_holders("a")
    assert holders == []
    # "both" steps count in a and b: never more than b's limit of them at once.
    assert overlap.peak["both"] == 1
    assert overlap.peak.get("b_only", 0) + 0 <= 1


async def test_two_concurrent_runs_share_the_pool_limit() -> None:
    overlap = Overlap()
    first = rs.CodeRepository(
        [overlap.asset(f"x{i}", "db", 0.1, pool="db") for i in range(4)],
        pool_limits={"db": 3},
        name="first",
    )
    second = rs.CodeRepository(
        [overlap.asset(f"y{i}", "db", 0.1, pool="db") for i in range(4)],
        pool_limits={"db": 3},
        name="second",
    )
    async with rs.Runtime(first, second) as rt, anyio.create_task_group() as tg:
        tg.start_soon(rt.materialize, None)
        tg.start_soon(lambda: rt.materialize(repository=second))
    assert overlap.peak["db"] == 3


async def test_slots_above_the_effective_limit_fail_at_once() -> None:
    @rs.Asset(pool="db", pool_slots=3)
    def needs_three() -> int:
        return 1

    repo = rs.CodeRepository([needs_three])
    async with rs.Runtime(repo) as rt:
        await rt.storage.set_pool_limit("db", 2)
        with anyio.fail_after(5):
            result = await rt.materialize()
    assert result.status is rs.RunStatus.FAILURE
    assert isinstance(result.error, rs.PoolTooSmall)
    assert "needs 3 slots of pool 'db', whose limit is 2" in str(result.error)


async def test_a_limit_raised_while_steps_wait_is_picked_up() -> None:
    overlap = Overlap()
    repo = rs.CodeRepository(
        [overlap.asset(f"w{i}", "db", 0.6, pool="db") for i in range(3)],
        pool_limits={"db": 1},
    )
    async with rs.Runtime(repo) as rt, anyio.create_task_group() as tg:
        tg.start_soon(rt.materialize, None)
        with anyio.fail_after(5):
            while (await rt.storage.get_pool_info("db")).pending_steps < 2:
                await anyio.sleep(0.02)
        await rt.storage.set_pool_limit("db", 3)
    assert overlap.peak["db"] == 3


async def test_blocked_steps_emit_events_and_are_listed_as_pending() -> None:
    overlap = Overlap()
    repo = rs.CodeRepository(
        [overlap.asset(f"e{i}", "db", 0.3, pool="db", priority=i) for i in range(3)],
        pool_limits={"db": 1},
    )
    async with rs.Runtime(repo) as rt:
        pending: list[rs.PendingStep] = []
        async with anyio.create_task_group() as tg:
            results: list[rs.MaterializeResult] = []

            async def go() -> None:
                results.append(await rt.materialize())

            tg.start_soon(go)
            with anyio.fail_after(5):
                while len(pending) < 2:
                    pending = await rt.storage.get_pending_steps("db")
                    await anyio.sleep(0.01)
            info = await rt.storage.get_pool_info("db")
            assert info.limit == 1
            assert info.limit_source == "repository"
            assert info.claimed_slots == 1
            holders = await rt.storage.get_pool_slot_holders("db")
            assert len(holders) == 1
            assert holders[0].lease_expires_at > holders[0].claimed_at
        events = await rt.storage.get_events(run_id=results[0].run_id)
    assert [p.priority for p in pending] == sorted(
        (p.priority for p in pending), reverse=True
    )
    kinds = [e.kind for e in events]
    assert kinds.count("STEP_POOL_BLOCKED") == 2
    assert kinds.count("STEP_POOL_CLAIMED") == 3
    assert kinds.count("POOL_SLOTS_RELEASED") == 3
    blocked = [e for e in events if e.kind == "STEP_POOL_BLOCKED"]
    assert all(e.data["pool"] == "db" and e.data["limit"] == 1 for e in blocked)


async def test_cancel_while_waiting_and_while_holding_leaves_nothing_behind() -> None:
    @rs.Asset(pool="db")
    async def holder() -> None:
        await anyio.sleep(60)

    @rs.Asset(pool="db")
    async def waiter() -> None:
        await anyio.sleep(60)

    repo = rs.CodeRepository([holder, waiter], pool_limits={"db": 1})
    async with rs.Runtime(repo) as rt:
        results: list[rs.MaterializeResult] = []
        async with anyio.create_task_group() as tg:

            async def go() -> None:
                results.append(await rt.materialize())

            tg.start_soon(go)
            with anyio.fail_after(5):
                while (await rt.storage.get_pool_info("db")).pending_steps < 1:
                    await anyio.sleep(0.01)
            (run,) = await rt.storage.get_runs(status=rs.RunStatus.STARTED)
            await rt.cancel(run.run_id)
        info = await rt.storage.get_pool_info("db")
        assert info.claimed_slots == 0
        assert info.pending_steps == 0
        assert await rt.storage.get_pool_slot_holders("db") == []
        assert rt._pool_manager.held == []
    assert results[0].status is rs.RunStatus.CANCELED


async def test_leases_are_renewed_for_long_steps() -> None:
    @rs.Asset(pool="db")
    async def long_step() -> int:
        await anyio.sleep(1.2)
        return 1

    repo = rs.CodeRepository(
        [long_step],
        pool_limits={"db": 1},
        backend=rs.RunBackendConfig(lease_duration="0.4s", lease_gc_interval="0.1s"),
    )
    result = await repo.materialize()
    assert result.success
    async with open_backend() as storage:
        kinds = [e.kind for e in await storage.events.get_events(run_id=result.run_id)]
    assert "LEASE_EXPIRED" not in kinds


async def test_freed_slots_fail_the_holder_with_lease_lost() -> None:
    @rs.Asset(pool="db")
    async def holds() -> int:
        await anyio.sleep(30)
        return 1

    repo = rs.CodeRepository(
        [holds],
        pool_limits={"db": 1},
        backend=rs.RunBackendConfig(lease_duration="0.6s", lease_gc_interval="0.1s"),
    )
    async with rs.Runtime(repo) as rt:
        results: list[rs.MaterializeResult] = []
        async with anyio.create_task_group() as tg:

            async def go() -> None:
                results.append(await rt.materialize())

            tg.start_soon(go)
            with anyio.fail_after(5):
                while not await rt.storage.get_pool_slot_holders("db"):
                    await anyio.sleep(0.01)
            holder = (await rt.storage.get_pool_slot_holders("db"))[0]
            assert await rt.storage.free_pool_slots(holder.run_id) == 1
    (result,) = results
    assert result.status is rs.RunStatus.FAILURE
    assert isinstance(result.error, rs.LeaseLost)
    assert "lost its lease on pool 'db'" in str(result.error)


def test_two_processes_sharing_one_storage_share_the_limit(
    tmp_path: Path, storage_url: str
) -> None:
    storage = storage_url
    env = {**os.environ, "RIVERS_HOME": str(tmp_path / "home")}
    limits = 'pool_limits={"shared": 2},'
    scripts = [
        pool_script(
            tmp_path, n, storage, hold_s=0.25, count=4, repository_options=limits
        )
        for n in ("left", "right")
    ]
    processes = [
        subprocess.Popen(
            [sys.executable, str(s)], env=env, stdout=subprocess.PIPE, text=True
        )
        for s in scripts
    ]
    outputs = [p.communicate(timeout=60)[0].strip() for p in processes]
    assert outputs == ["SUCCESS", "SUCCESS"]
    intervals = logged_intervals(tmp_path, "left", "right")
    assert len(intervals) == 8
    assert peak_overlap(intervals) == 2


async def test_slots_of_a_killed_process_are_reclaimed_after_the_lease(
    tmp_path: Path, storage_url: str
) -> None:
    storage = storage_url
    script = tmp_path / "holder.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import anyio
            import rivers as rs

            @rs.Asset(pool="shared")
            async def holds_forever() -> None:
                await anyio.sleep(600)

            repo = rs.CodeRepository(
                [holds_forever],
                pool_limits={{"shared": 1}},
                backend=rs.RunBackendConfig(
                    storage={storage!r}, lease_duration="1.5s", lease_gc_interval="0.2s"
                ),
            )
            repo.materialize()
            """
        )
    )
    env = {**os.environ, "RIVERS_HOME": str(tmp_path / "home")}
    process = subprocess.Popen([sys.executable, str(script)], env=env)
    try:
        async with open_backend(storage) as observer:
            with anyio.fail_after(20):
                while (await observer.pools.get_pool_info("shared")).claimed_slots < 1:
                    await anyio.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    killed_at = time.monotonic()

    @rs.Asset(pool="shared")
    async def next_in_line() -> int:
        return 7

    repo = rs.CodeRepository(
        [next_in_line],
        pool_limits={"shared": 1},
        backend=rs.RunBackendConfig(
            storage=storage, lease_duration="1.5s", lease_gc_interval="0.2s"
        ),
    )
    async with rs.Runtime(repo) as rt:
        with anyio.fail_after(10):
            result = await rt.materialize()
        waited = time.monotonic() - killed_at
        dead_runs = await rt.storage.get_runs(status=rs.RunStatus.FAILURE)
    async with open_backend(storage) as reader:  # after the runtime wrote its log
        events = await reader.events.get_events(kinds=["LEASE_EXPIRED"])
    assert result.success
    assert waited < 1.5 + 0.2 + 2.0  # lease + gc interval + generous slack
    assert len(dead_runs) == 1
    assert "died" in (dead_runs[0].reason or "")
    assert [e.step_key for e in events] == ["holds_forever"]


@pytest.mark.timeout(60)
async def test_pool_wins_but_other_steps_fill_the_remaining_workers(
    tmp_path: Path,
) -> None:
    directory = str(tmp_path)

    def make(name: str, pool: str | None) -> rs.Asset[Any, Any]:
        def body() -> None:
            began = time.time()
            time.sleep(1.0)
            with open(os.path.join(directory, f"{name}.json"), "w") as f:
                json.dump({"start": began, "end": time.time(), "pool": pool}, f)

        body.__name__ = name
        return rs.Asset(body, pool=pool)

    assets = [make(f"pooled{i}", "warehouse") for i in range(4)]
    assets += [make(f"free{i}", None) for i in range(6)]
    repo = rs.CodeRepository(
        assets,
        pool_limits={"warehouse": 2},
        executor=rs.Executor.parallel(max_workers=8),
    )
    async with rs.Runtime(repo) as rt:
        await rt.materialize(["free0"])  # start the eight workers outside the timing
        await rt.materialize(
            ["free0", "free1", "free2", "free3", "free4", "free5", "pooled0", "pooled1"]
        )
        for path in tmp_path.glob("*.json"):
            path.unlink()
        result = await rt.materialize()
    assert result.success, result.error
    records = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    everything = [(r["start"], r["end"]) for r in records]
    pooled = [(r["start"], r["end"]) for r in records if r["pool"]]
    assert peak_overlap(pooled) == 2
    assert peak_overlap(everything) == 8
