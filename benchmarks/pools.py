"""Workload 4 — pools: 40 x 50 ms steps in a pool of 4 (wall / ideal), claim+release rate.

Workload A: 40 independent async assets, each sleeping 50 ms, all in pool "db" with
limit 4, one run with ``Executor.parallel()`` on the default SQLite storage
(temporary ``RIVERS_HOME``), on a runtime that already ran it once. The ideal
wall time is 40 / 4 x 50 ms = 0.5 s; the figures are the wall time and wall / ideal.
Workload B: 2,000 claim+release round trips through the runtime's PoolManager,
each claim a durable ``BEGIN IMMEDIATE`` transaction with a lease, each release a
transaction; reported per second.
``--quick``: 8 x 20 ms steps in a pool of 2, and 100 round trips.

Run: ``python -m benchmarks.pools [--repeat 5] [--quick]``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

import rivers as rs
from benchmarks.figures import Figure, module_main
from rivers.materialize import run_sync

STEPS = 40
SLEEP_S = 0.05
LIMIT = 4
ROUND_TRIPS = 2000
QUICK = (8, 0.02, 2, 100)


def pooled_assets(
    steps: int = STEPS, sleep_s: float = SLEEP_S, decorate: Any = None
) -> list[Any]:
    """Return ``steps`` async assets that sleep ``sleep_s`` in pool 'db'."""
    assets = []
    for index in range(steps):

        async def body() -> None:
            await anyio.sleep(sleep_s)

        body.__name__ = body.__qualname__ = f"q{index}"
        assets.append(rs.Asset(body, pool="db") if decorate is None else decorate(body))
    return assets


def ideal_s(steps: int = STEPS, sleep_s: float = SLEEP_S, limit: int = LIMIT) -> float:
    """Return the wall time of a perfect scheduler: full waves of ``limit`` steps."""
    return -(-steps // limit) * sleep_s


async def claim_release_rate(
    acquire: Callable[..., Awaitable[Any]],
    release: Callable[[Any], Awaitable[None]],
    trips: int,
    run_id: str = "bench",
) -> float:
    """Claim one slot of pool "db" and release it ``trips`` times, one after the
    other, through ``acquire`` and ``release`` (``PoolManager``'s, or a proxy of
    them); return the cycles per second."""
    began = time.perf_counter()
    for index in range(trips):
        claim = await acquire(
            run_id=run_id,
            step_key=f"s{index}",
            pools=("db",),
            slots=1,
            priority=0,
            wait=True,
        )
        assert claim is not None
        await release(claim)
    return trips / (time.perf_counter() - began)


def collect(repeat: int, quick: bool) -> list[Figure]:
    """Return the pooled run's walls and the claim+release round-trip rates."""
    steps, sleep_s, limit, trips = (
        QUICK if quick else (STEPS, SLEEP_S, LIMIT, ROUND_TRIPS)
    )
    repo = rs.CodeRepository(pooled_assets(steps, sleep_s), pool_limits={"db": limit})

    async def runs() -> tuple[list[float], list[float]]:
        walls: list[float] = []
        rates: list[float] = []
        async with rs.Runtime(repo) as rt:
            await rt.materialize()
            for _ in range(repeat):
                began = time.perf_counter()
                result = await rt.materialize()
                walls.append(time.perf_counter() - began)
                assert result.success, result.error
                pools = rt._pool_manager
                rates.append(
                    await claim_release_rate(pools.acquire, pools.release, trips)
                )
        return walls, rates

    walls, rates = run_sync(runs)
    ideal = ideal_s(steps, sleep_s, limit)
    return [
        Figure("pools", "40 x 50 ms in a pool of 4, wall", "s", walls),
        Figure(
            "pools",
            "40 x 50 ms in a pool of 4, wall / ideal",
            "x",
            [wall / ideal for wall in walls],
        ),
        Figure(
            "pools",
            "claim+release round trips (durable)",
            "/s",
            rates,
            better="higher",
        ),
    ]


if __name__ == "__main__":
    module_main(collect, __doc__)
