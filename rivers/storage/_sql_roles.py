"""The role objects of the shared SQL over one connection, as a ``StorageBackend``:
what ``SqliteStorage`` and ``PostgresStorage`` each hand out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rivers.storage._sql_dashboard import SqlDashboard
from rivers.storage._sql_events import SqlEvents
from rivers.storage._sql_pools import SqlPools
from rivers.storage._sql_processes import SqlProcesses
from rivers.storage._sql_queue import SqlQueue, SqlState
from rivers.storage._sql_runs import SqlRuns
from rivers.storage.base import StorageBackend

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from rivers.errors import StorageCorrupted
    from rivers.storage._connection import SqlConnection

__all__ = ("sql_backend",)


def sql_backend(
    db: SqlConnection,
    *,
    describe: str,
    close: Callable[[], Awaitable[None]],
    corruption: Callable[[], StorageCorrupted | None],
) -> StorageBackend:
    """One object per storage role over ``db`` (runs finish with their event in
    one transaction of ``events``; their counts are the dashboard's)."""
    events = SqlEvents(db)
    dashboard = SqlDashboard(db)
    return StorageBackend(
        runs=SqlRuns(db, events, dashboard),
        events=events,
        pools=SqlPools(db),
        queue=SqlQueue(db),
        state=SqlState(db),
        processes=SqlProcesses(db),
        dashboard=dashboard,
        clock=db.clock,
        describe=describe,
        close=close,
        corruption=corruption,
    )
