"""Run queue: a burst of 8 runs, at most 2 in flight at once.

Run it with ``python examples/run_queue.py`` (about 2 seconds). Eight runs are
submitted at once; ``RunQueueConfig(max_concurrent_runs=2)`` admits two at a time,
highest ``priority`` first, so an urgent run submitted last jumps the line.
``rt.explain()`` says why each queued run waits, and the run records show that no
more than two runs were ever in flight. Storage is a throwaway directory.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Sequence

import rivers as rs


@rs.Asset
async def refresh_dashboard(context: rs.StepContext) -> None:
    context.log.info("refreshing for %s", context.run_tags["customer"])
    await asyncio.sleep(0.4)  # stands in for real work


repo = rs.CodeRepository(
    [refresh_dashboard],
    run_queue=rs.RunQueueConfig(max_concurrent_runs=2, dequeue_interval="100ms"),
)


def peak_overlap(records: Sequence[rs.RunRecord | rs.StepRecord]) -> int:
    """The most records in progress at one moment, from their start and end times."""
    edges = []
    for record in records:
        if record.started_at and record.ended_at:
            edges += [(record.started_at, 1), (record.ended_at, -1)]
    peak = running = 0
    for _, change in sorted(edges):  # at a tie an end (-1) comes before a start
        running += change
        peak = max(peak, running)
    return peak


async def burst() -> None:
    async with rs.Runtime(repo) as rt:
        customers = [f"c{n}" for n in range(7)]
        handles = [
            await rt.submit(rs.RunRequest(tags={"customer": customer}))
            for customer in customers
        ]
        urgent = rs.RunRequest(tags={"customer": "urgent"}, priority=10)
        handles.append(await rt.submit(urgent))
        print(f"submitted {len(handles)} runs; max_concurrent_runs=2")

        await asyncio.sleep(0.2)  # the coordinator admits the first two
        for handle, customer in zip(handles, [*customers, "urgent"], strict=True):
            print(f"  {customer:<7} {await rt.explain(handle.run_id)}")

        records = [await handle.wait() for handle in handles]

    # Admission order: the coordinator admits by priority, then submission time.
    admitted = sorted(
        records, key=lambda r: (r.started_at or r.created_at, -r.priority, r.created_at)
    )
    order = ", ".join(r.tags["customer"] for r in admitted)
    print(f"admission order: {order}")
    position = [r.tags["customer"] for r in admitted].index("urgent") + 1
    print(f"urgent run (priority 10) admitted {position} of {len(records)}")
    statuses = {r.status.value for r in records}
    print(f"all runs: {', '.join(sorted(statuses))}")
    print(f"peak {peak_overlap(records)} runs in flight <= max_concurrent_runs 2")


def main() -> None:
    # A throwaway RIVERS_HOME: the demo starts empty and leaves nothing behind.
    with tempfile.TemporaryDirectory(prefix="rivers-example-") as home:
        os.environ["RIVERS_HOME"] = home
        asyncio.run(burst())


if __name__ == "__main__":
    main()
