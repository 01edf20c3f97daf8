"""What ``rivers top`` shows, read from storage in one pass: a ``DashboardSnapshot``.

``read_snapshot`` only reads, and every query is bounded by an index range or a
limit (see ``storage/_sql_dashboard.py``), so a refresh costs about the same on
a storage holding 100 runs or 100,000. Everything it returns is plain data; the
renderers in ``dashboard/render.py`` are pure functions of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rivers._liveness import live_served
from rivers._text import format_seconds
from rivers.actors.limit_windows import stored_schedules
from rivers.core.pool_admission import POOLS_REASONS
from rivers.core.queue import bucket_counts
from rivers.dashboard.queue_gates import QueueGates
from rivers.dashboard.reasons import (
    expected_suffix,
    pool_wait_reason,
    queued_reason,
    step_wait_reason,
)
from rivers.dashboard.views import (
    ADMISSION_WINDOW_MIN,
    DashboardSnapshot,
    PoolView,
    QueueView,
    RunView,
    TagBucketView,
    TagLimitView,
)
from rivers.forecasts import (
    bucket_of,
    pool_forecasts,
    queue_forecasts,
    recent_releases,
)
from rivers.storage.records import (
    FINISHED_STATUSES,
    IN_FLIGHT_STATUSES,
    Event,
    PendingStep,
    PoolInfo,
    RunRecord,
    RunStatus,
    StepStatus,
    from_timestamp,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from rivers.core.forecast import Forecast
    from rivers.core.queue import Bucket, LimitRule
    from rivers.core.queue_config import QueueConfig
    from rivers.storage.base import StorageBackend

__all__ = (
    "ADMISSION_WINDOW_MIN",
    "EVENT_KINDS",
    "DashboardSnapshot",
    "PoolView",
    "QueueView",
    "RunView",
    "TagBucketView",
    "TagLimitView",
    "read_snapshot",
)

Expected = dict[tuple[str, str], "Forecast"]
"""(run id, step key) -> when a step waiting in a pool's line is expected to start."""
FINISHED = (RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.CANCELED)
"""The finished statuses, in the order the dashboard counts them."""
RECENT_WINDOW_S = 3600.0
"""How far back the finished-run counts look."""
MAX_IN_FLIGHT_ROWS = 40
MAX_QUEUED_ROWS = 40
MAX_FINISHED_ROWS = 5
MAX_EVENT_ROWS = 30
MAX_WAITING_STEPS_READ = 20
"""Waiting steps of one run whose latest gate event is read (the rest are counted)."""


EVENT_KINDS = (
    "RUN_BLOCKED",
    "RUN_DEQUEUED",
    "RUN_STARTED",
    "RUN_SUCCESS",
    "RUN_FAILURE",
    "RUN_CANCELED",
    "STEP_WAITING",
    "STEP_POOL_BLOCKED",
    "STEP_POOL_CLAIMED",
    "STEP_FAILURE",
    "STEP_RETRY",
    "LEASE_EXPIRED",
    "TRIGGER_FAILURE",
)
"""The events the recent-events panel lists: gate decisions, failures, reclaims."""


async def read_snapshot(
    storage: StorageBackend,
    *,
    max_in_flight: int = MAX_IN_FLIGHT_ROWS,
    max_queued: int = MAX_QUEUED_ROWS,
    max_finished: int = MAX_FINISHED_ROWS,
    max_events: int = MAX_EVENT_ROWS,
) -> DashboardSnapshot:
    """Read one dashboard frame from ``storage`` (reads only, bounded queries).

    Returns:
        The snapshot; times in it are the storage clock's.
    """
    now_s = storage.clock.time()
    now = _at(now_s)
    gates = QueueGates(storage, await live_served(storage))
    config = await gates.shown_config()
    limits = () if config is None else config.tag_concurrency_limits
    counts = await storage.dashboard.count_runs_by_status(
        [RunStatus.QUEUED, *IN_FLIGHT_STATUSES]
    )
    in_flight_count = sum(counts[s] for s in IN_FLIGHT_STATUSES)
    in_flight_tags = await storage.queue.get_in_flight_tags()
    usage = bucket_counts(limits, in_flight_tags)
    oldest = await storage.dashboard.oldest_queued_at()
    window_s = ADMISSION_WINDOW_MIN * 60.0
    admitted = _per_minute(
        await storage.dashboard.dequeue_times(now_s - window_s), now_s
    )
    finished = await storage.dashboard.count_runs_created_since(
        now_s - RECENT_WINDOW_S, FINISHED
    )
    queue = QueueView(
        configured=config is not None,
        max_concurrent_runs=None if config is None else config.max_concurrent_runs,
        dequeue_interval_s=None if config is None else config.dequeue_interval_s,
        controls="" if config is None else config.controls_note(),
        in_flight=in_flight_count,
        queued=counts[RunStatus.QUEUED],
        oldest_queued_at=from_timestamp(oldest),
        admitted_per_minute=admitted,
        finished_last_hour={s.value: finished[s] for s in FINISHED},
    )
    pools, pending, expected = await _read_pools(storage)
    in_flight_runs = await storage.runs.get_runs(
        status=IN_FLIGHT_STATUSES, limit=max_in_flight
    )
    queued_runs = await storage.dashboard.get_queued_runs(max_queued)
    finished_runs = await storage.dashboard.get_recent_finished_runs(max_finished)
    queued_views = []
    positions = range(1, len(queued_runs) + 1)
    queue_expected = (
        await queue_forecasts(storage, positions, queue.max_concurrent_runs)
        if queue.max_concurrent_runs and queued_runs
        else {}
    )
    for position, run in enumerate(queued_runs, start=1):
        unserved, run_config = await gates.of(run)
        run_limits = () if run_config is None else run_config.tag_concurrency_limits
        queued_views.append(
            _queued_view(
                run,
                position,
                queue,
                run_limits,
                bucket_counts(run_limits, in_flight_tags),
                unserved=unserved,
                config=run_config,
                expected=queue_expected.get(position),
            )
        )
    runs = [
        *await _in_flight_views(storage, in_flight_runs, pools, pending, expected, now),
        *queued_views,
        *(_finished_view(run) for run in finished_runs),
    ]
    events = await storage.dashboard.get_recent_events(EVENT_KINDS, max_events)
    return DashboardSnapshot(
        taken_at=now,
        storage=storage.describe,
        queue=queue,
        tag_limits=tuple(_tag_views(limits, usage)),
        pools=tuple(pools.values()),
        runs=tuple(runs),
        recent_events=tuple(events),
    )


