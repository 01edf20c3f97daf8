"""Retention (``SqlRuns.prune_runs``): prune finished runs older than a
cutoff (what to delete: ``_retention_sql``), then give the freed pages back to the
disk."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from rivers.storage._retention_sql import (
    PruneCounts,
    delete_runs,
    old_runs,
    would_delete,
)
from rivers.storage.records import PruneResult, from_timestamp

if TYPE_CHECKING:
    import sqlite3

    from rivers.storage._connection import SqlConnection

__all__ = ("PRUNE_BATCH", "VACUUM_STEP_PAGES", "prune_runs")

PRUNE_BATCH = 200
"""Runs deleted per transaction: a few milliseconds of write lock at a time."""
VACUUM_STEP_PAGES = 1024
"""Free pages returned to the disk per transaction (4 MiB of 4 KiB pages)."""


async def prune_runs(
    db: SqlConnection, cutoff: float, *, dry_run: bool = False
) -> PruneResult:
    """Delete the finished runs created and ended before ``cutoff`` (epoch
    seconds), with their events, steps and superseded materializations, in
    transactions of ``PRUNE_BATCH`` runs; then shrink the file where it can.

    With ``dry_run`` nothing is written: the counts say what would go.
    """
    before = await db.call(_file_bytes)
    counts = PruneCounts()
    after = (float("-inf"), "")
    while batch := await db.call(
        partial(old_runs, cutoff=cutoff, after=after, limit=PRUNE_BATCH)
    ):
        ids = [run_id for _, run_id in batch]
        if dry_run:
            counts.add(await db.call(partial(would_delete, run_ids=ids)))
        else:
            counts.add(await db.write(partial(delete_runs, run_ids=ids)))
        after = batch[-1]
    if not dry_run and counts.runs:
        while await db.write(_vacuum_step):
            pass
    return PruneResult(
        cutoff=from_timestamp(cutoff),  # type: ignore[arg-type]  # never None
        dry_run=dry_run,
        runs=counts.runs,
        steps=counts.steps,
        events=counts.events,
        materializations=counts.materializations,
        bytes_before=before,
        bytes_after=before if dry_run else await db.call(_file_bytes),
    )


def _file_bytes(conn: sqlite3.Connection) -> int:
    """The database's size: its pages, not counting the WAL."""
    pages: int = conn.execute("PRAGMA page_count").fetchone()[0]
    size: int = conn.execute("PRAGMA page_size").fetchone()[0]
    return pages * size


def _vacuum_step(conn: sqlite3.Connection) -> bool:
    """Return up to ``VACUUM_STEP_PAGES`` free pages to the disk (files made with
    incremental auto-vacuum); return whether free pages remain."""
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:  # INCREMENTAL
        return False  # an older file: its free pages are reused, not returned
    conn.execute(f"PRAGMA incremental_vacuum({VACUUM_STEP_PAGES})").fetchall()
    left: int = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return left > 0
