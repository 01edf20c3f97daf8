"""What only the SQLite storage does: files, permissions, URLs, marks, opening, locking.

The behaviour every backend shares is in ``tests/storage/contract/``."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest

import rivers as rs
from rivers.storage import _sqlite_connection as sqlite_connection, open_backend
from rivers.storage.base import StorageBackend
from rivers.storage.schema import APPLICATION_ID, SCHEMA_VERSION
from rivers.storage.sqlite import BUSY_TIMEOUT_S
from tests.storage.contract._helpers import batch, logged, new_run


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------------- files


async def test_a_new_file_is_private_and_so_is_its_new_directory(
    tmp_path: Path,
) -> None:
    path = tmp_path / "made" / "home" / "rivers.db"
    async with open_backend(path) as storage:
        await storage.runs.create_run(new_run("r1"))
        wal = path.with_name("rivers.db-wal")
        assert wal.exists()
        assert _mode(wal) == 0o600
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    assert _mode(path.parent.parent) == 0o700  # a missing parent too


async def test_reopening_keeps_the_data(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with open_backend(path) as storage:
        await storage.runs.create_run(new_run("r1", tags={"team": "core"}))
        await storage.events.append_events(batch(logged("r1", "kept")))
    async with open_backend(path) as storage:
        record = await storage.runs.get_run("r1")
        events = await storage.events.get_events(run_id="r1")
    assert record is not None
    assert record.tags == {"team": "core"}
    assert [e.data["message"] for e in events] == ["kept"]


async def test_a_sqlite_url_with_an_absolute_path_opens_that_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "by-url.db"
    assert path.is_absolute()
    async with open_backend(f"sqlite:///{path}") as storage:
        assert Path(storage.describe) == path
        await storage.runs.create_run(new_run("r1"))
    async with open_backend(path) as storage:
        assert await storage.runs.get_run("r1") is not None


async def test_a_sqlite_url_with_a_relative_path_is_relative_to_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with open_backend("sqlite:///relative.db") as storage:
        await storage.runs.create_run(new_run("r1"))
    assert (tmp_path / "relative.db").is_file()


async def test_another_url_scheme_is_a_config_error() -> None:
    with pytest.raises(rs.ConfigError, match="scheme 'mysql'"):
        async with open_backend("mysql://db/rivers"):
            pass


async def test_the_default_storage_is_under_rivers_home(rivers_home: Path) -> None:
    async with open_backend() as storage:
        assert Path(storage.describe) == rivers_home / "rivers.db"
    assert (rivers_home / "rivers.db").is_file()


async def test_a_directory_is_not_a_storage_file(tmp_path: Path) -> None:
    with pytest.raises(rs.StorageUnavailable, match="is not a file"):
        async with open_backend(tmp_path):
            pass


async def test_a_file_of_random_bytes_is_refused_naming_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "noise.db"
    noise = os.urandom(8192)
    path.write_bytes(noise)
    with pytest.raises(rs.StorageUnavailable) as raised:
        async with open_backend(path):
            pass
    assert str(path) in str(raised.value)
    assert "not a rivers database" in str(raised.value)
    assert path.read_bytes() == noise


async def test_a_sqlite_file_of_another_app_is_refused_and_left_alone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers (name) VALUES ('ada')")
    conn.close()
    with pytest.raises(rs.StorageUnavailable, match="did not create") as raised:
        async with open_backend(path):
            pass
    assert str(path) in str(raised.value)
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    assert tables == ["customers"]
    assert journal == "delete"
    assert version == 0


async def test_a_schema_newer_than_this_rivers_is_a_migration_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "future.db"
    async with open_backend(path):
        pass
    conn = sqlite3.connect(path)
    try:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    finally:
        conn.close()
    with pytest.raises(rs.MigrationError, match="newer rivers"):
        async with open_backend(path):
            pass


async def test_a_new_file_gets_the_rivers_marks(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    async with open_backend(path):
        pass
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


async def test_a_closed_storage_raises_storage_error(tmp_path: Path) -> None:
    async with open_backend(tmp_path / "s.db") as storage:
        pass
    with pytest.raises(rs.StorageError, match="is closed"):
        await storage.runs.get_run("r1")
    await storage.aclose()  # closing twice is harmless


_OPENER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path

    import anyio
    import rivers as rs

    folder, marker = Path(sys.argv[1]), Path(sys.argv[2])
    everyone, files = int(sys.argv[3]), int(sys.argv[4])
    marker.touch()
    # Barrier: start opening only once every process is ready.
    deadline = time.monotonic() + 20
    while len(list(marker.parent.glob("ready-*"))) < everyone:
        if time.monotonic() > deadline:
            sys.exit("barrier timed out")
        time.sleep(0.001)

    async def main() -> None:
        # Every process opens the same new files in the same order, so they race
        # on each one: creating, checking and migrating it at once.
        for index in range(files):
            async with rs.open_storage(folder / f"shared-{index}.db") as storage:
                await storage.get_runs()

    anyio.run(main)
    """
)


def test_processes_opening_new_files_at_once_all_succeed(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    count, files = 6, 15
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _OPENER,
                str(tmp_path),
                str(markers / f"ready-{i}"),
                str(count),
                str(files),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(count)
    ]
    results = []
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        results.append((proc.returncode, err.decode()[-2000:]))
    assert results == [(0, "")] * count
    for index in range(files):
        conn = sqlite3.connect(tmp_path / f"shared-{index}.db")
        try:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            tables = {
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type='table'"
                )
            }
        finally:
            conn.close()
        assert {"runs", "events", "steps", "pool_claims"} <= tables


async def test_a_write_to_a_database_locked_too_long_names_the_lock(
    storage: StorageBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A write waits out a lock for WRITE_PATIENCE_S (45 s); one attempt here.
    monkeypatch.setattr(sqlite_connection, "WRITE_PATIENCE_S", BUSY_TIMEOUT_S)
    holder = sqlite3.connect(Path(storage.describe), isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        # WAL: readers are not blocked by a writer.
        with anyio.fail_after(1):
            assert await storage.runs.get_runs() == []
        began = time.monotonic()
        with anyio.fail_after(BUSY_TIMEOUT_S + 3):
            with pytest.raises(rs.StorageLocked, match="locked") as raised:
                await storage.runs.create_run(new_run("blocked"))
        waited = time.monotonic() - began
        assert str(Path(storage.describe)) in str(raised.value)
        assert waited >= BUSY_TIMEOUT_S - 0.5
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    # Once the lock is gone, writes work again.
    assert await storage.runs.create_run(new_run("after")) is not None
    assert await storage.runs.get_run("blocked") is None
