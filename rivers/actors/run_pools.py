"""Run-granularity pools: one slot of each pool, held by the run from its first step
to its end (``CodeRepository(pool_granularity="run")``, Dagster's ``pools.granularity:
run``)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio

from rivers.errors import LeaseLost

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from rivers.actors.ports import PoolClaims

__all__ = ("RUN_CLAIM_KEY", "hold_run_pools")

RUN_CLAIM_KEY = "(run)"
"""The step key of a run's own claim (no asset can be named so)."""


@asynccontextmanager
async def hold_run_pools(
    pools: PoolClaims,
    run_id: str,
    names: tuple[str, ...],
    priority: int,
    on_lost: Callable[[LeaseLost], None],
) -> AsyncIterator[None]:
    """Hold one slot of each of ``names`` for the block (nothing when empty).

    The run waits in each pool's line like a step (by its priority, then arrival).
    If its claim is lost (lease reclaimed, freed by hand), the block is cancelled and
    ``on_lost`` gets the ``LeaseLost`` that fails the run.
    """
    if not names:
        yield
        return
    claim = await pools.acquire(
        run_id=run_id,
        step_key=RUN_CLAIM_KEY,
        pools=names,
        slots=1,
        priority=priority,
        wait=True,
    )
    assert claim is not None  # waited for
    with anyio.CancelScope() as guarded:
        claim.cancel_on_loss(guarded)
        try:
            yield
        finally:
            await pools.release(claim)
    if claim.lost:
        on_lost(LeaseLost(run_id, RUN_CLAIM_KEY, names[0], revoked=claim.revoked))
