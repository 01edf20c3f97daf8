"""Chaos: SIGKILL the daemon and its workers at random moments, restart it, and check
that every run is accounted for, no limit was ever exceeded, and nothing stays held.

A real ``rivers daemon`` runs runs of a pipeline with a run queue, a tag limit per
team, a pool and a one-worker executor, while the test submits more runs, kills a
worker process, then kills the daemon itself, and starts a new one, round after
round. Two observers watch:

- a monitor samples the storage throughout: never more in-flight runs than
  ``max_concurrent_runs``, never two runs of one team, never more claimed slots
  than the pool's limit, and no claim of a killed daemon still counted after its
  lease (``lease_duration`` after the kill);
- every step writes when it starts and ends (a step killed with its process ends
  when that process died), and the intervals show what really ran at once: the
  same limits, one sync step per run at a time, and no step that ran twice.

Afterwards every submitted run has finished (SUCCESS, or FAILURE saying which
process died), and no claim is left. It runs on a SQLite file and on a PostgreSQL
database (fewer rounds there, ``POSTGRES_ROUNDS``): about 15 s and 10 s in the
normal suite; ``RIVERS_CHAOS_ROUNDS`` (default 4 and 2) and ``RIVERS_CHAOS_SEED``
make it longer or different, e.g. ``RIVERS_CHAOS_ROUNDS=50 pytest tests/chaos``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import psutil
import pytest

import rivers as rs
from rivers._ids import new_run_id
from rivers.storage import open_backend
from rivers.storage.base import StorageBackend
from rivers.storage.records import NewRun

ROUNDS = int(os.environ.get("RIVERS_CHAOS_ROUNDS", "4"))
POSTGRES_ROUNDS = int(os.environ.get("RIVERS_CHAOS_ROUNDS", "2"))
"""Fewer by default on PostgreSQL: the same kills, half the suite time."""
SEED = int(os.environ.get("RIVERS_CHAOS_SEED", "7"))
RUNS_PER_ROUND = 10
MAX_RUNS = 3
POOL_LIMIT = 2
LEASE_S = 1.0
TEAMS = ("a", "b", "c", "d")
POOLED = ("extract", "load")
SYNC = ("crunch_a", "crunch_b")
WORKER_EXIT_SLACK_S = 0.5
"""A worker notices its daemon died within its parent poll (0.1 s); this bounds it."""

PIPELINE = """
import json, os, random, time
import anyio
import rivers as rs

LOG = {log!r}


def note(context, event):
    line = json.dumps({{
        "run": context.run_id, "step": context.asset_key, "pid": os.getpid(),
        "event": event, "t": time.time(), "team": context.run_tags.get("team"),
    }})
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\\n").encode())
    finally:
        os.close(fd)


@rs.Asset(pool="db")
async def extract(context: rs.StepContext) -> int:
    note(context, "start")
    await anyio.sleep(random.uniform(0.05, 0.25))
    note(context, "end")
    return 1


@rs.Asset
def crunch_a(context: rs.StepContext, extract: int) -> int:
    note(context, "start")
    time.sleep(random.uniform(0.02, 0.1))
    note(context, "end")
    return extract + 1


@rs.Asset
def crunch_b(context: rs.StepContext, extract: int) -> int:
    note(context, "start")
    time.sleep(random.uniform(0.02, 0.1))
    note(context, "end")
    return extract + 2


@rs.Asset(pool="db")
async def load(context: rs.StepContext, crunch_a: int, crunch_b: int) -> None:
    note(context, "start")
    await anyio.sleep(random.uniform(0.02, 0.1))
    note(context, "end")


