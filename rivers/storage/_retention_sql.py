"""Retention transactions: delete finished runs older than a cutoff, a batch at a time.

A run is old when it finished (SUCCESS, FAILURE, CANCELED) and both its creation and
its end are before the cutoff. Its events, steps, tags, pool rows and its entries in
the materialization history go with it, except each asset's latest materialization,
which automation conditions and ``get_latest_materializations`` read (stored values
are kept per asset, not per run, so none belongs to an old run alone). The newest
run and the newest event of the storage are never deleted, so run rowids and event
ids are never used twice. Runs are found by keyset over ``runs_by_created`` (no full
scan, however many runs are kept) and deleted in small transactions, so live runs
are never held up behind a long write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rivers.storage.records import FINISHED_STATUSES

if TYPE_CHECKING:
    import sqlite3

__all__ = ("PruneCounts", "delete_runs", "old_runs", "would_delete")

_FINISHED = tuple(sorted(status.value for status in FINISHED_STATUSES))
_MARKS = ", ".join("?" * len(_FINISHED))
_NOT_NEWEST = "event_id < (SELECT MAX(event_id) FROM events)"
"""The events a prune may delete: all but the storage's newest."""


@dataclass(slots=True)
class PruneCounts:
    """What a prune deleted (or, dry, would delete)."""

    runs: int = 0
    steps: int = 0
    events: int = 0
    materializations: int = 0

    def add(self, other: PruneCounts) -> None:
        self.runs += other.runs
        self.steps += other.steps
        self.events += other.events
        self.materializations += other.materializations


def old_runs(
    conn: sqlite3.Connection,
    *,
    cutoff: float,
    after: tuple[float, str],
    limit: int,
) -> list[tuple[float, str]]:
    """Return up to ``limit`` old runs as (created_at, run_id), after ``after`` in
    creation order."""
    rows = conn.execute(
        "SELECT created_at, run_id FROM runs INDEXED BY runs_by_created "
        "WHERE created_at < ? "
        "AND (created_at, run_id) > (?, ?) "
        f"AND status IN ({_MARKS}) AND COALESCE(ended_at, created_at) < ? "
        # The newest row is kept: SQLite numbers a new run after the largest rowid
        # left, and the queue reads new runs by rowid.
        "AND rowid < (SELECT MAX(rowid) FROM runs) "
        "ORDER BY created_at, run_id LIMIT ?",
        (cutoff, *after, *_FINISHED, cutoff, limit),
    ).fetchall()
    return [(row[0], row[1]) for row in rows]


def _marks(run_ids: list[str]) -> str:
    return ", ".join("?" * len(run_ids))


def _superseded(conn: sqlite3.Connection, run_ids: list[str]) -> list[tuple[str, int]]:
    """The materializations of ``run_ids`` that a later one of the asset superseded."""
    # Superseded in both orders readers use (latest by time, by event id), so the
    # row ``get_latest_materializations`` reports is never the one deleted.
    rows = conn.execute(
        "SELECT e.step_key, e.event_id FROM events e "
        f"WHERE e.run_id IN ({_marks(run_ids)}) AND e.kind = 'STEP_SUCCESS' "
        "AND EXISTS (SELECT 1 FROM materializations m WHERE m.asset_key = e.step_key "
        "AND m.event_id > e.event_id AND m.materialized_at >= e.timestamp)",
        run_ids,
    ).fetchall()
    return [(row[0], row[1]) for row in rows]


def would_delete(conn: sqlite3.Connection, *, run_ids: list[str]) -> PruneCounts:
    """Count what ``delete_runs`` would delete (a dry run)."""
    marks = _marks(run_ids)

    def count(table: str) -> int:
        found: int = conn.execute(
            f"SELECT COUNT(*) FROM {table} WHERE run_id IN ({marks})", run_ids
        ).fetchone()[0]
        return found

    events: int = conn.execute(
        f"SELECT COUNT(*) FROM events WHERE run_id IN ({marks}) AND {_NOT_NEWEST}",
        run_ids,
    ).fetchone()[0]
    return PruneCounts(
        runs=len(run_ids),
        steps=count("steps"),
        events=events,
        materializations=len(_superseded(conn, run_ids)),
    )


def delete_runs(conn: sqlite3.Connection, *, run_ids: list[str]) -> PruneCounts:
    """Delete ``run_ids`` and what belongs to them (inside a transaction)."""
    marks = _marks(run_ids)
    superseded = _superseded(conn, run_ids)
    conn.executemany(
        "DELETE FROM materializations WHERE asset_key = ? AND event_id = ?", superseded
    )

    def delete(table: str) -> int:
        return conn.execute(
            f"DELETE FROM {table} WHERE run_id IN ({marks})", run_ids
        ).rowcount

    counts = PruneCounts(
        steps=delete("steps"),
        # The newest event is kept for the same reason as the newest run: event ids
        # continue from the largest one left, and readers follow them.
        events=conn.execute(
            f"DELETE FROM events WHERE run_id IN ({marks}) AND {_NOT_NEWEST}",
            run_ids,
        ).rowcount,
        materializations=len(superseded),
    )
    for table in ("run_tags", "pending_steps", "pool_claims"):
        delete(table)
    counts.runs = delete("runs")  # a finished run never changes status again
    return counts
