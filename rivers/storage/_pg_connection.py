"""The PostgreSQL backend's connection: one server connection on its own thread.

``PgConnection`` offers what ``SqliteConnection`` offers the role objects
(``call``, ``write``, ``write_soon``, ``write_now``, ``wakes``), so the runs,
events, pools, queue, processes and dashboard SQL is written once for both
backends (``_pg_sql`` reads it in PostgreSQL's dialect). Every call runs one
function on the connection's thread (psycopg 3, synchronously): a transaction
of many statements costs one thread hop, as on SQLite.

Writes: each runs in one transaction that first takes ``WRITE_LOCK``, a
transaction-scoped advisory lock, so writes from every process and host are
serialised as SQLite's write lock serialises them: a claim re-checks the pool's
limit inside the transaction that grants it, and no slot is ever granted twice.
Reads take no lock (each statement sees the latest committed state).

Faults: a lost connection is made again with backoff, and a read, or a write that
had not sent its COMMIT (the server rolled it back), is tried again, for up to
``WRITE_PATIENCE_S``; after that, or when the connection is lost while a COMMIT
is in flight (its outcome is unknown), the call raises ``StorageUnavailable``.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, cast, final

import anyio
import psycopg

from rivers._threads import Lane
from rivers.errors import StorageError, StorageUnavailable
from rivers.storage._patience import Patience
from rivers.storage._pg_schema import migrate
from rivers.storage._pg_sql import PgSql, register_loaders
from rivers.storage._pg_wakes import PgWakes, notify

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable

    from rivers._clock import Clock
    from rivers.errors import StorageCorrupted

__all__ = ("CONNECT_TIMEOUT_S", "WRITE_LOCK", "WRITE_PATIENCE_S", "PgConnection")

T = TypeVar("T")

WRITE_LOCK = 0x72697673_00000002
"""The advisory lock every write transaction holds (one writer at a time)."""
WRITE_PATIENCE_S = 45.0
"""How long a call waits out a lost connection, reconnecting, before it fails."""
RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
"""Pauses between attempts while the server is unreachable (the last repeats)."""
CONNECT_TIMEOUT_S = 10
"""How long one connection attempt waits for the server."""

_BEGIN = f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})".encode()


class _Lost(Exception):
    """The connection was lost before a COMMIT was sent: nothing was written."""


@final
class PgConnection:
    """One PostgreSQL database: reads and transactions on the connection's thread.

    Made by ``open``; the role objects call ``call`` (a read) and ``write`` (a
    transaction holding ``WRITE_LOCK``).
    """

    def __init__(
        self,
        url: str,
        shown: str,
        lane: Lane,
        raw: psycopg.Connection[Any],
        clock: Clock,
    ) -> None:
        self.url = url
        self.shown = shown  # the URL without its password
        self.clock = clock
        self.broken: StorageCorrupted | None = None  # a server's damage is its own
        self.closed = False
        self.wakes = PgWakes(url, lane, self._notify)
        self._lane = lane
        self._raw: psycopg.Connection[Any] | None = raw
        self._read_only = False

    @classmethod
    async def open(cls, url: str, shown: str, clock: Clock) -> PgConnection:
        """Connect to the database at ``url`` and bring its schema up to date.

        Raises:
            StorageUnavailable: the server cannot be reached, refuses the login,
                the database does not exist, or it holds another application's
                tables.
            MigrationError: the database was written by a newer rivers.
        """
        lane = Lane()
        try:
            raw = await lane.call(partial(_connect, url, shown))
            await lane.call(partial(migrate, raw, shown))
        except BaseException:
            await lane.close(lambda: None)
            raise
        return cls(url, shown, lane, raw, clock)

    async def aclose(self) -> None:
        """Close the connection; later calls raise ``StorageError``."""
        if self.closed:
            return
        self.closed = True
        raw = self._raw
        await self._lane.close(lambda: None if raw is None else raw.close())

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the connection's thread (a read)."""
        return await self._run(fn, write=False)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` inside one transaction holding ``WRITE_LOCK``.

        Raises:
            StorageUnavailable: the server was unreachable for ``WRITE_PATIENCE_S``,
                or the connection was lost during the COMMIT.
        """
        return await self._run(fn, write=True)

    async def write_soon(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``write`` (SQLite runs short hot writes on the loop; a server cannot)."""
        return await self.write(fn)

    def write_now(self, fn: Callable[[sqlite3.Connection], T]) -> tuple[bool, T | None]:
        """Never runs ``fn`` (returns (False, None)): a server write always waits."""
        return False, None

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        patience = Patience(RETRY_DELAYS_S, WRITE_PATIENCE_S)
        while True:
            if self.closed:
                raise StorageError(f"storage {self.shown!r} is closed")
            try:
                return await self._lane.call(partial(self._attempt, fn, write))
            except _Lost as lost:
                delay = patience.next_delay()
                if delay is None:
                    raise StorageUnavailable(
                        f"PostgreSQL storage {self.shown!r} unreachable for "
                        f"{patience.waited_s:.0f}s ({lost}); check the server and "
                        "the network"
                    ) from None
                await anyio.sleep(delay)

    def _attempt(self, fn: Callable[[sqlite3.Connection], T], write: bool) -> T:
        """One try of ``fn`` (on the lane's thread)."""
        raw = self._raw
        if raw is None or raw.closed or raw.broken:
            raw = self._raw = self._reconnect()
        sql = PgSql(raw)
        try:
            if not write:
                result = fn(cast("sqlite3.Connection", sql))
            else:
                raw.execute(_BEGIN)
                try:
                    result = fn(cast("sqlite3.Connection", sql))
                except BaseException:
                    if not raw.broken:
                        raw.execute(b"ROLLBACK")
                    raise
                try:
                    raw.execute(b"COMMIT")
                except psycopg.OperationalError as exc:
                    if raw.broken:
                        raise StorageUnavailable(
                            f"PostgreSQL storage {self.shown!r}: the connection was "
                            "lost during a COMMIT, so whether the write was applied is "
                            f"unknown ({_first_line(exc)})"
                        ) from None
                    raise
        except psycopg.OperationalError as exc:
            if raw.broken or raw.closed:
                raise _Lost(_first_line(exc)) from None
            raise _translate(exc, self.shown) from None
        except psycopg.Error as exc:
            raise _translate(exc, self.shown) from None
        if sql.read_only:
            self._read_only = True
        return result

    def _reconnect(self) -> psycopg.Connection[Any]:
        try:
            raw = _dial(self.url)
        except psycopg.Error as exc:
            raise _Lost(_first_line(exc)) from None
        if self._read_only:
            PgSql(raw).execute("PRAGMA query_only = ON")
        return raw

    def _notify(self, channels: list[str]) -> None:
        """Send wake-ups on ``channels`` (on the lane's thread; errors dropped)."""
        raw = self._raw
        if raw is not None and not raw.closed and not raw.broken:
            notify(raw, channels)


def _connect(url: str, shown: str) -> psycopg.Connection[Any]:
    """``_dial``, a failure as one line naming the storage (opening it)."""
    try:
        return _dial(url)
    except psycopg.Error as exc:
        raise StorageUnavailable(
            f"cannot connect to PostgreSQL storage {shown!r}: {_first_line(exc)}; "
            "check the URL and that the server is running"
        ) from None


def _dial(url: str) -> psycopg.Connection[Any]:
    """Connect (autocommit: transactions are begun explicitly) and register the
    loaders of the shared SQL's results."""
    raw = psycopg.connect(
        url,
        autocommit=True,
        connect_timeout=CONNECT_TIMEOUT_S,
        application_name="rivers",
    )
    register_loaders(raw)
    return raw


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _translate(exc: psycopg.Error, shown: str) -> StorageError:
    """The rivers error for a statement the server refused."""
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return StorageError(f"storage {shown!r} is open read-only; nothing was written")
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return StorageUnavailable(
            f"PostgreSQL storage {shown!r}: {_first_line(exc)}; grant the rivers user "
            "its own database or schema"
        )
    if isinstance(exc, psycopg.errors.DiskFull):
        return StorageUnavailable(
            f"PostgreSQL storage {shown!r}: the server's disk is full"
        )
    return StorageError(f"PostgreSQL storage {shown!r}: {_first_line(exc)}")
