"""The cancel rule, in one place for ``Runtime.cancel`` and ``rivers runs cancel``.

A queued run is canceled at once (it never starts); a run that is starting or
running (or was admitted meanwhile) is marked CANCELING, and the process that owns
it stops its steps (a local runtime at once, another within about a second, when
its ProcessMonitor reads the request). A finished run is left alone.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from rivers.storage.records import RunStatus

if TYPE_CHECKING:
    from rivers.storage.base import RunStore
    from rivers.storage.records import RunRecord

__all__ = ("CancelOutcome", "request_cancel")


class CancelOutcome(enum.Enum):
    """What a cancel request did to the run."""

    FINISHED = "finished"
    """It had already finished: nothing changed."""
    DEQUEUED = "dequeued"
    """It was queued: it is CANCELED and never starts."""
    CANCELING = "canceling"
    """It was starting or running: it is CANCELING now (its owner stops it)."""
    STOPPING = "stopping"
    """It was CANCELING already, or ended meanwhile: nothing changed here."""


async def request_cancel(
    runs: RunStore, run_id: str
) -> tuple[RunRecord, CancelOutcome] | None:
    """Apply the cancel rule to ``run_id``; return the run as read before, and the
    outcome (None if no run has this id)."""
    record = await runs.get_run(run_id)
    if record is None:
        return None
    if record.status.is_finished:
        return record, CancelOutcome.FINISHED
    if record.status is RunStatus.QUEUED and await runs.transition_run(
        run_id,
        RunStatus.CANCELED,
        expected=(RunStatus.QUEUED,),
        reason="canceled while queued",
    ):
        return record, CancelOutcome.DEQUEUED
    # Running, or admitted since it was read.
    changed = await runs.transition_run(
        run_id,
        RunStatus.CANCELING,
        expected=(RunStatus.STARTING, RunStatus.STARTED),
        reason="cancel requested",
    )
    return record, CancelOutcome.CANCELING if changed else CancelOutcome.STOPPING
