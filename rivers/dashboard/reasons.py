"""Why a run or step waits, as one short line with live numbers (pure functions).

The dashboard names the binding gate the way ``rivers runs why`` does, but for many
runs at once and from counts it already read: ``queue 5/5 in flight``, ``tag
env=prod 3/3``, ``pool warehouse 4/4, 2nd in line``, ``worker slots 8/8``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rivers.cli.output import format_seconds
from rivers.explain import ordinal

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from datetime import datetime

    from rivers.dashboard.snapshot import PoolView
    from rivers.storage.records import Event

__all__ = (
    "LimitSpec",
    "bucket_usage",
    "parse_limits",
    "pool_wait_reason",
    "queued_reason",
    "step_wait_reason",
)

Usage = dict[tuple[int, str | None], int]
"""(index of the limit, tag value or None for key-only limits) -> in-flight runs."""


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """A tag concurrency limit as the coordinator recorded it in storage."""

    key: str
    value: str | None
    limit: int
    per_unique_value: bool

    @property
    def label(self) -> str:
        """``env=prod`` (key and value), ``team`` (key only), ``team=*`` (per value)."""
        if self.value is not None:
            return f"{self.key}={self.value}"
        return f"{self.key}=*" if self.per_unique_value else self.key

    def applies(self, tags: Mapping[str, str]) -> bool:
        """Whether a run with ``tags`` counts against this limit."""
        if self.key not in tags:
            return False
        return self.value is None or tags[self.key] == self.value

    def bucket(self, tags: Mapping[str, str]) -> str | None:
        """Return the bucket a run it applies to counts against (None: the key's).

        ``value`` limits and per-value limits count per tag value; key-only limits
        have one bucket for the key.
        """
        if self.value is not None or self.per_unique_value:
            return tags[self.key]
        return None


def parse_limits(config: Any) -> tuple[LimitSpec, ...]:
    """Return the tag limits of a stored ``queue.config`` (none if absent or bad)."""
    if not isinstance(config, dict):
        return ()
    specs = []
    for item in config.get("tag_concurrency_limits") or ():
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            continue
        value = item.get("value")
        specs.append(
            LimitSpec(
                key=item["key"],
                value=value if isinstance(value, str) else None,
                limit=int(item.get("limit") or 0),
                per_unique_value=bool(item.get("per_unique_value")),
            )
        )
    return tuple(specs)


def bucket_usage(
    limits: Sequence[LimitSpec], in_flight_tags: Iterable[Mapping[str, str]]
) -> Usage:
    """Count in-flight runs in each bucket of each limit."""
    usage: Usage = {}
    for tags in in_flight_tags:
        for index, spec in enumerate(limits):
            if spec.applies(tags):
                key = (index, spec.bucket(tags))
                usage[key] = usage.get(key, 0) + 1
    return usage


def queued_reason(
    tags: Mapping[str, str],
    *,
    configured: bool,
    in_flight: int,
    max_concurrent_runs: int | None,
    limits: Sequence[LimitSpec],
    usage: Mapping[tuple[int, str | None], int],
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
    for index, spec in enumerate(limits):
        if not spec.applies(tags):
            continue
        bucket = spec.bucket(tags)
        used = usage.get((index, bucket), 0)
        if used >= spec.limit:
            label = spec.key if bucket is None else f"{spec.key}={bucket}"
            return f"tag {label} {used}/{spec.limit}"
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
    pool, place = chosen
    view = pools.get(pool)
    if view is None or view.limit is None:
        counts = "" if view is None else f" {view.claimed}/∞"
    else:
        counts = f" {view.claimed}/{view.limit}"
    return f"pool {pool}{counts}, {ordinal(place)} in line"


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
