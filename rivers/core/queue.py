"""Which queued runs to admit: the run queue and tag concurrency limits, decided.

Queued runs are grouped by their *limit signature*: the tag-limit buckets they count
against (``env=prod``, ``team=a``...). Within a group runs keep queue order
(priority, higher first, then submission). Each admission takes the best head among
the groups whose buckets all have room, so a run blocked by a tag limit never holds
back the runs behind it. A group blocked by a full bucket is parked under it until
that bucket's count changes, so a tick does not rescan the queue.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = (
    "Admission",
    "Bucket",
    "LimitRule",
    "QueueState",
    "QueuedRun",
    "TickResult",
    "binding_tag_limit",
    "bucket_counts",
    "stored_rules",
    "tag_limit_reason",
)

Bucket = tuple[str, str, str | None]
"""(limit id, tag key, tag value or None for key-only limits)."""

Signature = tuple[Bucket, ...]
"""The buckets a run counts against: runs with the same signature form a group."""


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
    """Return the limit rules of a stored ``queue.controls`` record (or a ``rivers
    queue status`` report): none if absent, malformed entries skipped. The
    published ``queue.config`` record is read by ``core.queue_config`` instead."""
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


def bucket_counts(
    rules: Iterable[LimitRule], in_flight_tags: Iterable[Mapping[str, str]]
) -> dict[Bucket, int]:
    """Count the in-flight runs in each bucket of ``rules`` (buckets with none are
    absent): the one tag-bucket counter, behind the queue leader's admissions,
    ``rivers runs why`` and ``rivers top``.

    The storage's admission recounts the buckets of each run it moves to STARTING
    in SQL, inside the very transaction that moves it: another process may have
    started runs since these counts were taken, and only a count taken under the
    write lock makes two leaders unable to exceed a limit together.
    """
    rules = tuple(rules)
    counts: dict[Bucket, int] = {}
    for tags in in_flight_tags:
        for rule in rules:
            bucket = rule.bucket(tags)
            if bucket is not None:
                counts[bucket] = counts.get(bucket, 0) + 1
    return counts


def binding_tag_limit(
    rules: Iterable[LimitRule],
    tags: Mapping[str, str],
    in_flight_tags: Iterable[Mapping[str, str]],
) -> tuple[LimitRule, Bucket, int] | None:
    """Return the first tag limit that holds a run with ``tags`` back, or None.

    Counts the in-flight runs in each of the run's buckets, as admission does;
    returns the rule, the full bucket and how many runs it holds.
    """
    rules = tuple(rules)
    counts = bucket_counts(rules, in_flight_tags)
    for rule in rules:
        bucket = rule.bucket(tags)
        if bucket is not None and counts.get(bucket, 0) >= rule.limit:
            return rule, bucket, counts.get(bucket, 0)
    return None


def tag_limit_reason(
    rules: Iterable[LimitRule],
    tags: Mapping[str, str],
    in_flight_tags: Iterable[Mapping[str, str]],
) -> str | None:
    """Return the first tag limit that holds a run with ``tags`` back, or None."""
    binding = binding_tag_limit(rules, tags, in_flight_tags)
    if binding is None:
        return None
    rule, bucket, used = binding
    return rule.blocked_reason(bucket, used)


@dataclass(frozen=True, slots=True, order=True)
class QueuedRun:
    """A queued run in queue order (higher priority first, then earlier)."""

    neg_priority: int
    created_at: float
    run_id: str = field(compare=True)
    tags: tuple[tuple[str, str], ...] = field(compare=False, default=())


@dataclass(frozen=True, slots=True)
class Admission:
    """A run to start now, with its place in the queue (to put it back)."""

    run_id: str
    buckets: Signature
    key: tuple[int, float, str] = (0, 0.0, "")
    """(-priority, submitted at, run id)."""

    @property
    def created_at(self) -> float:
        """When the run was submitted."""
        return self.key[1]


@dataclass(slots=True)
class TickResult:
    """What one tick decided: runs to admit, and why each blocked group waits."""

    admitted: list[Admission]
    blocked: dict[str, str]
    """Head run id of each group found blocked this tick -> its binding reason."""
    global_reason: str | None
    """Why every other queued run waits, when the run queue itself is full."""


SHARED_TAGS_MAX = 4096
"""Distinct tag sets whose signature is kept to be shared (then it starts over)."""

READY_SLACK = 1024
"""Stale ``ready`` entries tolerated beyond four per group before a rebuild."""

_Key = tuple[int, float, str]
"""A run's place in the queue: (-priority, submitted at, run id)."""

