"""The steps table as step events project it, and a batch folded into few upserts.

A step's events (STEP_WAITING, STEP_STARTED, STEP_SUCCESS, ...) each update its row
in ``steps``. The EventWriter stores several steps' events per transaction, so one
step's WAITING, STARTED and SUCCESS often arrive together: ``fold_step_rows`` turns
consecutive upserts of one step into one upsert that leaves any stored row exactly
as the sequence would (one B-tree write instead of three).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rivers.storage.records import StepStatus

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ("UPSERT_STEP", "StepRow", "fold_step_rows", "step_row")

StepRow = tuple[str, str, str, int, float | None, float | None, str | None, str | None]
"""(run_id, step_key, status, attempts, started_at, ended_at, error, worker)."""

# How each step event changes the step's row: (status, sets started_at, sets ended_at).
_PROJECTION: dict[str, tuple[StepStatus, bool, bool]] = {
    "STEP_WAITING": (StepStatus.WAITING, False, False),
    "STEP_POOL_BLOCKED": (StepStatus.WAITING, False, False),
    "STEP_POOL_CLAIMED": (StepStatus.WAITING, False, False),
    "STEP_STARTED": (StepStatus.RUNNING, True, False),
    "STEP_RETRY": (StepStatus.WAITING, False, False),
    "STEP_SUCCESS": (StepStatus.SUCCESS, False, True),
    "STEP_FAILURE": (StepStatus.FAILURE, False, True),
    "STEP_SKIPPED": (StepStatus.SKIPPED, False, True),
    "STEP_CANCELED": (StepStatus.CANCELED, False, True),
}
_CLEARS_ERROR = frozenset({StepStatus.SUCCESS.value, StepStatus.RUNNING.value})
"""Statuses whose upsert clears the row's error (the step ran again, or succeeded)."""

UPSERT_STEP = (
    "INSERT INTO steps (run_id, step_key, status, attempts, started_at, ended_at, "
    "error, worker) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (run_id, step_key) DO UPDATE SET "
    "status = excluded.status, "
    "attempts = MAX(steps.attempts, excluded.attempts), "
    "started_at = COALESCE(steps.started_at, excluded.started_at), "
    "ended_at = COALESCE(excluded.ended_at, steps.ended_at), "
    "error = CASE WHEN excluded.status IN ('SUCCESS', 'RUNNING') THEN NULL "
    "ELSE COALESCE(excluded.error, steps.error) END, "
    "worker = COALESCE(excluded.worker, steps.worker)"
)


def step_row(
    kind: str, run_id: str, step_key: str | None, at: float, data: Mapping[str, Any]
) -> StepRow | None:
    """The upsert one event makes to its step's row, or None for a non-step event."""
    projection = _PROJECTION.get(kind)
    if projection is None or step_key is None:
        return None
    status, starts, ends = projection
    return (
        run_id,
        step_key,
        status.value,
        data.get("attempt", 0),
        at if starts else None,
        at if ends else None,
        data.get("error") or data.get("reason"),
        data.get("worker"),
    )


def fold_step_rows(rows: list[StepRow]) -> list[StepRow]:
    """Fold each step's upserts, in order, into as few as leave the same row.

    Every column but ``error`` composes (the last status, the highest attempt, the
    first start, the last end and worker given). ``error`` does not when a status
    that clears it is followed by one without an error: the pair's one upsert would
    keep the stored error the first had cleared, so the first is kept apart.
    """
    pending: dict[tuple[str, str], StepRow] = {}
    folded: list[StepRow] = []
    for row in rows:
        key = (row[0], row[1])
        before = pending.get(key)
        if before is None:
            pending[key] = row
            continue
        if (
            before[2] in _CLEARS_ERROR
            and row[2] not in _CLEARS_ERROR
            and row[6] is None
        ):
            folded.append(before)
            pending[key] = row
            continue
        pending[key] = (
            row[0],
            row[1],
            row[2],
            max(before[3], row[3]),
            before[4] if before[4] is not None else row[4],
            row[5] if row[5] is not None else before[5],
            _folded_error(before, row),
            row[7] if row[7] is not None else before[7],
        )
    folded.extend(pending.values())
    return folded


def _folded_error(before: StepRow, row: StepRow) -> str | None:
    # ``row`` runs as an update: a clearing status leaves no error, even where the
    # folded upsert is the row's first insert (which stores its error as given).
    if row[2] in _CLEARS_ERROR:
        return None
    return row[6] if row[6] is not None else before[6]
