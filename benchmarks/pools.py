"""Pools: 40 x 50 ms steps in a pool of 4 (wall vs ideal), and claim+release rate.

Workload 1: 40 independent async assets, each sleeping 50 ms, all in pool "db" with
limit 4, one run with ``Executor.parallel()`` on the default SQLite storage. The
ideal wall time is 40 / 4 x 50 ms = 0.5 s; the figure is wall / ideal.
Workload 2: claim+release round trips through the runtime's PoolManager, each
claim a durable ``BEGIN IMMEDIATE`` transaction with a lease, each release a
transaction; reported per second.

Run: ``python -m benchmarks.pools [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any

import anyio

import rivers as rs
from rivers.materialize import uvloop_available

STEPS = 40
SLEEP_S = 0.05
LIMIT = 4
ROUND_TRIPS = 2000


def pooled_assets() -> list[rs.Asset[Any, Any]]:
    """Return 40 async assets that sleep 50 ms in pool 'db'."""
    assets = []
    for index in range(STEPS):

        async def body() -> None:
            await anyio.sleep(SLEEP_S)

        body.__name__ = f"q{index}"
        assets.append(rs.Asset(body, pool="db"))
    return assets


async def measure(repeat: int) -> tuple[list[float], list[float]]:
    """Return (wall seconds per run, round trips per second)."""
    repo = rs.CodeRepository(pooled_assets(), pool_limits={"db": LIMIT})
    walls: list[float] = []
    rates: list[float] = []
    async with rs.Runtime(repo) as rt:
        await rt.materialize()
        for _ in range(repeat):
            began = time.perf_counter()
            result = await rt.materialize()
            walls.append(time.perf_counter() - began)
            assert result.success
            began = time.perf_counter()
            for index in range(ROUND_TRIPS):
                claim = await rt.pools.acquire(
                    run_id="bench",
                    step_key=f"s{index}",
                    pools=("db",),
                    slots=1,
                    priority=0,
                    wait=True,
                )
                assert claim is not None
                await rt.pools.release(claim)
            rates.append(ROUND_TRIPS / (time.perf_counter() - began))
    return walls, rates


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["RIVERS_HOME"] = home
        walls, rates = anyio.run(
            measure, args.repeat, backend_options={"use_uvloop": uvloop_available()}
        )
    ideal = STEPS / LIMIT * SLEEP_S
    median = statistics.median(walls)
    print(
        f"pool of {LIMIT}, {STEPS} x {SLEEP_S * 1000:.0f} ms steps: median {median:.3f}s "
        f"(min {min(walls):.3f}s, max {max(walls):.3f}s) = {median / ideal:.3f} x ideal"
    )
    print(
        f"claim+release round trips (durable): median {statistics.median(rates):.0f}/s "
        f"(min {min(rates):.0f}, max {max(rates):.0f})"
    )


if __name__ == "__main__":
    main()
