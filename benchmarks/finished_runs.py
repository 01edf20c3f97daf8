"""Workload 11 — a storage of a million finished runs: what each read command costs.

The storage holds N finished runs (80 % SUCCESS, 15 % FAILURE, 5 % CANCELED) of 5
repositories, created one every 2.6 s up to now (a million runs: a month), each
with an ``env`` and a ``team`` tag, 3 step rows and 10 events (RUN_STARTED,
STEP_STARTED and an outcome for each of 3 steps, two STEP_LOG lines or, for one
run in four, a claim and a release of pool ``db``, and the run's outcome), the
materializations of its successful steps; pools ``db`` (limit 4), ``api`` and
``gpu``, with 3 STARTED runs holding a slot of ``db`` each and 2 steps waiting in
its line. The rows are written straight through ``sqlite3`` (``executemany``)
into a file rivers created, before the storage is opened, so the build is not
what is measured.

Timed on one open storage, median over ``--repeat`` x 3 calls each: the storage
calls behind ``rivers runs list`` (the newest 20 runs, with ``--status
FAILURE``, and with ``--tag env=prod``), ``runs why`` of a finished run (by its
whole id, and by the 9-character suffix ``rivers top`` shows), ``runs logs`` of a
run (its STEP_LOG events), ``pools info db`` and one ``rivers top`` refresh
(``read_snapshot``); and ``rivers runs list`` end to end in a new interpreter
(wall time, start-up included).

N = 1,000,000 runs (10,000,000 events; the build takes minutes); ``--quick``:
20,000 runs.

Run: ``python -m benchmarks.finished_runs [--repeat 5] [--quick]``.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from benchmarks.figures import Figure, module_main
from rivers.materialize import run_sync
from rivers.storage import default_storage_path, open_backend

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator
    from pathlib import Path

    from rivers.storage.base import StorageBackend

RUNS = 1_000_000
QUICK_RUNS = 20_000
SPACING_S = 2.6
"""Seconds between two runs' creation: a million runs span a month."""
CHUNK = 20_000
"""Runs written per transaction."""
REPOSITORIES = 5
STEPS = ("extract", "transform", "load")
POOLS = {"db": 4, "api": 10, "gpu": 2}
HOLDERS = 3
WAITERS = 2


# ------------------------------------------------------------------ the build


def build(path: Path, runs: int) -> str:
    """Write ``runs`` finished runs, and the pools' in-flight runs, into the rivers
    storage at ``path`` (already migrated); return the id of the middle run."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = DELETE")  # rivers puts WAL back on open
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -262144")
        now = time.time()
        first = now - runs * SPACING_S - 600
        event_id = itertools.count(1)
        for start in range(0, runs, CHUNK):
            rows = _chunk(range(start, min(start + CHUNK, runs)), first, event_id)
            conn.execute("BEGIN")
            _write(conn, rows)
            conn.execute("COMMIT")
        _in_flight(conn, now, event_id)
        middle: str = conn.execute(
            "SELECT run_id FROM runs ORDER BY created_at LIMIT 1 OFFSET ?",
            (runs // 2,),
        ).fetchone()[0]
        return middle
    finally:
        conn.close()


Rows = dict[str, list[tuple[Any, ...]]]
SUCCESS_DATA = '{"attempt":1,"duration_s":1.5}'
CLAIMED_DATA = '{"pools":["db"],"slots":1,"waited_s":0.01}'
RELEASED_DATA = '{"pools":["db"],"slots":1,"held_s":1.5}'


def _status(i: int) -> str:
    """The status of run ``i``: 80 % SUCCESS, 15 % FAILURE, 5 % CANCELED."""
    if i % 20 in (3, 9, 15):
        return "FAILURE"
    return "CANCELED" if i % 20 == 7 else "SUCCESS"


def _chunk(numbers: range, first: float, event_id: Iterator[int]) -> Rows:
    """The rows of the runs ``numbers``."""
    rows: Rows = {"runs": [], "tags": [], "steps": [], "events": [], "mat": []}
    for i in numbers:
        created = first + i * SPACING_S
        run_id = f"{int(created * 1000):012x}{i:010x}"
        status = _status(i)
        env, team = ("prod", "dev")[i % 2], f"team{i % 10}"
        reason = None if status == "SUCCESS" else f"step load: {status}"
        rows["runs"].append(
            (
                run_id,
                status,
                f"repo{i % REPOSITORIES}",
                f'{{"env":"{env}","team":"{team}"}}',
                created,
                created + 0.5,
                created + 9.0,
                reason,
            )
        )
        rows["tags"] += [(run_id, "env", env, created), (run_id, "team", team, created)]
        _run_events(rows, run_id, status, created + 0.5, event_id, pooled=i % 4 == 0)
    return rows


def _run_events(
    rows: Rows,
    run_id: str,
    status: str,
    at: float,
    event_id: Iterator[int],
    *,
    pooled: bool,
) -> None:
    """A run's 3 step rows, its 10 events and its materializations."""

    def add(kind: str, step: str | None, when: float, data: str) -> int:
        number = next(event_id)
        rows["events"].append((number, kind, run_id, step, when, data))
        return number

    add("RUN_STARTED", None, at, '{"steps":3,"owner":"bench"}')
    for n, step in enumerate(STEPS):
        outcome = "SUCCESS" if n < 2 or status == "SUCCESS" else "FAILURE"
        began, ended = at + 1 + 2 * n, at + 2.5 + 2 * n
        rows["steps"].append((run_id, step, outcome, began, ended))
        add("STEP_STARTED", step, began, '{"attempt":1}')
        if pooled and n == 0:
            add("STEP_POOL_CLAIMED", step, began, CLAIMED_DATA)
            add("POOL_SLOTS_RELEASED", step, ended, RELEASED_DATA)
        elif not pooled and n < 2:
            message = f"{step} of {run_id}"
            add(
                "STEP_LOG",
                step,
                began + 0.5,
                f'{{"level":"INFO","message":"{message}"}}',
            )
        done = add(f"STEP_{outcome}", step, ended, SUCCESS_DATA)
        if outcome == "SUCCESS":
            rows["mat"].append((step, run_id, done, ended))
    add(f"RUN_{status}", None, at + 8.5, '{"duration_s":8.5}')


