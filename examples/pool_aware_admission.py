"""Pool-aware admission: runs that would only wait on a full pool stay queued.

Run it with ``python examples/pool_aware_admission.py`` (about 2 seconds). A nightly
load holds the one slot of pool ``warehouse``; four warehouse queries are then
submitted, and a report that needs no pool last of all. With
``RunQueueConfig(block_pool_limited_runs=True)`` the queries stay QUEUED (``runs
why``: their first steps all wait on a full pool) instead of taking the two run
slots, so the report starts at once; when the load ends, the queries go one at a
time. Storage is a throwaway directory.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
import time

import rivers as rs

STARTED: dict[str, float] = {}
load_started = asyncio.Event()
load_done = asyncio.Event()


@rs.Asset(pool="warehouse")
async def nightly_load() -> None:
    load_started.set()  # it holds its warehouse slot from here
    await load_done.wait()


@rs.Asset(pool="warehouse")
async def query(context: rs.StepContext) -> None:
    STARTED[context.run_id] = time.monotonic()
    await asyncio.sleep(0.2)


@rs.Asset
async def report() -> None:
    STARTED["report"] = time.monotonic()


repo = rs.CodeRepository(
    [nightly_load, query, report],
    pool_limits={"warehouse": 1},
    run_queue=rs.RunQueueConfig(
        max_concurrent_runs=2, dequeue_interval="50ms", block_pool_limited_runs=True
    ),
)


async def demo() -> None:
    async with rs.Runtime(repo) as rt:
        load = asyncio.create_task(rt.materialize(["nightly_load"]))
        await load_started.wait()
        queries = [
            await rt.submit(rs.RunRequest(selection=["query"])) for _ in range(4)
        ]
        report_run = await rt.submit(rs.RunRequest(selection=["report"]))
        print("nightly_load holds warehouse 1/1; submitted 4 queries, then a report")
        record = await report_run.wait()
        print(f"report: {record.status.value} while the load still runs")
        print(f"a query waits: {await rt.explain(queries[0].run_id)}")
        load_done.set()
        await load
        records = [await handle.wait() for handle in queries]
    starts = sorted(STARTED[r.run_id] for r in records)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    print(f"queries: {', '.join(sorted({r.status.value for r in records}))}")
    print(f"queries started one at a time: {all(gap >= 0.15 for gap in gaps)}")


def main() -> None:
    # A throwaway RIVERS_HOME: the demo starts empty and leaves nothing behind.
    with tempfile.TemporaryDirectory(prefix="rivers-example-") as home:
        os.environ["RIVERS_HOME"] = home
        asyncio.run(demo())


if __name__ == "__main__":
    main()
