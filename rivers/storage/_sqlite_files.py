"""The SQLite storage's file and connection helpers, each run on one connection's thread.

Opening the file (created owner-only), the loop's inline connection, a transaction's
body and commit, and the checks that notice a file deleted, replaced, truncated or
damaged under a running storage.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from rivers._files import make_private_dirs
from rivers.errors import StorageUnavailable
from rivers.storage import _errors

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = (
    "FileIdentity",
    "check_same_file",
    "checkpoint",
    "closing_cursors",
    "finish_transaction",
    "open_inline",
    "prepare_file",
    "quick_check",
)

T = TypeVar("T")


def closing_cursors(
    fn: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection
) -> T:
    """Call ``fn`` on the connection's thread; close a cursor it returns, there.

    A cursor still open when it is dropped resets its statement in whatever thread
    drops it. Statements are cached and shared, so a cursor handed back to the
    event loop (``lambda conn: conn.execute(...)``) could reset a statement this
    thread is running, which SQLite reports as "bad parameter or other API misuse".
    """
    result = fn(conn)
    if isinstance(result, sqlite3.Cursor):
        result.close()
    return result


def open_inline(path: Path) -> sqlite3.Connection:
    """Open the loop thread's connection for ``_write_soon`` (after migrations).

    It never waits for a lock (busy timeout 0) and never checkpoints the WAL (the
    SQLite thread's connection does), so it cannot block the event loop for more
    than one short transaction.
    """
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=0)
    try:
        conn.execute("PRAGMA busy_timeout = 0")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("PRAGMA temp_store = MEMORY")
    except BaseException:
        conn.close()
        raise
    return conn


def checkpoint(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").close()


class FileIdentity(NamedTuple):
    """The storage file as opened: its absolute path (a step may ``chdir``), device
    and inode."""

    path: Path
    device: int
    inode: int


def check_same_file(identity: FileIdentity | None) -> None:
    """Refuse to write when the file was deleted, replaced or truncated under us.

    SQLite would write on into its WAL (and later a checkpoint into the hollow
    file) without noticing: a rivers file always holds at least its header page
    once open. One ``stat`` on the SQLite thread per write transaction.
    """
    if identity is None:
        return
    try:
        info = identity.path.stat()
    except FileNotFoundError:
        raise _errors.Damaged("the file was deleted while rivers used it") from None
    except OSError:
        return  # unreadable metadata: let SQLite decide
    if (info.st_dev, info.st_ino) != (identity.device, identity.inode):
        raise _errors.Damaged("the file was replaced while rivers used it")
    if info.st_size == 0:
        raise _errors.Damaged("the file was truncated to 0 bytes while rivers used it")


def finish_transaction(
    conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]
) -> T:
    """Run ``fn`` in the transaction just begun, then commit.

    If ``fn`` or the COMMIT fails the transaction is rolled back, so the
    connection is never left inside one.
    """
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def prepare_file(path: Path) -> Path:
    """Create the parent directory (owner-only) and the file (0600) if missing."""
    path = Path(path).expanduser()
    try:
        make_private_dirs(path.parent)
        if path.exists() and not path.is_file():
            raise StorageUnavailable(
                f"storage path {str(path)!r} is not a file; pass a file path"
            )
        if not path.exists():
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
    except PermissionError as exc:
        raise StorageUnavailable(
            f"cannot create storage {str(path)!r}: permission denied; pass a writable "
            "path with --storage or RIVERS_HOME"
        ) from exc
    except OSError as exc:
        if isinstance(exc, StorageUnavailable):
            raise
        raise StorageUnavailable(
            f"cannot create storage {str(path)!r}: {exc.strerror or exc}"
        ) from exc
    return path


def quick_check(conn: sqlite3.Connection) -> None:
    """Raise ``Damaged`` when ``PRAGMA quick_check`` finds a problem.

    It reads every page (b-tree structure, record formats, constraints) but does
    not compare indexes with their tables (``integrity_check`` does: ``rivers
    doctor``); a page overwritten with noise fails it.
    """
    found = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
    if found != "ok":
        raise _errors.Damaged(f"PRAGMA quick_check: {found}")