def _write(conn: sqlite3.Connection, rows: Rows) -> None:
    conn.executemany(
        "INSERT INTO runs (run_id, status, repository, tags, created_at, started_at, "
        "ended_at, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        rows["runs"],
    )
    conn.executemany(
        "INSERT INTO run_tags (run_id, key, value, created_at) VALUES (?, ?, ?, ?)",
        rows["tags"],
    )
    conn.executemany(
        "INSERT INTO steps (run_id, step_key, status, attempts, started_at, ended_at) "
        "VALUES (?, ?, ?, 1, ?, ?)",
        rows["steps"],
    )
    conn.executemany(
        "INSERT INTO events (event_id, kind, run_id, step_key, timestamp, data) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        rows["events"],
    )
    conn.executemany(
        "INSERT INTO materializations (asset_key, run_id, event_id, materialized_at) "
        "VALUES (?, ?, ?, ?)",
        rows["mat"],
    )


def _in_flight(conn: sqlite3.Connection, now: float, event_id: Iterator[int]) -> None:
    """Pools, and runs holding and waiting for a slot of ``db``."""
    owner = "bench:1:1"
    ids = [
        f"{int((now - 60 + n) * 1000):012x}ffffff{n:04x}"
        for n in range(HOLDERS + WAITERS)
    ]
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO pools (name, declared_limit, declared_by, updated_at) "
        "VALUES (?, ?, 'repo0', ?)",
        [(name, limit, now) for name, limit in POOLS.items()],
    )
    conn.execute(
        "INSERT INTO processes (owner, pid, host, started_at, heartbeat_at) "
        "VALUES (?, 1, 'bench', ?, ?)",
        (owner, now - 600, now + 3600),
    )
    for n, run_id in enumerate(ids):
        conn.execute(
            "INSERT INTO runs (run_id, status, repository, tags, created_at, started_at, "
            "owner) VALUES (?, 'STARTED', 'repo0', '{\"env\":\"prod\"}', ?, ?, ?)",
            (run_id, now - 60 + n, now - 59 + n, owner),
        )
        conn.execute(
            "INSERT INTO events (event_id, kind, run_id, step_key, timestamp, data) "
            "VALUES (?, 'RUN_STARTED', ?, NULL, ?, '{\"steps\":3}')",
            (next(event_id), run_id, now - 59 + n),
        )
        table = "pool_claims" if n < HOLDERS else "pending_steps"
        extra = (
            ("claimed_at", "lease_expires_at", now - 30, now + 600)
            if n < HOLDERS
            else ("priority", "enqueued_at", 0, now - 20 + n)
        )
        conn.execute(
            f"INSERT INTO {table} (pool, run_id, step_key, slots, owner, {extra[0]}, "
            f"{extra[1]}) VALUES ('db', ?, 'extract', 1, ?, ?, ?)",
            (run_id, owner, extra[2], extra[3]),
        )
    conn.execute("COMMIT")


