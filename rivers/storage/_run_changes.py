"""The SQL of a run's status changes: ``transition_run``, ``finish_run`` and the run
changes ``write_batch`` applies with a batch of events, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rivers.storage.records import (
    FINISHED_STATUSES,
    LATE_CANCEL_REASON,
    RunChange,
    RunStatus,
)

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable

__all__ = ("apply_run_change", "transition_sql")


def transition_sql(
    run_id: str,
    to: RunStatus,
    expected: Iterable[RunStatus],
    reason: str | None,
    owner: str | None,
    now: float,
) -> tuple[str, list[Any]]:
    """The UPDATE moving a run to ``to`` if its status is one of ``expected``:
    ``started_at`` set when it starts, ``ended_at`` when it finishes."""
    allowed = tuple(s.value for s in expected)
    sets = ["status = ?", "reason = COALESCE(?, reason)"]
    params: list[Any] = [to.value, reason]
    if to in (RunStatus.STARTING, RunStatus.STARTED):
        sets.append("started_at = COALESCE(started_at, ?)")
        params.append(now)
    if to in FINISHED_STATUSES:
        sets.append("ended_at = ?")
        params.append(now)
    if owner is not None:
        sets.append("owner = ?")
        params.append(owner)
    marks = ", ".join("?" * len(allowed))
    sql = f"UPDATE runs SET {', '.join(sets)} WHERE run_id = ? AND status IN ({marks})"
    params.extend([run_id, *allowed])
    return sql, params


def apply_run_change(conn: sqlite3.Connection, change: RunChange) -> bool:
    """Apply one run change; return whether the run was in an expected status.

    A finished status is written as ``finish_run`` writes it: a run that succeeds
    while CANCELING gets the reason ``LATE_CANCEL_REASON`` (its steps ended before
    the cancel request reached them).
    """
    if change.to not in FINISHED_STATUSES:
        sql, params = transition_sql(
            change.run_id, change.to, change.expected, change.reason, None, change.at
        )
        return conn.execute(sql, params).rowcount == 1
    allowed = tuple(s.value for s in change.expected)
    changed: int = conn.execute(
        "UPDATE runs SET reason = CASE WHEN status = ? AND ? = ? THEN ? "
        "ELSE COALESCE(?, reason) END, status = ?, ended_at = ? "
        f"WHERE run_id = ? AND status IN ({', '.join('?' * len(allowed))})",
        (
            RunStatus.CANCELING.value,
            change.to.value,
            RunStatus.SUCCESS.value,
            LATE_CANCEL_REASON,
            change.reason,
            change.to.value,
            change.at,
            change.run_id,
            *allowed,
        ),
    ).rowcount
    return changed == 1
