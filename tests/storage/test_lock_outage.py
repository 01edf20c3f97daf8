"""Another program holding the storage's write lock (a backup, a ``sqlite3`` shell).

The holder is a real second process with ``BEGIN IMMEDIATE`` open on the file.
A lock held for seconds (here 8, more than SQLite's 5 s busy timeout) fails
nothing: writes retry with backoff for up to ``WRITE_PATIENCE_S`` (45 s). A
longer outage fails cleanly with one ``rs.StorageLocked``, never an exception
group. A pool release whose write fails loses no waiter: the waiter is put back
in line and gets its slot once the release is written.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

import rivers as rs
from rivers._clock import SYSTEM_CLOCK
from rivers.actors.events import EventWriter
from rivers.actors.pool_claim import Claim
from rivers.actors.pools import PoolManager
from rivers.storage import _sqlite_connection as sqlite_connection, open_backend

_HOLD_LOCK = textwrap.dedent(
    """
    import sqlite3, sys, time

    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    conn.execute("COMMIT")
    print("released", flush=True)
    """
)


@contextlib.asynccontextmanager
async def _hold_lock(
    path: Path, seconds: float
) -> AsyncIterator[subprocess.Popen[str]]:
    """Run a process holding the write lock for ``seconds``, from when it holds it."""
    with subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None
            line = await anyio.to_thread.run_sync(holder.stdout.readline)
            assert line == "locked\n", line
            yield holder
        finally:
            if holder.poll() is None:
                holder.kill()


# A step that signals it runs, then waits for the test to let it end.
_GATE: dict[str, anyio.Event] = {}


@rs.Asset(pool="db")
async def gated() -> int:
    _GATE["entered"].set()
    await _GATE["go"].wait()
    return 1


async def test_a_write_lock_held_8s_by_another_process_fails_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rivers.db"
    _GATE.update(entered=anyio.Event(), go=anyio.Event())
    repo = rs.CodeRepository(
        [gated],
        pool_limits={"db": 1},
        executor=rs.Executor.in_process(),
        backend=rs.RunBackendConfig(storage=str(path)),
    )
    results: list[rs.MaterializeResult] = []
    both_done = anyio.Event()
    async with rs.Runtime(repo) as rt:

        async def one_run() -> None:
            results.append(await rt.materialize())
            if len(results) == 2:
                both_done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(one_run)
            tg.start_soon(one_run)  # its step waits in the pool's line
            await _GATE["entered"].wait()
            with anyio.fail_after(5):
                while not await rt.storage.get_pending_steps("db"):
                    await anyio.sleep(0.01)
            async with _hold_lock(path, 8) as holder:
                locked_at = time.monotonic()
                _GATE["go"].set()  # the step ends (and releases) under the lock
                assert holder.poll() is None
                with anyio.fail_after(60):
                    await both_done.wait()
                done_after = time.monotonic() - locked_at
                assert await anyio.to_thread.run_sync(holder.wait, 5) == 0
    assert [r.status for r in results] == [rs.RunStatus.SUCCESS] * 2
    assert done_after >= 7, done_after  # they really waited the lock out
    async with open_backend(path) as storage:
        runs = await storage.runs.get_runs(limit=None)
        assert [r.status for r in runs] == [rs.RunStatus.SUCCESS] * 2
        pool = await storage.pools.get_pool_info("db")
        assert (pool.claimed_slots, pool.pending_steps) == (0, 0)


async def test_a_waiter_gets_its_slot_after_a_release_whose_write_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Writes give up on the lock after 0.3 s here, so the release write fails.
    monkeypatch.setattr(sqlite_connection, "BUSY_TIMEOUT_S", 0.1)
    monkeypatch.setattr(sqlite_connection, "WRITE_PATIENCE_S", 0.3)
    path = tmp_path / "rivers.db"
    async with open_backend(path) as storage:
        await storage.pools.declare_pools({"db": 1}, declared_by="test")
        pools = PoolManager(
            storage=storage.pools,
            events=EventWriter(
                storage.events, SYSTEM_CLOCK
            ),  # not running: events wait
            owner="test",
            clock=SYSTEM_CLOCK,
            lease_s=60,
        )
        granted: list[Claim] = []
        got_slot = anyio.Event()

        async def waiter() -> None:
            claim = await pools.acquire(
                run_id="r2", step_key="b", pools=("db",), slots=1, priority=0, wait=True
            )
            assert claim is not None
            granted.append(claim)
            got_slot.set()

        async with anyio.create_task_group() as tg:
            await tg.start(pools.run)
            first = await pools.acquire(
                run_id="r1", step_key="a", pools=("db",), slots=1, priority=0, wait=True
            )
            assert first is not None
            tg.start_soon(waiter)
            with anyio.fail_after(5):
                while not await storage.pools.get_pending_steps("db"):
                    await anyio.sleep(0.01)
            async with _hold_lock(path, 1.5) as holder:
                # Its write fails: the lock outlasts it. (Before this fix, release
                # raised here and the waiter it had taken out of line was lost.)
                with contextlib.suppress(rs.StorageError):
                    await pools.release(first)
                assert holder.poll() is None  # the lock was held all along
                assert not got_slot.is_set()
                with anyio.fail_after(10):
                    await got_slot.wait()
                assert await anyio.to_thread.run_sync(holder.wait, 5) == 0
            holders = await storage.pools.get_pool_slot_holders("db")
            assert [(h.run_id, h.step_key) for h in holders] == [("r2", "b")]
            assert await storage.pools.get_pending_steps("db") == []
            await pools.release(granted[0])
            tg.cancel_scope.cancel()
        info = await storage.pools.get_pool_info("db")
        assert (info.claimed_slots, info.pending_steps) == (0, 0)


@rs.Asset
async def left() -> int:
    _GATE["entered"].set()
    await _GATE["go"].wait()
    return 1


@rs.Asset
async def right() -> int:
    await _GATE["go"].wait()
    return 2


async def test_a_lock_held_past_the_patience_fails_with_one_storage_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_connection, "BUSY_TIMEOUT_S", 0.1)
    monkeypatch.setattr(sqlite_connection, "WRITE_PATIENCE_S", 0.5)
    path = tmp_path / "rivers.db"
    _GATE.update(entered=anyio.Event(), go=anyio.Event())
    repo = rs.CodeRepository(
        [left, right],
        executor=rs.Executor.in_process(),
        backend=rs.RunBackendConfig(storage=str(path)),
    )
    held_to_the_end: list[bool] = []

    async def run() -> None:
        async with rs.Runtime(repo) as rt, anyio.create_task_group() as tg:
            tg.start_soon(rt.materialize)
            await _GATE["entered"].wait()
            async with _hold_lock(path, 4) as holder:
                try:
                    _GATE["go"].set()  # both steps end under the lock
                    await anyio.sleep(30)  # the run fails before this ends
                finally:
                    held_to_the_end.append(holder.poll() is None)

    began = time.monotonic()
    with pytest.raises(rs.StorageError) as raised:
        await run()
    took = time.monotonic() - began
    assert held_to_the_end == [True]  # it failed while the lock was still held
    assert type(raised.value) is rs.StorageLocked, repr(raised.value)
    assert str(path) in str(raised.value)
    assert took < 4, took
