"""``SqlDashboard``: the ``DashboardReads`` of both backends (SQLite, PostgreSQL):
bounded, indexed reads for ``rivers top``.

Every method here only reads, and each is bounded by an index range or a ``LIMIT``
so a dashboard refresh costs the same on a storage of 100 runs or of 100,000:
counts come from the status index, lists are capped, and the event log is read
backwards from its end and stops early.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rivers.storage import _rows
from rivers.storage.records import Event, RunRecord, RunStatus, StepStatus

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable

    from rivers.storage._connection import SqlConnection

__all__ = ("EVENT_SCAN_WINDOW", "SqlDashboard")

EVENT_SCAN_WINDOW = 50_000
"""How many of the newest events a dashboard read looks through at most."""


StepProgress = dict[str, dict[str, int]]
"""Run id -> step status -> how many of its steps are in it."""


class SqlDashboard:
    """Read-only dashboard queries (the ``DashboardReads`` role)."""

    def __init__(self, db: SqlConnection) -> None:
        self._db = db

    async def refuse_writes(self) -> None:
        """Make this connection read-only (``PRAGMA query_only``) until it closes.

        ``rivers top`` calls it right after opening, so a bug in a read path can
        never change the storage it watches.
        """
        await self._db.call(lambda conn: conn.execute("PRAGMA query_only = ON"))

    async def count_runs_by_status(
        self, statuses: Iterable[RunStatus]
    ) -> dict[RunStatus, int]:
        """Return how many runs are in each of ``statuses`` (zero included)."""
        wanted = [s.value for s in statuses]
        sql = (  # kept by triggers (schema 9): no count over the runs themselves
            "SELECT status, runs FROM run_counts "
            f"WHERE status IN ({', '.join('?' * len(wanted))})"
        )

        def read(conn: sqlite3.Connection) -> dict[RunStatus, int]:
            counts = {RunStatus(value): 0 for value in wanted}
            for status, count in conn.execute(sql, wanted):
                counts[RunStatus(status)] = count
            return counts

        return await self._db.call(read)

    async def oldest_queued_at(self) -> float | None:
        """Return when the longest-waiting queued run was submitted (epoch s)."""

        def read(conn: sqlite3.Connection) -> float | None:
            value: float | None = conn.execute(
                "SELECT MIN(created_at) FROM runs WHERE status = 'QUEUED'"
            ).fetchone()[0]
            return value

        return await self._db.call(read)

    async def get_queued_runs(self, limit: int) -> list[RunRecord]:
        """Return the first ``limit`` queued runs in queue order (priority, age)."""

        def read(conn: sqlite3.Connection) -> list[RunRecord]:
            rows = conn.execute(
                f"SELECT {_rows.RUN_COLUMNS} FROM runs WHERE status = 'QUEUED' "
                "ORDER BY priority DESC, created_at LIMIT ?",
                (limit,),
            )
            return [_rows.run_record(row) for row in rows]

        return await self._db.call(read)

    async def dequeue_times(self, since: float) -> list[float]:
        """Return when runs were admitted (``RUN_DEQUEUED``) since ``since``.

        Reads the event log backwards from its end and stops at the first older
        event (or after ``EVENT_SCAN_WINDOW`` of them).
        """

        def read(conn: sqlite3.Connection) -> list[float]:
            times: list[float] = []
            rows = conn.execute(
                "SELECT timestamp FROM events WHERE kind = 'RUN_DEQUEUED' "
                "ORDER BY event_id DESC LIMIT ?",
                (EVENT_SCAN_WINDOW,),
            )
            for (at,) in rows:
                if at < since:
                    break
                times.append(at)
            return times

        return await self._db.call(read)

    async def get_recent_events(self, kinds: Iterable[str], limit: int) -> list[Event]:
        """Return the newest ``limit`` events of ``kinds``, newest first.

        Only the newest ``EVENT_SCAN_WINDOW`` events are looked through.
        """
        kind_list = list(kinds)
        sql = (
            "SELECT event_id, kind, run_id, step_key, timestamp, data FROM events "
            # '+kind': walk the newest events backwards by id and stop at
            # ``limit`` matches, rather than collecting every event of the kinds.
            f"WHERE event_id > ? AND +kind IN ({', '.join('?' * len(kind_list))}) "
            "ORDER BY event_id DESC LIMIT ?"
        )

        def read(conn: sqlite3.Connection) -> list[Event]:
            newest = conn.execute("SELECT MAX(event_id) FROM events").fetchone()[0]
            if newest is None:
                return []
            params = [newest - EVENT_SCAN_WINDOW, *kind_list, limit]
            return [_rows.event(row) for row in conn.execute(sql, params)]

        return await self._db.call(read)

    async def get_events_since(
        self, kinds: Iterable[str], since_s: float
    ) -> list[Event]:
        """Return every event of ``kinds`` stamped at or after ``since_s``, oldest first."""
        kind_list = list(kinds)
        sql = (
            "SELECT event_id, kind, run_id, step_key, timestamp, data FROM events "
            f"WHERE kind IN ({', '.join('?' * len(kind_list))}) AND timestamp >= ? "
            "ORDER BY event_id"
        )

        def read(conn: sqlite3.Connection) -> list[Event]:
            return [
                _rows.event(row) for row in conn.execute(sql, [*kind_list, since_s])
            ]

        return await self._db.call(read)

    async def get_step_progress(self, run_ids: Iterable[str]) -> StepProgress:
        """Return, per run, how many of its steps are in each step status."""
        ids = list(run_ids)
        if not ids:
            return {}
        sql = (
            "SELECT run_id, status, COUNT(*) FROM steps "
            f"WHERE run_id IN ({', '.join('?' * len(ids))}) GROUP BY run_id, status"
        )

        def read(conn: sqlite3.Connection) -> StepProgress:
            progress: StepProgress = {run_id: {} for run_id in ids}
            for run_id, status, count in conn.execute(sql, ids):
                progress[run_id][status] = count
            return progress

        return await self._db.call(read)

    async def get_step_totals(self, run_ids: Iterable[str]) -> dict[str, int]:
        """Return how many steps each started run has (from its ``RUN_STARTED``)."""
        ids = list(run_ids)

        def read(conn: sqlite3.Connection) -> dict[str, int]:
            totals: dict[str, int] = {}
            for run_id in ids:
                # The run's first RUN_STARTED comes early in its events: the
                # (run_id, event_id) index finds it without reading the rest
                # ('+kind' keeps SQLite off the index of every RUN_STARTED).
                row = conn.execute(
                    "SELECT json_extract(data, '$.steps') FROM events "
                    "WHERE run_id = ? AND +kind = 'RUN_STARTED' "
                    "ORDER BY event_id LIMIT 1",
                    (run_id,),
                ).fetchone()
                if row is not None and row[0] is not None:
                    totals[run_id] = int(row[0])
            return totals

        return await self._db.call(read)

    async def get_recent_finished_runs(self, limit: int) -> list[RunRecord]:
        """Return the newest ``limit`` finished runs (SUCCESS, FAILURE, CANCELED)."""

        def read(conn: sqlite3.Connection) -> list[RunRecord]:
            # The newest of each finished status from runs_by_status_created, then
            # merged: walking the creation index instead passed every newer queued
            # run first (a million queued runs: 511 ms).
            rows = conn.execute(_RECENT_FINISHED, (limit,) * 4)
            return [_rows.run_record(row) for row in rows]

        return await self._db.call(read)

    async def count_runs_created_since(
        self, since: float, statuses: Iterable[RunStatus] = tuple(RunStatus)
    ) -> dict[RunStatus, int]:
        """Return how many runs created since ``since`` are in each of ``statuses``
        (default: every status; zero included)."""
        wanted = [status.value for status in statuses]

        def read(conn: sqlite3.Connection) -> dict[RunStatus, int]:
            # One range of runs_by_status_created per status: the recent runs of
            # other statuses (a million queued ones) are never read.
            return {
                RunStatus(value): conn.execute(
                    "SELECT COUNT(*) FROM runs WHERE status = ? AND created_at >= ?",
                    (value, since),
                ).fetchone()[0]
                for value in wanted
            }

        return await self._db.call(read)

    async def get_waiting_steps(self, run_ids: Iterable[str]) -> dict[str, list[str]]:
        """Return, per run, the keys of its steps in status WAITING."""
        return await self.get_steps_in_status(run_ids, StepStatus.WAITING)

    async def get_steps_in_status(
        self, run_ids: Iterable[str], status: StepStatus
    ) -> dict[str, list[str]]:
        """Return, per run, the keys of its steps in ``status``, in key order."""
        ids = list(run_ids)
        if not ids:
            return {}
        sql = (
            "SELECT run_id, step_key FROM steps "
            f"WHERE run_id IN ({', '.join('?' * len(ids))}) AND status = ? "
            "ORDER BY step_key"
        )

        def read(conn: sqlite3.Connection) -> dict[str, list[str]]:
            found: dict[str, list[str]] = {}
            for run_id, step_key in conn.execute(sql, [*ids, status.value]):
                found.setdefault(run_id, []).append(step_key)
            return found

        return await self._db.call(read)

    async def get_waiting_step_events(
        self, run_id: str, step_keys: Iterable[str]
    ) -> dict[str, Event]:
        """Return the latest gate event of each of a run's waiting steps.

        A gate event is ``STEP_WAITING``, ``STEP_POOL_BLOCKED``, ``STEP_POOL_CLAIMED``
        or ``STEP_RETRY``; it says what the step waits for.
        """
        keys = list(step_keys)
        if not keys:
            return {}
        sql = (
            "SELECT event_id, kind, run_id, step_key, timestamp, data FROM events "
            "WHERE run_id = ? AND +kind IN ('STEP_WAITING', 'STEP_POOL_BLOCKED', "
            "'STEP_POOL_CLAIMED', 'STEP_RETRY', 'STEP_STARTED') "
            f"AND step_key IN ({', '.join('?' * len(keys))}) ORDER BY event_id DESC"
        )

        def read(conn: sqlite3.Connection) -> dict[str, Event]:
            latest: dict[str, Event] = {}
            for row in conn.execute(sql, [run_id, *keys]):
                if row[3] not in latest:
                    latest[row[3]] = _rows.event(row)
                    if len(latest) == len(keys):
                        break
            return latest

        return await self._db.call(read)


_NEWEST_OF = (
    f"SELECT * FROM (SELECT {_rows.RUN_COLUMNS} FROM runs WHERE status = '{{}}' "
    "ORDER BY created_at DESC, run_id DESC LIMIT ?) AS n{}"
)
_RECENT_FINISHED = (
    " UNION ALL ".join(
        _NEWEST_OF.format(s, i)
        for i, s in enumerate(("SUCCESS", "FAILURE", "CANCELED"))
    )
    + " ORDER BY created_at DESC, run_id DESC LIMIT ?"
)
