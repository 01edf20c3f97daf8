"""The SQLite storage: WAL mode, one writer connection, whole transactions per call.

``SqliteStorage`` opens the file as a ``SqliteConnection`` (its thread, the loop's
inline connection, the file checks, the faults: ``_sqlite_connection``) and builds
one object per storage role over it (``_sql_roles``: the SQL PostgreSQL runs too).
``backend()`` hands them out as a ``StorageBackend``; nothing else reaches the
connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

from rivers._clock import SYSTEM_CLOCK, Clock
from rivers.storage._sql_roles import sql_backend
from rivers.storage._sqlite_connection import (
    BUSY_TIMEOUT_S,
    QUICK_CHECK_MAX_BYTES,
    WRITE_PATIENCE_S,
    SqliteConnection,
)
from rivers.storage.records import NewRun

if TYPE_CHECKING:
    from pathlib import Path

    from rivers.errors import StorageCorrupted
    from rivers.storage.base import StorageBackend

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
    it with ``aclose()``; its roles are ``backend()``.
    """

    def __init__(self, db: SqliteConnection) -> None:
        self.db = db
        self.path = db.path
        self.clock = db.clock
        self._backend = sql_backend(
            db, describe=str(db.path), close=self.aclose, corruption=lambda: db.broken
        )
        self.pools = self._backend.pools

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
        return self._backend

    @property
    def corrupted(self) -> StorageCorrupted | None:
        """The damage found while this storage was open (it then refuses writes)."""
        return self.db.broken
