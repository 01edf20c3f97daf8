"""The pool reads of API.md §4 that are plain rows: a pool's slot holders and its
line of pending steps (``SqlPools``; pool infos: ``_pool_limits_sql``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rivers.storage.records import PendingStep, SlotHolder, from_timestamp

if TYPE_CHECKING:
    import sqlite3

__all__ = ("pending_steps", "slot_holders")


def slot_holders(conn: sqlite3.Connection, name: str, now: float) -> list[SlotHolder]:
    """The steps holding live claims of pool ``name`` at ``now``, oldest first."""
    rows = conn.execute(
        "SELECT run_id, step_key, slots, claimed_at, lease_expires_at, owner "
        "FROM pool_claims WHERE pool = ? AND lease_expires_at > ? "
        "ORDER BY claimed_at",
        (name, now),
    )
    return [
        SlotHolder(
            run_id=r[0],
            step_key=r[1],
            slots=r[2],
            claimed_at=from_timestamp(r[3]),  # type: ignore[arg-type]
            lease_expires_at=from_timestamp(r[4]),  # type: ignore[arg-type]
            owner=r[5],
        )
        for r in rows
    ]


def pending_steps(conn: sqlite3.Connection, name: str) -> list[PendingStep]:
    """The steps waiting for pool ``name``, in line order (priority, arrival)."""
    rows = conn.execute(
        "SELECT run_id, step_key, slots, priority, enqueued_at FROM pending_steps "
        "WHERE pool = ? ORDER BY priority DESC, enqueued_at",
        (name,),
    )
    return [
        PendingStep(
            run_id=r[0],
            step_key=r[1],
            slots=r[2],
            priority=r[3],
            enqueued_at=from_timestamp(r[4]),  # type: ignore[arg-type]
        )
        for r in rows
    ]
