"""``StepGate``: an executor's slots, handed to waiting steps by priority, then arrival;
``TagGates``: the executor's tag limits of one run, a ``StepGate`` per tag bucket.

Like ``anyio.CapacityLimiter`` (which serves waiters first come, first served), but a
freed slot goes to the waiting step of highest priority, and among equals to the one
that waited longest. A free slot is never taken past a waiter: ``acquire_nowait``
refuses while anyone waits.
"""

from __future__ import annotations

import heapq
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, final

import anyio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

    from rivers.core.queue import Bucket, LimitRule

__all__ = ("StepGate", "TagGates")


@dataclass(order=True, slots=True)
class _Waiter:
    rank: tuple[int, int]  # (-priority, arrival)
    event: anyio.Event = field(compare=False, default_factory=anyio.Event)
    granted: bool = field(compare=False, default=False)
    gone: bool = field(compare=False, default=False)


@final
class StepGate:
    """``total`` slots (``math.inf``: no limit) for the steps of one run.

    Args:
        total: how many steps may hold a slot at once.
    """

    __slots__ = ("_arrivals", "_held", "_total", "_waiters", "_waiting")

    def __init__(self, total: float) -> None:
        self._total = total
        self._held = 0
        self._waiters: list[_Waiter] = []
        self._waiting = 0
        self._arrivals = 0

    @property
    def total_tokens(self) -> float:
        """How many slots the gate has."""
        return self._total

    @property
    def waiting(self) -> int:
        """How many steps wait for a slot."""
        return self._waiting

    def acquire_nowait(self) -> None:
        """Take a slot at once.

        Raises:
            anyio.WouldBlock: no slot is free, or a step waits for one already.
        """
        if not self.try_acquire():
            raise anyio.WouldBlock

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody waits; return whether it did."""
        if self._held >= self._total or self._waiting:
            return False
        self._held += 1
        return True

    async def acquire(self, priority: int = 0) -> None:
        """Take a slot, waiting in line (priority, then arrival) if none is free."""
        try:
            self.acquire_nowait()
        except anyio.WouldBlock:
            pass
        else:
            try:
                await anyio.lowlevel.checkpoint()
            except BaseException:
                self.release()
                raise
            return
        self._arrivals += 1
        waiter = _Waiter((-priority, self._arrivals))
        heapq.heappush(self._waiters, waiter)
        self._waiting += 1
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.granted:
                self.release()  # handed a slot while being cancelled: pass it on
            else:
                waiter.gone = True
                self._waiting -= 1
            raise

    def release(self) -> None:
        """Give a slot back: to the first waiter in line, if any."""
        while self._waiters:
            waiter = heapq.heappop(self._waiters)
            if waiter.gone:
                continue
            waiter.granted = True
            self._waiting -= 1
            waiter.event.set()
            return
        self._held -= 1
        assert self._held >= 0, "StepGate released more often than acquired"


@final
class TagGates:
    """Executor tag limits of one run: one ``StepGate`` per tag bucket.

    A step takes a slot of every bucket its asset's tags count against (in one
    order, so two steps never hold one each of two they both need), before it
    takes an executor slot; it holds them until its attempt ends.

    Args:
        rules: the executor's ``tag_concurrency_limits``, as limit rules.
    """

    __slots__ = ("_gates", "_limits", "_rules")

    def __init__(self, rules: Sequence[LimitRule] = ()) -> None:
        self._rules = tuple(rules)
        self._limits: dict[str, int] = {}  # a bucket's rule -> the lowest limit given
        for rule in self._rules:
            self._limits[rule.ident] = min(
                rule.limit, self._limits.get(rule.ident, rule.limit)
            )
        self._gates: dict[Bucket, StepGate] = {}

    def hold(
        self, tags: Mapping[str, str], priority: int
    ) -> AbstractAsyncContextManager[None]:
        """Hold a slot of each bucket ``tags`` count against (nothing if none)."""
        if not self._rules:
            return _NOTHING
        # One gate per bucket, taken in one order: two rules naming the same bucket
        # are one gate (at the lower limit), never two holds of one gate.
        buckets = sorted(
            {b for rule in self._rules if (b := rule.bucket(tags))},
            key=lambda b: (b[0], b[1], b[2] or ""),
        )
        if not buckets:
            return _NOTHING
        return _hold_all([self._gate(bucket) for bucket in buckets], priority)

    def _gate(self, bucket: Bucket) -> StepGate:
        gate = self._gates.get(bucket)
        if gate is None:
            gate = self._gates[bucket] = StepGate(self._limits[bucket[0]])
        return gate


_NOTHING: AbstractAsyncContextManager[None] = nullcontext()


@asynccontextmanager
async def _hold_all(gates: list[StepGate], priority: int) -> AsyncIterator[None]:
    held: list[StepGate] = []
    try:
        for gate in gates:
            await gate.acquire(priority)
            held.append(gate)
        yield
    finally:
        for gate in reversed(held):
            gate.release()
