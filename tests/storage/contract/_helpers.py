"""Builders shared by the storage contract suite and the SQLite-specific tests."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import rivers as rs
from rivers.messages import EventBody, StepLogged
from rivers.storage.records import NewRun
from rivers.storage.schema import APPLICATION_ID, MIGRATIONS

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

T0 = 1_700_000_000.0


class SteppingClock:
    """A clock that moves one second forward on every read of wall time."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def time(self) -> float:
        self.now += 1.0
        return self.now

    def monotonic(self) -> float:
        return self.now


def new_run(
    run_id: str,
    status: rs.RunStatus = rs.RunStatus.QUEUED,
    *,
    tags: dict[str, str] | None = None,
    run_key: str | None = None,
    selection: list[str] | None = None,
    priority: int = 0,
    repository: str = "default",
    fingerprint: str | None = None,
    owner: str | None = None,
) -> NewRun:
    """A run to create, QUEUED in repository "default" unless told otherwise."""
    return NewRun(
        run_id=run_id,
        status=status,
        repository=repository,
        tags=tags or {},
        selection=selection,
        priority=priority,
        run_key=run_key,
        fingerprint=fingerprint,
        owner=owner,
    )


def at(seconds: float) -> datetime:
    """The UTC datetime of an epoch time."""
    return datetime.fromtimestamp(seconds, UTC)


def batch(*bodies: EventBody, start: float = T0) -> list[tuple[EventBody, float]]:
    """Events to append, one second apart from ``start``."""
    return [(body, start + i) for i, body in enumerate(bodies)]


def logged(run_id: str, message: str) -> StepLogged:
    """A log line of step "a"."""
    return StepLogged(run_id=run_id, step_key="a", level="INFO", message=message)


def old_schema_file(
    path: Path, version: int, runs: Sequence[tuple[str, str, float]] = ()
) -> None:
    """A storage file as a rivers of schema ``version`` left it, holding ``runs``
    (run id, status, created_at) of repository "default"."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for script in MIGRATIONS[:version]:
            conn.executescript(script)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {version}")
        conn.executemany(
            "INSERT INTO runs (run_id, status, repository, tags, created_at) "
            "VALUES (?, ?, 'default', '{}', ?)",
            runs,
        )
    finally:
        conn.close()
