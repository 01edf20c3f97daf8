"""``SqlProcesses``: the ``ProcessStore`` of both backends (SQLite, PostgreSQL).
Which processes are alive, the recovery of dead ones, which repository definitions
each long-lived runtime serves, and the assets of every definition runs were made
from."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from rivers.core.ownership import Served
from rivers.storage._rows import decode_list
from rivers.storage.records import IN_FLIGHT_STATUSES, RunStatus, StepStatus

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable, Sequence

    from rivers.storage._connection import SqlConnection

__all__ = ("SqlProcesses",)

Definition = tuple[str, str, "Sequence[str]"]
"""(repository name, fingerprint, asset names)."""


_TERMINAL_STEP = ("SUCCESS", "FAILURE", "SKIPPED", "CANCELED")


class SqlProcesses:
    """Processes, their heartbeats, what they serve, and recovery (``ProcessStore``)."""

    def __init__(self, db: SqlConnection) -> None:
        self._db = db
        self.clock = db.clock

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

        await self._db.write(write)

    async def heartbeat(self, owner: str) -> None:
        """Refresh ``owner``'s heartbeat."""
        now = self.clock.time()
        await self._db.write(
            lambda conn: conn.execute(
                "UPDATE processes SET heartbeat_at = ? WHERE owner = ?", (now, owner)
            )
        )

    async def unregister_process(self, owner: str) -> None:
        """Forget ``owner`` and what it served (it stopped cleanly)."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM served WHERE owner = ?", (owner,))
            conn.execute("DELETE FROM processes WHERE owner = ?", (owner,))

        await self._db.write(write)

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

        return await self._db.call(read)

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

        return await self._db.call(read)

    async def get_cancel_requests(self, owner: str) -> list[str]:
        """Return the ids of ``owner``'s runs that are CANCELING."""

        def read(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT run_id FROM runs WHERE owner = ? AND status = ?",
                (owner, RunStatus.CANCELING.value),
            )
            return [row[0] for row in rows]

        return await self._db.call(read)

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
            _fail_runs(conn, run_ids, reason, now)
            conn.execute("DELETE FROM pending_steps WHERE owner = ?", (owner,))
            conn.execute("DELETE FROM served WHERE owner = ?", (owner,))
            conn.execute("DELETE FROM processes WHERE owner = ?", (owner,))
            return run_ids

        return await self._db.write(write)

    async def get_started_runs(self, owner: str) -> list[str]:
        """Return the ids of ``owner``'s runs that began (STARTED or CANCELING)."""
        return await self._db.call(
            lambda conn: [
                row[0]
                for row in conn.execute(
                    "SELECT run_id FROM runs WHERE owner = ? "
                    "AND status IN ('STARTED', 'CANCELING')",
                    (owner,),
                )
            ]
        )

    async def fail_started_runs(
        self, owner: str, run_ids: Iterable[str], reason: str
    ) -> list[str]:
        """Mark those of ``run_ids`` still STARTED (or CANCELING) by ``owner``
        FAILURE, with their unfinished steps (re-checked in the transaction);
        return their ids."""
        wanted = list(run_ids)
        now = self.clock.time()

        def write(conn: sqlite3.Connection) -> list[str]:
            still = [
                run_id
                for run_id in wanted
                if conn.execute(
                    "SELECT 1 FROM runs WHERE run_id = ? AND owner = ? "
                    "AND status IN ('STARTED', 'CANCELING')",
                    (run_id, owner),
                ).fetchone()
            ]
            _fail_runs(conn, still, reason, now)
            return still

        return await self._db.write(write)

    async def record_definitions(self, definitions: Iterable[Definition]) -> None:
        """Remember each definition's assets (what explanations name)."""
        rows = [
            (fingerprint, name, msgspec.json.encode(sorted(assets)).decode())
            for name, fingerprint, assets in definitions
        ]
        if rows:
            await self._db.write(lambda conn: _insert_definitions(conn, rows))

    async def serve(self, owner: str, definitions: Iterable[Definition]) -> None:
        """Record that the runtime ``owner`` serves these definitions.

        The rows go when ``owner`` unregisters or is recovered as dead; until then
        its ``processes`` heartbeat says whether it is alive.
        """
        items = list(definitions)
        rows = [
            (fingerprint, name, msgspec.json.encode(sorted(assets)).decode())
            for name, fingerprint, assets in items
        ]

        def write(conn: sqlite3.Connection) -> None:
            _insert_definitions(conn, rows)
            conn.executemany(
                "INSERT INTO served (owner, repository, fingerprint) "
                "VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [(owner, name, fingerprint) for name, fingerprint, _ in items],
            )

        if items:
            await self._db.write(write)

    async def get_served(self) -> list[tuple[Served, float | None]]:
        """Return every served definition with its runtime's last heartbeat (or None)."""

        def read(conn: sqlite3.Connection) -> list[tuple[Served, float | None]]:
            rows = conn.execute(
                "SELECT s.owner, s.repository, s.fingerprint, d.assets, p.heartbeat_at "
                "FROM served s LEFT JOIN definitions d ON d.fingerprint = s.fingerprint "
                "LEFT JOIN processes p ON p.owner = s.owner ORDER BY s.owner"
            ).fetchall()
            return [
                (
                    Served(
                        owner=row[0],
                        repository=row[1],
                        fingerprint=row[2],
                        assets=tuple(decode_list(row[3]) or ()),
                    ),
                    row[4],
                )
                for row in rows
            ]

        return await self._db.call(read)

    async def get_definition_assets(self, fingerprint: str) -> list[str]:
        """Return the assets of a recorded definition (empty if unknown)."""

        def read(conn: sqlite3.Connection) -> list[str]:
            row = conn.execute(
                "SELECT assets FROM definitions WHERE fingerprint = ?", (fingerprint,)
            ).fetchone()
            return [] if row is None else list(decode_list(row[0]) or ())

        return await self._db.call(read)


def _insert_definitions(
    conn: sqlite3.Connection, rows: list[tuple[str, str, str]]
) -> None:
    conn.executemany(
        "INSERT INTO definitions (fingerprint, repository, assets) "
        "VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        rows,
    )


def _fail_runs(
    conn: sqlite3.Connection, run_ids: Iterable[str], reason: str, now: float
) -> None:
    """Mark the runs FAILURE, and their unfinished steps, with ``reason``."""
    for run_id in run_ids:
        conn.execute(
            "UPDATE runs SET status = ?, reason = ?, ended_at = ? WHERE run_id = ?",
            (RunStatus.FAILURE.value, reason, now, run_id),
        )
        conn.execute(
            "UPDATE steps SET status = ?, error = ?, ended_at = ? "
            f"WHERE run_id = ? AND status NOT IN {_TERMINAL_STEP}",
            (StepStatus.FAILURE.value, reason, now, run_id),
        )
