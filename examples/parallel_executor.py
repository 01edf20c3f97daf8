"""Executor step parallelism: one run with a wide level, shaped by the executor.

Run it with ``python examples/parallel_executor.py`` (about 2 seconds). After one
``regions`` step, a run fans out into 9 sync ``parse_*`` steps (CPU work: worker
processes) and 6 async ``fetch_*`` steps (I/O: the event loop).
``Executor.parallel(max_workers=3, max_async_concurrent=2)`` runs at most 3 sync
and 2 async steps at once; each step starts as soon as ``regions`` is done. The
step records show the peaks and the worker processes. Storage is a throwaway
directory.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import rivers as rs

REGIONS = ["eu", "us", "apac"]
MAX_WORKERS = 3
MAX_ASYNC = 2


@rs.Asset
def regions() -> list[str]:
    return REGIONS


def parse_step(day: int) -> rs.Asset[..., Any]:
    """A sync step: it runs in one of the executor's worker processes."""

    def parse(regions: list[str]) -> int:
        time.sleep(0.3)  # stands in for parsing a day of logs
        return day * len(regions)

    return rs.Asset(parse, name=f"parse_day_{day}")


def fetch_step(region: str, source: str) -> rs.Asset[..., Any]:
    """An async step: it runs on the event loop, next to the runtime."""

    async def fetch(regions: list[str]) -> str:
        await asyncio.sleep(0.3)  # stands in for a call to a rate-limited API
        return f"{source}/{region}"

    return rs.Asset(fetch, name=f"fetch_{source}_{region}")


PARSE = [parse_step(day) for day in range(1, 10)]
FETCH = [fetch_step(region, source) for region in REGIONS for source in ("crm", "ads")]

repo = rs.CodeRepository(
    [regions, *PARSE, *FETCH],
    executor=rs.Executor.parallel(
        max_workers=MAX_WORKERS, max_async_concurrent=MAX_ASYNC
    ),
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


def main() -> None:
    # A throwaway RIVERS_HOME: the demo starts empty and leaves nothing behind.
    with tempfile.TemporaryDirectory(prefix="rivers-example-") as home:
        os.environ["RIVERS_HOME"] = home
        began = time.monotonic()
        result = repo.materialize()
        took = time.monotonic() - began

    print(
        f"run {result.run_id}: {result.status.value}, {len(result.step_records)} steps"
    )
    print(
        f"executor: parallel(max_workers={MAX_WORKERS}, max_async_concurrent={MAX_ASYNC})"
    )
    for kind, prefix, limit in [
        ("sync steps (worker processes)", "parse_", f"max_workers {MAX_WORKERS}"),
        ("async steps (event loop)", "fetch_", f"max_async_concurrent {MAX_ASYNC}"),
    ]:
        steps = [s for s in result.step_records if s.step_key.startswith(prefix)]
        workers = sorted({s.worker or "?" for s in steps})
        print(f"{kind}: {len(steps)} steps, peak {peak_overlap(steps)} <= {limit}")
        print(f"  ran on: {', '.join(workers)}")
    serial = 0.3 * (len(PARSE) + len(FETCH))
    print(f"wall time {took:.1f} s (one step at a time: {serial:.1f} s)")
    if not result.success:
        raise SystemExit(f"failed: {result.error}")


if __name__ == "__main__":
    main()
