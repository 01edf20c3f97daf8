"""The SQLite storage: WAL mode, one writer connection, whole transactions per call.

Every call runs one function on the connection's own thread (a ``Lane``), so a
transaction of many statements costs one thread hop. A call, once sent, always
finishes: it runs shielded from cancellation (bounded by SQLite's busy timeout), so
a cancelled caller never leaves a half-known write behind.

Faults: every sqlite3 exception, on every path, becomes a rivers error through
``_errors.translate``. A write that finds another process holding the write lock
tries again with backoff for up to ``WRITE_PATIENCE_S`` (``StorageLocked`` after
that). A damaged file (SQLite says malformed or not a database, ``quick_check``
fails at open, or the file was truncated, deleted or replaced under us) raises
``StorageCorrupted``, and from then on the storage refuses every write.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, final

import anyio
import msgspec

from rivers._clock import SYSTEM_CLOCK, Clock
from rivers._threads import Lane
from rivers.errors import (
    MigrationError,
    StorageCorrupted,
    StorageError,
    StorageLocked,
    StorageUnavailable,
)
from rivers.messages import EventBody, event_data, event_kind
from rivers.storage import _errors, _rows
from rivers.storage._dashboard_methods import DashboardMethods
from rivers.storage._pool_methods import PoolMethods
from rivers.storage._queue_methods import QueueMethods
from rivers.storage._retention_methods import RetentionMethods
from rivers.storage._run_changes import apply_run_change, transition_sql
from rivers.storage._serving_methods import ServingMethods
from rivers.storage._sqlite_files import (
    FileIdentity,
    check_same_file,
    checkpoint,
    closing_cursors,
    finish_transaction,
    open_inline,
    prepare_file,
    quick_check,
)
from rivers.storage._step_rows import (
    UPSERT_STEP,
    StepRow,
    fold_step_rows,
    step_row,
)
from rivers.storage.base import StorageBackend
from rivers.storage.records import (
    FINISHED_STATUSES,
    IN_FLIGHT_STATUSES,
    Event,
    NewRun,
    RunChange,
    RunRecord,
    RunStatus,
    StepRecord,
    StepStatus,
    from_timestamp,
)
from rivers.storage.schema import SCHEMA_VERSION, check_marks, migrate

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

__all__ = (
    "BUSY_TIMEOUT_S",
    "QUICK_CHECK_MAX_BYTES",
    "WRITE_PATIENCE_S",
    "NewRun",
    "SqliteStorage",
)

T = TypeVar("T")

CREATE_BATCH = 5000
"""Runs written per transaction by ``create_runs`` (about 0.2 s of write lock)."""
INLINE_CHECKPOINT_EVERY = 200
"""Commits on the loop's connection between two WAL checkpoints on the SQLite thread."""
BUSY_TIMEOUT_S = 5.0
"""How long one attempt at a statement waits for a lock inside SQLite."""
WRITE_PATIENCE_S = 45.0
"""How long a write waits out a write lock held by another process, retrying."""
WRITE_RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.5, 1.0)
"""Pauses between a write's attempts while the lock is held (the last repeats)."""
QUICK_CHECK_MAX_BYTES = 8 * 2**20
"""Files up to this size get ``PRAGMA quick_check`` when opened (7-22 ms per MiB)."""

_encode = msgspec.json.Encoder().encode

_TERMINAL_STEP = ("SUCCESS", "FAILURE", "SKIPPED", "CANCELED")


