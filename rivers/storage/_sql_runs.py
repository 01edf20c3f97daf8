"""``SqlRuns``: the ``RunStore`` of both backends (SQLite, PostgreSQL). Runs and
their steps: create, move between statuses, finish, read, prune (``_sql_retention``)."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import msgspec

from rivers.errors import StorageError
from rivers.storage import _rows
from rivers.storage._run_changes import transition_sql
from rivers.storage._sql_retention import prune_runs
from rivers.storage.records import (
    FINISHED_STATUSES,
    Event,
    NewRun,
    PruneResult,
    RunChange,
    RunRecord,
    RunStatus,
    StepRecord,
    StepStatus,
    from_timestamp,
)

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable, Mapping, Sequence

    from rivers.messages import EventBody
    from rivers.storage._connection import SqlConnection
    from rivers.storage._sql_dashboard import SqlDashboard
    from rivers.storage._sql_events import SqlEvents

__all__ = ("CREATE_BATCH", "SqlRuns")

CREATE_BATCH = 5000
"""Runs written per transaction by ``create_runs`` (about 0.2 s of write lock)."""

_encode = msgspec.json.Encoder().encode


class SqlRuns:
    """Runs and their steps in SQL (the ``RunStore`` role).

    A run finishes with its event in one transaction of ``events``; its counts
    by status are the dashboard's kept counts.
    """

    def __init__(
        self, db: SqlConnection, events: SqlEvents, dashboard: SqlDashboard
    ) -> None:
        self._db = db
        self._events = events
        self._dashboard = dashboard
        self.clock = db.clock

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
            written = await self._db.write(partial(_insert_runs, batch=batch))
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

        return await self._db.write(write)

    async def get_run(self, run_id: str) -> RunRecord | None:
        """Return the run with this id, or None."""

        def read(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute(
                f"SELECT {_rows.RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            return None if row is None else _rows.run_record(row)

        return await self._db.call(read)

    async def get_run_by_key(self, run_key: str) -> RunRecord | None:
        """Return the run submitted with ``run_key``, or None."""

        def read(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute(
                f"SELECT {_rows.RUN_COLUMNS} FROM runs WHERE run_key = ?", (run_key,)
            ).fetchone()
            return None if row is None else _rows.run_record(row)

        return await self._db.call(read)

    async def find_run_ids(self, fragment: str, limit: int) -> list[str]:
        """Return up to ``limit`` run ids that begin or end with ``fragment``, newest first."""
        queries = _rows.run_id_queries(fragment, limit)

        def read(conn: sqlite3.Connection) -> list[str]:
            found = {
                row for sql, params in queries for row in conn.execute(sql, params)
            }
            return [run_id for _, run_id in sorted(found, reverse=True)[:limit]]

        return await self._db.call(read)

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

        return await self._db.call(read)

    async def count_runs(self, statuses: Iterable[RunStatus]) -> int:
        """Return how many runs have one of ``statuses`` (from the kept counts)."""
        return sum((await self._dashboard.count_runs_by_status(statuses)).values())

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
        return (await self._events.write_batch((), [change]))[0]

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

        return await self._db.call(read)

    async def get_latest_materializations(
        self, asset_keys: Iterable[str] | None = None
    ) -> dict[str, tuple[str, float]]:
        """Return asset key to (run id, epoch seconds) of its latest materialization."""
        keys = None if asset_keys is None else list(asset_keys)

        def read(conn: sqlite3.Connection) -> dict[str, tuple[str, float]]:
            # Each asset's newest row (standard SQL: no bare column beside MAX).
            sql = (
                "SELECT m.asset_key, m.run_id, m.materialized_at "
                "FROM materializations m WHERE m.materialized_at = (SELECT "
                "MAX(n.materialized_at) FROM materializations n "
                "WHERE n.asset_key = m.asset_key)"
            )
            params: list[Any] = []
            if keys is not None:
                sql += f" AND m.asset_key IN ({', '.join('?' * len(keys))})"
                params.extend(keys)
            return {row[0]: (row[1], row[2]) for row in conn.execute(sql, params)}

        return await self._db.call(read)

    async def prune_runs(self, cutoff: float, *, dry_run: bool = False) -> PruneResult:
        """Delete the finished runs created and ended before ``cutoff`` (epoch
        seconds), with their events, steps and superseded materializations; then
        shrink the file where it can (``_sql_retention.prune_runs``)."""
        return await prune_runs(self._db, cutoff, dry_run=dry_run)


def _insert_runs(
    conn: sqlite3.Connection, *, batch: list[tuple[NewRun, float]]
) -> list[bool]:
    return [_insert_run(conn, run, at) for run, at in batch]


def _insert_run(conn: sqlite3.Connection, run: NewRun, now: float) -> bool:
    """Insert one run and its tags; return False if its ``run_key`` was used."""
    written = conn.execute(
        "INSERT INTO runs (run_id, status, repository, location, selection, "
        "tags, priority, run_key, created_at, started_at, owner, "
        "fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT DO NOTHING",
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
    ).rowcount
    if written == 0:
        if run.run_key is not None:
            return False  # its run_key was used (or, never in practice, its id)
        raise StorageError(f"run id {run.run_id!r} is not UNIQUE: that run exists")
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
