"""Two daemons on two hosts sharing one PostgreSQL storage; one dies, the other
takes over.

Each ``rivers daemon`` runs in a UTS namespace of its own (``unshare --uts``) with
its own host name, ``host-a`` and ``host-b``, so their owner ids
(``host:pid:start``) name different hosts and neither can look the other up in
its process table: whether the other is alive is told by its heartbeat in the
storage only, as between real hosts. Where ``unshare`` is not allowed they run as
two processes of this host (owner ids on one host: a dead one is seen dead at
once), and the test says so. They share nothing but the database.

Daemon A starts first and leads the queue; daemon B stands by. A batch of runs is
submitted, each with one step in a pool of limit 2; once A's first step has
started, A is killed with SIGKILL. Then:

- B takes the queue's leadership over when A's lease runs out, and admits the
  rest of the runs;
- A's in-flight runs are failed on recovery by B once A's heartbeat is stale, and
  the runs A was admitted to launch but never began go back to the queue;
- A's pool claims keep counting until their leases end, then come back: nothing
  is held at the end;
- every run ends, and the pool's limit was never exceeded across both hosts,
  as the steps' own start and end times show and as storage showed throughout.

The heartbeat staleness (30 s: ``rivers._liveness.STALE_AFTER_S``) is cut to
``STALE_S`` in both daemons by a launcher, so the test takes ~20 s, not a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import psycopg
import pytest

import rivers as rs
from rivers.storage import open_backend

pytestmark = pytest.mark.postgres

RUNS = 8
POOL_LIMIT = 2
MAX_RUNS = 3
STEP_S = 1.5
LEASE_S = 6.0
"""Pool claims' lease: longer than the queue leader's (5 s), so B admits runs
while the dead A's claims still count."""
STALE_S = 3.0
"""How old a heartbeat of another host may be before its owner is taken as dead."""
LEADER_PREFIX = "queue.leader:"
RIVERS = (sys.executable, "-m", "rivers")

PIPELINE = """
import json, os, socket, time
import anyio
import rivers as rs

LOG = {log!r}


def note(context, event):
    line = json.dumps({{
        "run": context.run_id, "step": context.asset_key, "pid": os.getpid(),
        "host": socket.gethostname(), "event": event, "t": time.time(),
    }})
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\\n").encode())
    finally:
        os.close(fd)


@rs.Asset(pool="db")
async def load(context: rs.StepContext) -> int:
    note(context, "start")
    await anyio.sleep({step_s})
    note(context, "end")
    return 1


repo = rs.CodeRepository(
    [load],
    run_queue=rs.RunQueueConfig(max_concurrent_runs={max_runs}, dequeue_interval="50ms"),
    pool_limits={{"db": {pool_limit}}},
    backend=rs.RunBackendConfig(lease_duration="{lease_s}s", lease_gc_interval="0.2s"),
)
"""

LAUNCHER = f"""
import sys

import rivers._liveness
import rivers.runtime
import rivers.storage.postgres

patched = []
for name, module in list(sys.modules.items()):
    if name.startswith("rivers") and hasattr(module, "STALE_AFTER_S"):
        module.STALE_AFTER_S = {STALE_S}
        patched.append(name)
assert "rivers.actors.liveness" in patched, patched

from rivers.cli import main

sys.argv[0] = "rivers"
main()
"""
"""``python -c LAUNCHER ARGS`` is ``rivers ARGS`` with ``STALE_AFTER_S = STALE_S``."""