repo = rs.CodeRepository(
    [extract, crunch_a, crunch_b, load],
    run_queue=rs.RunQueueConfig(
        max_concurrent_runs={max_runs},
        dequeue_interval="50ms",
        tag_concurrency_limits=[
            rs.TagConcurrencyLimit(key="team", limit=1, per_unique_value=True)
        ],
    ),
    pool_limits={{"db": {pool_limit}}},
    executor=rs.Executor.parallel(max_workers=1),
    backend=rs.RunBackendConfig(
        storage={storage!r}, lease_duration="{lease_s}s", lease_gc_interval="0.2s"
    ),
)
"""


@dataclass
class Deaths:
    """When each killed process died (pid -> epoch seconds)."""

    at: dict[int, float] = field(default_factory=dict)


class Monitor:
    """Samples storage and records every limit it ever saw exceeded."""

    def __init__(self, storage_path: str, deaths: Deaths) -> None:
        self.path = storage_path
        self.deaths = deaths
        self.samples = 0
        self.checks = 0
        self.reclaim_after_s = 0.0
        self.violations: list[str] = []

    async def run(self) -> None:
        async with open_backend(self.path) as storage:
            while True:
                in_flight = await storage.queue.get_in_flight_tags()
                self.check(len(in_flight) <= MAX_RUNS, f"{len(in_flight)} in flight")
                for team in TEAMS:
                    used = sum(1 for tags in in_flight if tags.get("team") == team)
                    self.check(used <= 1, f"team {team}: {used} runs in flight")
                pool = await storage.pools.get_pool_info("db")
                self.check(
                    pool.claimed_slots <= POOL_LIMIT,
                    f"db: {pool.claimed_slots} claimed",
                )
                now = time.time()
                for holder in await storage.pools.get_pool_slot_holders("db"):
                    died = self.deaths.at.get(_owner_pid(holder.owner or ""))
                    if died is None or holder.lease_expires_at.timestamp() <= now:
                        continue
                    # A dead daemon's claim still counts: only until its lease ends.
                    counted_for = holder.lease_expires_at.timestamp() - died
                    self.reclaim_after_s = max(self.reclaim_after_s, counted_for)
                    self.check(
                        counted_for <= LEASE_S + 0.05,
                        f"claim of dead {holder.owner} counted {counted_for:.2f}s",
                    )
                self.samples += 1
                await anyio.sleep(0.01)

    def check(self, ok: bool, what: str) -> None:
        self.checks += 1
        if not ok:
            self.violations.append(what)


def _claim_rows(storage: str) -> int:
    """Every row of ``pool_claims``, read from the database itself (not through
    rivers, which shows only live claims)."""
    if storage.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(storage) as pg:
            row = pg.execute("SELECT COUNT(*) FROM pool_claims").fetchone()
        assert row is not None
        return int(row[0])
    conn = sqlite3.connect(storage)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM pool_claims").fetchone()[0])
    finally:
        conn.close()


def _owner_pid(owner: str) -> int:
    parts = owner.split(":")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1


def _start_daemon(pipeline: Path, home: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "RIVERS_HOME": str(home)}
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rivers",
                "daemon",
                "-f",
                str(pipeline),
                "--grace",
                "5",
            ],
            env=env,
            stdout=out,
            stderr=out,
        )


def _workers(daemon: subprocess.Popen[bytes]) -> list[psutil.Process]:
    try:
        children = psutil.Process(daemon.pid).children()
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            if "rivers.executors._worker_main" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def _gone(process: psutil.Process) -> bool:
    try:
        status: str = process.status()
    except psutil.NoSuchProcess:
        return True
    return bool(status == psutil.STATUS_ZOMBIE)


async def _kill_daemon(daemon: subprocess.Popen[bytes], deaths: Deaths) -> None:
    """SIGKILL the daemon; record when it and (as they follow it) its workers died."""
    workers = _workers(daemon)
    daemon.send_signal(signal.SIGKILL)
    deaths.at[daemon.pid] = time.time()
    daemon.wait()
    with anyio.fail_after(10):  # workers must not outlive their daemon
        while workers:
            for worker in [w for w in workers if _gone(w)]:
                deaths.at[worker.pid] = time.time()
                workers.remove(worker)
            await anyio.sleep(0.01)


def _kill_a_worker(
    daemon: subprocess.Popen[bytes], rng: random.Random, deaths: Deaths
) -> bool:
    workers = _workers(daemon)
    if not workers:
        return False
    victim = rng.choice(workers)
    try:
        victim.send_signal(signal.SIGKILL)
    except psutil.NoSuchProcess:
        return False
    deaths.at[victim.pid] = time.time()
    return True


@dataclass
class Interval:
    run: str
    step: str
    team: str
    pid: int
    start: float
    end: float | None = None


def _intervals(step_log: Path, deaths: Deaths) -> list[Interval]:
    """Each step execution, from its start to its end or to its process's death."""
    intervals: dict[tuple[str, str], list[Interval]] = {}
    for line in step_log.read_text().splitlines():
        note = json.loads(line)
        key = (note["run"], note["step"])
        if note["event"] == "start":
            intervals.setdefault(key, []).append(
                Interval(
                    note["run"], note["step"], note["team"], note["pid"], note["t"]
                )
            )
        else:
            intervals[key][-1].end = note["t"]
    daemon_of = {
        run: i.pid
        for (run, step), ivs in intervals.items()
        for i in ivs
        if step in POOLED
    }
    every = [i for ivs in intervals.values() for i in ivs]
    for interval in every:
        if interval.end is not None:
            continue
        died = deaths.at.get(interval.pid)
        if died is None:  # a worker started just before its daemon was killed
            died = deaths.at[daemon_of[interval.run]] + WORKER_EXIT_SLACK_S
        interval.end = died
    return every


