"""Time-windowed pool limits end to end, on a manual clock.

The LimitWindows actor is driven by ``tick_now()`` after moving a ``ManualClock``;
steps are async assets held open by the test, so what overlaps is recorded, not
timed. The storage is a real SQLite file.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from rich.console import Console

import rivers as rs
from rivers._clock import ManualClock
from rivers.actors.limit_windows import LimitWindows

OFFICE_HOURS = "0 8-17 * * *"  # 08:00-17:59 UTC every day


def _at(hour: int, minute: int = 0, day: int = 1) -> float:
    return datetime(2024, 1, day, hour, minute, tzinfo=UTC).timestamp()


# A second before an edge: moving the clock far would run out the holders' leases.
JUST_BEFORE = -1.0


class Gates:
    """Async assets on one pool that run until the test opens their gate."""

    def __init__(self, names: list[str], pool: str) -> None:
        self.gates = {name: anyio.Event() for name in names}
        self.running: set[str] = set()
        self.peak = 0
        self.assets = [self._asset(name, pool) for name in names]

    def _asset(self, name: str, pool: str) -> rs.Asset[Any, Any]:
        async def body() -> None:
            self.running.add(name)
            self.peak = max(self.peak, len(self.running))
            try:
                await self.gates[name].wait()
            finally:
                self.running.discard(name)

        body.__name__ = name
        return rs.Asset(body, pool=pool)

    async def until_running(self, count: int) -> None:
        with anyio.fail_after(10):
            while len(self.running) != count:
                await anyio.sleep(0.01)


def _windows(rt: rs.Runtime) -> LimitWindows:
    actor = rt._limit_windows
    assert actor is not None, "the runtime started no LimitWindows actor"
    return actor


async def _pending(rt: rs.Runtime, pool: str, count: int) -> None:
    with anyio.fail_after(10):
        while (await rt.storage.get_pool_info(pool)).pending_steps != count:
            await anyio.sleep(0.01)


async def test_the_limit_in_force_is_declared_at_start_and_changed_at_the_edge() -> (
    None
):
    @rs.Asset(pool="api")
    def call() -> int:
        return 1

    limit = rs.PoolLimit(3, windows={OFFICE_HOURS: 1})
    repo = rs.CodeRepository([call], pool_limits={"api": limit})
    clock = ManualClock(_at(9, 30))
    async with rs.Runtime(repo, clock=clock) as rt:
        assert (await rt.storage.get_pool_info("api")).limit == 1
        assert await _windows(rt).tick_now() == {}  # nothing changed yet
        clock.set(_at(18, 0))
        assert await _windows(rt).tick_now() == {"api": 3}
        info = await rt.storage.get_pool_info("api")
        assert (info.limit, info.limit_source) == (3, "repository")
        await rt.storage.set_pool_limit("api", 2)  # an override wins over windows
        clock.set(_at(8, 0, day=2))
        assert await _windows(rt).tick_now() == {"api": 1}
        info = await rt.storage.get_pool_info("api")
        assert (info.limit, info.limit_source) == (2, "override")


async def test_a_window_edge_that_raises_the_limit_starts_waiting_steps() -> None:
    gates = Gates(["a", "b", "c"], pool="api")
    repo = rs.CodeRepository(
        gates.assets, pool_limits={"api": rs.PoolLimit(3, windows={OFFICE_HOURS: 1})}
    )
    clock = ManualClock(_at(18, 0) + JUST_BEFORE)
    async with rs.Runtime(repo, clock=clock) as rt, anyio.create_task_group() as tg:
        tg.start_soon(rt.materialize, None)
        await gates.until_running(1)
        await _pending(rt, "api", 2)
        assert gates.peak == 1
        clock.set(_at(18, 0))
        assert await _windows(rt).tick_now() == {"api": 3}
        # No slot was released: the raised limit alone lets the two waiters in.
        await gates.until_running(3)
        for gate in gates.gates.values():
            gate.set()
    assert gates.peak == 3


async def test_a_window_edge_that_lowers_the_limit_lets_holders_finish_first() -> None:
    gates = Gates(["a", "b", "c", "d"], pool="api")
    repo = rs.CodeRepository(
        gates.assets, pool_limits={"api": rs.PoolLimit(3, windows={OFFICE_HOURS: 1})}
    )
    clock = ManualClock(_at(8, 0) + JUST_BEFORE)
    async with rs.Runtime(repo, clock=clock) as rt, anyio.create_task_group() as tg:
        tg.start_soon(rt.materialize, None)
        await gates.until_running(3)
        await _pending(rt, "api", 1)
        clock.set(_at(8, 0))
        assert await _windows(rt).tick_now() == {"api": 1}
        assert len(gates.running) == 3  # holders above the new limit run on
        holders = sorted(gates.running)
        waiting = ({"a", "b", "c", "d"} - set(holders)).pop()
        gates.gates[holders[0]].set()
        gates.gates[holders[1]].set()
        await gates.until_running(1)
        # Two slots came back, but one holder still has the only slot of the new
        # limit: the waiter stays waiting.
        await anyio.sleep(0.2)
        assert waiting not in gates.running
        assert (await rt.storage.get_pool_info("api")).pending_steps == 1
        gates.gates[holders[2]].set()
        with anyio.fail_after(10):
            while waiting not in gates.running:
                await anyio.sleep(0.01)
        assert gates.running == {waiting}
        gates.gates[waiting].set()
    assert gates.peak == 3


async def test_the_window_schedule_is_stored_for_every_reader(tmp_path: Path) -> None:
    storage = tmp_path / "rivers.db"

    @rs.Asset(pool="api")
    def call() -> int:
        return 1

    repo = rs.CodeRepository(
        [call],
        pool_limits={
            "api": rs.PoolLimit(4, windows={"0 8-18 * * 1-5": 1}, timezone="UTC")
        },
        backend=rs.RunBackendConfig(storage=str(storage)),
    )
    async with rs.Runtime(repo) as rt:
        assert (await rt.materialize()).success
    listed = subprocess.run(
        [sys.executable, "-m", "rivers", "--storage", str(storage), "pools", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "api: " in listed.stdout
    assert "base limit 4" in listed.stdout or "window '0 8-18 * * 1-5'" in listed.stdout
    command = [sys.executable, "-m", "rivers", "--storage", str(storage), "pools"]
    info = subprocess.run(
        [*command, "info", "api", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert info.returncode == 0, info.stderr
    windows = json.loads(info.stdout)["windows"]
    assert windows["windows"] == {"0 8-18 * * 1-5": 1}
    assert windows["base"] == 4
    assert windows["limit_in_force"] in (1, 4)
    assert windows["limit_in_force"] == json.loads(info.stdout)["pool"]["limit"]
    assert windows["next_change_at"] is not None


@pytest.mark.parametrize("hour", [3, 12])
async def test_pools_list_names_the_window_in_force_and_the_next_change(
    hour: int,
) -> None:
    from rivers.cli.pool_text import window_text
    from rivers.core.limit_windows import LimitSchedule, LimitWindow

    schedule = LimitSchedule(4, (LimitWindow(OFFICE_HOURS, 1),))
    info = rs.PoolInfo(
        name="api",
        limit=schedule.limit_at(_at(hour)),
        limit_source="repository",
        claimed_slots=0,
        pending_steps=0,
    )
    text = window_text(schedule, info, _at(hour))
    if hour == 12:
        assert text.startswith("window '0 8-17 * * *' in force (1 slots); 4 from ")
        assert "2024-01-01 18:00 UTC (in 6h" in text
    else:
        assert text.startswith("base limit 4 (no window in force); 1 from ")
        assert "2024-01-01 08:00 UTC (in 5h" in text


async def test_a_changed_declared_limit_wakes_the_runtimes_waiting_for_the_pool(
    tmp_path: Path,
) -> None:
    from rivers._wakeups import listen
    from rivers.storage import open_backend

    async with open_backend(tmp_path / "rivers.db") as backend:
        pools = backend.pools
        await pools.declare_pools({"api": 1}, declared_by="repo")

        async def claim(run_id: str, step_key: str, owner: str) -> bool:
            result = await pools.claim_pool_slots(
                run_id=run_id,
                step_key=step_key,
                pools=("api",),
                slots=1,
                owner=owner,
                lease_s=60.0,
            )
            return result.granted

        held = await claim("r1", "a", "host:1:1")
        refused = not await claim("r2", "b", "host:2:2")
        assert held
        assert refused
        await pools.add_pending_step(
            pools=("api",),
            run_id="r2",
            step_key="b",
            slots=1,
            priority=0,
            owner="host:2:2",
        )
        assert (await pools.get_pool_info("api")).pending_steps == 1
        woken = anyio.Event()
        async with anyio.create_task_group() as tg:
            await tg.start(listen, tmp_path / "rivers.db", "host:2:2", woken.set)
            await pools.declare_pools({"api": 1}, declared_by="repo")  # unchanged
            await anyio.sleep(0.3)
            assert not woken.is_set()
            await pools.declare_pools({"api": 2}, declared_by="repo")
            with anyio.fail_after(5):
                await woken.wait()
            tg.cancel_scope.cancel()


async def test_the_actor_changes_the_limit_on_its_own_at_the_edge() -> None:
    @rs.Asset(pool="api")
    def call() -> int:
        return 1

    limit = rs.PoolLimit(3, windows={OFFICE_HOURS: 1})
    repo = rs.CodeRepository([call], pool_limits={"api": limit})
    clock = ManualClock(_at(18, 0) - 0.3)  # the actor sleeps 0.3 s until the edge
    async with rs.Runtime(repo, clock=clock) as rt:
        assert (await rt.storage.get_pool_info("api")).limit == 1
        clock.set(_at(18, 0))
        with anyio.fail_after(5):  # no tick_now(): the actor's own sleep ends
            while (await rt.storage.get_pool_info("api")).limit != 3:
                await anyio.sleep(0.02)


async def test_max_concurrent_runs_follows_its_windows_without_a_restart() -> None:
    running: list[int] = []
    peak: list[int] = [0]

    @rs.Asset
    async def work() -> None:
        running.append(1)
        peak[0] = max(peak[0], len(running))
        await anyio.sleep(0.15)
        running.pop()

    queue = rs.RunQueueConfig(
        max_concurrent_runs=3, dequeue_interval="20ms", windows={OFFICE_HOURS: 1}
    )
    repo = rs.CodeRepository([work], run_queue=queue)
    clock = ManualClock(_at(8, 0) + JUST_BEFORE)
    async with rs.Runtime(repo, clock=clock) as rt:
        handles = [await rt.submit(rs.RunRequest()) for _ in range(3)]
        with anyio.fail_after(10):
            for handle in handles:
                await rt.wait_for(handle.run_id)
        before = peak[0]
        clock.set(_at(8, 0))  # the window: 1 run at a time
        peak[0] = 0
        handles = [await rt.submit(rs.RunRequest()) for _ in range(3)]
        with anyio.fail_after(10):
            while "1/1 in flight" not in (why := await rt.explain(handles[2].run_id)):
                await anyio.sleep(0.02)
            for handle in handles:
                await rt.wait_for(handle.run_id)
    assert before == 3
    assert peak[0] == 1
    assert f"max_concurrent_runs (window '{OFFICE_HOURS}') 1/1 in flight" in why


async def test_top_shows_the_limit_in_force_and_its_next_change() -> None:
    from rivers.dashboard.render import render
    from rivers.dashboard.snapshot import read_snapshot

    @rs.Asset(pool="api")
    def call() -> int:
        return 1

    limit = rs.PoolLimit(3, windows={OFFICE_HOURS: 1})
    repo = rs.CodeRepository([call], pool_limits={"api": limit})
    clock = ManualClock(_at(9, 30))
    async with rs.Runtime(repo, clock=clock) as rt:
        snapshot = await read_snapshot(rt._roles)
    (pool,) = snapshot.pools
    assert (pool.limit, pool.limit_source) == (1, "repository")
    assert pool.next_change == "3 at Mon 18:00 UTC"
    console = Console(width=160, record=True, color_system=None, file=io.StringIO())
    console.print(render(snapshot, 160))
    assert "1 repository, 3 at Mon 18:00 UTC" in console.export_text()
