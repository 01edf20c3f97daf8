"""The SQLite backend's connection: one file, one writer thread, whole transactions.

``SqliteConnection`` is what every SQLite role object (``SqlRuns``,
``SqlPools`` ...) holds and nothing else does: it owns the connection on its
own thread (a ``Lane``), the loop thread's inline connection, the identity of the
file opened and the damage found, so each rule about them lives here once.

Every call runs one function on the connection's thread, so a transaction of many
statements costs one thread hop. A call, once sent, always finishes: it runs
shielded from cancellation (bounded by SQLite's busy timeout), so a cancelled
caller never leaves a half-known write behind.

Faults: every sqlite3 exception, on every path, becomes a rivers error through
``_errors.translate``. A write that finds another process holding the write lock
tries again with backoff for up to ``WRITE_PATIENCE_S`` (``StorageLocked`` after
that). A damaged file (SQLite says malformed or not a database, ``quick_check``
fails at open, or the file was truncated, deleted or replaced under us) raises
``StorageCorrupted``, and from then on the storage refuses every write.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, final

import anyio

from rivers._threads import Lane
from rivers._wakeups import SocketWakes
from rivers.errors import (
    MigrationError,
    StorageCorrupted,
    StorageError,
    StorageLocked,
    StorageUnavailable,
)
from rivers.storage import _errors
from rivers.storage._patience import Patience
from rivers.storage._sqlite_files import (
    FileIdentity,
    check_same_file,
    checkpoint,
    closing_cursors,
    finish_transaction,
    open_inline,
    prepare_file,
    quick_check,
)
from rivers.storage.schema import SCHEMA_VERSION, check_marks, migrate

if TYPE_CHECKING:
    from collections.abc import Callable

    from rivers._clock import Clock

__all__ = (
    "BUSY_TIMEOUT_S",
    "INLINE_CHECKPOINT_EVERY",
    "QUICK_CHECK_MAX_BYTES",
    "WRITE_PATIENCE_S",
    "WRITE_RETRY_DELAYS_S",
    "SqliteConnection",
)

T = TypeVar("T")

INLINE_CHECKPOINT_EVERY = 200
"""Commits on the loop's connection between two WAL checkpoints on the SQLite thread."""
BUSY_TIMEOUT_S = 5.0
"""How long one attempt at a statement waits for a lock inside SQLite."""
WRITE_PATIENCE_S = 45.0
"""How long a write waits out a write lock held by another process, retrying."""
WRITE_RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.5, 1.0)
"""Pauses between a write's attempts while the lock is held (the last repeats)."""
QUICK_CHECK_MAX_BYTES = 8 * 2**20
"""Files up to this size get ``PRAGMA quick_check`` when opened (7-22 ms per MiB)."""


