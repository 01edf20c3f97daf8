"""The SQLite storage contract on real files: runs, events, steps, files, locking."""

from __future__ import annotations

import os
import socket
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

import rivers as rs
from rivers._clock import ManualClock
from rivers._ids import this_owner
from rivers.messages import (
    EventBody,
    RunFailed,
    RunStarted,
    StepFailed,
    StepLogged,
    StepRetrying,
    StepStarted,
    StepSucceeded,
)
from rivers.storage import sqlite as sqlite_storage
from rivers.storage.schema import APPLICATION_ID, SCHEMA_VERSION
from rivers.storage.sqlite import BUSY_TIMEOUT_S, NewRun, SqliteStorage

T0 = 1_700_000_000.0


class SteppingClock:
    """A clock that moves one second forward on every read of wall time."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def time(self) -> float:
        self.now += 1.0
        return self.now

    def monotonic(self) -> float:
        return self.now


def _new_run(
    run_id: str,
    status: rs.RunStatus = rs.RunStatus.QUEUED,
    *,
    tags: dict[str, str] | None = None,
    run_key: str | None = None,
    selection: list[str] | None = None,
    priority: int = 0,
) -> NewRun:
    return NewRun(
        run_id=run_id,
        status=status,
        repository="default",
        tags=tags or {},
        selection=selection,
        priority=priority,
        run_key=run_key,
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# -------------------------------------------------------------------------- runs


async def test_create_run_then_get_run_returns_what_was_written(
    storage: SqliteStorage,
) -> None:
    created = await storage.create_run(
        _new_run(
            "r1", tags={"team": "core"}, selection=["a", "b"], priority=3, run_key="k1"
        )
    )
    stored = await storage.get_run("r1")
    assert stored is not None
    assert created == stored
    assert stored.status is rs.RunStatus.QUEUED
    assert stored.tags == {"team": "core"}
    assert stored.selection == ["a", "b"]
    assert stored.priority == 3
    assert stored.run_key == "k1"
    assert stored.created_at.tzinfo is UTC
    assert stored.started_at is None
    assert stored.ended_at is None


async def test_a_run_created_starting_has_a_start_time(storage: SqliteStorage) -> None:
    await storage.create_run(_new_run("r1", rs.RunStatus.STARTING))
    stored = await storage.get_run("r1")
    assert stored is not None
    assert stored.started_at == stored.created_at


async def test_get_run_of_an_unknown_id_is_none(storage: SqliteStorage) -> None:
    assert await storage.get_run("nope") is None


async def test_a_duplicate_run_id_is_a_storage_error(storage: SqliteStorage) -> None:
    await storage.create_run(_new_run("r1"))
    with pytest.raises(rs.StorageError, match="UNIQUE"):
        await storage.create_run(_new_run("r1"))


async def test_a_reused_run_key_is_not_created_again(storage: SqliteStorage) -> None:
    first = await storage.create_run(_new_run("r1", run_key="daily-2024-01-01"))
    assert first is not None
    assert await storage.create_run(_new_run("r2", run_key="daily-2024-01-01")) is None
    assert await storage.get_run("r2") is None
    by_key = await storage.get_run_by_key("daily-2024-01-01")
    assert by_key is not None
    assert by_key.run_id == "r1"
    assert [r.run_id for r in await storage.get_runs()] == ["r1"]


async def test_runs_are_listed_newest_first_up_to_the_limit(tmp_path: Path) -> None:
    async with rs.open_storage(tmp_path / "s.db", clock=SteppingClock()) as storage:
        for run_id in ("first", "second", "third", "fourth"):
            await storage.create_run(_new_run(run_id))
        listed = await storage.get_runs()
        limited = await storage.get_runs(limit=2)
    assert [r.run_id for r in listed] == ["fourth", "third", "second", "first"]
    assert [r.created_at for r in listed] == sorted(
        (r.created_at for r in listed), reverse=True
    )
    assert [r.run_id for r in limited] == ["fourth", "third"]


async def test_runs_are_filtered_by_one_or_several_statuses(
    storage: SqliteStorage,
) -> None:
    await storage.create_run(_new_run("queued"))
    await storage.create_run(_new_run("starting", rs.RunStatus.STARTING))
    await storage.create_run(_new_run("done", rs.RunStatus.STARTING))
    await storage.transition_run(
        "done", rs.RunStatus.SUCCESS, expected=[rs.RunStatus.STARTING]
    )
    only_queued = await storage.get_runs(status=rs.RunStatus.QUEUED)
    as_text = await storage.get_runs(status="SUCCESS")
    several = await storage.get_runs(
        status=[rs.RunStatus.QUEUED, rs.RunStatus.STARTING]
    )
    assert [r.run_id for r in only_queued] == ["queued"]
    assert [r.run_id for r in as_text] == ["done"]
    assert {r.run_id for r in several} == {"queued", "starting"}
    assert await storage.count_runs([rs.RunStatus.QUEUED, rs.RunStatus.SUCCESS]) == 2


async def test_runs_are_filtered_by_tags_which_must_all_match(
    storage: SqliteStorage,
) -> None:
    await storage.create_run(_new_run("a", tags={"team": "x", "env": "prod"}))
    await storage.create_run(_new_run("b", tags={"team": "x", "env": "dev"}))
    await storage.create_run(_new_run("c", tags={"team": "y"}))
    await storage.create_run(_new_run("d"))
    team_x = await storage.get_runs(tags={"team": "x"})
    both = await storage.get_runs(tags={"team": "x", "env": "prod"})
    none = await storage.get_runs(tags={"team": "z"})
    assert {r.run_id for r in team_x} == {"a", "b"}
    assert [r.run_id for r in both] == ["a"]
    assert none == []


async def test_status_and_tag_filters_combine(storage: SqliteStorage) -> None:
    await storage.create_run(_new_run("q", tags={"team": "x"}))
    await storage.create_run(_new_run("s", rs.RunStatus.STARTING, tags={"team": "x"}))
    found = await storage.get_runs(status=rs.RunStatus.STARTING, tags={"team": "x"})
    assert [r.run_id for r in found] == ["s"]


async def test_transition_run_only_moves_from_an_expected_status(
    storage: SqliteStorage,
) -> None:
    await storage.create_run(_new_run("r1"))
    moved = await storage.transition_run(
        "r1", rs.RunStatus.STARTED, expected=[rs.RunStatus.STARTING]
    )
    assert moved is False
    record = await storage.get_run("r1")
    assert record is not None
    assert record.status is rs.RunStatus.QUEUED
    assert record.started_at is None


async def test_transition_run_sets_start_end_reason_and_owner(
    tmp_path: Path,
) -> None:
    async with rs.open_storage(tmp_path / "s.db", clock=SteppingClock()) as storage:
        await storage.create_run(_new_run("r1"))
        assert await storage.transition_run(
            "r1", rs.RunStatus.STARTING, expected=[rs.RunStatus.QUEUED], owner="me"
        )
        starting = await storage.get_run("r1")
        assert await storage.transition_run(
            "r1", rs.RunStatus.STARTED, expected=[rs.RunStatus.STARTING]
        )
        started = await storage.get_run("r1")
        assert await storage.transition_run(
            "r1",
            rs.RunStatus.FAILURE,
            expected=[rs.RunStatus.STARTED],
            reason="step 'a' failed",
        )
        failed = await storage.get_run("r1")
        # A later transition without a reason keeps the old one.
        assert await storage.transition_run(
            "r1", rs.RunStatus.CANCELED, expected=[rs.RunStatus.FAILURE]
        )
        canceled = await storage.get_run("r1")
    assert starting is not None
    assert started is not None
    assert failed is not None
    assert canceled is not None
    assert starting.owner == "me"
    assert starting.started_at is not None
    assert started.started_at == starting.started_at  # set once
    assert started.ended_at is None
    assert failed.ended_at is not None
    assert failed.ended_at > failed.started_at  # type: ignore[operator]
    assert failed.reason == "step 'a' failed"
    assert canceled.reason == "step 'a' failed"


async def test_transition_of_an_unknown_run_changes_nothing(
    storage: SqliteStorage,
) -> None:
    assert not await storage.transition_run(
        "ghost", rs.RunStatus.CANCELED, expected=list(rs.RunStatus)
    )


async def test_finish_run_writes_status_and_event_together(
    storage: SqliteStorage,
) -> None:
    await storage.create_run(_new_run("r1", rs.RunStatus.STARTING))
    stored = await storage.finish_run(
        "r1",
        rs.RunStatus.FAILURE,
        expected=[rs.RunStatus.STARTING],
        reason="boom",
        event=RunFailed(run_id="r1", reason="boom"),
    )
    assert [e.kind for e in stored] == ["RUN_FAILURE"]
    again = await storage.finish_run(
        "r1",
        rs.RunStatus.CANCELED,
        expected=[rs.RunStatus.STARTING],
        reason="late",
        event=RunFailed(run_id="r1", reason="late"),
    )
    assert again == []
    record = await storage.get_run("r1")
    assert record is not None
    assert (record.status, record.reason) == (rs.RunStatus.FAILURE, "boom")
    assert [e.kind for e in await storage.get_events(run_id="r1")] == ["RUN_FAILURE"]


# ------------------------------------------------------------------------ events


def _batch(*bodies: EventBody, at: float = T0) -> list[tuple[EventBody, float]]:
    return [(body, at + i) for i, body in enumerate(bodies)]


def _log(run_id: str, message: str) -> StepLogged:
    return StepLogged(run_id=run_id, step_key="a", level="INFO", message=message)


async def test_append_events_returns_increasing_ids_across_batches(
    storage: SqliteStorage,
) -> None:
    first = await storage.append_events(_batch(_log("r1", "one"), _log("r1", "two")))
    second = await storage.append_events(_batch(_log("r1", "three")))
    ids = [e.event_id for e in first + second]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3
    assert await storage.append_events([]) == []
    stored = await storage.get_events()
    assert [e.event_id for e in stored] == ids
    assert [e.data["message"] for e in stored] == ["one", "two", "three"]


async def test_stored_events_keep_kind_run_step_time_and_data(
    storage: SqliteStorage,
) -> None:
    body = StepStarted(
        run_id="r1", step_key="a", attempt=1, worker="w-1", startup_s=0.25
    )
    [returned] = await storage.append_events([(body, T0)])
    [stored] = await storage.get_events()
    assert returned == stored
    assert stored.kind == "STEP_STARTED"
    assert (stored.run_id, stored.step_key) == ("r1", "a")
    assert stored.timestamp == _at(T0)
    assert stored.data == {"attempt": 1, "worker": "w-1", "startup_s": 0.25}


async def test_get_events_filters_by_run_after_and_limit(
    storage: SqliteStorage,
) -> None:
    events = await storage.append_events(
        _batch(
            _log("r1", "1"),
            _log("r2", "2"),
            _log("r1", "3"),
            _log("r1", "4"),
            _log("r2", "5"),
        )
    )
    ids = [e.event_id for e in events]

    def messages(found: list[rs.Event]) -> list[str]:
        return [e.data["message"] for e in found]

    assert messages(await storage.get_events(run_id="r1")) == ["1", "3", "4"]
    assert messages(await storage.get_events(after=ids[2])) == ["4", "5"]
    assert messages(await storage.get_events(limit=2)) == ["1", "2"]
    assert messages(await storage.get_events(run_id="r2", after=ids[0], limit=1)) == [
        "2"
    ]
    assert await storage.get_events(after=ids[-1]) == []
    assert await storage.get_events(run_id="unknown") == []


async def test_get_events_filters_by_kind(storage: SqliteStorage) -> None:
    await storage.append_events(
        _batch(
            RunStarted(run_id="r1", steps=1, executor="in_process", owner="me"),
            _log("r1", "hello"),
        )
    )
    found = await storage.get_events(kinds=["RUN_STARTED"])
    assert [e.kind for e in found] == ["RUN_STARTED"]


# ------------------------------------------------------------------ step records


async def test_step_rows_are_projected_from_started_and_success_events(
    storage: SqliteStorage,
) -> None:
    await storage.create_run(_new_run("r1", rs.RunStatus.STARTING))
    await storage.append_events(
        [(StepStarted(run_id="r1", step_key="a", attempt=1, worker="w-1"), T0)]
    )
    [running] = await storage.get_step_records("r1")
    assert running.status is rs.StepStatus.RUNNING
    assert running.started_at == _at(T0)
    assert running.ended_at is None
    await storage.append_events(
        [
            (
                StepSucceeded(run_id="r1", step_key="a", attempt=1, duration_s=2.0),
                T0 + 2,
            )
        ]
    )
    [done] = await storage.get_step_records("r1")
    assert done == rs.StepRecord(
        step_key="a",
        status=rs.StepStatus.SUCCESS,
        attempts=1,
        started_at=_at(T0),
        ended_at=_at(T0 + 2),
        error=None,
        worker="w-1",
    )
    assert done.duration_s == 2.0


async def test_a_retried_step_counts_attempts_and_clears_the_old_error(
    storage: SqliteStorage,
) -> None:
    await storage.append_events(
        _batch(
            StepStarted(run_id="r1", step_key="a", attempt=1, worker="w"),
            StepRetrying(run_id="r1", step_key="a", attempt=1, error="oops", delay_s=0),
        )
    )
    [retrying] = await storage.get_step_records("r1")
    assert retrying.status is rs.StepStatus.WAITING
    assert retrying.error == "oops"
    await storage.append_events(
        _batch(
            StepStarted(run_id="r1", step_key="a", attempt=2, worker="w"),
            StepFailed(
                run_id="r1", step_key="a", attempt=2, error="bad", error_type="E"
            ),
            at=T0 + 10,
        )
    )
    [failed] = await storage.get_step_records("r1")
    assert failed.status is rs.StepStatus.FAILURE
    assert failed.attempts == 2
    assert failed.error == "bad"
    assert failed.started_at == _at(T0)  # the first attempt's start
    assert failed.ended_at == _at(T0 + 11)


async def test_step_records_are_per_run_in_start_order(storage: SqliteStorage) -> None:
    await storage.append_events(
        _batch(
            StepStarted(run_id="r1", step_key="second", attempt=1, worker="w"),
            StepStarted(run_id="r2", step_key="other", attempt=1, worker="w"),
            at=T0 + 5,
        )
    )
    await storage.append_events(
        _batch(StepStarted(run_id="r1", step_key="first", attempt=1, worker="w"))
    )
    assert [s.step_key for s in await storage.get_step_records("r1")] == [
        "first",
        "second",
    ]
    assert await storage.get_step_records("nope") == []


async def test_latest_materialization_of_each_asset(storage: SqliteStorage) -> None:
    def success(run_id: str, step: str) -> StepSucceeded:
        return StepSucceeded(run_id=run_id, step_key=step, attempt=1, duration_s=0)

    await storage.append_events(
        _batch(success("r1", "a"), success("r1", "b"), success("r2", "a"))
    )
    # A failure is not a materialization.
    await storage.append_events(
        [
            (
                StepFailed(
                    run_id="r3", step_key="a", attempt=1, error="x", error_type="E"
                ),
                T0 + 50,
            )
        ]
    )
    latest = await storage.get_latest_materializations()
    assert latest == {"a": ("r2", T0 + 2), "b": ("r1", T0 + 1)}
    assert await storage.get_latest_materializations(["b", "missing"]) == {
        "b": ("r1", T0 + 1)
    }
    assert await storage.get_latest_materializations([]) == {}


# ------------------------------------------------------------------------- files


async def test_a_new_file_is_private_and_so_is_its_new_directory(
    tmp_path: Path,
) -> None:
    path = tmp_path / "made" / "home" / "rivers.db"
    async with rs.open_storage(path) as storage:
        await storage.create_run(_new_run("r1"))
        wal = path.with_name("rivers.db-wal")
        assert wal.exists()
        assert _mode(wal) == 0o600
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    assert _mode(path.parent.parent) == 0o700  # a missing parent too


async def test_reopening_keeps_the_data(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with rs.open_storage(path) as storage:
        await storage.create_run(_new_run("r1", tags={"team": "core"}))
        await storage.append_events(_batch(_log("r1", "kept")))
    async with rs.open_storage(path) as storage:
        record = await storage.get_run("r1")
        events = await storage.get_events(run_id="r1")
    assert record is not None
    assert record.tags == {"team": "core"}
    assert [e.data["message"] for e in events] == ["kept"]


async def test_a_sqlite_url_with_an_absolute_path_opens_that_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "by-url.db"
    assert path.is_absolute()
    async with rs.open_storage(f"sqlite:///{path}") as storage:
        assert storage.path == path
        await storage.create_run(_new_run("r1"))
    async with rs.open_storage(path) as storage:
        assert await storage.get_run("r1") is not None


async def test_a_sqlite_url_with_a_relative_path_is_relative_to_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with rs.open_storage("sqlite:///relative.db") as storage:
        await storage.create_run(_new_run("r1"))
    assert (tmp_path / "relative.db").is_file()


async def test_another_url_scheme_is_a_config_error() -> None:
    with pytest.raises(rs.ConfigError, match="scheme 'postgres'"):
        async with rs.open_storage("postgres://db/rivers"):
            pass


async def test_the_default_storage_is_under_rivers_home(rivers_home: Path) -> None:
    async with rs.open_storage() as storage:
        assert storage.path == rivers_home / "rivers.db"
    assert (rivers_home / "rivers.db").is_file()


async def test_a_directory_is_not_a_storage_file(tmp_path: Path) -> None:
    with pytest.raises(rs.StorageUnavailable, match="is not a file"):
        async with rs.open_storage(tmp_path):
            pass


async def test_a_file_of_random_bytes_is_refused_naming_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "noise.db"
    noise = os.urandom(8192)
    path.write_bytes(noise)
    with pytest.raises(rs.StorageUnavailable) as raised:
        async with rs.open_storage(path):
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
        async with rs.open_storage(path):
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
    async with rs.open_storage(path):
        pass
    conn = sqlite3.connect(path)
    try:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    finally:
        conn.close()
    with pytest.raises(rs.MigrationError, match="newer rivers"):
        async with rs.open_storage(path):
            pass


async def test_a_new_file_gets_the_rivers_marks(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    async with rs.open_storage(path):
        pass
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


async def test_a_closed_storage_raises_storage_error(tmp_path: Path) -> None:
    async with rs.open_storage(tmp_path / "s.db") as storage:
        pass
    with pytest.raises(rs.StorageError, match="is closed"):
        await storage.get_run("r1")
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
    storage: SqliteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A write waits out a lock for WRITE_PATIENCE_S (45 s); one attempt here.
    monkeypatch.setattr(sqlite_storage, "WRITE_PATIENCE_S", BUSY_TIMEOUT_S)
    holder = sqlite3.connect(storage.path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        # WAL: readers are not blocked by a writer.
        with anyio.fail_after(1):
            assert await storage.get_runs() == []
        began = time.monotonic()
        with anyio.fail_after(BUSY_TIMEOUT_S + 3):
            with pytest.raises(rs.StorageLocked, match="locked") as raised:
                await storage.create_run(_new_run("blocked"))
        waited = time.monotonic() - began
        assert str(storage.path) in str(raised.value)
        assert waited >= BUSY_TIMEOUT_S - 0.5
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    # Once the lock is gone, writes work again.
    assert await storage.create_run(_new_run("after")) is not None
    assert await storage.get_run("blocked") is None


async def _claim(storage: SqliteStorage, step: str, owner: str) -> bool:
    result = await storage.claim_pool_slots(
        run_id="r", step_key=step, pools=("db",), slots=1, owner=owner, lease_s=60
    )
    return result.granted


async def test_freeing_a_live_holders_claim_revokes_it_until_the_lease_ends(
    tmp_path: Path,
) -> None:
    clock = ManualClock(T0)
    me = this_owner()  # a live process on this host, but no runtime answers
    async with rs.open_storage(tmp_path / "s.db", clock=clock) as storage:
        await storage.set_pool_limit("db", 1)
        assert await _claim(storage, "held", me)
        assert await storage.free_pool_slots("r", "held") == 1
        assert await storage.get_revoked_claims(me) == {("r", "held")}
        # Still counted: the holder must stop before anyone else gets the slot.
        assert (await storage.get_pool_info("db")).claimed_slots == 1
        assert not await _claim(storage, "next", me)
        clock.advance(30)
        assert await storage.renew_leases(me, [("r", "held")], 60) == set()
        clock.advance(31)  # the lease, never renewed, ran out
        assert await _claim(storage, "next", me)


async def test_freeing_a_claim_whose_process_is_gone_frees_it_at_once(
    tmp_path: Path,
) -> None:
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()  # its pid is free now: the owner id names a process that is gone
    gone = f"{socket.gethostname()}:{ended.pid}:0"
    async with rs.open_storage(tmp_path / "s.db") as storage:
        await storage.set_pool_limit("db", 1)
        assert await _claim(storage, "held", gone)
        assert await storage.free_pool_slots("r") == 1
        assert (await storage.get_pool_info("db")).claimed_slots == 0
        assert await _claim(storage, "next", this_owner())


async def test_every_grant_of_a_pool_takes_a_larger_fencing_token(
    tmp_path: Path,
) -> None:
    async with rs.open_storage(tmp_path / "s.db") as storage:
        tokens = []
        for step in ("a", "b", "c"):
            result = await storage.claim_pool_slots(
                run_id="r",
                step_key=step,
                pools=("db", "api"),
                slots=1,
                owner=this_owner(),
                lease_s=60,
            )
            tokens.append(result.tokens)
            await storage.release_pool_slots("r", step)
    assert tokens == [(1, 1), (2, 2), (3, 3)]
