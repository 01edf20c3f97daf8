"""The shared SQL ``QueueStore`` (queued-run reads, guarded admission, reasons) and
``StateStore`` (leader leases, small key-value state)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from rivers.storage._rows import RUN_COLUMNS, decode_list, decode_tags, run_record
from rivers.storage.records import IN_FLIGHT_STATUSES, RunRecord, RunStatus

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable

    from rivers.storage._connection import SqlConnection
    from rivers.storage.base import QueuedRow

__all__ = ("SqlQueue", "SqlState")

_IN_FLIGHT = tuple(s.value for s in IN_FLIGHT_STATUSES)
_IN_FLIGHT_SQL = f"status IN {_IN_FLIGHT}"


class SqlQueue:
    """The run queue in SQL (the ``QueueStore`` role)."""

    def __init__(self, db: SqlConnection) -> None:
        self._db = db

    async def get_queued_since(
        self, rowid: int, repository: str, fingerprint: str, limit: int = 50_000
    ) -> list[QueuedRow]:
        """Return QUEUED runs added after ``rowid`` (oldest first) of one definition.

        A run matches when it has this repository name and fingerprint, or no
        fingerprint at all (stored before runs had one).
        """

        def read(conn: sqlite3.Connection) -> list[QueuedRow]:
            rows = conn.execute(
                "SELECT rowid, run_id, priority, created_at, tags, selection FROM runs "
                # '+status' keeps SQLite on the rowid range, not the status index.
                "WHERE rowid > ? AND +status = 'QUEUED' AND repository = ? "
                "AND (fingerprint = ? OR fingerprint IS NULL) "
                "ORDER BY rowid LIMIT ?",
                (rowid, repository, fingerprint, limit),
            )
            return [
                (
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    decode_tags(r[4]),
                    None if r[5] is None else decode_list(r[5]),
                )
                for r in rows
            ]

        return await self._db.call(read)

    async def get_in_flight_tags(self) -> list[dict[str, str]]:
        """Return the tags of every in-flight run (one dict per run)."""

        def read(conn: sqlite3.Connection) -> list[dict[str, str]]:
            rows = conn.execute(f"SELECT tags FROM runs WHERE {_IN_FLIGHT_SQL}")
            return [decode_tags(r[0]) for r in rows]

        return await self._db.call(read)

    async def admit_run(
        self,
        run_id: str,
        *,
        owner: str,
        max_concurrent_runs: int,
        tag_guards: Iterable[tuple[str, str | None, int]],
    ) -> bool:
        """Move a QUEUED run to STARTING if the queue and its tag limits have room.

        The counts are re-read inside the transaction, so even two coordinators
        could never exceed a limit together. ``tag_guards`` holds (key, value or
        None for any value, limit) for each bucket the run counts against.
        """
        (admitted,) = await self.admit_runs(
            [(run_id, list(tag_guards))],
            owner=owner,
            max_concurrent_runs=max_concurrent_runs,
        )
        return admitted

    async def admit_runs(
        self,
        candidates: list[tuple[str, list[tuple[str, str | None, int]]]],
        *,
        owner: str,
        max_concurrent_runs: int,
    ) -> list[bool]:
        """Admit several runs in order, in one transaction (see ``admit_run``)."""
        admitted = await self.admit_queued(
            candidates, owner=owner, max_concurrent_runs=max_concurrent_runs
        )
        return [record is not None for record in admitted]

    async def admit_queued(
        self,
        candidates: list[tuple[str, list[tuple[str, str | None, int]]]],
        *,
        owner: str,
        max_concurrent_runs: int,
    ) -> list[RunRecord | None]:
        """Admit several runs in order, in one transaction (see ``admit_run``);
        return each admitted run's record (STARTING), None for each that did not
        fit, so the owner launches them without reading them again."""

        def write(conn: sqlite3.Connection) -> list[RunRecord | None]:
            return [
                _admit(conn, run_id, guards, owner, max_concurrent_runs)
                for run_id, guards in candidates
            ]

        return await self._db.write(write)

    async def set_run_reasons(self, reasons: dict[str, str]) -> None:
        """Record why queued runs wait (only runs still QUEUED are changed)."""
        if not reasons:
            return
        await self._db.write(
            lambda conn: conn.executemany(
                "UPDATE runs SET reason = ? WHERE run_id = ? AND status = 'QUEUED'",
                [(reason, run_id) for run_id, reason in reasons.items()],
            )
        )

    async def queue_position(self, run_id: str) -> int | None:
        """Return a queued run's 1-based place in queue order, or None.

        SQLite has no counted B-tree, so a place is a count over an index range,
        O(runs counted). The count takes the shorter end of the run's priority
        band (guessed from where its creation time falls between the band's
        oldest and newest, two index probes): a run near the front counts the
        runs ahead of it, one near the back the runs behind it and subtracts
        them from the QUEUED total ``run_counts`` keeps. Each count is one
        statement, so it reads one snapshot.
        """

        def read(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(
                "SELECT priority, created_at, status FROM runs WHERE run_id = ?",
                (run_id,),
            ).fetchone()
            if row is None or row[2] != RunStatus.QUEUED.value:
                return None
            priority, created_at = row[0], row[1]
            oldest, newest = conn.execute(
                # Two subqueries: MIN and MAX in one SELECT make SQLite scan the
                # band instead of reading its two ends.
                "SELECT (SELECT MIN(created_at) FROM runs WHERE status = 'QUEUED' "
                "AND priority = ?), (SELECT MAX(created_at) FROM runs WHERE "
                "status = 'QUEUED' AND priority = ?)",
                (priority, priority),
            ).fetchone()
            # Two ranges of runs_by_status, counted apart: one OR over both made
            # SQLite scan every queued run (over a million: 160 ms -> 60 ms).
            if oldest is None or created_at - oldest <= newest - created_at:
                ahead: int = conn.execute(
                    "SELECT (SELECT COUNT(*) FROM runs WHERE status = 'QUEUED' "
                    "AND priority > ?) + (SELECT COUNT(*) FROM runs WHERE status = "
                    "'QUEUED' AND priority = ? AND created_at < ?)",
                    (priority, priority, created_at),
                ).fetchone()[0]
            else:
                ahead = conn.execute(
                    "SELECT (SELECT runs FROM run_counts WHERE status = 'QUEUED') - "
                    "(SELECT COUNT(*) FROM runs WHERE status = 'QUEUED' "
                    "AND priority < ?) - (SELECT COUNT(*) FROM runs WHERE status = "
                    "'QUEUED' AND priority = ? AND created_at >= ?)",
                    (priority, priority, created_at),
                ).fetchone()[0]
            return max(ahead, 0) + 1

        return await self._db.call(read)


class SqlState:
    """Leader leases and small JSON values in the ``kv`` table (``StateStore``)."""

    def __init__(self, db: SqlConnection) -> None:
        self._db = db
        self.clock = db.clock

    async def acquire_leadership(self, name: str, owner: str, lease_s: float) -> bool:
        """Take or renew the lease ``name`` for ``owner``; return whether it holds it."""
        now = self.clock.time()

        def write(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT value, updated_at FROM kv WHERE key = ?", (name,)
            ).fetchone()
            if row is not None:
                holder, _, expires = str(row[0]).rpartition("@")
                if holder != owner and float(expires or 0) > now:
                    return False
            conn.execute(
                "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (name, f"{owner}@{now + lease_s}", now),
            )
            return True

        return await self._db.write(write)

    async def release_leadership(self, name: str, owner: str) -> None:
        """Give the lease ``name`` up if ``owner`` holds it."""
        await self._db.write(
            lambda conn: conn.execute(
                "DELETE FROM kv WHERE key = ? AND value LIKE ?", (name, f"{owner}@%")
            )
        )

    async def put_state(self, key: str, value: object) -> None:
        """Store a small JSON value under ``key``."""
        now = self.clock.time()
        data = msgspec.json.encode(value).decode()
        await self._db.write(
            lambda conn: conn.execute(
                "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (key, data, now),
            )
        )

    async def get_state(self, key: str) -> Any:
        """Return the JSON value stored under ``key``, or None."""

        def read(conn: sqlite3.Connection) -> Any:
            row = conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
            return None if row is None else msgspec.json.decode(row[0])

        return await self._db.call(read)


def _admit(
    conn: sqlite3.Connection,
    run_id: str,
    guards: list[tuple[str, str | None, int]],
    owner: str,
    max_concurrent_runs: int,
) -> RunRecord | None:
    in_flight = conn.execute(
        f"SELECT COUNT(*) FROM runs WHERE {_IN_FLIGHT_SQL}"
    ).fetchone()[0]
    if in_flight >= max_concurrent_runs:
        return None
    for key, value, limit in guards:
        # CROSS JOIN keeps the (few) in-flight runs as the outer loop.
        sql = (
            "SELECT COUNT(*) FROM runs r CROSS JOIN run_tags t "
            f"ON t.run_id = r.run_id WHERE r.{_IN_FLIGHT_SQL} AND t.key = ?"
        )
        params: list[Any] = [key]
        if value is not None:
            sql += " AND t.value = ?"
            params.append(value)
        if conn.execute(sql, params).fetchone()[0] >= limit:
            return None
    # started_at stays NULL until the owner launches it (STARTED): a STARTING run
    # without it was admitted but never began, so recovery may queue it again.
    rows = conn.execute(
        "UPDATE runs SET status = ?, owner = ?, reason = NULL "
        f"WHERE run_id = ? AND status = 'QUEUED' RETURNING {RUN_COLUMNS}",
        (RunStatus.STARTING.value, owner, run_id),
    ).fetchall()
    return run_record(rows[0]) if rows else None
