"""Which queued runs to admit: the run queue and tag concurrency limits, decided.

Queued runs are grouped by their *limit signature*: the tag-limit buckets they count
against (``env=prod``, ``team=a``...). Within a group runs keep queue order
(priority, higher first, then submission). Each admission takes the best head among
the groups whose buckets all have room, so a run blocked by a tag limit never holds
back the runs behind it, and one tick costs O(admitted x groups), not O(queued).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = (
    "Admission",
    "LimitRule",
    "QueueState",
    "QueuedRun",
    "TickResult",
    "stored_rules",
    "tag_limit_reason",
)

Bucket = tuple[str, str, str | None]
"""(limit id, tag key, tag value or None for key-only limits)."""


@dataclass(frozen=True, slots=True)
class LimitRule:
    """One tag concurrency limit, as the core sees it."""

    key: str
    value: str | None
    limit: int
    per_unique_value: bool

    @property
    def ident(self) -> str:
        """A stable id for buckets of this rule."""
        if self.value is not None:
            return f"{self.key}={self.value}"
        return f"{self.key}=*" if self.per_unique_value else self.key

    def bucket(self, tags: Mapping[str, str]) -> Bucket | None:
        """Return the bucket a run with ``tags`` counts against, or None."""
        if self.key not in tags:
            return None
        if self.value is not None:
            return (
                (self.ident, self.key, self.value)
                if tags[self.key] == self.value
                else None
            )
        if self.per_unique_value:
            return (self.ident, self.key, tags[self.key])
        return (self.ident, self.key, None)

    def describe(self, bucket: Bucket) -> str:
        """Label a bucket: ``env=prod``, ``team=a`` (per value) or ``env`` (key only)."""
        return bucket[1] if bucket[2] is None else f"{bucket[1]}={bucket[2]}"

    def blocked_reason(self, bucket: Bucket, used: int) -> str | None:
        """Return why a run counting against ``bucket`` waits, or None if it has room."""
        if used < self.limit:
            return None
        return f"tag limit {self.describe(bucket)} {used}/{self.limit}"


def stored_rules(config: object) -> tuple[LimitRule, ...]:
    """Return the limit rules of a ``queue.config`` state record (none if absent)."""
    if not isinstance(config, Mapping):
        return ()
    rules = []
    for item in config.get("tag_concurrency_limits") or ():
        if isinstance(item, Mapping) and isinstance(item.get("key"), str):
            value = item.get("value")
            rules.append(
                LimitRule(
                    item["key"],
                    value if isinstance(value, str) else None,
                    int(item.get("limit") or 0),
                    bool(item.get("per_unique_value")),
                )
            )
    return tuple(rules)


def tag_limit_reason(
    rules: Iterable[LimitRule],
    tags: Mapping[str, str],
    in_flight_tags: Iterable[Mapping[str, str]],
) -> str | None:
    """Return the first tag limit that holds a run with ``tags`` back, or None.

    Counts the in-flight runs in each of the run's buckets, as admission does.
    """
    rules = tuple(rules)
    buckets = [(rule, rule.bucket(tags)) for rule in rules]
    counts = dict.fromkeys((b for _, b in buckets if b is not None), 0)
    for other in in_flight_tags:
        for rule in rules:
            bucket = rule.bucket(other)
            if bucket in counts:
                counts[bucket] += 1
    for rule, bucket in buckets:
        if bucket is not None:
            reason = rule.blocked_reason(bucket, counts[bucket])
            if reason is not None:
                return reason
    return None


@dataclass(frozen=True, slots=True, order=True)
class QueuedRun:
    """A queued run in queue order (higher priority first, then earlier)."""

    neg_priority: int
    created_at: float
    run_id: str = field(compare=True)
    tags: tuple[tuple[str, str], ...] = field(compare=False, default=())


@dataclass(frozen=True, slots=True)
class Admission:
    """A run to start now."""

    run_id: str
    buckets: tuple[Bucket, ...]


@dataclass(slots=True)
class TickResult:
    """What one tick decided: runs to admit, and why each blocked group waits."""

    admitted: list[Admission]
    blocked: dict[str, str]
    """Head run id of each blocked group -> its binding reason."""
    global_reason: str | None
    """Why every other queued run waits, when the run queue itself is full."""


@dataclass(slots=True)
class QueueState:
    """The in-memory index of queued runs and the admission decision."""

    max_concurrent_runs: int
    rules: tuple[LimitRule, ...] = ()
    groups: dict[tuple[Bucket, ...], list[QueuedRun]] = field(default_factory=dict)
    members: dict[str, tuple[Bucket, ...]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.members)

    def signature(self, tags: Mapping[str, str]) -> tuple[Bucket, ...]:
        """Return the buckets a run with ``tags`` counts against."""
        buckets = (rule.bucket(tags) for rule in self.rules)
        return tuple(b for b in buckets if b is not None)

    def add(self, run: QueuedRun) -> None:
        """Index a queued run (ignored if already indexed)."""
        if run.run_id in self.members:
            return
        signature = self.signature(dict(run.tags))
        self.members[run.run_id] = signature
        heapq.heappush(self.groups.setdefault(signature, []), run)

    def discard(self, run_id: str) -> None:
        """Forget a run (canceled, or admitted elsewhere); lazily removed from heaps."""
        self.members.pop(run_id, None)

    def _head(self, signature: tuple[Bucket, ...]) -> QueuedRun | None:
        heap = self.groups[signature]
        while heap and heap[0].run_id not in self.members:
            heapq.heappop(heap)
        if not heap:
            del self.groups[signature]
            return None
        return heap[0]

    def tick(self, in_flight: int, bucket_counts: Mapping[Bucket, int]) -> TickResult:
        """Decide admissions given what is in flight now.

        Args:
            in_flight: runs STARTING, STARTED or CANCELING in the whole storage.
            bucket_counts: in-flight runs per bucket.

        Returns:
            The admissions in queue order (their buckets already counted), the
            reason of each blocked group head, and the global reason if the queue
            itself is full.
        """
        counts = dict(bucket_counts)
        limits = {rule.ident: rule for rule in self.rules}
        admitted: list[Admission] = []
        blocked: dict[str, str] = {}
        capacity = self.max_concurrent_runs - in_flight
        while capacity > 0:
            best: tuple[QueuedRun, tuple[Bucket, ...]] | None = None
            for signature in list(self.groups):
                head = self._head(signature)
                if head is None:
                    continue
                full = self._binding(signature, counts, limits)
                if full is not None:
                    blocked[head.run_id] = full
                    continue
                if best is None or head < best[0]:
                    best = (head, signature)
            if best is None:
                break
            run, signature = best
            heapq.heappop(self.groups[signature])
            del self.members[run.run_id]
            blocked.pop(run.run_id, None)
            for bucket in signature:
                counts[bucket] = counts.get(bucket, 0) + 1
            admitted.append(Admission(run_id=run.run_id, buckets=signature))
            capacity -= 1
        global_reason = None
        if self.members and capacity <= 0:
            global_reason = (
                f"max_concurrent_runs {in_flight + len(admitted)}/"
                f"{self.max_concurrent_runs} in flight"
            )
        return TickResult(
            admitted=admitted, blocked=blocked, global_reason=global_reason
        )

    @staticmethod
    def _binding(
        signature: tuple[Bucket, ...],
        counts: Mapping[Bucket, int],
        limits: Mapping[str, LimitRule],
    ) -> str | None:
        for bucket in signature:
            reason = limits[bucket[0]].blocked_reason(bucket, counts.get(bucket, 0))
            if reason is not None:
                return reason
        return None

    def queued_ids(self) -> Iterable[str]:
        """Every indexed queued run id."""
        return self.members.keys()
