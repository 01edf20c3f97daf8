"""Workload 5 — run queue: 1,000 one-step runs through the queue, one tick over 100,000.

Workload A: a repository with one trivial async asset and
``RunQueueConfig(max_concurrent_runs=10, dequeue_interval="50ms")``; 1,000 runs
are submitted with ``rt.submit`` on the default SQLite storage and waited for;
reported as runs per second end to end, with admission latency (submit to
RUN_DEQUEUED, the ``waited_s`` of that event) p50 and p99 over the runs of each
repeat.
Workload B: 100,000 QUEUED runs (written straight into storage) spread over 20
tag limits (``tenant=t0..t19`` with limit 1 each; every run carries one tenant
tag), ``max_concurrent_runs=10``; after the coordinator has indexed them, the
cost of one tick (read new rows, count in flight, decide, admit what fits) is
timed, 2 x ``--repeat`` ticks.
Workload C: 10,000 QUEUED runs of an asset in pool ``db`` (limit 1, held by a claim
of the test), ``RunQueueConfig(block_pool_limited_runs=True)``: the cost of one
steady-state tick, in which pool-aware admission reads the pool and keeps every run
queued (2 x ``--repeat`` ticks).
``--quick``: 30 runs, and a tick over 2,000 queued runs.

Run: ``python -m benchmarks.run_queue [--repeat 5] [--quick]``.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import anyio
import msgspec

import rivers as rs
from benchmarks.figures import Figure, module_main, percentile, temporary_home
from rivers._ids import new_run_id
from rivers.materialize import run_sync
from rivers.storage import default_storage_path

RUNS = 1000
QUEUED = 100_000
TENANTS = 20
QUICK_RUNS = 30
QUICK_QUEUED = 2000


@rs.Asset
async def one() -> int:
    return 1


async def throughput(count: int) -> tuple[float, list[float]]:
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
        events = await rt.storage.get_events(kinds=["RUN_DEQUEUED"])
    latencies = [e.data["waited_s"] for e in events if e.run_id in _ids(handles)]
    return count / elapsed, latencies


def _ids(handles: list[rs.RunHandle]) -> set[str]:
    return {handle.run_id for handle in handles}


async def tick_cost(queued: int, ticks: int, tenants: int = TENANTS) -> list[float]:
    """Return the seconds of ``ticks`` steady-state ticks over ``queued`` runs."""
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
    last_rowid = await _queue_up(queued, tenants)
    async with rs.Runtime(repo) as rt:
        times = [
            seconds for seconds, _ in await _steady_ticks(rt, repo, last_rowid, ticks)
        ]
        await rt.drain(0)
    return times


async def _queue_up(queued: int, tenants: int) -> int:
    """Write ``queued`` QUEUED runs into the default storage; return the last rowid."""
    async with rs.open_storage():
        pass  # creates and migrates the file
    return _bulk_insert(default_storage_path(), queued, tenants)


async def _steady_ticks(
    rt: rs.Runtime, repo: rs.CodeRepository, last_rowid: int, ticks: int
) -> list[tuple[float, int]]:
    """Index every queued run, then time ``ticks`` ticks: (seconds, runs admitted)."""
    assert rt._desk is not None
    coordinator = rt._desk.queues.get(repo.name)
    while coordinator._last_rowid < last_rowid:
        await coordinator.tick()
    measured = []
    for _ in range(ticks):
        began = time.perf_counter()
        admitted = await coordinator.tick()
        measured.append((time.perf_counter() - began, admitted))
    return measured


@rs.Asset(pool="db")
async def pooled() -> int:
    return 1


async def pool_aware_tick_cost(queued: int, ticks: int) -> list[float]:
    """Return the seconds of steady-state ticks over ``queued`` runs whose only step
    waits on a full pool, with ``block_pool_limited_runs`` on (workload C)."""
    repo = rs.CodeRepository(
        [pooled],
        pool_limits={"db": 1},
        run_queue=rs.RunQueueConfig(
            max_concurrent_runs=10, dequeue_interval="1h", block_pool_limited_runs=True
        ),
    )
    last_rowid = await _queue_up(queued, TENANTS)
    async with rs.Runtime(repo) as rt:
        claim = await rt._roles.pools.claim_pool_slots(  # the pool is full
            run_id="holder",
            step_key="pooled",
            pools=("db",),
            slots=1,
            owner=rt.owner,
            lease_s=3600,
        )
        assert claim.granted
        measured = await _steady_ticks(rt, repo, last_rowid, ticks)
        assert all(n == 0 for _, n in measured), "a run was admitted past a full pool"
        await rt._roles.pools.release_pool_slots("holder", "pooled")
        await rt.drain(0)
    return [seconds for seconds, _ in measured]


def _bulk_insert(path: Path, queued: int, tenants: int) -> int:
    """Write ``queued`` QUEUED runs in one transaction; return the last rowid."""
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

    def write(conn: sqlite3.Connection) -> int:
        conn.executemany(
            "INSERT INTO runs (run_id, status, repository, tags, priority, created_at) "
            "VALUES (?, ?, ?, ?, 0, ?)",
            rows,
        )
        conn.executemany(
            "INSERT INTO run_tags (run_id, key, value, created_at) "
            "VALUES (?, 'tenant', ?, ?)",
            [(r[0], f"t{i % tenants}", r[4]) for i, r in enumerate(rows)],
        )
        last: int = conn.execute("SELECT MAX(rowid) FROM runs").fetchone()[0]
        return last

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        last = write(conn)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return last


def collect(repeat: int, quick: bool) -> list[Figure]:
    """Return the queue's throughput, admission latencies and tick cost."""
    runs, queued = (QUICK_RUNS, QUICK_QUEUED) if quick else (RUNS, QUEUED)
    rates: list[float] = []
    p50s: list[float] = []
    p99s: list[float] = []
    for _ in range(repeat):
        rate, waited = run_sync(throughput, runs)
        rates.append(rate)
        p50s.append(percentile(waited, 0.5) * 1000)
        p99s.append(percentile(waited, 0.99) * 1000)
    ticks: list[float] = run_sync(tick_cost, queued, 2 * repeat)
    with temporary_home():
        pool_ticks: list[float] = run_sync(
            pool_aware_tick_cost, queued // 10, 2 * repeat
        )
    return [
        Figure(
            "run_queue",
            "1,000 one-step runs through the queue",
            "runs/s",
            rates,
            better="higher",
        ),
        Figure("run_queue", "admission latency p50", "ms", p50s),
        Figure("run_queue", "admission latency p99", "ms", p99s),
        Figure(
            "run_queue",
            "one tick, 100,000 queued runs, 20 tag limits",
            "ms",
            [tick * 1000 for tick in ticks],
        ),
        Figure(
            "run_queue",
            f"one tick, {queued // 10:,} queued runs on a full pool, pool-aware",
            "ms",
            [tick * 1000 for tick in pool_ticks],
        ),
    ]


if __name__ == "__main__":
    module_main(collect, __doc__)