@final
class SqliteConnection:
    """One open SQLite storage file: reads and transactions on its thread or inline.

    Made by ``open``; the role objects call ``call`` (a read), ``write`` (a
    transaction), ``write_soon`` and ``write_now`` (short hot transactions on the
    loop thread when the write lock is free).
    """

    def __init__(
        self,
        path: Path,
        lane: Lane,
        raw: sqlite3.Connection,
        clock: Clock,
        identity: FileIdentity,
    ) -> None:
        self.path = path
        self.clock = clock
        self.identity = identity  # the file opened (a replaced file is refused)
        self.wakes = SocketWakes(path)  # between the processes sharing the file
        self.inline_commits = 0  # since the last checkpoint
        self.broken: StorageCorrupted | None = None
        self.closed = False
        self._lane = lane
        self._raw = raw
        self._inline: sqlite3.Connection | None = None
        self._inline_failed = False
        self._inline_thread = threading.get_ident()  # the loop that opened it

    @classmethod
    async def open(cls, path: Path, clock: Clock) -> SqliteConnection:
        """Open (creating and migrating if needed) the storage file at ``path``.

        Raises:
            StorageUnavailable: the file cannot be created or opened, is locked, or
                is not a rivers database.
            StorageCorrupted: the file is a rivers database that fails ``PRAGMA
                quick_check`` (checked for files up to ``QUICK_CHECK_MAX_BYTES``).
            MigrationError: the file was written by a newer rivers.
        """
        lane = Lane()
        try:
            path, raw = await lane.call(partial(_connect, path))
        except BaseException:
            await lane.close(lambda: None)
            raise
        try:
            with anyio.CancelScope(shield=True):
                try:
                    identity = await lane.call(
                        partial(closing_cursors, _initialize, raw)
                    )
                except (sqlite3.Error, _errors.Foreign, _errors.Damaged) as exc:
                    raise _translate(exc, path) from exc
        except BaseException as exc:
            await lane.close(raw.close)
            if isinstance(exc, MigrationError):
                raise MigrationError(f"storage {str(path)!r}: {exc}") from None
            raise
        return cls(path, lane, raw, clock, identity)

    async def aclose(self) -> None:
        """Close both connections; later calls raise ``StorageError``."""
        if self.closed:
            return
        self.closed = True
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        await self._lane.close(self._raw.close)

    def fail(self, exc: BaseException) -> StorageError:
        """Return the rivers error for ``exc``; a damaged file stops all writes."""
        error = _errors.translate(exc, self.path, opened=True, busy_s=BUSY_TIMEOUT_S)
        if isinstance(error, StorageCorrupted) and self.broken is None:
            self.broken = error
        return error

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the connection's thread (a read, or a pragma)."""
        if self.closed:
            raise StorageError(f"storage {str(self.path)!r} is closed")
        raw = self._raw
        with anyio.CancelScope(shield=True):
            try:
                # A whole transaction costs one hop to the connection's thread
                # instead of one per statement.
                result: T = await self._lane.call(partial(closing_cursors, fn, raw))
            except (sqlite3.Error, _errors.Foreign, _errors.Damaged) as exc:
                raise self.fail(exc) from exc
        return result

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` inside one ``BEGIN IMMEDIATE`` transaction.

        While another process holds the write lock the transaction is tried again
        (each attempt waits up to ``BUSY_TIMEOUT_S`` inside SQLite, then pauses on
        the loop so reads go on) until ``WRITE_PATIENCE_S`` have passed.

        Raises:
            StorageLocked: the lock was still held after ``WRITE_PATIENCE_S``.
            StorageCorrupted: the file is damaged (now or earlier): nothing written.
        """
        patience = Patience(WRITE_RETRY_DELAYS_S, WRITE_PATIENCE_S)
        identity = self.identity
        while True:
            if self.broken is not None:
                raise self.broken
            try:
                return await self.call(lambda conn: _transaction(conn, fn, identity))
            except StorageLocked:
                delay = patience.next_delay()
                if delay is None:
                    raise _errors.locked(self.path, patience.waited_s) from None
                await anyio.sleep(delay)

    async def write_soon(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Like ``write``, but on the event loop when the write lock is free now.

        For short hot transactions (a pool claim, a release handing its slots on):
        see ``write_now``. When the lock is taken (the SQLite thread or another
        process is writing) it goes through ``write`` and waits its turn as usual.
        """
        done, result = self.write_now(fn)
        if done:
            return result  # type: ignore[return-value]  # done: fn's result
        if self.inline_commits >= INLINE_CHECKPOINT_EVERY:
            # The loop's connection never checkpoints (that would copy pages and
            # fsync on the loop); the SQLite thread folds the WAL back now and then.
            self.inline_commits = 0
            await self.call(checkpoint)
            done, result = self.write_now(fn)
            if done:
                return result  # type: ignore[return-value]
        return await self.write(fn)

    def write_now(self, fn: Callable[[sqlite3.Connection], T]) -> tuple[bool, T | None]:
        """Run ``fn`` in a transaction on the loop thread if that costs no wait.

        ``fn`` runs on a second connection, on the loop thread, if ``BEGIN
        IMMEDIATE`` gets the write lock at once (that connection never waits: its
        busy timeout is 0); a transaction of ~0.1 ms then costs no hop to the
        SQLite thread and back (~1 ms under load). Returns (True, fn's result), or
        (False, None) when it did not run: the lock is taken, a WAL checkpoint is
        due, or this is not the loop thread that opened the storage.
        """
        if (
            self.closed
            or self.inline_commits >= INLINE_CHECKPOINT_EVERY
            or threading.get_ident() != self._inline_thread
        ):
            return False, None
        inline = self._inline
        if inline is None:
            if self._inline_failed:
                return False, None
            try:  # opened on first use: a run that claims no pool never pays for it
                check_same_file(self.identity)  # a new connection would not see it
                inline = self._inline = open_inline(self.identity.path)
            except _errors.Damaged as exc:
                raise self.fail(exc) from exc
            except sqlite3.Error:
                self._inline_failed = True  # the SQLite thread's connection serves
                return False, None
        if self.broken is not None:
            raise self.broken
        try:
            inline.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if not _errors.is_busy(exc):
                raise self.fail(exc) from exc
            return False, None
        try:
            result = closing_cursors(lambda conn: finish_transaction(conn, fn), inline)
        except sqlite3.Error as exc:
            raise self.fail(exc) from exc
        self.inline_commits += 1
        return True, result


def _connect(path: Path) -> tuple[Path, sqlite3.Connection]:
    """Create the file if missing and connect to it (on the lane's thread)."""
    path = prepare_file(path)
    try:
        conn = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise _translate(exc, path) from exc
    return path, conn


def _transaction(
    conn: sqlite3.Connection,
    fn: Callable[[sqlite3.Connection], T],
    identity: FileIdentity,
) -> T:
    check_same_file(identity)
    conn.execute("BEGIN IMMEDIATE")
    return finish_transaction(conn, fn)


def _initialize(conn: sqlite3.Connection) -> FileIdentity:
    """Check the file is ours, set pragmas, apply migrations (runs on the db thread).

    Returns the file's identity, for ``check_same_file``.
    """
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    path = Path(conn.execute("PRAGMA database_list").fetchone()[2])
    info = path.stat()
    # Read the marks in one read transaction: a migration another process commits
    # meanwhile is seen whole or not at all (never tables without the marks).
    conn.execute("BEGIN")
    try:
        version = check_marks(conn)
        if version > 0 and info.st_size <= QUICK_CHECK_MAX_BYTES:
            quick_check(conn)
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")  # read only
    if version == 0:  # before WAL: a new file gives the pages a prune frees back
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    _use_wal(conn)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA cache_size = -16000")
    identity = FileIdentity(path, info.st_dev, info.st_ino)
    if version == SCHEMA_VERSION:
        return identity
    migrate(conn)
    return identity


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL mode, waiting up to ``BUSY_TIMEOUT_S`` for the lock.

    The switch needs the file to itself for a moment, and SQLite reports "database
    is locked" at once instead of calling the busy handler (another process opening
    the same new file holds a read lock), so the wait is done here.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.001
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() or time.monotonic() >= deadline:
                raise
            time.sleep(delay)  # on the db thread, like SQLite's own busy handler
            delay = min(delay * 2, 0.05)
    if str(mode).lower() != "wal":  # pragma: no cover - e.g. a network filesystem
        raise StorageUnavailable(f"storage cannot use WAL mode (got {mode!r})")


def _translate(exc: BaseException, path: Path) -> StorageError:
    """Translate an error raised before the file was known to be a rivers database."""
    return _errors.translate(exc, path, opened=False, busy_s=BUSY_TIMEOUT_S)
