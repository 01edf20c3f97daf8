"""When will a waiting run or step start? A forecast from recent history (pure).

Every gate a run or step waits at is a set of units held for a while: the run queue
(``max_concurrent_runs`` runs), a tag bucket (its limit in runs), a pool (its limit
in slots). A forecast replays the gate forward: each holder frees its units once it
has held them for the mean hold of the recent past (counting what it has held
already), and the waiters ahead take freed units in line order, each for the mean
hold too; the waiter's expected start is the moment enough units are free for it
after everyone ahead has started. The basis (how many are ahead, what holds the
gate, the mean hold and how many holds it comes from) goes with every figure, and
the forecast is "unknown" when there is no history or the gate cannot open.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("HISTORY", "Forecast", "Gate", "approx_seconds", "forecast")

HISTORY = 50
"""How many recent holds (finished runs, pool releases) a forecast averages over."""


@dataclass(frozen=True, slots=True)
class Gate:
    """What a waiter faces: the gate's capacity and who holds and waits at it.

    ``holding`` is (units, seconds held so far) per holder; ``ahead`` the units of
    each waiter that starts before this one, in order; ``need`` this waiter's units;
    ``holds`` recent hold durations in seconds (newest first or any order).
    """

    label: str
    capacity: int
    holding: Sequence[tuple[int, float]]
    ahead: Sequence[int]
    need: int
    holds: Sequence[float]
    noun: str = "run"


@dataclass(frozen=True, slots=True)
class Forecast:
    """An expected wait in seconds (None: unknown) and the basis it rests on."""

    seconds: float | None
    basis: str

    def describe(self) -> str:
        """``expected in ~40 s (3 ahead, ...)`` or ``expected start unknown (...)``."""
        if self.seconds is None:
            return f"expected start unknown ({self.basis})"
        return f"expected in {approx_seconds(self.seconds)} ({self.basis})"


def approx_seconds(seconds: float) -> str:
    """Round a forecast for people: ``~0.4 s``, ``~12 s``, ``~3 min``, ``~2.5 h``."""
    if seconds < 1:
        return f"~{seconds:.1f} s"
    if seconds < 60:
        return f"~{seconds:.0f} s"
    if seconds < 3600:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"


def forecast(gate: Gate) -> Forecast:
    """Return the expected wait at ``gate`` with its basis."""
    if gate.capacity <= 0:
        return Forecast(None, f"{gate.label} is paused at limit 0")
    if gate.need > gate.capacity:
        return Forecast(
            None, f"needs {gate.need} of {gate.label}'s {gate.capacity}: raise it"
        )
    held = sum(units for units, _ in gate.holding)
    state = f"{len(gate.ahead)} ahead, {held}/{gate.capacity} held"
    if not gate.holds:
        return Forecast(None, f"{state}; no finished {gate.noun} to learn from yet")
    mean = sum(gate.holds) / len(gate.holds)
    seconds = _replay(gate, mean)
    count = len(gate.holds)
    last = f"the last {gate.noun}" if count == 1 else f"the last {count}"
    basis = f"{state}; a {gate.noun} holds it {approx_seconds(mean)}, mean of {last}"
    return Forecast(seconds, basis)


def _replay(gate: Gate, mean: float) -> float:
    """Replay the gate: when are enough units free for the waiter?"""
    free = gate.capacity
    ends: list[tuple[float, int]] = []  # (when a holder frees, its units)
    for units, held_s in gate.holding:
        free -= units
        heapq.heappush(ends, (max(mean - held_s, 0.0), units))
    now = 0.0
    for units in (*gate.ahead, gate.need):
        units = min(units, gate.capacity)  # a waiter never needs more than all
        while free < units:  # the capacity covers it once every holder is done
            now, freed = heapq.heappop(ends)
            free += freed
        free -= units
        heapq.heappush(ends, (now + mean, units))
    return now
