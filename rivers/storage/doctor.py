"""``rivers doctor``'s check: is a storage file whole, and how to save what it holds.

The file is opened read-only (it is never written, migrated or created) and
checked with ``PRAGMA integrity_check``, which reads every page and also compares
every index with its table (``quick_check``, run when a storage opens, does not).
A live runtime may keep using the file meanwhile (WAL: readers never block).
"""

from __future__ import annotations

import shlex
import sqlite3
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from rivers.errors import StorageUnavailable
from rivers.storage.schema import APPLICATION_ID

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ("MAX_PROBLEMS", "Diagnosis", "diagnose", "recovery_steps")

MAX_PROBLEMS = 20
"""Problems reported at most (``integrity_check`` may find thousands)."""


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """What ``integrity_check`` found in one storage file."""

    path: Path
    problems: tuple[str, ...]
    """Empty when the file is whole."""
    pages: int | None
    schema_version: int | None
    seconds: float

    @property
    def ok(self) -> bool:
        """Whether the file is whole."""
        return not self.problems


def diagnose(path: Path) -> Diagnosis:
    """Check the storage file at ``path`` without writing to it.

    Raises:
        StorageUnavailable: there is no file at ``path``, or it cannot be opened,
            or it is a SQLite database that rivers did not create.
    """
    if not path.is_file():
        raise StorageUnavailable(
            f"no storage file at {str(path)!r}; pass the path of a rivers storage "
            "with --storage"
        )
    began = time.monotonic()
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StorageUnavailable(f"cannot open storage {str(path)!r}: {exc}") from exc
    try:
        try:
            application_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            return Diagnosis(
                path,
                (f"the file cannot be read as a database: {exc}",),
                None,
                None,
                time.monotonic() - began,
            )
        if application_id not in (0, APPLICATION_ID):
            raise StorageUnavailable(
                f"{str(path)!r} is a SQLite database that rivers did not create"
            )
        problems = _integrity_check(conn)
    except sqlite3.OperationalError as exc:
        raise StorageUnavailable(f"cannot read storage {str(path)!r}: {exc}") from exc
    finally:
        conn.close()
    return Diagnosis(path, problems, pages, version, time.monotonic() - began)


def _integrity_check(conn: sqlite3.Connection) -> tuple[str, ...]:
    """Return what ``integrity_check`` reports; per table when it cannot finish."""
    try:
        rows = conn.execute(f"PRAGMA integrity_check({MAX_PROBLEMS})").fetchall()
        return tuple(str(row[0]) for row in rows if row[0] != "ok")
    except sqlite3.DatabaseError as exc:
        whole = str(exc)
    # SQLite stops at the first page it cannot parse: name the tables it is in.
    problems: list[str] = []
    try:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rootpage"
            )
        ]
    except sqlite3.DatabaseError:
        return (f"the schema cannot be read: {whole}",)
    for table in tables:
        quoted = table.replace('"', '""')
        try:
            rows = conn.execute(f'PRAGMA integrity_check("{quoted}")').fetchall()
        except sqlite3.DatabaseError as exc:
            problems.append(f"table {table}: {exc}")
            continue
        problems.extend(f"table {table}: {row[0]}" for row in rows if row[0] != "ok")
    return tuple(problems[:MAX_PROBLEMS]) or (whole,)


def recovery_steps(diagnosis: Diagnosis) -> list[str]:
    """The shell commands that copy what a damaged file still holds into a new one.

    ``.dump`` writes every row SQLite can still read (tables are read through an
    index when their own pages are damaged, as long as one covers them); the
    marks rivers checks (application id, schema version) are set again after.
    ``.recover`` (sqlite3 shells built with the ``sqlite_dbpage`` table) salvages
    more, from the pages themselves.
    """
    old = shlex.quote(str(diagnosis.path))
    new = shlex.quote(f"{diagnosis.path}.recovered")
    version = diagnosis.schema_version or 0
    return [
        f"sqlite3 {old} .dump | sqlite3 {new}",
        f"sqlite3 {new} 'PRAGMA application_id = {APPLICATION_ID}; "
        f"PRAGMA user_version = {version}; PRAGMA journal_mode = WAL'",
        f"rivers --storage {new} doctor",
    ]
