"""What a run's steps came to: each step's track, its record, and how the run ends.

No I/O, no awaits: the RunExecutor keeps a ``StepTrack`` per step and, when the run
is over, asks ``run_end`` for its status, reason and final event, and
``step_records`` for the records of its result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from rivers.messages import RunCanceled, RunFailed, RunSucceeded
from rivers.storage.records import RunStatus, StepRecord, StepStatus

__all__ = ("StepTrack", "failure_reason", "run_end", "step_records")


@dataclass(slots=True)
class StepTrack:
    """One step of a run so far: its status, attempts, times, error and worker."""

    status: StepStatus = StepStatus.WAITING
    attempts: int = 0
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: str | None = None
    worker: str | None = None

    def end(self, status: StepStatus, error: str | None = None) -> None:
        """Record that the step ended (now) with ``status``."""
        self.status = status
        self.ended_at = datetime.now(UTC)
        self.error = error


def failure_reason(
    tracks: dict[str, StepTrack], first_error: BaseException | None
) -> str:
    """The reason of a failed run: its failed step's error, or each failed step's.

    With several failed steps, each (up to ``NAMED_STEPS``, then a count) is named
    with the first line of its error (shortened), so the run's reason says why
    without opening the run. With no
    failed step (the run's own pool claim was lost, say), the first error.
    """
    failed = [s for s, t in tracks.items() if t.status is StepStatus.FAILURE]
    if not failed and first_error is not None:
        return str(first_error)
    if len(failed) == 1:
        return tracks[failed[0]].error or f"step {failed[0]!r} failed"
    named = failed[:NAMED_STEPS]
    each = "; ".join(f"{step}: {_gist(tracks[step].error)}" for step in named)
    more = len(failed) - len(named)
    return f"{len(failed)} steps failed: {each}" + (
        f"; and {more} more" if more else ""
    )


def _gist(error: str | None) -> str:
    """The first line of a step's error, at most ``GIST_CHARS`` long."""
    lines = (error or "").strip().splitlines()
    line = lines[0] if lines else "failed"
    return line if len(line) <= GIST_CHARS else line[: GIST_CHARS - 1] + "…"


GIST_CHARS = 120
NAMED_STEPS = 5
"""The failed steps a run's reason names (the rest are counted)."""


def run_end(
    run_id: str,
    *,
    succeeded: bool,
    cancel_reason: str | None,
    tracks: dict[str, StepTrack],
    first_error: BaseException | None,
    duration_s: float,
) -> tuple[RunStatus, str | None, RunCanceled | RunSucceeded | RunFailed]:
    """The status a run ends in, its reason and its final event.

    A cancelled run that did not succeed anyway is CANCELED; otherwise it is
    SUCCESS or FAILURE as its steps went.
    """
    if cancel_reason is not None and not succeeded:
        return (
            RunStatus.CANCELED,
            cancel_reason,
            RunCanceled(run_id=run_id, reason=cancel_reason),
        )
    if succeeded:
        return (
            RunStatus.SUCCESS,
            None,
            RunSucceeded(run_id=run_id, duration_s=duration_s),
        )
    reason = failure_reason(tracks, first_error)
    return (
        RunStatus.FAILURE,
        reason,
        RunFailed(run_id=run_id, reason=reason, duration_s=duration_s),
    )


def step_records(tracks: dict[str, StepTrack]) -> list[StepRecord]:
    """The records of a run's steps, in the run's selection order."""
    return [
        StepRecord(
            step_key=step,
            status=track.status,
            attempts=track.attempts,
            started_at=track.started_at,
            ended_at=track.ended_at,
            error=track.error,
            worker=track.worker,
        )
        for step, track in tracks.items()
    ]
