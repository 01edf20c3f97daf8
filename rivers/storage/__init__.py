"""Storage: where runs, events, pools and claims live (SQLite by default)."""

from __future__ import annotations

import os
import re
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rivers._clock import SYSTEM_CLOCK, Clock
from rivers.errors import ConfigError
from rivers.storage.base import StorageBackend
from rivers.storage.facade import Storage
from rivers.storage.records import (
    Event,
    NewRun,
    PendingStep,
    PoolInfo,
    RunRecord,
    RunStatus,
    SlotHolder,
    StepRecord,
    StepStatus,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = (
    "Event",
    "NewRun",
    "PendingStep",
    "PoolInfo",
    "RunRecord",
    "RunStatus",
    "SlotHolder",
    "StepRecord",
    "StepStatus",
    "Storage",
    "STORAGE_VARIABLE",
    "StorageBackend",
    "StorageAddress",
    "default_storage",
    "default_storage_path",
    "describe_storage",
    "open_backend",
    "open_storage",
    "resolve_storage",
    "resolve_storage_path",
    "rivers_home",
)


def rivers_home() -> Path:
    """Return ``$RIVERS_HOME`` (default ``~/.rivers``)."""
    return Path(os.environ.get("RIVERS_HOME") or "~/.rivers").expanduser()


STORAGE_VARIABLE = "RIVERS_STORAGE"
"""The environment variable naming the default storage of every entry point."""


POSTGRES_SCHEMES = ("postgresql", "postgres")
"""URL schemes of a PostgreSQL storage (``pip install 'rivers[postgres]'``)."""

StorageAddress = Path | str
"""Where a storage is: a SQLite file's ``Path``, or a ``postgresql://`` URL."""


def default_storage() -> StorageAddress:
    """Return the default storage: what ``$RIVERS_STORAGE`` names (a path, a
    ``sqlite:///path`` or a ``postgresql://`` URL) if set, else
    ``$RIVERS_HOME/rivers.db``.

    Raises:
        ConfigError: ``RIVERS_STORAGE`` holds a URL rivers does not support.
    """
    configured = os.environ.get(STORAGE_VARIABLE)
    if configured:
        return _address(configured, f"{STORAGE_VARIABLE}={_shown(configured)!r}")
    return rivers_home() / "rivers.db"


def resolve_storage(path_or_url: str | os.PathLike[str] | None) -> StorageAddress:
    """Return the storage a path or URL names (None: the default,
    ``default_storage``): a SQLite file's ``Path`` or a ``postgresql://`` URL.

    Raises:
        ConfigError: the URL has another scheme, or names no file.
    """
    if path_or_url is None:
        return default_storage()
    text = os.fspath(path_or_url)
    return _address(text, f"storage URL {_shown(text)!r}")


def describe_storage(address: StorageAddress) -> str:
    """The storage as messages show it: a file path, or a URL without password."""
    return str(address) if isinstance(address, Path) else _shown(address)


def default_storage_path() -> Path:
    """Return the default storage file (``default_storage``).

    Raises:
        ConfigError: the default storage is not a SQLite file.
    """
    return _file(default_storage(), "the default storage")


def resolve_storage_path(path_or_url: str | os.PathLike[str] | None) -> Path:
    """Return the SQLite file a path or ``sqlite:///path`` URL names (None: the
    default, ``default_storage_path``).

    Raises:
        ConfigError: the URL has another scheme, or names a PostgreSQL database.
    """
    return _file(resolve_storage(path_or_url), "this command")


def _file(address: StorageAddress, what: str) -> Path:
    if isinstance(address, Path):
        return address
    raise ConfigError(
        f"{what} works on a SQLite file, and the storage {_shown(address)!r} is a "
        "PostgreSQL database; pass --storage PATH of a SQLite file"
    )


def _shown(url: str) -> str:
    """``url`` as an error may show it: without a password, at most 200 chars."""
    shown = re.sub(r"//([^/@:]*):[^/@]*@", r"//\1:***@", url)
    shown = re.sub(r"(password=)[^&\s]*", r"\1***", shown)
    return shown if len(shown) <= 200 else shown[:199] + "…"


def _address(text: str, named: str) -> StorageAddress:
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme in POSTGRES_SCHEMES:
            return text
        if scheme != "sqlite":
            raise ConfigError(
                f"{named} has scheme {scheme!r}; rivers supports a file path, "
                "sqlite:///path or postgresql://user@host/database"
            )
        # As SQLAlchemy: sqlite:///relative.db and sqlite:////absolute/path.db.
        text = rest[1:] if rest.startswith("/") else rest
        if not text:
            raise ConfigError(f"{named} names no file")
    return Path(text).expanduser()


@asynccontextmanager
async def open_storage(
    path_or_url: str | os.PathLike[str] | None = None, *, clock: Clock = SYSTEM_CLOCK
) -> AsyncIterator[Storage]:
    """Open the storage at a path, ``sqlite:///path`` or ``postgresql://`` URL,
    and close it on exit.

    It offers the inspection methods of API.md §4 (``rs.Storage``).

    Raises:
        StorageUnavailable: the file cannot be opened or is not a rivers database.
        StorageCorrupted: the file fails ``PRAGMA quick_check`` (files up to 8 MiB).
        MigrationError: the file was written by a newer rivers.
    """
    async with open_backend(path_or_url, clock=clock) as backend:
        yield Storage(backend)


async def connect_backend(
    path_or_url: str | os.PathLike[str] | None = None, *, clock: Clock = SYSTEM_CLOCK
) -> StorageBackend:
    """Open the storage at a path or URL as its role objects; close it with
    ``aclose()``. The one place that knows the concrete backends.

    Raises:
        StorageUnavailable: the file cannot be opened or is not a rivers database.
        StorageCorrupted: the file fails ``PRAGMA quick_check`` (files up to 8 MiB).
        MigrationError: the file was written by a newer rivers.
    """
    address = resolve_storage(path_or_url)
    if isinstance(address, Path):
        from rivers.storage.sqlite import SqliteStorage

        return (await SqliteStorage.open(address, clock=clock)).backend()
    try:
        from rivers.storage.postgres import PostgresStorage
    except ImportError:
        raise ConfigError(
            f"storage {_shown(address)!r} is a PostgreSQL database, and its driver "
            "is not installed; pip install 'rivers[postgres]'"
        ) from None
    storage = await PostgresStorage.open(address, _shown(address), clock=clock)
    return storage.backend()


@asynccontextmanager
async def open_backend(
    path_or_url: str | os.PathLike[str] | None = None, *, clock: Clock = SYSTEM_CLOCK
) -> AsyncIterator[StorageBackend]:
    """``connect_backend`` as a context manager that closes the storage on exit."""
    backend = await connect_backend(path_or_url, clock=clock)
    try:
        yield backend
    finally:
        await backend.aclose()
