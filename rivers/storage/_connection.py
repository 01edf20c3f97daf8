"""What the role objects need of a backend's connection (``SqlConnection``).

The runs, events, pools, queue, processes and dashboard SQL is written once, as
functions of a DB-API connection with ``?`` placeholders; a backend runs them:
``SqliteConnection`` on its SQLite file, ``PgConnection`` on a PostgreSQL
database (which reads the SQL in its dialect: ``_pg_sql``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Iterable

    from anyio.abc import TaskStatus

    from rivers._clock import Clock
    from rivers.errors import StorageCorrupted

__all__ = ("SqlConnection", "Wakes")

T = TypeVar("T")


class Wakes(Protocol):
    """Wake-ups between the runtimes sharing one storage."""

    def send(self, owners: Iterable[str]) -> None:
        """Wake the runtimes of ``owners`` (never blocks, never raises)."""
        ...

    async def listen(
        self,
        owner: str,
        on_wake: Callable[[], None],
        *,
        task_status: TaskStatus[None] = ...,
    ) -> None:
        """Call ``on_wake`` for every wake-up sent to ``owner`` until cancelled."""
        ...

    def close(self) -> None:
        """Release what sending holds."""
        ...


class SqlConnection(Protocol):
    """One open storage: its clock, its wake-ups, and where the shared SQL runs."""

    @property
    def clock(self) -> Clock: ...

    @property
    def wakes(self) -> Wakes: ...

    @property
    def broken(self) -> StorageCorrupted | None: ...

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` (a read)."""
        ...

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one write transaction."""
        ...

    async def write_soon(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``write``, at once on the loop where the backend can."""
        ...

    def write_now(self, fn: Callable[[sqlite3.Connection], T]) -> tuple[bool, T | None]:
        """Run ``fn`` in a transaction now if that costs no wait: (ran, result)."""
        ...
