"""How commands open the storage: never creating one to read it, and short run ids.

``existing_storage`` is for every command that reads (``runs list/show/why/logs``,
``pools list/info``, ``triggers list``, ``top``) or changes something that must
already be there (``runs cancel``, ``pools reset/free``): a missing file is one
line and exit 2, never a new empty database. ``resolve_run_id`` turns what a user
typed (a whole id, or a unique prefix or suffix such as the ``…3522d4007`` that
``rivers top`` shows) into a run id, as git and docker do.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rivers.errors import NotFoundError, RunNotFound, StorageUnavailable
from rivers.storage import StorageAddress, open_backend, resolve_storage

if TYPE_CHECKING:
    import os
    from collections.abc import AsyncIterator

    from rivers.storage.base import StorageBackend

__all__ = (
    "MIN_SHORT_ID",
    "existing_storage",
    "existing_storage_path",
    "resolve_run_id",
)

MIN_SHORT_ID = 4
"""The fewest characters a partial run id may have (git's shortest abbreviation)."""
SHOWN_CANDIDATES = 5
_ELLIPSES = ("…", "...")


def existing_storage_path(where: str | os.PathLike[str] | None) -> StorageAddress:
    """Return the storage ``--storage`` (or the default) names, if it exists (a
    PostgreSQL database is found out when opened).

    Raises:
        StorageUnavailable: there is no file there (nothing is created).
        ConfigError: the URL has a scheme rivers does not support.
    """
    path = resolve_storage(where)
    if isinstance(path, Path) and not path.is_file():
        raise StorageUnavailable(
            f"no rivers storage at {str(path)!r}: nothing has run there yet; pass "
            "--storage PATH or set RIVERS_STORAGE (or RIVERS_HOME) to the storage "
            "your runs use"
        )
    return path


@asynccontextmanager
async def existing_storage(
    where: str | os.PathLike[str] | None, *, write: bool = False
) -> AsyncIterator[StorageBackend]:
    """Open the storage only if it exists; read-only unless ``write``.

    Raises:
        StorageUnavailable: there is no storage there, or it cannot be opened.
    """
    async with open_backend(existing_storage_path(where)) as storage:
        if not write:
            await storage.dashboard.refuse_writes()
        yield storage


async def resolve_run_id(storage: StorageBackend, text: str) -> str:
    """Return the run id ``text`` names: the whole id, or a unique prefix or suffix.

    A leading ``…`` (as ``rivers top`` shows on narrow terminals) is ignored.

    Raises:
        RunNotFound: no run matches.
        NotFoundError: the text is too short, or matches several runs (listed).
    """
    fragment = text
    for mark in _ELLIPSES:
        fragment = fragment.removeprefix(mark)
    for whole in dict.fromkeys((text, fragment)):
        if whole and await storage.runs.get_run(whole) is not None:
            return whole
    if len(fragment) < MIN_SHORT_ID:
        raise NotFoundError(
            f"no run with id {text!r}; a partial run id needs at least "
            f"{MIN_SHORT_ID} characters"
        )
    matches = await storage.runs.find_run_ids(fragment, SHOWN_CANDIDATES + 1)
    if not matches:
        raise RunNotFound(text)
    if len(matches) == 1:
        return matches[0]
    shown = ", ".join(matches[:SHOWN_CANDIDATES])
    more = ", ..." if len(matches) > SHOWN_CANDIDATES else ""
    raise NotFoundError(
        f"run id {text!r} is ambiguous: it matches runs {shown}{more}; "
        "give more characters"
    )