# ------------------------------------------------------------------ the reads


async def _create(path: Path) -> None:
    async with open_backend(path):
        pass  # creates and migrates the file


def command_reads(
    run_id: str,
) -> dict[str, Callable[[StorageBackend], Awaitable[object]]]:
    """What each command reads, by figure name (``run_id``: a finished run).

    ``tests/storage/test_query_plans.py`` checks the plan of every statement."""
    from rivers.actors.limit_windows import stored_schedules
    from rivers.cli._storage import resolve_run_id
    from rivers.cli.runs import LOG_EVENT_KINDS
    from rivers.dashboard.snapshot import read_snapshot
    from rivers.explain import explain_run
    from rivers.storage.records import RunStatus

    async def why(storage: StorageBackend, text: str = run_id) -> str:
        return await explain_run(storage, await resolve_run_id(storage, text))

    async def logs(storage: StorageBackend) -> object:
        whole = await resolve_run_id(storage, run_id)
        await storage.runs.get_run(whole)
        return await storage.events.get_events(whole, kinds=LOG_EVENT_KINDS)

    async def pool_info(storage: StorageBackend) -> object:
        return (
            await stored_schedules(storage.state),
            await storage.pools.get_pool_info("db"),
            await storage.pools.get_pool_slot_holders("db"),
            await storage.pools.get_pending_steps("db"),
        )

    return {
        "runs list (newest 20)": lambda s: s.runs.get_runs(limit=20),
        "runs list --status FAILURE (newest 20)": lambda s: s.runs.get_runs(
            status=RunStatus.FAILURE, limit=20
        ),
        "runs list --tag env=prod (newest 20)": lambda s: s.runs.get_runs(
            tags={"env": "prod"}, limit=20
        ),
        "runs why <finished run>": why,
        "runs why <9-char suffix>": lambda s: why(s, run_id[-9:]),
        "runs logs <run>": logs,
        "pools info db": pool_info,
        "one top refresh (read_snapshot)": read_snapshot,
    }


async def _time_reads(path: Path, run_id: str, calls: int) -> dict[str, list[float]]:
    """Open the storage once; time each read ``calls`` times (after one warm-up);
    ``run_id``: the finished run ``why`` and ``logs`` read."""
    reads = command_reads(run_id)
    measured: dict[str, list[float]] = {name: [] for name in reads}
    async with open_backend(path) as storage:
        for name, read in reads.items():
            await read(storage)
            for _ in range(calls):
                began = time.perf_counter()
                await read(storage)
                measured[name].append(time.perf_counter() - began)
    return measured


def _cli_wall(path: Path, args: list[str], repeat: int) -> list[float]:
    """Seconds of ``rivers --storage path ARGS`` in a new interpreter, each run."""
    env = {**os.environ, "COLUMNS": "160"}
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "rivers", "--storage", str(path), *args],
            check=True,
            capture_output=True,
            env=env,
        )
        times.append(time.perf_counter() - began)
    return times


def collect(repeat: int, quick: bool) -> list[Figure]:
    """Build the storage once, then time each command's reads over it."""
    runs = QUICK_RUNS if quick else RUNS
    path = default_storage_path()
    began = time.perf_counter()
    run_sync(_create, path)
    run_id = build(path, runs)
    built_s = time.perf_counter() - began
    measured = run_sync(_time_reads, path, run_id, 3 * repeat)
    size = f"{runs:,} finished runs, {runs * 10:,} events"
    figures = [
        Figure("finished_runs", f"{name}, {size}", "ms", [s * 1000 for s in values])
        for name, values in measured.items()
    ]
    figures.append(
        Figure(
            "finished_runs",
            f"rivers runs list (new interpreter, wall), {size}",
            "ms",
            [
                s * 1000
                for s in _cli_wall(path, ["runs", "list", "--limit", "20"], repeat)
            ],
        )
    )
    figures.append(
        Figure("finished_runs", f"build the storage, {size}", "s", [built_s])
    )
    return figures


if __name__ == "__main__":
    module_main(collect, __doc__)
