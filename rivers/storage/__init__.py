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
    "default_storage_path",
    "open_backend",
    "open_storage",
    "resolve_storage_path",
    "rivers_home",
)


def rivers_home() -> Path:
    """Return ``$RIVERS_HOME`` (default ``~/.rivers``)."""
    return Path(os.environ.get("RIVERS_HOME") or "~/.rivers").expanduser()


STORAGE_VARIABLE = "RIVERS_STORAGE"
"""The environment variable naming the default storage of every entry point."""


def default_storage_path() -> Path:
    """Return the default storage: the path or ``sqlite:///path`` URL in
    ``$RIVERS_STORAGE`` if set, else ``$RIVERS_HOME/rivers.db``.

    Raises:
        ConfigError: ``RIVERS_STORAGE`` holds a URL rivers does not support.
    """
    configured = os.environ.get(STORAGE_VARIABLE)
    if configured:
        return _storage_file(configured, f"{STORAGE_VARIABLE}={_shown(configured)!r}")
    return rivers_home() / "rivers.db"


def resolve_storage_path(path_or_url: str | os.PathLike[str] | None) -> Path:
    """Return the file a path or ``sqlite:///path`` URL names (None: the default,
    ``default_storage_path``).

    Raises:
        ConfigError: the URL has another scheme.
    """
    if path_or_url is None:
        return default_storage_path()
    text = os.fspath(path_or_url)
    return _storage_file(text, f"storage URL {_shown(text)!r}")


def _shown(url: str) -> str:
    """``url`` as an error may show it: without a password, at most 200 chars."""
    shown = re.sub(r"//([^/@:]*):[^/@]*@", r"//\1:***@", url)
    return shown if len(shown) <= 200 else shown[:199] + "…"


def _storage_file(text: str, named: str) -> Path:
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme in ("postgresql", "postgres"):
            raise ConfigError(
                f"{named} has scheme {scheme!r}, a PostgreSQL database, which this "
                "version of rivers cannot use yet; use a path or sqlite:///path"
            )
        if scheme != "sqlite":
            raise ConfigError(
                f"{named} has scheme {scheme!r}; rivers supports "
                "sqlite:///path or a plain file path"
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
    """Open the storage at a path or ``sqlite:///path`` URL, and close it on exit.

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
    from rivers.storage.sqlite import SqliteStorage

    storage = await SqliteStorage.open(resolve_storage_path(path_or_url), clock=clock)
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