def _peak(intervals: list[Interval], key: Callable[[Interval], str | None]) -> int:
    """The most distinct keys with an interval open at the same moment."""
    points = sorted(
        [(i.start, 1, i) for i in intervals]
        + [(i.end or i.start, -1, i) for i in intervals],
        key=lambda p: (p[0], p[1]),
    )
    open_by: dict[str, int] = {}
    peak = 0
    for _, delta, interval in points:
        name = key(interval)
        if name is None:
            continue
        open_by[name] = open_by.get(name, 0) + delta
        if open_by[name] == 0:
            del open_by[name]
        peak = max(peak, len(open_by))
    return peak


@pytest.fixture(
    params=[
        pytest.param(("sqlite", ROUNDS), id="sqlite"),
        pytest.param(
            ("postgres", POSTGRES_ROUNDS), id="postgres", marks=pytest.mark.postgres
        ),
    ]
)
def chaos_storage(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, int]:
    """The storage the daemons and the observers share (a SQLite file, or a fresh
    PostgreSQL database), and how many rounds of kills to run on it."""
    backend, rounds = request.param
    if backend == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url, rounds
    return str(tmp_path / "chaos.db"), rounds


@pytest.mark.timeout(300 + 30 * max(ROUNDS, POSTGRES_ROUNDS))
async def test_kills_lose_no_run_leak_no_slot_and_never_exceed_a_limit(
    tmp_path: Path,
    chaos_storage: tuple[str, int],
    record_figure: Callable[[str], None],
) -> None:
    storage_path, rounds = chaos_storage
    run_count = RUNS_PER_ROUND * rounds
    rng = random.Random(SEED)
    home = tmp_path / "home"
    step_log = tmp_path / "steps.jsonl"
    pipeline = tmp_path / "pipeline.py"
    pipeline.write_text(
        textwrap.dedent(
            PIPELINE.format(
                max_runs=MAX_RUNS,
                pool_limit=POOL_LIMIT,
                storage=storage_path,
                log=str(step_log),
                lease_s=LEASE_S,
            )
        )
    )
    submitted: list[str] = []

    async def submit(storage: StorageBackend) -> None:
        run_id = new_run_id()
        await storage.runs.create_run(
            NewRun(
                run_id=run_id,
                status=rs.RunStatus.QUEUED,
                repository="default",
                tags={"team": TEAMS[len(submitted) % len(TEAMS)]},
                selection=None,
                priority=rng.randint(0, 3),
            )
        )
        submitted.append(run_id)  # accepted: it is QUEUED in storage

    async with open_backend(storage_path) as storage:
        for _ in range(run_count):
            await submit(storage)

    deaths = Deaths()
    monitor = Monitor(storage_path, deaths)
    log = tmp_path / "daemon.log"
    daemon_kills = worker_kills = 0
    began = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(monitor.run)

        async def keep_submitting() -> None:
            # More work arrives while daemons live and die.
            async with open_backend(storage_path) as storage:
                while True:
                    await anyio.sleep(rng.uniform(0.2, 0.6))
                    await submit(storage)

        submitter = anyio.CancelScope()

        async def submitting() -> None:
            with submitter:
                await keep_submitting()

        tg.start_soon(submitting)
        for _ in range(rounds):
            daemon = _start_daemon(pipeline, home, log)
            await anyio.sleep(rng.uniform(0.8, 2.0))
            if _kill_a_worker(daemon, rng, deaths):
                worker_kills += 1
            await anyio.sleep(rng.uniform(0.1, 0.8))
            await _kill_daemon(daemon, deaths)
            daemon_kills += 1
        submitter.cancel()
        final = _start_daemon(pipeline, home, log)
        try:
            async with open_backend(storage_path) as storage:
                with anyio.fail_after(120):
                    while True:
                        runs = await storage.runs.get_runs(limit=None)
                        if all(r.status.is_finished for r in runs):
                            break
                        await anyio.sleep(0.1)
                with anyio.fail_after(10):  # leases of killed holders come back
                    while (await storage.pools.get_pool_info("db")).claimed_slots:
                        await anyio.sleep(0.1)
        finally:
            final.send_signal(signal.SIGTERM)
            assert final.wait(timeout=30) == 143  # drained, then 128 + SIGTERM
        tg.cancel_scope.cancel()
    seconds = time.monotonic() - began

    async with open_backend(storage_path) as storage:
        by_id = {r.run_id: r for r in await storage.runs.get_runs(limit=None)}
        started = await storage.events.get_events(kinds=["RUN_STARTED"])
        pool = await storage.pools.get_pool_info("db")
        holders = await storage.pools.get_pool_slot_holders("db")
    claim_rows = _claim_rows(storage_path)

    # Every submitted run is accounted for and none vanished; a failure says why.
    assert sorted(by_id) == sorted(submitted)
    recovered = crashed = 0
    for run in by_id.values():
        assert run.status in (rs.RunStatus.SUCCESS, rs.RunStatus.FAILURE), run
        if run.status is rs.RunStatus.FAILURE:
            reason = run.reason or ""
            if "marked FAILURE on recovery" in reason:
                recovered += 1
            else:
                assert "worker process" in reason, run
                crashed += 1
    # No run started twice, and no step ran twice.
    started_ids = [e.run_id for e in started]
    assert len(started_ids) == len(set(started_ids))
    intervals = _intervals(step_log, deaths)
    starts = [(i.run, i.step) for i in intervals]
    assert len(starts) == len(set(starts))
    # What really ran at once stayed within every limit.
    assert _peak(intervals, lambda i: i.run) <= MAX_RUNS
    for team in TEAMS:
        of_team = [i for i in intervals if i.team == team]
        assert _peak(of_team, lambda i: i.run) <= 1
    pooled = [i for i in intervals if i.step in POOLED]
    assert _peak(pooled, lambda i: f"{i.run}/{i.step}") <= POOL_LIMIT
    for run_id in by_id:
        sync = [i for i in intervals if i.run == run_id and i.step in SYNC]
        assert _peak(sync, lambda i: i.step) <= 1  # max_workers=1
    # Nothing is left held, and the storage never showed a limit exceeded.
    assert pool.claimed_slots == 0
    assert pool.pending_steps == 0
    assert holders == []
    assert claim_rows == 0
    assert monitor.samples > 100
    assert monitor.violations == []
    assert monitor.reclaim_after_s <= LEASE_S + 0.05
    assert daemon_kills == rounds
    successes = sum(r.status is rs.RunStatus.SUCCESS for r in by_id.values())
    assert successes >= len(submitted) // 2, (successes, worker_kills)
    backend = "postgres" if storage_path.startswith("postgresql://") else "sqlite"
    record_figure(
        f"chaos ({backend}): {daemon_kills} daemon SIGKILLs, {worker_kills} worker SIGKILLs, "
        f"{len(submitted)} runs ({successes} succeeded, {recovered} failed on "
        f"recovery, {crashed} with their worker), {len(intervals)} step executions "
        f"checked, {monitor.samples} storage samples, {monitor.checks} limit checks, "
        f"dead claims counted at most {monitor.reclaim_after_s:.2f}s after the kill "
        f"(lease {LEASE_S:g}s), {seconds:.0f}s"
    )
