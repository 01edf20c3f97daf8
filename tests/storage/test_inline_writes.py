"""Hot pool writes run on the event loop when the write lock is free, else wait.

``SqliteConnection.write_soon`` is what a pool claim and a release use: on a second
connection on the loop thread when ``BEGIN IMMEDIATE`` gets the lock at once, on
the SQLite thread (waiting its turn) when another writer holds it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from rivers.storage import _sqlite_connection as sqlite_connection
from rivers.storage.records import ClaimResult
from rivers.storage.sqlite import SqliteStorage


@asynccontextmanager
async def _opened(path: Path) -> AsyncIterator[SqliteStorage]:
    """The SQLite storage itself: these tests are about its own write paths."""
    storage = await SqliteStorage.open(path)
    try:
        yield storage
    finally:
        await storage.aclose()


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    async with _opened(tmp_path / "storage.db") as opened:
        yield opened


def _claim_one(storage: SqliteStorage, step: str) -> Awaitable[ClaimResult]:
    return storage.pools.claim_pool_slots(
        run_id="r", step_key=step, pools=("db",), slots=1, owner="me", lease_s=30
    )


async def _pool_names(storage: SqliteStorage) -> list[str]:
    rows = await storage.db.call(
        lambda conn: conn.execute("SELECT name FROM pools").fetchall()
    )
    return [row[0] for row in rows]


async def test_with_the_lock_free_the_transaction_runs_on_the_loop_thread(
    storage: SqliteStorage,
) -> None:
    def write(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO pools (name, updated_at) VALUES ('db', 0)")
        return threading.get_ident()

    assert await storage.db.write_soon(write) == threading.get_ident()
    assert await _pool_names(storage) == ["db"]


async def test_with_another_writer_holding_the_lock_it_waits_on_the_sqlite_thread(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.db"
    async with _opened(path) as storage:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        threads: list[int] = []

        def write(conn: sqlite3.Connection) -> None:
            threads.append(threading.get_ident())
            conn.execute("INSERT INTO pools (name, updated_at) VALUES ('db', 0)")

        async with anyio.create_task_group() as tg:
            tg.start_soon(storage.db.write_soon, write)
            await anyio.sleep(0.2)
            assert threads == []  # still waiting for the other writer
            other.execute("COMMIT")
        other.close()
        assert len(threads) == 1
        assert threads[0] != threading.get_ident()
        assert await _pool_names(storage) == ["db"]


async def test_a_failing_inline_transaction_leaves_nothing_behind(
    storage: SqliteStorage,
) -> None:
    def write(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO pools (name, updated_at) VALUES ('half', 0)")
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await storage.db.write_soon(write)
    assert await _pool_names(storage) == []
    # The connection is usable again: the next claim goes through.
    result = await _claim_one(storage, "after")
    assert result.granted


async def test_the_wal_is_folded_back_by_the_sqlite_thread_as_claims_go_by(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_connection, "INLINE_CHECKPOINT_EVERY", 10)
    path = tmp_path / "wal.db"
    async with _opened(path) as storage:
        for index in range(25):
            result = await _claim_one(storage, f"s{index}")
            assert result.granted
            await storage.pools.release_pool_slots("r", f"s{index}")
        # The WAL holds only what was written since the last checkpoint: the SQLite
        # thread checkpointed (and the log restarted) while the loop's connection,
        # which never checkpoints, wrote. Unchecked, 50 transactions leave ~175.
        probe = sqlite3.connect(path)
        busy, frames, _ = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        probe.close()
        assert busy == 0
        assert frames < 80
        assert storage.db.inline_commits < 10


async def test_release_and_claim_now_writes_nothing_while_another_writer_holds_the_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "now.db"
    async with _opened(path) as storage:
        first = await _claim_one(storage, "holder")
        assert first.granted
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            handed = storage.pools.release_and_claim_now(
                run_id="r",
                step_key="holder",
                claims=[("r", "next", ("db",), 1, 0)],
                owner="me",
                lease_s=30,
            )
            assert handed is None
        finally:
            other.execute("ROLLBACK")
            other.close()
        holders = await storage.pools.get_pool_slot_holders("db")
        assert [h.step_key for h in holders] == ["holder"]
        handed = storage.pools.release_and_claim_now(
            run_id="r",
            step_key="holder",
            claims=[("r", "next", ("db",), 1, 0)],
            owner="me",
            lease_s=30,
        )
        assert handed is not None
        assert [result.granted for result in handed] == [True]
        holders = await storage.pools.get_pool_slot_holders("db")
        assert [h.step_key for h in holders] == ["next"]