@final
class SqliteStorage(
    PoolMethods, QueueMethods, ServingMethods, DashboardMethods, RetentionMethods
):
    """Runs, events, steps, materializations, pools and claims in one SQLite file.

    Open it with ``rs.open_storage(...)`` (or ``SqliteStorage.open``) and close it
    with ``aclose()``.
    """

    def __init__(
        self,
        path: Path,
        lane: Lane,
        raw: sqlite3.Connection,
        clock: Clock,
    ) -> None:
        self.path = path
        self.clock = clock
        self._lane = lane
        self._raw = raw
        self._closed = False
        self._inline: sqlite3.Connection | None = None
        self._inline_failed = False
        self._inline_thread = threading.get_ident()  # the loop that opened it
        self._inline_commits = 0
        self._opened = False  # the file is known to be a rivers database
        self._identity: FileIdentity | None = None  # the file opened
        self._broken: StorageCorrupted | None = None

    # ----------------------------------------------------------------- lifecycle

    @classmethod
    async def open(cls, path: Path, *, clock: Clock = SYSTEM_CLOCK) -> SqliteStorage:
        """Open (creating and migrating if needed) the storage file at ``path``.

        Raises:
            StorageUnavailable: the file cannot be created or opened, is locked, or
                is not a rivers database.
            StorageCorrupted: the file is a rivers database that fails ``PRAGMA
                quick_check`` (checked for files up to ``QUICK_CHECK_MAX_BYTES``).
            MigrationError: the file was written by a newer rivers.
        """
        lane = Lane()
        try:
            path, raw = await lane.call(partial(_connect, path))
        except BaseException:
            await lane.close(lambda: None)
            raise
        storage = cls(path, lane, raw, clock)
        try:
            storage._identity = await storage._call(_initialize)
            storage._opened = True
        except BaseException as exc:
            await lane.close(raw.close)
            if isinstance(exc, MigrationError):
                raise MigrationError(f"storage {str(path)!r}: {exc}") from None
            raise
        return storage

    async def aclose(self) -> None:
        """Close the connection; later calls raise ``StorageError``."""
        if self._closed:
            return
        self._closed = True
        self._close_wakes()
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        await self._lane.close(self._raw.close)

    def backend(self) -> StorageBackend:
        """Return this storage as a ``StorageBackend`` (itself for every role)."""
        return StorageBackend(
            runs=self,
            events=self,
            pools=self,
            queue=self,
            state=self,
            processes=self,
            dashboard=self,
            clock=self.clock,
            describe=str(self.path),
            close=self.aclose,
            corruption=lambda: self._broken,
        )

    @property
    def corrupted(self) -> StorageCorrupted | None:
        """The damage found while this storage was open (it then refuses writes)."""
        return self._broken

    def _fail(self, exc: BaseException) -> StorageError:
        """Return the rivers error for ``exc``; a damaged file stops all writes."""
        error = _errors.translate(
            exc, self.path, opened=self._opened, busy_s=BUSY_TIMEOUT_S
        )
        if isinstance(error, StorageCorrupted) and self._broken is None:
            self._broken = error
        return error

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StorageError(f"storage {str(self.path)!r} is closed")
        raw = self._raw
        with anyio.CancelScope(shield=True):
            try:
                # A whole transaction costs one hop to the connection's thread
                # instead of one per statement.
                result: T = await self._lane.call(partial(closing_cursors, fn, raw))
            except (sqlite3.Error, _errors.Foreign, _errors.Damaged) as exc:
                raise self._fail(exc) from exc
        return result

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` inside one ``BEGIN IMMEDIATE`` transaction.

        While another process holds the write lock the transaction is tried again
        (each attempt waits up to ``BUSY_TIMEOUT_S`` inside SQLite, then pauses on
        the loop so reads go on) until ``WRITE_PATIENCE_S`` have passed.

        Raises:
            StorageLocked: the lock was still held after ``WRITE_PATIENCE_S``.
            StorageCorrupted: the file is damaged (now or earlier): nothing written.
        """
        began = time.monotonic()
        identity = self._identity
        attempt = 0
        while True:
            if self._broken is not None:
                raise self._broken
            try:
                return await self._call(lambda conn: _transaction(conn, fn, identity))
            except StorageLocked:
                delay = WRITE_RETRY_DELAYS_S[
                    min(attempt, len(WRITE_RETRY_DELAYS_S) - 1)
                ]
                waited = time.monotonic() - began
                if waited + delay > WRITE_PATIENCE_S:
                    raise _errors.locked(self.path, waited) from None
                attempt += 1
                await anyio.sleep(delay)

    async def _write_soon(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Like ``_write``, but on the event loop when the write lock is free now.

        For short hot transactions (a pool claim, a release handing its slots on):
        see ``_write_now``. When the lock is taken (the SQLite thread or another
        process is writing) it goes through ``_write`` and waits its turn as usual.
        """
        done, result = self._write_now(fn)
        if done:
            return result  # type: ignore[return-value]  # done: fn's result
        if self._inline_commits >= INLINE_CHECKPOINT_EVERY:
            # The loop's connection never checkpoints (that would copy pages and
            # fsync on the loop); the SQLite thread folds the WAL back now and then.
            self._inline_commits = 0
            await self._call(checkpoint)
            done, result = self._write_now(fn)
            if done:
                return result  # type: ignore[return-value]
        return await self._write(fn)

    def _write_now(
        self, fn: Callable[[sqlite3.Connection], T]
    ) -> tuple[bool, T | None]:
        """Run ``fn`` in a transaction on the loop thread if that costs no wait.

        ``fn`` runs on a second connection, on the loop thread, if ``BEGIN
        IMMEDIATE`` gets the write lock at once (that connection never waits: its
        busy timeout is 0); a transaction of ~0.1 ms then costs no hop to the
        SQLite thread and back (~1 ms under load). Returns (True, fn's result), or
        (False, None) when it did not run: the lock is taken, a WAL checkpoint is
        due, or this is not the loop thread that opened the storage.
        """
        if (
            self._closed
            or self._inline_commits >= INLINE_CHECKPOINT_EVERY
            or threading.get_ident() != self._inline_thread
        ):
            return False, None
        inline = self._inline
        if inline is None:
            if self._inline_failed:
                return False, None
            try:  # opened on first use: a run that claims no pool never pays for it
                check_same_file(self._identity)  # a new connection would not see it
                where = self.path if self._identity is None else self._identity.path
                inline = self._inline = open_inline(where)
            except _errors.Damaged as exc:
                raise self._fail(exc) from exc
            except sqlite3.Error:
                self._inline_failed = True  # the SQLite thread's connection serves
                return False, None
        if self._broken is not None:
            raise self._broken
        try:
            inline.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if not _errors.is_busy(exc):
                raise self._fail(exc) from exc
            return False, None
        try:
            result = closing_cursors(lambda conn: finish_transaction(conn, fn), inline)
        except sqlite3.Error as exc:
            raise self._fail(exc) from exc
        self._inline_commits += 1
        return True, result

    # ---------------------------------------------------------------------- runs

    async def create_run(self, run: NewRun) -> RunRecord | None:
        """Write a new run; return None if its ``run_key`` was already used."""
        return (await self.create_runs([run]))[0]

    async def create_runs(self, runs: Sequence[NewRun]) -> list[RunRecord | None]:
        """Write new runs, ``CREATE_BATCH`` per transaction (a million runs never
        hold the write lock for long), each created a microsecond after the one
        before it, so queue order is submission order; None for each whose
        ``run_key`` was already used (by an earlier run or one earlier in ``runs``)."""
        now = self.clock.time()
        records: list[RunRecord | None] = []
        for start in range(0, len(runs), CREATE_BATCH):
            batch = [
                (run, now + (start + i) * 1e-6)
                for i, run in enumerate(runs[start : start + CREATE_BATCH])
            ]
            written = await self._write(partial(_insert_runs, batch=batch))
            records += [
                _new_record(run, at) if ok else None
                for (run, at), ok in zip(batch, written, strict=True)
            ]
        return records

    async def transition_run(
        self,
        run_id: str,
        to: RunStatus,
        *,
        expected: Iterable[RunStatus],
        reason: str | None = None,
        owner: str | None = None,
    ) -> bool:
        """Move a run to ``to`` if its status is one of ``expected``.

        Sets ``started_at`` when it starts and ``ended_at`` when it finishes.
        Returns whether the run changed (False: it was in another status).
        """
        sql, params = transition_sql(
            run_id, to, expected, reason, owner, self.clock.time()
        )

        def write(conn: sqlite3.Connection) -> bool:
            return conn.execute(sql, params).rowcount == 1

        return await self._write(write)

    async def get_run(self, run_id: str) -> RunRecord | None:
        """Return the run with this id, or None."""

        def read(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute(
                f"SELECT {_rows.RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            return None if row is None else _rows.run_record(row)

        return await self._call(read)

    async def get_run_by_key(self, run_key: str) -> RunRecord | None:
        """Return the run submitted with ``run_key``, or None."""

        def read(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute(
                f"SELECT {_rows.RUN_COLUMNS} FROM runs WHERE run_key = ?", (run_key,)
            ).fetchone()
            return None if row is None else _rows.run_record(row)

        return await self._call(read)

    async def find_run_ids(self, fragment: str, limit: int) -> list[str]:
        """Return up to ``limit`` run ids that begin or end with ``fragment``, newest first."""
        queries = _rows.run_id_queries(fragment, limit)

        def read(conn: sqlite3.Connection) -> list[str]:
            found = {
                row for sql, params in queries for row in conn.execute(sql, params)
            }
            return [run_id for _, run_id in sorted(found, reverse=True)[:limit]]

        return await self._call(read)

    async def get_runs(
        self,
        status: RunStatus | str | Iterable[RunStatus | str] | None = None,
        tags: Mapping[str, str | Sequence[str]] | None = None,
        limit: int | None = 100,
    ) -> list[RunRecord]:
        """Return runs, newest first, filtered by status(es) and tags.

        Every tag key must match; a key mapped to a list of values matches any of
        them (``{"env": ["dev", "prod"], "team": "core"}``), as in Dagster.
        """
        sql, params = _rows.runs_query(status, tags, limit)

        def read(conn: sqlite3.Connection) -> list[RunRecord]:
            return [_rows.run_record(row) for row in conn.execute(sql, params)]

        return await self._call(read)

    async def count_runs(self, statuses: Iterable[RunStatus]) -> int:
        """Return how many runs have one of ``statuses`` (from the kept counts)."""
        return sum((await self.count_runs_by_status(statuses)).values())

    # -------------------------------------------------------------------- events

    async def append_events(
        self, batch: Sequence[tuple[EventBody, float]]
    ) -> list[Event]:
        """Write events (body, wall time) in one transaction; return them with ids.

        Step events also update the step's row, and ``STEP_SUCCESS`` records the
        asset's materialization, in the same transaction.
        """
        return (await self.write_batch(batch, ()))[0]

    async def write_batch(
        self, batch: Sequence[tuple[EventBody, float]], changes: Sequence[RunChange]
    ) -> tuple[list[Event], list[bool]]:
        """Write events (as ``append_events``) and run changes in one transaction.

        Returns the stored events (the batch's, then the event of each change that
        applied) and whether each change applied.
        """
        prepared = _prepare_events(batch)

        def write(
            conn: sqlite3.Connection,
        ) -> tuple[int, list[_Prepared], int, list[bool]]:
            first = _insert_events(conn, prepared) if prepared else 0
            applied = [apply_run_change(conn, change) for change in changes]
            logged = _prepare_events(
                (c.event, c.at)
                for c, ok in zip(changes, applied, strict=True)
                if ok and c.event is not None
            )
            return first, logged, _insert_events(conn, logged) if logged else 0, applied

        first, logged, later, applied = await self._write(write)
        return _stored_events(first, prepared) + _stored_events(later, logged), applied

    async def finish_run(
        self,
        run_id: str,
        to: RunStatus,
        *,
        expected: Iterable[RunStatus],
        reason: str | None,
        event: EventBody,
    ) -> list[Event]:
        """Move a run to a finished status and log ``event``, in one transaction.

        Returns the stored event, or nothing when the run was not in ``expected``.
        A run that succeeds while CANCELING gets the reason ``LATE_CANCEL_REASON``:
        its steps ended before the cancel request reached them.
        """
        assert to in FINISHED_STATUSES
        change = RunChange(
            run_id=run_id,
            to=to,
            expected=tuple(expected),
            at=self.clock.time(),
            reason=reason,
            event=event,
        )
        return (await self.write_batch((), [change]))[0]

    async def get_events(
        self,
        run_id: str | None = None,
        after: int | None = None,
        limit: int | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[Event]:
        """Return events oldest first: of one run, after an event id, of some kinds."""
        sql, params = _rows.events_query(run_id, after, limit, kinds)

        def read(conn: sqlite3.Connection) -> list[Event]:
            return [_rows.event(row) for row in conn.execute(sql, params)]

        return await self._call(read)

    async def get_step_records(self, run_id: str) -> list[StepRecord]:
        """Return the steps of a run in the order they were first recorded."""

        def read(conn: sqlite3.Connection) -> list[StepRecord]:
            rows = conn.execute(
                "SELECT step_key, status, attempts, started_at, ended_at, error, worker "
                "FROM steps WHERE run_id = ? ORDER BY COALESCE(started_at, ended_at)",
                (run_id,),
            ).fetchall()
            return [
                StepRecord(
                    step_key=row[0],
                    status=StepStatus(row[1]),
                    attempts=row[2],
                    started_at=from_timestamp(row[3]),
                    ended_at=from_timestamp(row[4]),
                    error=row[5],
                    worker=row[6],
                )
                for row in rows
            ]

        return await self._call(read)

    async def get_latest_materializations(
        self, asset_keys: Iterable[str] | None = None
    ) -> dict[str, tuple[str, float]]:
        """Return asset key to (run id, epoch seconds) of its latest materialization."""
        keys = None if asset_keys is None else list(asset_keys)

        def read(conn: sqlite3.Connection) -> dict[str, tuple[str, float]]:
            sql = "SELECT asset_key, run_id, MAX(materialized_at) FROM materializations"
            params: list[Any] = []
            if keys is not None:
                sql += f" WHERE asset_key IN ({', '.join('?' * len(keys))})"
                params.extend(keys)
            sql += " GROUP BY asset_key"
            return {row[0]: (row[1], row[2]) for row in conn.execute(sql, params)}

        return await self._call(read)

    # ----------------------------------------------------------------- processes

    async def register_process(self, owner: str, pid: int, host: str) -> None:
        """Record that ``owner`` is alive now."""
        now = self.clock.time()

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO processes (owner, pid, host, started_at, heartbeat_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (owner) DO UPDATE "
                "SET heartbeat_at = excluded.heartbeat_at",
                (owner, pid, host, now, now),
            )

        await self._write(write)

    async def heartbeat(self, owner: str) -> None:
        """Refresh ``owner``'s heartbeat."""
        now = self.clock.time()
        await self._write(
            lambda conn: conn.execute(
                "UPDATE processes SET heartbeat_at = ? WHERE owner = ?", (now, owner)
            )
        )

    async def unregister_process(self, owner: str) -> None:
        """Forget ``owner`` and what it served (it stopped cleanly)."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM served WHERE owner = ?", (owner,))
            conn.execute("DELETE FROM processes WHERE owner = ?", (owner,))

        await self._write(write)

    async def get_in_flight_owners(self) -> dict[str, float | None]:
        """Return each owner of an in-flight run with its last heartbeat (or None)."""
        values = [s.value for s in IN_FLIGHT_STATUSES]

        def read(conn: sqlite3.Connection) -> dict[str, float | None]:
            rows = conn.execute(
                "SELECT DISTINCT r.owner, p.heartbeat_at FROM runs r "
                "LEFT JOIN processes p ON p.owner = r.owner "
                f"WHERE r.status IN ({', '.join('?' * len(values))}) "
                "AND r.owner IS NOT NULL",
                values,
            ).fetchall()
            return {row[0]: row[1] for row in rows}

        return await self._call(read)

    async def get_owners_to_check(
        self,
    ) -> tuple[dict[str, float | None], dict[str, float | None]]:
        """Return the owners of in-flight runs and the owners that serve
        definitions, each with its last heartbeat (or None): one read, for recovery.
        """
        values = [s.value for s in IN_FLIGHT_STATUSES]

        def read(
            conn: sqlite3.Connection,
        ) -> tuple[dict[str, float | None], dict[str, float | None]]:
            rows = conn.execute(
                "SELECT DISTINCT 1, r.owner, p.heartbeat_at FROM runs r "
                "LEFT JOIN processes p ON p.owner = r.owner "
                f"WHERE r.status IN ({', '.join('?' * len(values))}) "
                "AND r.owner IS NOT NULL "
                "UNION ALL SELECT DISTINCT 0, s.owner, p.heartbeat_at FROM served s "
                "LEFT JOIN processes p ON p.owner = s.owner",
                values,
            ).fetchall()
            return (
                {row[1]: row[2] for row in rows if row[0]},
                {row[1]: row[2] for row in rows if not row[0]},
            )

        return await self._call(read)

    async def get_cancel_requests(self, owner: str) -> list[str]:
        """Return the ids of ``owner``'s runs that are CANCELING."""

        def read(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT run_id FROM runs WHERE owner = ? AND status = ?",
                (owner, RunStatus.CANCELING.value),
            )
            return [row[0] for row in rows]

        return await self._call(read)

    async def fail_runs_of_owner(self, owner: str, reason: str) -> list[str]:
        """Mark every in-flight run of a dead ``owner`` FAILURE; return their ids.

        Their unfinished steps are marked FAILURE too, with the same reason. Runs it
        was admitted to launch but never began (STARTING, no ``started_at``) go back
        to the queue instead: no step of theirs ran.
        """
        now = self.clock.time()
        values = [s.value for s in IN_FLIGHT_STATUSES]
        marks = ", ".join("?" * len(values))

        def write(conn: sqlite3.Connection) -> list[str]:
            conn.execute(
                "UPDATE runs SET status = 'QUEUED', owner = NULL, reason = ? "
                "WHERE owner = ? AND status = 'STARTING' AND started_at IS NULL",
                (f"returned to the queue: {owner}, admitted to launch it, died", owner),
            )
            run_ids = [
                row[0]
                for row in conn.execute(
                    f"SELECT run_id FROM runs WHERE owner = ? AND status IN ({marks})",
                    [owner, *values],
                )
            ]
            for run_id in run_ids:
                conn.execute(
                    "UPDATE runs SET status = ?, reason = ?, ended_at = ? "
                    "WHERE run_id = ?",
                    (RunStatus.FAILURE.value, reason, now, run_id),
                )
                conn.execute(
                    "UPDATE steps SET status = ?, error = ?, ended_at = ? "
                    f"WHERE run_id = ? AND status NOT IN {_TERMINAL_STEP}",
                    (StepStatus.FAILURE.value, reason, now, run_id),
                )
            conn.execute("DELETE FROM pending_steps WHERE owner = ?", (owner,))
            conn.execute("DELETE FROM served WHERE owner = ?", (owner,))
            conn.execute("DELETE FROM processes WHERE owner = ?", (owner,))
            return run_ids

        return await self._write(write)


_Prepared = tuple[str, str, str | None, float, dict[str, Any]]


def _insert_runs(
    conn: sqlite3.Connection, *, batch: list[tuple[NewRun, float]]
) -> list[bool]:
    return [_insert_run(conn, run, at) for run, at in batch]


def _insert_run(conn: sqlite3.Connection, run: NewRun, now: float) -> bool:
    """Insert one run and its tags; return False if its ``run_key`` was used."""
    try:
        conn.execute(
            "INSERT INTO runs (run_id, status, repository, location, selection, "
            "tags, priority, run_key, created_at, started_at, owner, "
            "fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run.run_id,
                run.status.value,
                run.repository,
                None if run.location is None else _encode(run.location),
                None if run.selection is None else _encode(run.selection),
                _encode(run.tags),
                run.priority,
                run.run_key,
                now,
                now if run.status is RunStatus.STARTING else None,
                run.owner,
                run.fingerprint,
            ),
        )
    except sqlite3.IntegrityError:
        if run.run_key is not None:
            return False
        raise
    if run.tags:
        conn.executemany(
            "INSERT INTO run_tags (run_id, key, value, created_at) VALUES (?, ?, ?, ?)",
            [(run.run_id, k, v, now) for k, v in run.tags.items()],
        )
    return True


def _new_record(run: NewRun, now: float) -> RunRecord:
    """The record of a run just written at ``now``."""
    return RunRecord(
        run_id=run.run_id,
        status=run.status,
        tags=dict(run.tags),
        selection=None if run.selection is None else list(run.selection),
        priority=run.priority,
        created_at=from_timestamp(now),  # type: ignore[arg-type]  # never None
        started_at=from_timestamp(now if run.status is RunStatus.STARTING else None),
        repository=run.repository,
        run_key=run.run_key,
        owner=run.owner,
        fingerprint=run.fingerprint,
    )


def _prepare_events(batch: Iterable[tuple[EventBody, float]]) -> list[_Prepared]:
    return [
        (
            event_kind(body),
            body.run_id,
            getattr(body, "step_key", None),
            at,
            event_data(body),
        )
        for body, at in batch
    ]


def _insert_events(conn: sqlite3.Connection, prepared: list[_Prepared]) -> int:
    """Insert events and their projections; return the first event id."""
    first: int = conn.execute(
        "SELECT COALESCE(MAX(event_id), 0) + 1 FROM events"
    ).fetchone()[0]
    conn.executemany(
        "INSERT INTO events (event_id, kind, run_id, step_key, timestamp, data) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            (first + i, kind, run_id, step_key, at, _encode(data))
            for i, (kind, run_id, step_key, at, data) in enumerate(prepared)
        ],
    )
    steps: list[StepRow] = []
    materialized: list[tuple[Any, ...]] = []
    for i, (kind, run_id, step_key, at, data) in enumerate(prepared):
        row = step_row(kind, run_id, step_key, at, data)
        if row is None:
            continue
        steps.append(row)
        if kind == "STEP_SUCCESS":
            materialized.append((step_key, run_id, first + i, at))
    if steps:
        conn.executemany(UPSERT_STEP, fold_step_rows(steps))
    if materialized:
        conn.executemany(
            "INSERT INTO materializations (asset_key, run_id, event_id, materialized_at) "
            "VALUES (?, ?, ?, ?)",
            materialized,
        )
    return first


def _stored_events(first: int, prepared: list[_Prepared]) -> list[Event]:
    return [
        Event(
            event_id=first + i,
            kind=kind,
            run_id=run_id,
            step_key=step_key,
            timestamp=from_timestamp(at),  # type: ignore[arg-type]  # never None
            data=data,
        )
        for i, (kind, run_id, step_key, at, data) in enumerate(prepared)
    ]


def _connect(path: Path) -> tuple[Path, sqlite3.Connection]:
    """Create the file if missing and connect to it (on the lane's thread)."""
    path = prepare_file(path)
    try:
        conn = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise _translate(exc, path) from exc
    return path, conn


def _transaction(
    conn: sqlite3.Connection,
    fn: Callable[[sqlite3.Connection], T],
    identity: FileIdentity | None,
) -> T:
    check_same_file(identity)
    conn.execute("BEGIN IMMEDIATE")
    return finish_transaction(conn, fn)


def _initialize(conn: sqlite3.Connection) -> FileIdentity:
    """Check the file is ours, set pragmas, apply migrations (runs on the db thread).

    Returns the file's identity, for ``check_same_file``.
    """
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    path = Path(conn.execute("PRAGMA database_list").fetchone()[2])
    info = path.stat()
    # Read the marks in one read transaction: a migration another process commits
    # meanwhile is seen whole or not at all (never tables without the marks).
    conn.execute("BEGIN")
    try:
        version = check_marks(conn)
        if version > 0 and info.st_size <= QUICK_CHECK_MAX_BYTES:
            quick_check(conn)
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")  # read only
    if version == 0:  # before WAL: a new file gives the pages a prune frees back
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    _use_wal(conn)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA cache_size = -16000")
    identity = FileIdentity(path, info.st_dev, info.st_ino)
    if version == SCHEMA_VERSION:
        return identity
    migrate(conn)
    return identity


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL mode, waiting up to ``BUSY_TIMEOUT_S`` for the lock.

    The switch needs the file to itself for a moment, and SQLite reports "database
    is locked" at once instead of calling the busy handler (another process opening
    the same new file holds a read lock), so the wait is done here.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.001
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() or time.monotonic() >= deadline:
                raise
            time.sleep(delay)  # on the db thread, like SQLite's own busy handler
            delay = min(delay * 2, 0.05)
    if str(mode).lower() != "wal":  # pragma: no cover - e.g. a network filesystem
        raise StorageUnavailable(f"storage cannot use WAL mode (got {mode!r})")


def _translate(exc: BaseException, path: Path) -> StorageError:
    """Translate an error raised before the file was known to be a rivers database."""
    return _errors.translate(exc, path, opened=False, busy_s=BUSY_TIMEOUT_S)
