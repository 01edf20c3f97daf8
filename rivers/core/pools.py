"""Which waiting steps may claim pool slots now.

The rule (documented in the README): each pool serves its waiters in order of step
priority (higher first), then arrival. A waiter may claim only when it is first in
line in *every* pool it names and all of them have room for its slots; nobody
overtakes an earlier waiter of the same pool. So a large claim at the head of a
pool is never starved by a stream of small ones, and a step never holds one pool
while waiting for another (all or nothing). A limit of 0 pauses the pool; a pool
with no limit is unlimited.

A pool with a rate may also be out of tokens (``rate_until``): it counts as full
until the time its bucket holds a token again, which the owner of this state
learns from the refused claim and watches (``rates_due``), so waiters start when a
token is due, neither polling storage nor waiting for a release.

The state mirrors what the storage holds (claimed slots per pool, limits) as last
seen; the storage transaction that performs a claim re-checks it, so a stale view
costs a retry, never an exceeded limit. Immediate claims still being written count
as taken (``writing``), so a burst of newcomers does not send one doomed
transaction each while the first few are in flight.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass, field

__all__ = ("PoolState", "Waiter")


@dataclass(slots=True, frozen=True)
class Waiter:
    """A step waiting for ``slots`` in each of ``pools``."""

    key: tuple[str, str]
    pools: tuple[str, ...]
    slots: int
    priority: int
    seq: int

    @property
    def order(self) -> tuple[int, int]:
        """Sort key: higher priority first, then earlier arrival."""
        return (-self.priority, self.seq)


@dataclass(slots=True)
class PoolState:
    """Limits, claimed slots and the ordered waiters of every pool.

    Waiters are kept in order (all of them, and each pool's line), so a place in
    line is a bisection, a newcomer's check looks at line heads only, and a grant
    pass stops as soon as every pool with waiters is blocked: thousands of steps
    waiting on one pool cost O(log n) per arrival and O(granted) per release.
    """

    limits: dict[str, int | None] = field(default_factory=dict)
    claimed: dict[str, int] = field(default_factory=dict)
    waiters: dict[tuple[str, str], Waiter] = field(default_factory=dict)
    """Read-only outside this class: change it with add, remove, requeue, grants."""
    writing: dict[str, int] = field(default_factory=dict)
    behind: dict[str, int] = field(default_factory=dict)
    """Pools whose line in storage is led by another process's waiter, with that
    waiter's priority: nobody here at or below it claims until the view is refreshed."""
    rate_until: dict[str, float] = field(default_factory=dict)
    """Pools out of rate tokens, with the (monotonic) time the next one is due."""
    _seq: int = 0
    _resized: set[str] = field(default_factory=set)
    _order: list[tuple[int, int]] = field(default_factory=list)
    _by_order: dict[tuple[int, int], Waiter] = field(default_factory=dict)
    _lines: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def _enqueue(self, waiter: Waiter) -> None:
        self.waiters[waiter.key] = waiter
        order = waiter.order
        self._by_order[order] = waiter
        insort(self._order, order)
        for pool in waiter.pools:
            insort(self._lines.setdefault(pool, []), order)

    def _dequeue(self, waiter: Waiter) -> None:
        del self.waiters[waiter.key]
        order = waiter.order
        del self._by_order[order]
        del self._order[bisect_left(self._order, order)]
        for pool in waiter.pools:
            line = self._lines[pool]
            del line[bisect_left(line, order)]
            if not line:
                del self._lines[pool]

    def _ahead_elsewhere(self, pools: tuple[str, ...], priority: int) -> bool:
        behind = self.behind
        return bool(behind) and any(
            pool in behind and behind[pool] >= priority for pool in pools
        )

    def fits(self, pools: tuple[str, ...], slots: int) -> bool:
        """Whether ``slots`` more fit in every pool now (ignoring waiters).

        Slots of immediate claims being written count as taken; a pool out of
        rate tokens is full.
        """
        for pool in pools:
            if pool in self.rate_until:
                return False
            limit = self.limits.get(pool)
            if limit is not None and (
                self.claimed.get(pool, 0) + self.writing.get(pool, 0) + slots > limit
            ):
                return False
        return True

    def begin_claim(self, pools: tuple[str, ...], slots: int) -> None:
        """Count an immediate claim whose transaction is in flight."""
        for pool in pools:
            self.writing[pool] = self.writing.get(pool, 0) + slots

    def end_claim(self, pools: tuple[str, ...], slots: int) -> None:
        """Stop counting an immediate claim (its result was ``observe``d)."""
        for pool in pools:
            left = self.writing.get(pool, 0) - slots
            if left > 0:
                self.writing[pool] = left
            else:
                self.writing.pop(pool, None)

    def impossible(self, pools: tuple[str, ...], slots: int) -> str | None:
        """Return a pool whose limit (>= 1) is below ``slots``: it can never fit."""
        for pool in pools:
            limit = self.limits.get(pool)
            if limit is not None and 0 < limit < slots:
                return pool
        return None

    def add(
        self, key: tuple[str, str], pools: tuple[str, ...], slots: int, priority: int
    ) -> Waiter:
        """Queue a waiter (a step that could not claim at once)."""
        self._seq += 1
        waiter = Waiter(
            key=key, pools=pools, slots=slots, priority=priority, seq=self._seq
        )
        self._enqueue(waiter)
        return waiter

    def remove(self, key: tuple[str, str]) -> None:
        """Forget a waiter (granted or cancelled)."""
        waiter = self.waiters.get(key)
        if waiter is not None:
            self._dequeue(waiter)

    def position(self, key: tuple[str, str], pool: str) -> int:
        """Return the 1-based place of a waiter in one pool's line."""
        return 1 + bisect_left(self._lines[pool], self.waiters[key].order)

    def is_first_everywhere(self, waiter: Waiter) -> bool:
        """Whether no earlier waiter shares any of this waiter's pools."""
        return all(self._lines[pool][0] >= waiter.order for pool in waiter.pools)

    def may_claim_now(self, pools: tuple[str, ...], slots: int, priority: int) -> bool:
        """Whether a newcomer may claim at once: it fits and nobody waits ahead of it."""
        if not self.fits(pools, slots) or self._ahead_elsewhere(pools, priority):
            return False
        newcomer_order = (-priority, self._seq + 1)
        for pool in pools:
            line = self._lines.get(pool)
            if line and line[0] < newcomer_order:
                return False
        return True

    def grants(self) -> list[Waiter]:
        """Return the waiters that may claim now, in order, as if each claimed.

        The returned waiters' slots are counted as claimed and they are removed
        from the line; the caller confirms each in storage (or puts it back with
        ``requeue``).
        """
        granted: list[Waiter] = []
        blocked_pools: set[str] = set()
        for order in self._order:
            if len(blocked_pools) == len(self._lines):
                break  # every pool with waiters is blocked: nobody later can go
            waiter = self._by_order[order]
            if not blocked_pools.isdisjoint(waiter.pools):
                blocked_pools.update(waiter.pools)
                continue
            if self.fits(waiter.pools, waiter.slots) and not self._ahead_elsewhere(
                waiter.pools, waiter.priority
            ):
                granted.append(waiter)
                for pool in waiter.pools:
                    self.claimed[pool] = self.claimed.get(pool, 0) + waiter.slots
            else:
                blocked_pools.update(waiter.pools)
        for waiter in granted:
            self._dequeue(waiter)
        return granted

    def requeue(self, waiter: Waiter) -> None:
        """Put back a granted waiter whose storage claim failed (same place in line)."""
        for pool in waiter.pools:
            self.claimed[pool] = max(0, self.claimed.get(pool, 0) - waiter.slots)
        self._enqueue(waiter)

    def claim(self, pools: tuple[str, ...], slots: int) -> None:
        """Count slots claimed outside ``grants`` (an immediate claim)."""
        for pool in pools:
            self.claimed[pool] = self.claimed.get(pool, 0) + slots

    def release(self, pools: tuple[str, ...], slots: int) -> None:
        """Count slots given back."""
        for pool in pools:
            self.claimed[pool] = max(0, self.claimed.get(pool, 0) - slots)

    def observe(self, pool: str, claimed: int, limit: int | None) -> None:
        """Replace the view of one pool with what storage just said."""
        self.claimed[pool] = claimed
        if limit != self.limits.get(pool, limit):
            self._resized.add(pool)
        self.limits[pool] = limit
        if self.behind:
            self.behind.pop(pool, None)

    def observe_rate(self, pool: str, due_at: float) -> None:
        """Record that ``pool``'s bucket holds no token until ``due_at``."""
        self.rate_until[pool] = due_at

    def rates_due(self, now: float) -> None:
        """Forget the pools whose next token is due by ``now``."""
        if self.rate_until:
            for pool, due_at in list(self.rate_until.items()):
                if due_at <= now:
                    del self.rate_until[pool]

    def observe_behind(self, pool: str, priority: int) -> None:
        """Record that another process's waiter of ``priority`` leads ``pool``'s line."""
        self.behind[pool] = priority

    def drop_impossible(self) -> list[Waiter]:
        """Remove and return the waiters a lowered limit left unable ever to fit.

        Only pools whose limit changed since the last call are looked at.
        """
        if not self._resized:
            return []
        resized, self._resized = self._resized, set()
        doomed: dict[tuple[str, str], Waiter] = {}
        for pool in resized:
            limit = self.limits.get(pool)
            if limit is None or limit == 0:
                continue
            for order in self._lines.get(pool, ()):
                waiter = self._by_order[order]
                if waiter.slots > limit:
                    doomed[waiter.key] = waiter
        for waiter in doomed.values():
            self._dequeue(waiter)
        return list(doomed.values())
