"""Why a run or step waits, as one short line with live numbers (pure functions).

The dashboard names the binding gate the way ``rivers runs why`` does, but for many
runs at once and from counts it already read: ``queue 5/5 in flight``, ``tag
env=prod 3/3``, ``pool warehouse 4/4, 2nd in line``, ``worker slots 8/8``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rivers._text import format_seconds
from rivers.core.forecast import approx_seconds
from rivers.explain import ordinal

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from rivers.core.forecast import Forecast
    from rivers.core.queue import Bucket, LimitRule
    from rivers.dashboard.views import PoolView
    from rivers.storage.records import Event

__all__ = (
    "expected_suffix",
    "pool_wait_reason",
    "queued_reason",
    "step_wait_reason",
)


def queued_reason(
    tags: Mapping[str, str],
    *,
    configured: bool,
    in_flight: int,
    max_concurrent_runs: int | None,
    limits: Sequence[LimitRule],
    usage: Mapping[Bucket, int],
) -> str:
    """Return the gate holding a queued run back, with live numbers.

    The run queue comes first (a full queue holds every run), then the first of
    the run's tag limits that is full, as the coordinator checks them.
    """
    if not configured or max_concurrent_runs is None:
        return "no queue coordinator yet: start `rivers daemon`"
    if max_concurrent_runs == 0:
        return "queue paused: max_concurrent_runs 0"
    if in_flight >= max_concurrent_runs:
        return f"queue {in_flight}/{max_concurrent_runs} in flight"
    for rule in limits:
        bucket = rule.bucket(tags)
        if bucket is None:
            continue
        used = usage.get(bucket, 0)
        if used >= rule.limit:
            return f"tag {rule.describe(bucket)} {used}/{rule.limit}"
    return "admissible: next dequeue tick"


def pool_wait_reason(
    in_line: Sequence[tuple[str, int]], pools: Mapping[str, PoolView]
) -> str:
    """Describe a step waiting in pool lines: the first full pool and its place.

    Args:
        in_line: (pool, 1-based place in that pool's line) for each pool it waits on.
        pools: the pools' live views.
    """
    chosen = in_line[0]
    for pool, place in in_line:
        view = pools.get(pool)
        if view is not None and view.limit is not None and view.claimed >= view.limit:
            chosen = (pool, place)
            break
        if view is not None and view.rate_tokens is not None and view.rate_tokens < 1:
            chosen = (pool, place)
    pool, place = chosen
    view = pools.get(pool)
    if view is None or view.limit is None:
        counts = "" if view is None else f" {view.claimed}/∞"
    else:
        counts = f" {view.claimed}/{view.limit}"
    rate = f", rate {view.rate}" if view is not None and view.rate else ""
    return f"pool {pool}{counts}{rate}, {ordinal(place)} in line"


def step_wait_reason(event: Event, now: datetime) -> tuple[int, str]:
    """Describe what a waiting step waits for from its latest gate event.

    Returns:
        (rank, text): lower ranks are more telling (pool, worker, retry, other).
    """
    data = event.data
    if event.kind == "STEP_POOL_BLOCKED":
        return 0, (
            f"pool {data.get('pool')} {data.get('claimed')}/{data.get('limit')}, "
            f"{ordinal(int(data.get('position') or 1))} in line"
        )
    if event.kind == "STEP_WAITING":
        capacity = data.get("capacity")
        return 1, f"worker slots {capacity}/{capacity}"
    if event.kind == "STEP_RETRY":
        remaining = (
            float(data.get("delay_s") or 0) - (now - event.timestamp).total_seconds()
        )
        attempt = int(data.get("attempt") or 0)
        if remaining > 0:
            return 2, f"retry {attempt + 1} in {format_seconds(remaining)}"
        return 2, f"retry {attempt + 1} starting"
    return 3, "starting"


def expected_suffix(expected: Forecast | None) -> str:
    """``", expected in ~40 s"`` for a known forecast; empty otherwise."""
    if expected is None or expected.seconds is None:
        return ""
    return f", expected in {approx_seconds(expected.seconds)}"
