"""The PostgreSQL storage: the same role objects as SQLite, on a server database.

``PostgresStorage`` opens the database as a ``PgConnection`` (its thread, its
write lock, reconnection, the schema: ``_pg_connection``) and builds one object
per storage role over it (``_sql_roles``, as SQLite does), whose SQL
``PgConnection`` runs in PostgreSQL's dialect (``_pg_sql``), so every rule is
written once for both. Wake-ups between processes and hosts go through
LISTEN/NOTIFY (``_pg_wakes``). Install it with ``pip install 'rivers[postgres]'``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

from rivers._clock import SYSTEM_CLOCK, Clock
from rivers.storage._pg_connection import PgConnection
from rivers.storage._sql_roles import sql_backend

if TYPE_CHECKING:
    from rivers.storage.base import StorageBackend

__all__ = ("PostgresStorage",)


@final
class PostgresStorage:
    """Runs, events, steps, materializations, pools and claims in one PostgreSQL
    database (open with ``PostgresStorage.open``, close with ``aclose()``)."""

    def __init__(self, db: PgConnection) -> None:
        self.db = db
        self._backend = sql_backend(
            db, describe=db.shown, close=self.aclose, corruption=lambda: None
        )

    @classmethod
    async def open(
        cls, url: str, shown: str, *, clock: Clock = SYSTEM_CLOCK
    ) -> PostgresStorage:
        """Connect to the database at ``url`` (``shown``: without its password)
        and bring its schema up to date.

        Raises:
            StorageUnavailable: the server cannot be reached or refuses the login,
                the database does not exist or holds another application's tables.
            MigrationError: the database was written by a newer rivers.
        """
        return cls(await PgConnection.open(url, shown, clock))

    async def aclose(self) -> None:
        """Close the connection; later calls raise ``StorageError``."""
        await self.db.aclose()

    def backend(self) -> StorageBackend:
        """Return this storage's role objects as a ``StorageBackend`` (a server's
        damage is the server's to report: ``corrupted`` is always None)."""
        return self._backend
