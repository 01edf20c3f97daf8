"""Every event and actor message rivers passes around.

Events are past tense and tagged with their ``kind`` (``STEP_STARTED``...). They are
plain data, so any of them can be stored, logged or sent across a process boundary.
``rs.Event`` (in ``rivers.storage.records``) is the stored form a user reads back.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = (
    "EventBody",
    "LeaseExpired",
    "PoolSlotsReleased",
    "RunBlocked",
    "RunCanceled",
    "RunCanceling",
    "RunDequeued",
    "RunEnqueued",
    "RunFailed",
    "RunStarted",
    "RunSucceeded",
    "StepCanceled",
    "StepFailed",
    "StepLogged",
    "StepPoolBlocked",
    "StepPoolClaimed",
    "StepRetrying",
    "StepSkipped",
    "StepStarted",
    "StepSucceeded",
    "StepWaiting",
    "TriggerFailed",
    "event_kind",
)


class EventBody(msgspec.Struct, frozen=True, tag_field="kind", kw_only=True):
    """The base of every event: each names the run it concerns."""

    run_id: str


class RunEnqueued(EventBody, frozen=True, kw_only=True, tag="RUN_ENQUEUED"):
    """A run was written to storage as QUEUED."""

    priority: int
    tags: dict[str, str]


class RunBlocked(EventBody, frozen=True, kw_only=True, tag="RUN_BLOCKED"):
    """A queued run cannot be admitted; ``reason`` is the binding gate with counts."""

    reason: str
    position: int


class RunDequeued(EventBody, frozen=True, kw_only=True, tag="RUN_DEQUEUED"):
    """The queue admitted a run."""

    waited_s: float


class RunStarted(EventBody, frozen=True, kw_only=True, tag="RUN_STARTED"):
    """A run began executing its steps."""

    steps: int
    executor: str
    owner: str


class RunSucceeded(EventBody, frozen=True, kw_only=True, tag="RUN_SUCCESS"):
    """Every step of a run succeeded."""

    duration_s: float


class RunFailed(EventBody, frozen=True, kw_only=True, tag="RUN_FAILURE"):
    """A run ended with at least one failed step, or could not run."""

    reason: str
    duration_s: float | None = None


class RunCanceling(EventBody, frozen=True, kw_only=True, tag="RUN_CANCELING"):
    """A cancel was requested for a running run."""


class RunCanceled(EventBody, frozen=True, kw_only=True, tag="RUN_CANCELED"):
    """A run was canceled (queued or running)."""

    reason: str


class StepWaiting(EventBody, frozen=True, kw_only=True, tag="STEP_WAITING"):
    """A ready step waits for a worker slot of its run's executor."""

    step_key: str
    position: int
    capacity: int


class StepPoolBlocked(EventBody, frozen=True, kw_only=True, tag="STEP_POOL_BLOCKED"):
    """A step waits for slots in a pool."""

    step_key: str
    pool: str
    claimed: int
    limit: int
    position: int


class StepPoolClaimed(EventBody, frozen=True, kw_only=True, tag="STEP_POOL_CLAIMED"):
    """A step claimed its slots in every pool it names."""

    step_key: str
    pools: tuple[str, ...]
    slots: int
    waited_s: float


class StepStarted(EventBody, frozen=True, kw_only=True, tag="STEP_STARTED"):
    """An attempt of a step began running.

    ``startup_s``: how long it waited for its worker process to start, before this
    event (0 when a warm worker took it); not part of the step's duration.
    """

    step_key: str
    attempt: int
    worker: str
    startup_s: float = 0.0


class StepSucceeded(EventBody, frozen=True, kw_only=True, tag="STEP_SUCCESS"):
    """A step returned; its value was stored."""

    step_key: str
    attempt: int
    duration_s: float


class StepFailed(EventBody, frozen=True, kw_only=True, tag="STEP_FAILURE"):
    """A step failed for good (no retries left)."""

    step_key: str
    attempt: int
    error: str
    error_type: str
    traceback: str | None = None
    duration_s: float | None = None


class StepRetrying(EventBody, frozen=True, kw_only=True, tag="STEP_RETRY"):
    """A step attempt failed and will be tried again after ``delay_s``."""

    step_key: str
    attempt: int
    error: str
    delay_s: float


class StepSkipped(EventBody, frozen=True, kw_only=True, tag="STEP_SKIPPED"):
    """A step did not run because an upstream step did not succeed."""

    step_key: str
    reason: str


class StepCanceled(EventBody, frozen=True, kw_only=True, tag="STEP_CANCELED"):
    """A step was stopped (or never started) because its run was canceled."""

    step_key: str
    reason: str


class StepLogged(EventBody, frozen=True, kw_only=True, tag="STEP_LOG"):
    """A line a step wrote through ``context.log``, or printed in a worker process.

    ``stream`` is ``"stdout"`` or ``"stderr"`` for printed output (level INFO and
    WARNING), None for ``context.log``.
    """

    step_key: str
    level: str
    message: str
    stream: str | None = None


class PoolSlotsReleased(
    EventBody, frozen=True, kw_only=True, tag="POOL_SLOTS_RELEASED"
):
    """A step gave its pool slots back."""

    step_key: str
    pools: tuple[str, ...]
    slots: int
    held_s: float


class LeaseExpired(EventBody, frozen=True, kw_only=True, tag="LEASE_EXPIRED"):
    """The lease GC reclaimed a claim whose holder stopped renewing it."""

    step_key: str
    pool: str
    slots: int
    owner: str


class TriggerFailed(EventBody, frozen=True, kw_only=True, tag="TRIGGER_FAILURE"):
    """Evaluating a schedule, sensor or automation condition failed; it keeps going.

    It concerns no run: ``run_id`` is None (stored NULL).
    """

    # A trigger event belongs to no run; only the storage reads run_id generically
    # and stores it in a nullable column.
    run_id: str | None = None  # type: ignore[assignment]
    trigger: str
    trigger_type: str
    repository: str
    error: str
    error_type: str
    traceback: str | None = None


def event_kind(body: EventBody) -> str:
    """Return the kind of an event (``STEP_STARTED``...)."""
    tag = type(body).__struct_config__.tag
    assert isinstance(tag, str)
    return tag


_COMMON = frozenset({"kind", "run_id", "step_key"})


def event_data(body: EventBody) -> dict[str, Any]:
    """Return the fields of an event other than its kind, run and step."""
    data = msgspec.to_builtins(body)
    assert isinstance(data, dict)
    for key in _COMMON:
        data.pop(key, None)
    return data
