"""What limit should a pool have? Replay its recorded history at other limits.

Every pool use is on record: a step arrived at the pool (``STEP_POOL_CLAIMED``'s time
less its ``waited_s``), held its slots for ``held_s`` (``POOL_SLOTS_RELEASED``), with
so many slots. ``replay`` runs those arrivals and hold times through the same pure
pool core the ``PoolManager`` decides with (``PoolState``: priority then arrival, a
large claim at the head is never overtaken) at a given limit, as a discrete-event
simulation, and returns the waits each step would have had and the pool's
utilisation. ``advise`` does that for a range of limits and says where waits stop
changing.

The model: hold times do not depend on the limit (a step that waited did not run
faster or slower), and only this pool limits the steps (a step naming several pools
is replayed against this one). Steps still holding at the end of the window count
with the time held so far.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

from rivers.core.pools import PoolState

__all__ = (
    "Hold",
    "Outcome",
    "advise",
    "peak_demand",
    "percentile",
    "replay",
    "saturation",
)

MAX_CANDIDATES = 64
"""The most limits ``advise`` replays."""


@dataclass(frozen=True, slots=True)
class Hold:
    """One recorded use of the pool: when the step arrived, how long it held, how much."""

    key: str
    arrived_s: float
    held_s: float
    slots: int = 1
    priority: int = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    """The waits and utilisation of one limit over the replayed history."""

    limit: int
    steps: int
    p50_wait_s: float
    p95_wait_s: float
    max_wait_s: float
    mean_wait_s: float
    utilisation: float
    """Slot-seconds held / (limit x the replay's span), 0..1."""
    waits: tuple[float, ...]
    """Each step's wait, in the order of ``holds``."""


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def replay(holds: list[Hold], limit: int) -> Outcome:
    """Replay ``holds`` through a pool of ``limit`` slots.

    Raises:
        ValueError: ``limit`` < 1, or a hold needs more slots than ``limit``.
    """
    if limit < 1:
        raise ValueError(f"a replayed limit must be >= 1, got {limit}")
    too_big = next((h for h in holds if h.slots > limit), None)
    if too_big is not None:
        raise ValueError(f"{too_big.key} needs {too_big.slots} slots, above {limit}")
    pool = ("pool",)
    state = PoolState(limits={"pool": limit})
    waits = [0.0] * len(holds)
    # (time, 0 = a release before an arrival at the same instant, seq, index)
    agenda: list[tuple[float, int, int, int]] = []
    arrival_order = sorted(range(len(holds)), key=lambda i: holds[i].arrived_s)
    for order, index in enumerate(arrival_order):
        heapq.heappush(agenda, (holds[index].arrived_s, 1, order, index))
    seq = len(holds)
    first = min((h.arrived_s for h in holds), default=0.0)
    last = first
    busy = 0.0

    def start(index: int, at: float) -> None:
        nonlocal seq, busy, last
        hold = holds[index]
        waits[index] = at - hold.arrived_s
        busy += hold.held_s * hold.slots
        seq += 1
        heapq.heappush(agenda, (at + hold.held_s, 0, seq, index))
        last = max(last, at + hold.held_s)

    while agenda:
        now, kind, _, index = heapq.heappop(agenda)
        hold = holds[index]
        if kind == 0:
            state.release(pool, hold.slots)
            for waiter in state.grants():
                start(int(waiter.key[1]), now)
        elif state.may_claim_now(pool, hold.slots, hold.priority):
            state.claim(pool, hold.slots)
            start(index, now)
        else:
            state.add(("", str(index)), pool, hold.slots, hold.priority)
    span = last - first
    values = list(waits)
    return Outcome(
        limit=limit,
        steps=len(holds),
        p50_wait_s=percentile(values, 50),
        p95_wait_s=percentile(values, 95),
        max_wait_s=max(values, default=0.0),
        mean_wait_s=sum(values) / len(values) if values else 0.0,
        utilisation=min(1.0, busy / (limit * span)) if span > 0 else 0.0,
        waits=tuple(waits),
    )


def peak_demand(holds: list[Hold]) -> int:
    """The most slots in use at once if nobody had waited (arrival to arrival + hold)."""
    edges: list[tuple[float, int]] = []
    for hold in holds:
        edges.append((hold.arrived_s, hold.slots))
        edges.append((hold.arrived_s + hold.held_s, -hold.slots))
    edges.sort(key=lambda edge: (edge[0], edge[1]))  # ends before starts at a tie
    peak = used = 0
    for _, change in edges:
        used += change
        peak = max(peak, used)
    return peak


def advise(holds: list[Hold], current: int | None) -> list[Outcome]:
    """Replay ``holds`` at every limit from the smallest that fits to where waits end.

    The range runs from the largest single claim up to the peak demand (past it no
    step waits), and always includes ``current`` when set; at most
    ``MAX_CANDIDATES`` limits, spread evenly above that.
    """
    if not holds:
        return []
    low = max(h.slots for h in holds)
    high = max(low, peak_demand(holds))
    if current is not None and current >= low:
        high = max(high, current)
    limits = list(range(low, high + 1))
    if len(limits) > MAX_CANDIDATES:
        step = (high - low) / (MAX_CANDIDATES - 1)
        limits = sorted({low + round(i * step) for i in range(MAX_CANDIDATES)})
        if current is not None and current >= low and current not in limits:
            limits = sorted({*limits, current})
    return [replay(holds, limit) for limit in limits]


def saturation(outcomes: list[Outcome]) -> Outcome | None:
    """The smallest limit whose waits equal those of the largest replayed one."""
    if not outcomes:
        return None
    best = outcomes[-1]
    for outcome in outcomes:
        if math.isclose(
            outcome.p95_wait_s, best.p95_wait_s, abs_tol=1e-6
        ) and math.isclose(outcome.mean_wait_s, best.mean_wait_s, abs_tol=1e-6):
            return outcome
    return best
