"""The SQLite storage: WAL mode, one writer connection, whole transactions per call.

``SqliteStorage`` opens the file as a ``SqliteConnection`` (its thread, the loop's
inline connection, the file checks, the faults: ``_sqlite_connection``) and builds
one object per storage role over it, each taking that connection:
``SqlRuns``, ``SqlEvents``, ``SqlPools``, ``SqlQueue``,
``SqlState``, ``SqlProcesses`` and ``SqlDashboard``. ``backend()`` hands
them out as a ``StorageBackend``; nothing else reaches the connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

from rivers._clock import SYSTEM_CLOCK, Clock
from rivers.storage._sql_dashboard import SqlDashboard
from rivers.storage._sql_events import SqlEvents
from rivers.storage._sql_pools import SqlPools
from rivers.storage._sql_processes import SqlProcesses
from rivers.storage._sql_queue import SqlQueue, SqlState
from rivers.storage._sql_runs import SqlRuns
from rivers.storage._sqlite_connection import (
    BUSY_TIMEOUT_S,
    QUICK_CHECK_MAX_BYTES,
    WRITE_PATIENCE_S,
    SqliteConnection,
)
from rivers.storage.base import StorageBackend
from rivers.storage.records import NewRun

if TYPE_CHECKING:
    from pathlib import Path

    from rivers.errors import StorageCorrupted

__all__ = (
    "BUSY_TIMEOUT_S",
    "QUICK_CHECK_MAX_BYTES",
    "WRITE_PATIENCE_S",
    "NewRun",
    "SqliteStorage",
)


@final
class SqliteStorage:
    """Runs, events, steps, materializations, pools and claims in one SQLite file.

    Open it with ``SqliteStorage.open`` (users: ``rs.open_storage(...)``) and close
    it with ``aclose()``; its roles are its attributes, and ``backend()``.
    """

    def __init__(self, db: SqliteConnection) -> None:
        self.db = db
        self.path = db.path
        self.clock = db.clock
        self.events = SqlEvents(db)
        self.dashboard = SqlDashboard(db)
        self.runs = SqlRuns(db, self.events, self.dashboard)
        self.pools = SqlPools(db)
        self.queue = SqlQueue(db)
        self.state = SqlState(db)
        self.processes = SqlProcesses(db)

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
        return cls(await SqliteConnection.open(path, clock))

    async def aclose(self) -> None:
        """Close the connection; later calls raise ``StorageError``."""
        if self.db.closed:
            return
        self.db.wakes.close()
        await self.db.aclose()

    def backend(self) -> StorageBackend:
        """Return this storage's role objects as a ``StorageBackend``."""
        return StorageBackend(
            runs=self.runs,
            events=self.events,
            pools=self.pools,
            queue=self.queue,
            state=self.state,
            processes=self.processes,
            dashboard=self.dashboard,
            clock=self.clock,
            describe=str(self.path),
            close=self.aclose,
            corruption=lambda: self.db.broken,
        )

    @property
    def corrupted(self) -> StorageCorrupted | None:
        """The damage found while this storage was open (it then refuses writes)."""
        return self.db.broken
