"""The one mapping from what SQLite (or the file) raised to a rivers ``StorageError``.

Every path into SQLite (the connection thread, the event loop's inline writes,
opening) hands its exception to ``translate``, so each fault reads the same
wherever it struck. The primary SQLite result code decides (``sqlite_errorcode``);
the message text is the fallback for exceptions raised without one.
"""

from __future__ import annotations

import shlex
import sqlite3
from typing import TYPE_CHECKING

from rivers.errors import (
    StorageCorrupted,
    StorageError,
    StorageLocked,
    StorageUnavailable,
)

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ("Damaged", "Foreign", "corrupted", "is_busy", "locked", "translate")

_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_CORRUPT = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


class Foreign(Exception):
    """The file is a SQLite database, but not a rivers one."""


class Damaged(Exception):
    """A check found the file damaged: ``quick_check`` failed, or it was truncated,
    deleted or replaced under an open storage."""


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def is_busy(exc: BaseException) -> bool:
    """Whether SQLite refused because another connection holds a lock."""
    code = _code(exc)
    if code is not None:
        return code in _BUSY
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in text or "busy" in text
    )


def _is_corrupt(exc: BaseException) -> bool:
    code = _code(exc)
    if code is not None:
        return code in _CORRUPT
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text


def locked(path: Path, waited_s: float) -> StorageLocked:
    """The error of a write that waited ``waited_s`` for another process's lock."""
    return StorageLocked(
        f"storage {str(path)!r} is locked by another process (waited "
        f"{waited_s:.3g}s); retry, or stop the process holding a write lock"
    )


def corrupted(path: Path, detail: str) -> StorageCorrupted:
    """The error of a damaged file: what was found, and what to do about it."""
    where = str(path)
    quoted = shlex.quote(where)
    return StorageCorrupted(
        f"storage {where!r} is corrupted ({detail}); rivers stopped writing to it. "
        f"Run 'rivers --storage {quoted} doctor' to see the damage and how to "
        "recover what it holds"
    )


def translate(
    exc: BaseException, path: Path, *, opened: bool, busy_s: float
) -> StorageError:
    """Return the rivers error for ``exc`` raised while using the storage at ``path``.

    ``opened``: the file was already checked to be a rivers database, so a file
    SQLite now calls "not a database" or malformed is ours and damaged
    (``StorageCorrupted``); before that it may be any file (``StorageUnavailable``).
    ``busy_s``: how long SQLite waited for a lock before giving up.
    """
    where = str(path)
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, Foreign):
        return StorageUnavailable(
            f"{where!r} is a SQLite database that rivers did not create; move it away "
            "or pass another --storage path"
        )
    if isinstance(exc, Damaged):
        return corrupted(path, str(exc))
    if _is_corrupt(exc):
        if opened:
            return corrupted(path, str(exc))
        return StorageUnavailable(
            f"{where!r} is not a rivers database (or is corrupted); move it away or "
            "pass another --storage path"
        )
    if is_busy(exc):
        return locked(path, busy_s)
    code = _code(exc)
    text = str(exc).lower()
    if code == sqlite3.SQLITE_READONLY or "readonly" in text or "read-only" in text:
        return StorageUnavailable(
            f"storage {where!r} is read-only; fix its permissions or pass a writable "
            "--storage path"
        )
    if code == sqlite3.SQLITE_FULL or "full" in text:
        return StorageUnavailable(f"storage {where!r}: the disk is full; free space")
    if code == sqlite3.SQLITE_IOERR or "disk i/o error" in text:
        return StorageUnavailable(
            f"storage {where!r}: disk I/O error (the disk may be full or failing, or "
            "the file over this process's size limit); free space or check the disk"
        )
    if code == sqlite3.SQLITE_CANTOPEN or "unable to open" in text:
        return StorageUnavailable(
            f"cannot open storage {where!r}; check the path and its permissions"
        )
    return StorageError(f"storage {where!r}: {exc}")