def _can_unshare() -> bool:
    if shutil.which("unshare") is None or shutil.which("hostname") is None:
        return False
    done = subprocess.run(
        ["unshare", "--uts", "sh", "-c", "hostname rivers-probe && hostname"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode == 0 and done.stdout.strip() == "rivers-probe"


@dataclass
class Daemon:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    host: str

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    async def serving(self) -> None:
        with anyio.fail_after(30):
            while "serving repository" not in self.text():
                assert self.process.poll() is None, self.text()
                await anyio.sleep(0.05)


@dataclass
class Hosts:
    tmp_path: Path
    url: str
    separate: bool
    daemons: list[Daemon] = field(default_factory=list)

    def start(self, name: str, pipeline: Path) -> Daemon:
        host = f"host-{name}" if self.separate else os.uname().nodename
        argv = [sys.executable, "-c", LAUNCHER, "daemon", "-f", str(pipeline)]
        if self.separate:
            # unshare execs the shell, which execs python: the pid is the daemon's.
            argv = [
                "unshare",
                "--uts",
                "sh",
                "-c",
                f'hostname {host} && exec "$@"',
                "sh",
                *argv,
            ]
        log = self.tmp_path / f"daemon-{name}.log"
        env = {
            **os.environ,
            "RIVERS_STORAGE": self.url,
            "RIVERS_HOME": str(self.tmp_path),
        }
        with log.open("wb") as out:
            process = subprocess.Popen(argv, env=env, stdout=out, stderr=out)
        daemon = Daemon(name, process, log, host)
        self.daemons.append(daemon)
        return daemon


@pytest.fixture
def hosts(tmp_path: Path, postgres_url: str) -> Iterator[Hosts]:
    made = Hosts(tmp_path, postgres_url, _can_unshare())
    yield made
    for daemon in made.daemons:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()


class Monitor:
    """Samples the storage: the pool's live claims, runs in flight, the leader."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = anyio.Event()
        self.samples = 0
        self.violations: list[str] = []
        self.leaders: list[tuple[float, str]] = []  # (when, owner) on each change
        self.claims: dict[tuple[str, str], tuple[str, float]] = {}
        """(run, step) -> (owner, its last lease end seen)."""

    async def run(self) -> None:
        async with (
            open_backend(self.url) as storage,
            await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn,
        ):
            while not self.stop.is_set():
                pool = await storage.pools.get_pool_info("db")
                if pool.claimed_slots > POOL_LIMIT:
                    self.violations.append(f"{pool.claimed_slots} slots claimed")
                for holder in await storage.pools.get_pool_slot_holders("db"):
                    self.claims[(holder.run_id, holder.step_key)] = (
                        holder.owner or "",
                        holder.lease_expires_at.timestamp(),
                    )
                in_flight = await storage.queue.get_in_flight_tags()
                if len(in_flight) > MAX_RUNS:
                    self.violations.append(f"{len(in_flight)} runs in flight")
                cursor = await conn.execute(
                    "SELECT value FROM kv WHERE key LIKE %s", (LEADER_PREFIX + "%",)
                )
                row = await cursor.fetchone()
                leader = "" if row is None else str(row[0]).rpartition("@")[0]
                if not self.leaders or self.leaders[-1][1] != leader:
                    self.leaders.append((time.time(), leader))
                self.samples += 1
                await anyio.sleep(0.02)


@dataclass
class Interval:
    run: str
    host: str
    pid: int
    start: float
    end: float | None = None


def _intervals(step_log: Path) -> list[Interval]:
    found: dict[str, list[Interval]] = {}
    for line in step_log.read_text().splitlines():
        note = json.loads(line)
        if note["event"] == "start":
            found.setdefault(note["run"], []).append(
                Interval(note["run"], note["host"], note["pid"], note["t"])
            )
        else:
            found[note["run"]][-1].end = note["t"]
    return [interval for intervals in found.values() for interval in intervals]


def _peak(spans: list[tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    peak = current = 0
    for _, delta in points:  # an end sorts before a start at the same moment
        current += delta
        peak = max(peak, current)
    return peak


def _pid(owner: str) -> int:
    """The pid in an owner id (``host:pid:start``); -1 if there is none."""
    parts = owner.split(":")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1


async def _wait_for_step(step_log: Path, daemon: Daemon) -> None:
    with anyio.fail_after(30):
        while not step_log.exists() or '"start"' not in step_log.read_text():
            assert daemon.process.poll() is None, daemon.text()
            await anyio.sleep(0.02)


@pytest.mark.timeout(120)
async def test_a_daemon_killed_mid_run_is_taken_over_by_the_other_host(
    hosts: Hosts, tmp_path: Path, postgres_url: str
) -> None:
    step_log = tmp_path / "steps.jsonl"
    pipeline = tmp_path / "pipeline.py"
    pipeline.write_text(
        PIPELINE.format(
            log=str(step_log),
            step_s=STEP_S,
            max_runs=MAX_RUNS,
            pool_limit=POOL_LIMIT,
            lease_s=LEASE_S,
        )
    )
    monitor = Monitor(postgres_url)
    async with anyio.create_task_group() as tg:
        tg.start_soon(monitor.run)
        a = hosts.start("a", pipeline)
        await a.serving()
        b = hosts.start("b", pipeline)
        await b.serving()
        submitted = subprocess.run(
            [*RIVERS, "submit", "-f", str(pipeline), "--count", str(RUNS)],
            env={**os.environ, "RIVERS_STORAGE": postgres_url},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert submitted.returncode == 0, submitted.stderr
        await _wait_for_step(step_log, a)
        a.process.send_signal(signal.SIGKILL)
        killed_at = time.time()
        a.process.wait()
        with anyio.fail_after(40):
            async with open_backend(postgres_url) as storage:
                while True:
                    runs = await storage.runs.get_runs(limit=None)
                    if len(runs) == RUNS and all(r.status.is_finished for r in runs):
                        break
                    await anyio.sleep(0.1)
                while (await storage.pools.get_pool_info("db")).claimed_slots:
                    await anyio.sleep(0.1)
                finished_at = time.time()
                holders = await storage.pools.get_pool_slot_holders("db")
                started = await storage.events.get_events(kinds=["RUN_STARTED"])
        monitor.stop.set()  # it closes its connections (no cancel mid-query)
    b.process.send_signal(signal.SIGTERM)
    assert b.process.wait(timeout=30) == 143, b.text()
    with psycopg.connect(postgres_url) as conn:
        claim_rows = conn.execute("SELECT COUNT(*) FROM pool_claims").fetchone()

    owners = {r.owner or "" for r in runs}
    a_owner = next((o for o in owners if _pid(o) == a.process.pid), "")
    b_owner = next((o for o in owners if _pid(o) == b.process.pid), "")
    assert a_owner.startswith(f"{a.host}:"), owners
    assert b_owner.startswith(f"{b.host}:"), owners
    intervals = _intervals(step_log)
    on_a = [i for i in intervals if i.pid == a.process.pid]
    on_b = [i for i in intervals if i.pid == b.process.pid]
    assert on_a
    assert on_b
    assert len(on_a) + len(on_b) == len(intervals)
    assert {i.host for i in on_a} == {a.host}
    assert {i.host for i in on_b} == {b.host}

    # A led the queue, then B: once A's lease ran out, after the kill.
    leaders = [owner for _, owner in monitor.leaders if owner]
    assert leaders[0] == a_owner, monitor.leaders
    assert leaders[-1] == b_owner, monitor.leaders
    took_over = min(t for t, owner in monitor.leaders if owner == b_owner)
    assert took_over > killed_at
    assert all(i.start > killed_at for i in on_b)  # B admitted only once it led

    # A's in-flight runs (its steps were cut off by the kill) were failed on
    # recovery by B, and only once A's heartbeat was stale (between two hosts no
    # process table tells); the rest ran on B. No run started twice.
    by_id = {r.run_id: r for r in runs}
    cut_off = {i.run for i in on_a if i.end is None}
    assert cut_off
    failed = {r.run_id for r in runs if r.status is rs.RunStatus.FAILURE}
    assert cut_off <= failed  # and any run of A still waiting for the pool
    for run_id in failed:
        run = by_id[run_id]
        assert run.owner == a_owner
        assert "marked FAILURE on recovery" in (run.reason or ""), run.reason
        assert a_owner in (run.reason or "")
        assert run.ended_at is not None
        if hosts.separate:
            assert run.ended_at.timestamp() - killed_at >= STALE_S - 1.5
    for run in runs:
        if run.run_id not in failed:
            assert run.status is rs.RunStatus.SUCCESS, run
    assert {i.run for i in on_b} == {r.run_id for r in runs if r.owner == b_owner}
    assert len(on_b) == len({i.run for i in on_b})
    started_ids = [e.run_id for e in started]
    assert len(started_ids) == len(set(started_ids))
    assert len(intervals) == len({i.run for i in intervals})  # no step ran twice

    # A's claims counted until their leases ended, then came back: B's steps and
    # A's live claims never exceeded the limit together, and nothing is held now.
    a_claims = [
        expires for owner, expires in monitor.claims.values() if owner == a_owner
    ]
    assert a_claims
    for interval in on_b:
        a_live = sum(expires > interval.start for expires in a_claims)
        b_running = sum(
            o.start <= interval.start < (o.end or finished_at) for o in on_b
        )
        assert a_live + b_running <= POOL_LIMIT, (interval, a_live, b_running)
    assert max(a_claims) <= killed_at + LEASE_S + 0.5
    assert holders == []
    assert claim_rows == (0,)

    # What really ran at once, across both hosts, stayed within the pool's limit
    # (a step cut off by the kill ran until the kill).
    spans = [(i.start, i.end or killed_at) for i in on_a]
    spans += [(i.start, i.end or finished_at) for i in on_b]
    assert _peak(spans) <= POOL_LIMIT
    assert monitor.samples > 50
    assert monitor.violations == []
