"""Run-granularity pools: one slot of each pool, held by the run from its first step
to its end (``CodeRepository(pool_granularity="run")``, Dagster's ``pools.granularity:
run``)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import anyio

    from rivers.actors.pools import PoolManager

__all__ = ("RUN_CLAIM_KEY", "hold_run_pools")

RUN_CLAIM_KEY = "(run)"
"""The step key of a run's own claim (no asset can be named so)."""


@asynccontextmanager
async def hold_run_pools(
    pools: PoolManager,
    run_id: str,
    names: tuple[str, ...],
    priority: int,
    on_loss: anyio.CancelScope,
) -> AsyncIterator[None]:
    """Hold one slot of each of ``names`` for the block (nothing when empty).

    The run waits in each pool's line like a step (by its priority, then arrival);
    if its claim is lost (lease reclaimed, freed by hand), ``on_loss`` is cancelled.
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
    claim.cancel_on_loss(on_loss)
    try:
        yield
    finally:
        await pools.release(claim)