# ------------------------------------------------------------------ the pieces


def _at(epoch_s: float) -> datetime:
    at = from_timestamp(epoch_s)
    assert at is not None
    return at


def _per_minute(times: list[float], now_s: float) -> tuple[int, ...]:
    buckets = [0] * ADMISSION_WINDOW_MIN
    for at in times:
        age_min = int((now_s - at) // 60)
        if 0 <= age_min < ADMISSION_WINDOW_MIN:
            buckets[ADMISSION_WINDOW_MIN - 1 - age_min] += 1
    return tuple(buckets)


def _tag_views(
    limits: tuple[LimitRule, ...], usage: Mapping[Bucket, int]
) -> list[TagLimitView]:
    views = []
    for spec in limits:
        if spec.per_unique_value:
            values = sorted(
                ((b[2], used) for b, used in usage.items() if b[0] == spec.ident),
                key=lambda item: (-item[1], item[0] or ""),
            )
            buckets = tuple(
                TagBucketView(label=f"{spec.key}={value}", used=used)
                for value, used in values
            )
        else:
            bucket = (spec.ident, spec.key, spec.value)
            buckets = (TagBucketView(label=spec.ident, used=usage.get(bucket, 0)),)
        views.append(
            TagLimitView(
                label=spec.ident,
                limit=spec.limit,
                per_unique_value=spec.per_unique_value,
                buckets=buckets,
            )
        )
    return views


async def _read_pools(
    storage: StorageBackend,
) -> tuple[dict[str, PoolView], dict[str, list[PendingStep]], Expected]:
    pools: dict[str, PoolView] = {}
    pending: dict[str, list[PendingStep]] = {}
    expected: Expected = {}  # (run, step) -> its expected start in its first pool
    windows = await stored_schedules(storage.state)
    released: list[Event] | None = None  # read once, for the first pool with waiters
    now = storage.clock.time()
    for info in await storage.pools.get_all_pool_infos():
        waiting = await storage.pools.get_pending_steps(info.name)
        holders = await storage.pools.get_pool_slot_holders(info.name)
        pending[info.name] = waiting
        if waiting and info.limit:
            if released is None:
                released = await recent_releases(storage)
            rate = bucket_of(info)
            forecasts = pool_forecasts(
                info.name, info.limit, waiting, holders, released, now, rate
            )
            for key, forecast in forecasts.items():
                expected.setdefault(key, forecast)
        pools[info.name] = PoolView(
            name=info.name,
            limit=info.limit,
            limit_source=info.limit_source,
            claimed=info.claimed_slots,
            holders=len(holders),
            pending=info.pending_steps,
            oldest_pending_at=min((p.enqueued_at for p in waiting), default=None),
            # Holders are live claims only: expired ones are not listed.
            next_lease_expiry_at=min(
                (h.lease_expires_at for h in holders), default=None
            ),
            next_change=""
            if info.name not in windows or info.limit_source != "repository"
            else windows[info.name].describe_next_change(now),
            rate=_rate_text(info),
            rate_tokens=info.tokens,
        )
    return pools, pending, expected


def _rate_text(info: PoolInfo) -> str:
    """``20/s: next start in 30 ms`` (``""`` for a pool without a rate)."""
    if info.rate is None or info.next_token_in_s is None:
        return ""
    if info.next_token_in_s <= 0:
        return f"{info.rate}: may start now"
    return f"{info.rate}: next start in {format_seconds(info.next_token_in_s)}"


async def _in_flight_views(
    storage: StorageBackend,
    runs: list[RunRecord],
    pools: Mapping[str, PoolView],
    pending: Mapping[str, list[PendingStep]],
    expected: Expected,
    now: datetime,
) -> list[RunView]:
    run_ids = [run.run_id for run in runs]
    progress = await storage.dashboard.get_step_progress(run_ids)
    totals = await storage.dashboard.get_step_totals(run_ids)
    waiting = await storage.dashboard.get_waiting_steps(run_ids)
    running = await storage.dashboard.get_steps_in_status(run_ids, StepStatus.RUNNING)
    # (run, step) -> [(pool, 1-based place in that pool's line)]
    lines: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for pool, steps in pending.items():
        for place, pending_step in enumerate(steps, start=1):
            key = (pending_step.run_id, pending_step.step_key)
            lines.setdefault(key, []).append((pool, place))
    views = []
    for run in runs:
        counts = progress.get(run.run_id, {})
        waiting_keys = sorted(waiting.get(run.run_id, []))
        latest = await storage.dashboard.get_waiting_step_events(
            run.run_id, waiting_keys[:MAX_WAITING_STEPS_READ]
        )
        reasons: list[tuple[int, str]] = []
        for step in waiting_keys:
            in_line = lines.get((run.run_id, step))
            if in_line:
                why = pool_wait_reason(in_line, pools)
                soon = expected_suffix(expected.get((run.run_id, step)))
                reasons.append((0, f"{step}: {why}{soon}"))
                continue
            event = latest.get(step)
            if event is not None:
                rank, text = step_wait_reason(event, now)
                reasons.append((rank, f"{step}: {text}"))
        reasons.sort(key=lambda item: item[0])
        waiting_on = None
        if run.status is RunStatus.CANCELING:
            waiting_on = "canceling: stopping its steps"
        elif run.status is RunStatus.STARTING:
            waiting_on = "starting"
        elif reasons:
            waiting_on = reasons[0][1]
            if len(waiting_keys) > 1:
                waiting_on += f" (+{len(waiting_keys) - 1} waiting)"
        views.append(
            RunView(
                run_id=run.run_id,
                status=run.status,
                tags=run.tags,
                priority=run.priority,
                created_at=run.created_at,
                started_at=run.started_at,
                waiting_on=waiting_on,
                steps_total=totals.get(run.run_id),
                steps_done=sum(
                    counts.get(s.value, 0)
                    for s in (
                        StepStatus.SUCCESS,
                        StepStatus.SKIPPED,
                        StepStatus.CANCELED,
                    )
                )
                + counts.get(StepStatus.FAILURE.value, 0),
                steps_running=counts.get(StepStatus.RUNNING.value, 0),
                running_steps=tuple(running.get(run.run_id, ())),
                steps_waiting=counts.get(StepStatus.WAITING.value, 0),
                steps_failed=counts.get(StepStatus.FAILURE.value, 0),
            )
        )
    return views


def _queued_view(
    run: RunRecord,
    position: int,
    queue: QueueView,
    limits: tuple[LimitRule, ...],
    usage: Mapping[Bucket, int],
    *,
    unserved: str | None,
    config: QueueConfig | None,
    expected: Forecast | None,
) -> RunView:
    if unserved is not None:
        waiting_on = unserved
    elif config is not None and not config.has_queue:
        waiting_on = "no run queue: starts within a second"
    elif config is not None and config.paused:
        waiting_on = "queue paused: rivers queue resume"
    elif run.reason is not None and run.reason.startswith(POOLS_REASONS):
        waiting_on = run.reason
    else:
        waiting_on = queued_reason(
            run.tags,
            configured=config is not None,
            in_flight=queue.in_flight,
            max_concurrent_runs=None if config is None else config.max_concurrent_runs,
            limits=limits,
            usage=usage,
        )
        if waiting_on.startswith("queue "):  # max_concurrent_runs holds it back
            waiting_on += expected_suffix(expected)
    return RunView(
        run_id=run.run_id,
        status=run.status,
        tags=run.tags,
        priority=run.priority,
        created_at=run.created_at,
        position=position,
        waiting_on=waiting_on,
    )


def _finished_view(run: RunRecord) -> RunView:
    assert run.status in FINISHED_STATUSES
    return RunView(
        run_id=run.run_id,
        status=run.status,
        tags=run.tags,
        priority=run.priority,
        created_at=run.created_at,
        started_at=run.started_at,
        ended_at=run.ended_at,
        waiting_on=None if run.status is RunStatus.SUCCESS else run.reason,
    )
