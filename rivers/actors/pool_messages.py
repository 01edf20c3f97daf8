"""What the PoolManager tells about its waiters and claims: events and PoolTooSmall.

Pure functions of a ``core.pools.PoolState`` and a claim or waiter: no I/O, no awaits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rivers.errors import PoolTooSmall
from rivers.messages import PoolSlotsReleased, StepPoolBlocked, StepPoolClaimed

if TYPE_CHECKING:
    from rivers.actors.pool_claim import Claim
    from rivers.core.pools import PoolState, Waiter

__all__ = ("blocked_event", "claimed_event", "released_event", "too_small")


def too_small(
    state: PoolState, step_key: str, pools: tuple[str, ...], slots: int
) -> PoolTooSmall | None:
    """The PoolTooSmall of a claim that could never fit (a pool's limit is below
    ``slots``), else None."""
    pool = state.impossible(pools, slots)
    if pool is None:
        return None
    limit = state.limits[pool]
    assert limit is not None
    return PoolTooSmall(step_key, pool, slots, limit)


def blocked_event(state: PoolState, waiter: Waiter) -> StepPoolBlocked:
    """The STEP_POOL_BLOCKED event of a waiter just put in line.

    It names the first of the waiter's pools that is full for it (the first pool
    when none is), with that pool's claimed slots, limit (-1: none) and the
    waiter's place in its line.
    """
    run_id, step_key = waiter.key
    binding = waiter.pools[0]
    for pool in waiter.pools:
        limit = state.limits.get(pool)
        if limit is not None and state.claimed.get(pool, 0) + waiter.slots > limit:
            binding = pool
            break
    limit = state.limits.get(binding)
    return StepPoolBlocked(
        run_id=run_id,
        step_key=step_key,
        pool=binding,
        claimed=state.claimed.get(binding, 0),
        limit=-1 if limit is None else limit,
        position=state.position(waiter.key, binding),
    )


def claimed_event(claim: Claim, waited_s: float) -> StepPoolClaimed:
    """The STEP_POOL_CLAIMED event of a fresh claim."""
    return StepPoolClaimed(
        run_id=claim.run_id,
        step_key=claim.step_key,
        pools=claim.pools,
        slots=claim.slots,
        waited_s=waited_s,
    )


def released_event(claim: Claim, now: float) -> PoolSlotsReleased:
    """The POOL_SLOTS_RELEASED event of a claim given back at ``now`` (monotonic)."""
    return PoolSlotsReleased(
        run_id=claim.run_id,
        step_key=claim.step_key,
        pools=claim.pools,
        slots=claim.slots,
        held_s=now - claim.claimed_at,
    )
