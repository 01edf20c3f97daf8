"""Run queue: 1,000 one-step runs through the queue, and one tick over 100,000 queued.

Workload 1: a repository with one trivial async asset and
``RunQueueConfig(max_concurrent_runs=10, dequeue_interval="50ms")``; 1,000 runs are
submitted with ``rt.submit`` on the default SQLite storage and waited for; reported
as runs per second end to end, with admission latency (submit to RUN_DEQUEUED)
p50 and p99.
Workload 2: 100,000 QUEUED runs (written straight into storage) spread over 20 tag
limits (``tenant=t0..t19`` with limit 1 each; every run carries one tenant tag),
``max_concurrent_runs=10``; after the coordinator has indexed them, the cost of one
tick (read new rows, count in flight, decide, admit what fits) is timed.

Run: ``python -m benchmarks.run_queue``.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import tempfile
import time

import anyio

import rivers as rs
from rivers._ids import new_run_id
from rivers.materialize import uvloop_available


@rs.Asset
async def one() -> int:
    return 1


async def throughput(count: int = 1000) -> tuple[float, list[float]]:
    """Return (runs per second, admission latencies in seconds)."""
    repo = rs.CodeRepository(
        [one],
        run_queue=rs.RunQueueConfig(max_concurrent_runs=10, dequeue_interval="50ms"),
    )
    async with rs.Runtime(repo) as rt:
        began = time.perf_counter()
        handles = [await rt.submit(rs.RunRequest()) for _ in range(count)]
        for handle in handles:
            await handle.wait()
        elapsed = time.perf_counter() - began
        await anyio.sleep(0.2)
        events = await rt.storage.get_events(kinds=["RUN_ENQUEUED", "RUN_DEQUEUED"])
    latencies = [e.data["waited_s"] for e in events if e.kind == "RUN_DEQUEUED"]
    return count / elapsed, latencies


async def tick_cost(queued: int = 100_000, tenants: int = 20) -> list[float]:
    """Return the seconds of several steady-state ticks over ``queued`` runs."""
    limits = [
        rs.TagConcurrencyLimit(key="tenant", value=f"t{i}", limit=1)
        for i in range(tenants)
    ]
    repo = rs.CodeRepository(
        [one],
        run_queue=rs.RunQueueConfig(
            max_concurrent_runs=10, dequeue_interval="1h", tag_concurrency_limits=limits
        ),
    )
    async with rs.open_storage() as storage:
        await _bulk_insert(storage, queued, tenants)
    async with rs.Runtime(repo) as rt:
        coordinator = rt._coordinator
        assert coordinator is not None
        while coordinator._last_rowid < queued:  # index every queued run first
            await coordinator.tick()
        times = []
        for _ in range(5):
            began = time.perf_counter()
            await coordinator.tick()
            times.append(time.perf_counter() - began)
        await rt.drain(0)
    return times


async def _bulk_insert(
    storage: rs.storage.SqliteStorage, queued: int, tenants: int
) -> None:
    import msgspec

    now = time.time()
    rows = [
        (
            new_run_id(),
            "QUEUED",
            "default",
            msgspec.json.encode({"tenant": f"t{i % tenants}"}).decode(),
            now + i * 1e-6,
        )
        for i in range(queued)
    ]

    def write(conn: sqlite3.Connection) -> None:
        conn.executemany(
            "INSERT INTO runs (run_id, status, repository, tags, priority, created_at) "
            "VALUES (?, ?, ?, ?, 0, ?)",
            rows,
        )
        conn.executemany(
            "INSERT INTO run_tags (run_id, key, value) VALUES (?, 'tenant', ?)",
            [(r[0], f"t{i % tenants}") for i, r in enumerate(rows)],
        )

    await storage._write(write)


def main() -> None:
    """Print the figures."""
    with tempfile.TemporaryDirectory() as home:
        os.environ["RIVERS_HOME"] = home
        rate, latencies = anyio.run(
            throughput, backend_options={"use_uvloop": uvloop_available()}
        )
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"1,000 one-step runs through the queue (max 10, 50 ms interval): {rate:.0f} runs/s, "
        f"admission latency p50 {p50 * 1000:.1f} ms p99 {p99 * 1000:.1f} ms"
    )
    with tempfile.TemporaryDirectory() as home:
        os.environ["RIVERS_HOME"] = home
        ticks = anyio.run(tick_cost, backend_options={"use_uvloop": uvloop_available()})
    print(
        f"one tick, 100,000 queued runs, 20 tag limits: median "
        f"{statistics.median(ticks) * 1000:.2f} ms (min {min(ticks) * 1000:.2f}, "
        f"max {max(ticks) * 1000:.2f})"
    )


if __name__ == "__main__":
    main()
