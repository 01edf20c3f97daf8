"""Watching rivers from outside and ahead of time: metrics, forecasts, advice, windows.

Run it with ``python examples/observability.py`` (about 3 seconds). A pool
``warehouse`` has 4 slots outside office hours and 1 during them
(``rs.PoolLimit(4, windows={"0 8-18 * * 1-5": 1})``, read in UTC). Two runs of six
steps each go through it while a Prometheus endpoint is served; halfway through,
``rt.explain()`` gives each waiting step its expected start, and a scrape of
``/metrics`` shows the pool. Afterwards ``rivers pools advise`` replays what
happened at other limits. Storage is a throwaway directory.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import urllib.request

import rivers as rs


def make(index: int) -> rs.Asset[[], object]:
    async def body() -> None:
        await asyncio.sleep(0.1 + 0.02 * index)  # stands in for a query

    body.__name__ = f"query_{index}"
    return rs.Asset(pool="warehouse")(body)


warehouse = rs.PoolLimit(4, windows={"0 8-18 * * 1-5": 1})
repo = rs.CodeRepository(
    [make(i) for i in range(6)],
    pool_limits={"warehouse": warehouse},
    executor=rs.Executor.parallel(max_async_concurrent=6),
)


async def waiting_steps(
    rt: rs.Runtime, pool: str, at_least: int
) -> list[rs.PendingStep]:
    """The steps waiting in ``pool``'s line, once there are ``at_least`` of them."""
    for _ in range(2000):
        line = await rt.storage.get_pending_steps(pool)
        if len(line) >= at_least:
            return line
        await asyncio.sleep(0.005)
    raise TimeoutError(f"fewer than {at_least} steps ever waited for pool {pool}")


def scrape(url: str) -> str:
    """What Prometheus would read at ``url``."""
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


async def demo() -> None:
    async with rs.Runtime(repo, metrics_addr="127.0.0.1:0") as rt:
        info = await rt.storage.get_pool_info("warehouse")
        window = warehouse.schedule().window_at(rt.clock.time())
        in_force = "no window" if window is None else f"window {window.cron!r}"
        print(f"warehouse limit now: {info.limit} ({in_force}, UTC)")
        await rt.materialize()  # the history the forecasts learn from
        run = asyncio.create_task(rt.materialize())
        line = await waiting_steps(rt, "warehouse", at_least=2)
        print((await rt.explain(line[0].run_id)).splitlines()[1].strip())
        assert rt.metrics_url is not None
        scraped = await asyncio.to_thread(scrape, rt.metrics_url)  # the loop serves it
        for metric in ("rivers_pool_limit_slots", "rivers_pool_claimed_slots"):
            sample = next(
                line for line in scraped.splitlines() if line.startswith(metric)
            )
            print(f"scraped: {sample}")
        await run


def advise() -> None:
    """What ``rivers pools advise warehouse`` says of the two runs."""
    advice = subprocess.run(
        [sys.executable, "-m", "rivers", "pools", "advise", "warehouse"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "120"},
    )
    print(advice.stdout.strip().splitlines()[-1])


def main() -> None:
    # A throwaway RIVERS_HOME: the demo starts empty and leaves nothing behind.
    with tempfile.TemporaryDirectory(prefix="rivers-example-") as home:
        os.environ["RIVERS_HOME"] = home
        asyncio.run(demo())
        advise()


if __name__ == "__main__":
    main()
