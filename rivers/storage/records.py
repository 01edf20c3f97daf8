"""The records storage returns: runs, steps, events, pools."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from rivers.messages import EventBody

__all__ = (
    "LATE_CANCEL_REASON",
    "ClaimResult",
    "Event",
    "NewRun",
    "PendingStep",
    "PoolInfo",
    "PoolView",
    "PruneResult",
    "RunChange",
    "RunRecord",
    "RunStatus",
    "SlotHolder",
    "StepRecord",
    "StepStatus",
    "from_timestamp",
)


class RunStatus(enum.StrEnum):
    """Where a run is in its life."""

    QUEUED = "QUEUED"
    STARTING = "STARTING"
    STARTED = "STARTED"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"

    @property
    def is_finished(self) -> bool:
        """Whether the run has ended (SUCCESS, FAILURE or CANCELED)."""
        return self in FINISHED_STATUSES

    @property
    def is_in_flight(self) -> bool:
        """Whether the run occupies queue capacity (STARTING, STARTED, CANCELING)."""
        return self in IN_FLIGHT_STATUSES


LATE_CANCEL_REASON = "finished before the cancel took effect"
"""The reason of a run that succeeded while a cancel request was on its way."""

FINISHED_STATUSES = frozenset(
    {RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.CANCELED}
)
IN_FLIGHT_STATUSES = frozenset(
    {RunStatus.STARTING, RunStatus.STARTED, RunStatus.CANCELING}
)


class StepStatus(enum.StrEnum):
    """Where a step is: waiting or running, then how it ended."""

    WAITING = "WAITING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    SKIPPED = "SKIPPED"
    CANCELED = "CANCELED"


def from_timestamp(value: float | None) -> datetime | None:
    """Return an aware UTC datetime from epoch seconds (None stays None).

    A stored time outside ``datetime``'s range (years 1..9999), which rivers never
    writes but another program sharing the file could, is shown as the nearest end
    of that range (NaN as None) rather than failing every read that meets it.
    """
    if value is None or value != value:  # NaN != NaN
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        edge = datetime.max if value > 0 else datetime.min
        return edge.replace(tzinfo=UTC)


class RunRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A run as stored.

    ``reason`` says why it failed or was canceled, or, while queued, why it waits.
    """

    run_id: str
    status: RunStatus
    tags: dict[str, str]
    selection: list[str] | None
    priority: int
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    reason: str | None = None
    repository: str = "default"
    run_key: str | None = None
    owner: str | None = None
    fingerprint: str | None = None
    """The fingerprint of the repository definition that created the run (None for
    runs stored before repositories had one): only a runtime serving the same
    definition runs it."""


class StepRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One step of a run: how it ended, how often it was tried, and where it ran."""

    step_key: str
    status: StepStatus
    attempts: int = 0
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: str | None = None
    worker: str | None = None

    @property
    def duration_s(self) -> float | None:
        """Seconds from the first start to the end, when both are known."""
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of the event log; ``event_id`` increases with each entry."""

    event_id: int
    kind: str
    run_id: str | None
    step_key: str | None
    timestamp: datetime
    data: dict[str, Any]


_RATE_FIELDS = frozenset({"rate", "rate_source", "burst", "tokens", "next_token_in_s"})


class PoolInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A pool's limit (None: unlimited), where it came from, and its use; for a
    rate-limited pool also its rate and bucket (JSON omits them for other pools)."""

    name: str
    limit: int | None
    limit_source: str | None
    claimed_slots: int
    pending_steps: int
    rate: str | None = None
    """Starts allowed per period (``"100/min"``); None: not rate limited."""
    rate_source: str | None = None
    """``"override"`` or ``"repository"`` (None without a rate)."""
    burst: int | None = None
    """The most steps that may start at once after a quiet spell (the bucket size)."""
    tokens: float | None = None
    """Starts the bucket allows now (fractional: the next is on its way)."""
    next_token_in_s: float | None = None
    """Seconds until the bucket allows a start (0: now)."""

    def __repr__(self) -> str:
        """The fields, without the rate's when the pool has none (as in JSON)."""
        fields = [
            f"{name}={getattr(self, name)!r}"
            for name in self.__struct_fields__
            if self.rate is not None or name not in _RATE_FIELDS
        ]
        return f"PoolInfo({', '.join(fields)})"


class PruneResult(msgspec.Struct, frozen=True, kw_only=True):
    """What ``storage.prune`` deleted (or, with ``dry_run``, would delete)."""

    cutoff: datetime
    """Finished runs created and ended before this went."""
    dry_run: bool
    runs: int
    steps: int
    events: int
    materializations: int
    """History entries superseded by a later materialization of the same asset
    (each asset's latest is kept)."""
    bytes_before: int
    bytes_after: int
    """The database file's size after the prune gave its free pages back."""


class SlotHolder(msgspec.Struct, frozen=True, kw_only=True):
    """A step holding slots of a pool, and until when its lease runs."""

    run_id: str
    step_key: str
    slots: int
    claimed_at: datetime
    lease_expires_at: datetime
    owner: str | None = None


class PendingStep(msgspec.Struct, frozen=True, kw_only=True):
    """A step waiting for slots of a pool."""

    run_id: str
    step_key: str
    slots: int
    priority: int
    enqueued_at: datetime


class NewRun(msgspec.Struct, frozen=True, kw_only=True):
    """What is written when a run is created."""

    run_id: str
    status: RunStatus
    repository: str
    tags: dict[str, str]
    selection: list[str] | None
    priority: int = 0
    run_key: str | None = None
    location: dict[str, str] | None = None
    owner: str | None = None
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunChange:
    """A run's status change written with a batch of events (``write_batch``).

    The run moves to ``to`` at ``at`` if its status is one of ``expected``; a
    finished status also sets ``ended_at`` (and a run that succeeds while CANCELING
    gets ``LATE_CANCEL_REASON``), a started one ``started_at``. ``event`` is logged
    after the batch's events, only if the run changed.
    """

    run_id: str
    to: RunStatus
    expected: tuple[RunStatus, ...]
    at: float
    reason: str | None = None
    event: EventBody | None = None


@dataclass(frozen=True, slots=True)
class PoolView:
    """A pool's effective limit (None: unlimited) and live claimed slots."""

    pool: str
    limit: int | None
    claimed: int


@dataclass(slots=True)
class ClaimResult:
    """Whether a claim was written, what each pool looked like, and the lease end."""

    granted: bool
    views: tuple[PoolView, ...]
    lease_expires_at: float | None
    reclaimed: tuple[tuple[str, str, str, int, str], ...] = ()
    behind: tuple[tuple[str, int], ...] = ()
    """Refused for the line: (pool, priority of the other process's waiter ahead)."""
    tokens: tuple[int, ...] = ()
    """Granted: the fencing token of each pool, in the order of ``views``."""
    wake: frozenset[str] = frozenset()
    """Owners (other processes) whose waiters may claim now."""
    rate_wait: tuple[tuple[str, float], ...] = ()
    """Refused for a rate: (pool, seconds until its bucket holds a token)."""
