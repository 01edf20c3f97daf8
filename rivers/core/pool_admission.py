"""Pool-aware admission: whether a queued run's first steps would only wait on pools.

With ``RunQueueConfig(block_pool_limited_runs=True)`` the queue does not admit a run
whose root steps (those with no upstream step in the run) all wait on a full pool: a
pool is full for admission when ``claimed + pool_slot_buffer >= limit``. Such a run
stays QUEUED, and runs behind it that can start are not held back.

A run's *roots* are, per root step, the pools that step claims (a step with no pool
makes the run never pool-limited). Runs with the same roots share a ``roots_key``;
the queue counts how many more of them it may admit this tick (their *room*), taking
one off per admission, as each will claim at least one slot.

Pure: pool views are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rivers.core.queue import Bucket, LimitRule

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

__all__ = (
    "POOLS_BLOCKED",
    "POOLS_REASONS",
    "RUN_POOLS_BLOCKED",
    "ROOTS_TAG",
    "UNBOUNDED",
    "Roots",
    "RootsIndex",
    "pool_room",
    "pools_blocked_reason",
    "roots_key",
    "roots_of",
)

ROOTS_TAG = "rivers/pools"
"""The pseudo tag under which the queue groups runs by their roots (never stored)."""

Roots = tuple[tuple[str, ...], ...]
"""Per root step of a run, the pools it claims (sorted, distinct)."""

UNBOUNDED = 1 << 30

POOLS_BLOCKED = "its first steps all wait on full pools"
RUN_POOLS_BLOCKED = "it holds a slot of each of its pools, and one is full"
POOLS_REASONS = (POOLS_BLOCKED, RUN_POOLS_BLOCKED)
"""How the reasons of pool-aware admission begin (``runs why`` and ``top`` look)."""


def roots_of(
    selection: Sequence[str],
    upstream: Mapping[str, Iterable[str]],
    pools: Mapping[str, Sequence[str]],
) -> Roots | None:
    """Return the pools of each root step of ``selection``, or None when a root step
    claims no pool (the run can always start something)."""
    selected = set(selection)
    roots: set[tuple[str, ...]] = set()
    for step in selection:
        if any(up in selected for up in upstream[step]):
            continue
        step_pools = tuple(sorted(set(pools.get(step, ()))))
        if not step_pools:
            return None
        roots.add(step_pools)
    return tuple(sorted(roots)) or None


def roots_key(roots: Roots) -> str:
    """A stable text key of ``roots`` (``"a|a,b"``)."""
    return "|".join(",".join(step) for step in roots)


def pool_room(
    roots: Roots, views: Mapping[str, tuple[int | None, int]], buffer: int
) -> int:
    """Return how many runs with ``roots`` may be admitted now: the most free slots
    (less the buffer) of any root step, counting its fullest pool.

    Args:
        views: pool -> (its limit, None when unlimited; its claimed slots).
        buffer: ``pool_slot_buffer``.
    """
    best = 0
    for step in roots:
        free = UNBOUNDED
        for pool in step:
            limit, claimed = views.get(pool, (None, 0))
            if limit is not None:
                free = min(free, limit - claimed - buffer)
        best = max(best, free)
    return max(0, best)


def pools_blocked_reason(
    roots: Roots,
    views: Mapping[str, tuple[int | None, int]],
    buffer: int,
    *,
    per_run: bool = False,
) -> str:
    """Why a run with ``roots`` waits in the queue (its fullest pools, with numbers);
    ``per_run``: the run claims the pools itself (``pool_granularity="run"``)."""
    full = sorted(
        {
            pool
            for step in roots
            for pool in step
            if (view := views.get(pool)) is not None
            and view[0] is not None
            and view[1] + buffer >= view[0]
        }
    )
    shown = ", ".join(f"{pool} {views[pool][1]}/{views[pool][0]}" for pool in full)
    extra = f" (with pool_slot_buffer {buffer})" if buffer else ""
    return f"{RUN_POOLS_BLOCKED if per_run else POOLS_BLOCKED}: {shown}{extra}"


@dataclass(slots=True)
class RootsIndex:
    """The queue's view of its runs' roots: one pseudo tag limit per distinct roots.

    A run whose roots can be pool-limited carries the pseudo tag ``ROOTS_TAG`` =
    its ``roots_key``, and that key's ``LimitRule`` (limit ``UNBOUNDED``) is counted
    at ``UNBOUNDED - room``: full exactly when no room is left, one taken per run
    admitted in the same tick. So the queue core groups, parks and releases these
    runs as it does runs held by a tag limit, and runs behind them go on.

    Args:
        roots_of: a run's roots from its selection (None: all assets).
        buffer: ``pool_slot_buffer``.
    """

    roots_of: Callable[[Sequence[str] | None], Roots | None]
    buffer: int
    per_run: bool = False
    """Whether the runs claim their pools themselves (``pool_granularity="run"``)."""
    by_key: dict[str, Roots] = field(default_factory=dict)
    _keys: dict[tuple[str, ...] | None, str | None] = field(default_factory=dict)

    def key_of(self, selection: Sequence[str] | None) -> str | None:
        """Return the roots key of a run with ``selection``, or None when it can
        always start a step; remember the key's roots."""
        cache = None if selection is None else tuple(selection)
        if cache not in self._keys:
            roots = self.roots_of(selection)
            key = None if roots is None else roots_key(roots)
            if roots is not None and key is not None:
                self.by_key[key] = roots
            self._keys[cache] = key
        return self._keys[cache]

    def reason(self, key: str, views: Mapping[str, tuple[int | None, int]]) -> str:
        """Why a run whose roots are ``key`` waits now."""
        return pools_blocked_reason(
            self.by_key[key], views, self.buffer, per_run=self.per_run
        )

    def rule(self, key: str) -> LimitRule:
        """The pseudo tag limit of ``key``."""
        return LimitRule(ROOTS_TAG, key, UNBOUNDED, False)

    def pools(self) -> list[str]:
        """Every pool some known roots claim."""
        return sorted(
            {pool for roots in self.by_key.values() for s in roots for pool in s}
        )

    def counts(self, views: Mapping[str, tuple[int | None, int]]) -> dict[Bucket, int]:
        """The count of each key's pseudo bucket given the pools now."""
        counts: dict[Bucket, int] = {}
        for key, roots in self.by_key.items():
            room = min(pool_room(roots, views, self.buffer), UNBOUNDED)
            counts[(self.rule(key).ident, ROOTS_TAG, key)] = UNBOUNDED - room
        return counts
