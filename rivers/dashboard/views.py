"""The plain data one frame of ``rivers top`` shows (``read_snapshot`` in
``dashboard/snapshot.py`` fills it; ``dashboard/render.py`` draws it)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from rivers.storage.records import Event, RunStatus

__all__ = (
    "ADMISSION_WINDOW_MIN",
    "DashboardSnapshot",
    "PoolView",
    "QueueView",
    "RunView",
    "TagBucketView",
    "TagLimitView",
)

ADMISSION_WINDOW_MIN = 15
"""Minutes of admissions the run-queue sparkline covers."""


class QueueView(msgspec.Struct, frozen=True, kw_only=True):
    """The run queue: capacity, backlog and admission rate."""

    configured: bool
    """Whether a live runtime serves a repository with a run queue (whose settings
    these are)."""
    max_concurrent_runs: int | None
    dequeue_interval_s: float | None
    in_flight: int
    queued: int
    oldest_queued_at: datetime | None
    admitted_per_minute: tuple[int, ...]
    """Admissions per minute over the last ``ADMISSION_WINDOW_MIN``, oldest first."""
    finished_last_hour: dict[str, int]
    """Runs created in the last hour that finished, by status."""
    controls: str = ""
    """What ``rivers queue`` changed: "paused", "max_concurrent_runs override"..."""


class TagBucketView(msgspec.Struct, frozen=True, kw_only=True):
    """One bucket of a tag limit: ``env=prod``, or one value under per-value limits."""

    label: str
    used: int


class TagLimitView(msgspec.Struct, frozen=True, kw_only=True):
    """A tag concurrency limit and what in-flight runs use of it."""

    label: str
    """``env=prod`` (key and value), ``team`` (key only), ``team=*`` (per value)."""
    limit: int
    per_unique_value: bool
    buckets: tuple[TagBucketView, ...]


class PoolView(msgspec.Struct, frozen=True, kw_only=True):
    """A pool: its limit and source, use, waiters and nearest lease expiry."""

    name: str
    limit: int | None
    limit_source: str | None
    claimed: int
    holders: int
    pending: int
    oldest_pending_at: datetime | None
    next_lease_expiry_at: datetime | None
    next_change: str = ""
    """For a pool with time windows: the limit it changes to and when."""
    rate: str = ""
    """For a rate-limited pool: its rate (``20/s``), then what its bucket allows."""
    rate_tokens: float | None = None
    """For a rate-limited pool: the starts its bucket allows now (fractional)."""


class RunView(msgspec.Struct, frozen=True, kw_only=True):
    """A run as the runs panel lists it, with what it waits for."""

    run_id: str
    status: RunStatus
    tags: dict[str, str]
    priority: int
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    position: int | None = None
    """1-based place in the queue (queued runs)."""
    waiting_on: str | None = None
    """What holds a waiting run back (``tag env=prod 3/3``, ``load: pool warehouse
    4/4, 2nd in line``), or why a finished run failed or was canceled."""
    steps_total: int | None = None
    steps_done: int = 0
    steps_running: int = 0
    running_steps: tuple[str, ...] = ()
    """The keys of its running steps (in-flight runs), in key order."""
    steps_waiting: int = 0
    steps_failed: int = 0


class DashboardSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one frame of ``rivers top`` shows."""

    taken_at: datetime
    storage: str
    queue: QueueView
    tag_limits: tuple[TagLimitView, ...]
    pools: tuple[PoolView, ...]
    runs: tuple[RunView, ...]
    """In-flight runs (newest first), queued runs (queue order), recent finished."""
    recent_events: tuple[Event, ...]
    """Newest first."""