_Entry = tuple[int, float, str, int, Signature, "Bucket | None"]
"""A heap entry: the queue key of a group's head, a sequence number (ties never
reach the payload), the group, and for a *token* the bucket whose released groups
it stands for (None for a plain group entry)."""


@dataclass(slots=True)
class _Parked:
    count: int
    """The bucket's in-flight count when its groups were parked."""
    heap: list[_Entry]


@dataclass(slots=True)
class QueueState:
    """The in-memory index of queued runs and the admission decision.

    Every group with queued runs is either *ready* (its head is in the ``ready``
    heap, to be checked against the limits when it comes up) or *parked* in a heap
    under the full bucket that blocked it, with that bucket's count at the time.
    When the count changes the whole heap is *released* behind one token in
    ``ready`` that stands for its best head, so releasing a bucket that blocks ten
    thousand groups costs one push, and only the groups a tick actually reaches are
    checked again. A tick costs O(groups examined x log groups), never O(queued).
    """

    max_concurrent_runs: int
    rules: tuple[LimitRule, ...] = ()
    groups: dict[Signature, list[_Key]] = field(default_factory=dict)
    members: dict[str, Signature] = field(default_factory=dict)
    ready: list[_Entry] = field(default_factory=list)
    parked: dict[Bucket, _Parked] = field(default_factory=dict)
    released: dict[Bucket, tuple[int, list[_Entry]]] = field(default_factory=dict)
    """Bucket -> (the sequence number of its live token, its released groups)."""
    _seq: int = 0
    _signatures: dict[tuple[tuple[str, str], ...], Signature] = field(
        default_factory=dict
    )

    def __len__(self) -> int:
        return len(self.members)

    def signature(self, tags: Mapping[str, str]) -> Signature:
        """Return the buckets a run with ``tags`` counts against."""
        buckets = (rule.bucket(tags) for rule in self.rules)
        return tuple(b for b in buckets if b is not None)

    def _signature_of(self, tags: tuple[tuple[str, str], ...]) -> Signature:
        """``signature``, one shared object per distinct tags: a million queued runs
        of a few tenants hold a few signatures, not a million."""
        signature = self._signatures.get(tags)
        if signature is None:
            if len(self._signatures) >= SHARED_TAGS_MAX:  # runs with unique tags
                self._signatures.clear()
            signature = self._signatures[tags] = self.signature(dict(tags))
        return signature

    def add(self, run: QueuedRun) -> None:
        """Index a queued run (ignored if already indexed)."""
        if run.run_id not in self.members:
            key = (run.neg_priority, run.created_at, run.run_id)
            self._insert(key, self._signature_of(run.tags))

    def readd(self, admission: Admission) -> None:
        """Put back an admitted run whose admission did not go through (same place)."""
        if admission.run_id not in self.members:
            self._insert(admission.key, admission.buckets)

    def _insert(self, key: _Key, signature: Signature) -> None:
        self.members[key[2]] = signature
        heap = self.groups.setdefault(signature, [])
        heapq.heappush(heap, key)
        if heap[0] is key:
            # A new head is checked on the next tick even if its group is parked,
            # so its reason to wait is reported.
            self._push_group(key, signature)

    def discard(self, run_id: str) -> None:
        """Forget a run (canceled, or admitted elsewhere); lazily removed from heaps."""
        signature = self.members.pop(run_id, None)
        if signature is not None:
            head = self._head(signature)
            if head is not None:
                self._push_group(head, signature)

    def _entry(
        self, key: _Key, signature: Signature, token: Bucket | None = None
    ) -> _Entry:
        self._seq += 1
        return (key[0], key[1], key[2], self._seq, signature, token)

    def _push_group(self, key: _Key, signature: Signature) -> None:
        heapq.heappush(self.ready, self._entry(key, signature))
        if len(self.ready) > READY_SLACK + 4 * len(self.groups):
            self._rebuild()

    def _rebuild(self) -> None:
        """Drop stale entries: every group's head back in ``ready``, none parked.

        Entries go stale when heads change while nobody is admitted (a paused
        queue taking submissions and cancellations); the next tick checks every
        group once, as after a restart.
        """
        self.parked.clear()
        self.released.clear()
        self.ready = []
        for signature in list(self.groups):
            head = self._head(signature)
            if head is not None:
                self.ready.append(self._entry(head, signature))
        heapq.heapify(self.ready)

    def _push_token(self, bucket: Bucket, heap: list[_Entry]) -> None:
        top = heap[0]
        token = self._entry((top[0], top[1], top[2]), top[4], bucket)
        self.released[bucket] = (token[3], heap)
        heapq.heappush(self.ready, token)

    def _head(self, signature: Signature) -> _Key | None:
        heap = self.groups.get(signature)
        if heap is None:
            return None
        while heap and heap[0][2] not in self.members:
            heapq.heappop(heap)
        if not heap:
            del self.groups[signature]
            return None
        return heap[0]

    def _release_changed(self, counts: Mapping[Bucket, int]) -> None:
        changed = [b for b, p in self.parked.items() if counts.get(b, 0) != p.count]
        for bucket in changed:
            heap = self.parked.pop(bucket).heap
            if bucket in self.released:
                heap.extend(self.released[bucket][1])
                heapq.heapify(heap)
            self._push_token(bucket, heap)

    def _park(self, bucket: Bucket, count: int, entry: _Entry) -> None:
        parked = self.parked.get(bucket)
        if parked is None:
            self.parked[bucket] = _Parked(count, [entry])
        else:
            heapq.heappush(parked.heap, entry)

    def _park_heap(self, bucket: Bucket, count: int, heap: list[_Entry]) -> None:
        parked = self.parked.get(bucket)
        if parked is None:
            self.parked[bucket] = _Parked(count, heap)
        else:
            parked.heap.extend(heap)
            heapq.heapify(parked.heap)

    def _next_group(
        self, counts: Mapping[Bucket, int], limits: Mapping[str, LimitRule]
    ) -> _Entry | None:
        """Pop the next group entry to check, opening tokens; None when out."""
        while self.ready:
            entry = heapq.heappop(self.ready)
            bucket = entry[5]
            if bucket is None:
                return entry
            seq, heap = self.released.get(bucket, (0, []))
            if seq != entry[3]:
                continue  # Superseded by a newer token for the same bucket.
            del self.released[bucket]
            used = counts.get(bucket, 0)
            if limits[bucket[0]].blocked_reason(bucket, used) is not None:
                # Full again: every released group is blocked by it once more.
                self._park_heap(bucket, used, heap)
                continue
            group = heapq.heappop(heap)
            if heap:
                self._push_token(bucket, heap)
            return group
        return None

    def tick(self, in_flight: int, bucket_counts: Mapping[Bucket, int]) -> TickResult:
        """Decide admissions given what is in flight now.

        Args:
            in_flight: runs STARTING, STARTED or CANCELING in the whole storage.
            bucket_counts: in-flight runs per bucket.

        Returns:
            The admissions in queue order (their buckets already counted), the
            reason of each group head found blocked this tick (heads still blocked
            for the same reason as before are not repeated), and the global reason
            if the queue itself is full.
        """
        counts = dict(bucket_counts)
        self._release_changed(counts)
        limits = {rule.ident: rule for rule in self.rules}
        admitted: list[Admission] = []
        blocked: dict[str, str] = {}
        capacity = self.max_concurrent_runs - in_flight
        while capacity > 0:
            entry = self._next_group(counts, limits)
            if entry is None:
                break
            run_id, signature = entry[2], entry[4]
            head = self._head(signature)
            if head is None or head[2] != run_id:
                # Stale: every change of a group's head pushed the new head too.
                continue
            full = self._binding(signature, counts, limits)
            if full is not None:
                bucket, reason = full
                blocked[run_id] = reason
                self._park(bucket, counts.get(bucket, 0), entry)
                continue
            key = heapq.heappop(self.groups[signature])
            del self.members[run_id]
            for bucket in signature:
                counts[bucket] = counts.get(bucket, 0) + 1
            admitted.append(Admission(run_id=run_id, buckets=signature, key=key))
            capacity -= 1
            following = self._head(signature)
            if following is not None:
                self._push_group(following, signature)
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
        signature: Signature,
        counts: Mapping[Bucket, int],
        limits: Mapping[str, LimitRule],
    ) -> tuple[Bucket, str] | None:
        for bucket in signature:
            reason = limits[bucket[0]].blocked_reason(bucket, counts.get(bucket, 0))
            if reason is not None:
                return bucket, reason
        return None

    def queued_ids(self) -> Iterable[str]:
        """Every indexed queued run id."""
        return self.members.keys()
