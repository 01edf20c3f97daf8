"""Workload 12 — PostgreSQL storage: the same figures on SQLite and on PostgreSQL.

Each part runs once on a fresh SQLite file and once on a fresh PostgreSQL database
(created on the server ``$RIVERS_BENCH_POSTGRES`` names, an admin URL such as
``postgresql://user@host:5432/postgres``, and dropped after); the code is the same,
only ``RIVERS_STORAGE`` differs. Without ``RIVERS_BENCH_POSTGRES`` (or without
psycopg, or when the server cannot be reached) it says why and measures SQLite only.

(a) Claim+release round trips per second through the runtime's PoolManager:
    workload 4 (``benchmarks.pools``) as it is, its figure B (2,000 durable round
    trips per repeat). Target on PostgreSQL: >= 2,000/s.
(b) Cross-process hand-over: two runtime processes on the storage share pool "db"
    (limit 1); one holds the slot, the other waits in line for it (the parent sees
    its step in ``pending_steps``), then the holder releases. The latency is from
    just before the holder's ``release`` to the waiter's ``acquire`` returning (wall
    clock of the two processes); the roles alternate. 100 hand-overs per repeat,
    p50 and p99 of each repeat. Target on PostgreSQL: p50 < 10 ms.
(c) 1,000 queued one-step runs through two daemons sharing the storage: two
    ``rivers daemon`` processes, each serving its own repository (one trivial async
    asset, ``RunQueueConfig(max_concurrent_runs=10, dequeue_interval="50ms")``, as
    workload 5; the limit counts the in-flight runs of the whole storage, so of
    both). Once both serve, 500 runs of each are submitted (written as ``rivers
    submit --count 500`` writes them) and the figure is 1,000 / the seconds until
    all have finished (seen by polling the storage every 20 ms). Target on
    PostgreSQL: >= 300 runs/s.
(d) W1: workload 1 (``benchmarks.inprocess_dag``) as it is, the 200-asset DAG on a
    warm runtime and on a fresh one (seconds). Target on PostgreSQL: < 1 s.

One storage per part (repeats share it, as in the workloads reused). ``--quick``:
the reused workloads' quick sizes, 10 hand-overs, 30 runs.

Run: ``RIVERS_BENCH_POSTGRES=postgresql://... python -m benchmarks.postgres
[--repeat 5] [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit, urlunsplit

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream

import rivers as rs
from benchmarks import inprocess_dag, pools
from benchmarks.figures import (
    Figure,
    _render,
    _spread,
    mark_quick,
    percentile,
    temporary_home,
    write_json_lines,
)
from rivers.materialize import run_sync
from rivers.storage import STORAGE_VARIABLE, open_backend, rivers_home
from rivers.storage.records import RunStatus
from rivers.submission import enqueued, queued_run, write_queued

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from anyio.abc import Process

    from rivers.storage.base import StorageBackend

SERVER_VARIABLE = "RIVERS_BENCH_POSTGRES"
"""The admin URL of the PostgreSQL server to measure on (unset: SQLite only)."""
SQLITE = "SQLite"
POSTGRES = "PostgreSQL"
ROOT = Path(__file__).resolve().parents[1]

HANDOVERS = 100
QUEUE_RUNS = 1000
QUICK_HANDOVERS = 10
QUICK_QUEUE_RUNS = 30
POLL_S = 0.02


@dataclass(frozen=True, slots=True)
class Row:
    """One figure of the table: measured on each storage, with its target."""

    key: str
    metric: str
    unit: str
    target: str
    better: Literal["lower", "higher"] = "lower"


ROWS = (
    Row("trips", "claim+release round trips (durable)", "/s", ">= 2,000", "higher"),
    Row("handover_p50", "cross-process hand-over p50", "ms", "< 10"),
    Row("handover_p99", "cross-process hand-over p99", "ms", "-"),
    Row(
        "queue",
        "1,000 queued one-step runs, two daemons",
        "runs/s",
        ">= 300",
        "higher",
    ),
    Row("dag_warm", "W1 200-asset DAG, warm runtime", "s", "< 1"),
    Row("dag_fresh", "W1 200-asset DAG, fresh runtime", "s", "< 1"),
)


def metric_of(row: Row, storage: str) -> str:
    """The figure's metric: the row's, with the storage it was measured on."""
    return f"{row.metric}, {storage}"


# ------------------------------------------------------------------- storages


def postgres_server() -> tuple[str | None, str]:
    """Return (the admin URL to measure on, or None; why PostgreSQL is skipped)."""
    admin = os.environ.get(SERVER_VARIABLE)
    if not admin:
        return None, (
            f"{SERVER_VARIABLE} is not set (set it to an admin URL such as "
            "postgresql://user@host:5432/postgres; a database is created and "
            "dropped per measurement)"
        )
    try:
        import psycopg
    except ImportError:
        return None, "psycopg is not installed (pip install 'rivers[postgres]')"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return None, f"cannot connect to {SERVER_VARIABLE}: {exc}".strip()
    return admin, ""


def _database_url(admin: str, name: str) -> str:
    parts = urlsplit(admin)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.contextmanager
def fresh_storage(server: str | None) -> Iterator[str]:
    """Point ``RIVERS_STORAGE`` at a fresh storage for the block, then remove it:
    a new SQLite file under ``RIVERS_HOME`` (``server`` None), else a new
    database on the PostgreSQL server whose admin URL ``server`` is."""
    name = f"bench_{uuid.uuid4().hex}"
    saved = os.environ.get(STORAGE_VARIABLE)
    if server is None:
        path = rivers_home() / f"{name}.db"
        address = str(path)
    else:
        import psycopg
        from psycopg import sql

        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        address = _database_url(server, name)
    os.environ[STORAGE_VARIABLE] = address
    try:
        yield address
    finally:
        if saved is None:
            os.environ.pop(STORAGE_VARIABLE, None)
        else:
            os.environ[STORAGE_VARIABLE] = saved
        if server is None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{address}{suffix}").unlink(missing_ok=True)
        else:
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(name)
                    )
                )


# ------------------------------------------------- (a) and (d): reused workloads


def round_trips(repeat: int, quick: bool) -> dict[str, list[float]]:
    """(a): workload 4 on the current storage; its claim+release rates."""
    (rate,) = [
        f
        for f in pools.collect(repeat, quick)
        if f.metric == "claim+release round trips (durable)"
    ]
    return {"trips": rate.values}


def dag(repeat: int, quick: bool) -> dict[str, list[float]]:
    """(d): workload 1 on the current storage; its warm and fresh walls."""
    walls = {f.metric: f.values for f in inprocess_dag.collect(repeat, quick)}
    return {
        "dag_warm": walls["materialize, warm runtime"],
        "dag_fresh": walls["materialize, fresh runtime"],
    }


# ------------------------------------------------------- (b) cross-process wake


@rs.Asset(pool="db")
async def handed() -> None:
    """The hand-over repository's asset: it declares pool "db" (never run)."""


handover_repo = rs.CodeRepository(
    [handed], pool_limits={"db": 1}, name="bench_handover"
)

MEMBER = "from benchmarks.postgres import member; member()"
"""What a hand-over process runs (``python -c``, in the checkout)."""


def member() -> None:
    """A hand-over process: a runtime on ``$RIVERS_STORAGE`` that claims pool "db"
    on ``acquire KEY`` and releases it on ``release``, read from stdin; it prints
    ``acquired T`` / ``released T`` with the wall clock after the claim returned
    and before the release began."""

    async def serve() -> None:
        async with rs.Runtime(handover_repo) as rt:
            claim = None
            print("ready", flush=True)
            while True:
                line = (await anyio.to_thread.run_sync(sys.stdin.readline)).split()
                if not line or line[0] == "quit":
                    break
                if line[0] == "acquire":
                    claim = await rt._pool_manager.acquire(
                        run_id=f"handover-{os.getpid()}",
                        step_key=line[1],
                        pools=("db",),
                        slots=1,
                        priority=0,
                        wait=True,
                    )
                    print(f"acquired {time.time()!r}", flush=True)
                elif line[0] == "release" and claim is not None:
                    began = time.time()
                    await rt._pool_manager.release(claim)
                    claim = None
                    print(f"released {began!r}", flush=True)
            if claim is not None:
                await rt._pool_manager.release(claim)

    run_sync(serve)


class Member:
    """The parent's end of a hand-over process (line protocol on its stdin/out)."""

    def __init__(self, process: Process) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self.process = process
        self.stdin = process.stdin
        self.stdout = BufferedByteReceiveStream(process.stdout)

    @classmethod
    async def start(cls) -> Member:
        process = await anyio.open_process(
            [sys.executable, "-c", MEMBER], cwd=ROOT, stderr=None
        )
        started = cls(process)
        with anyio.fail_after(60):
            await started.expect("ready")
        return started

    async def send(self, line: str) -> None:
        await self.stdin.send(f"{line}\n".encode())

    async def expect(self, word: str) -> float:
        """Wait for the line starting ``word``; return the time it carries."""
        while True:
            try:
                data = await self.stdout.receive_until(b"\n", 1 << 16)
            except (anyio.EndOfStream, anyio.IncompleteRead):
                code = await self.process.wait()
                raise RuntimeError(
                    f"a hand-over process exited ({code}) before {word!r}"
                ) from None
            line = data.decode(errors="replace").split()
            if line and line[0] == word:
                return float(line[1]) if len(line) > 1 else 0.0

    async def close(self) -> None:
        with contextlib.suppress(anyio.BrokenResourceError, OSError):
            await self.send("quit")
        with anyio.move_on_after(30):
            await self.process.wait()
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        await self.process.aclose()


async def _until_pending(storage: StorageBackend, key: str) -> None:
    """Return once step ``key`` waits in pool "db"'s line."""
    while True:
        pending = await storage.pools.get_pending_steps("db")
        if any(p.step_key == key for p in pending):
            return
        await anyio.sleep(0.002)


async def handover_latencies(repeat: int, samples: int) -> list[list[float]]:
    """(b): ``repeat`` lists of ``samples`` hand-over latencies, in ms."""
    members: list[Member] = []
    try:
        for _ in range(2):
            members.append(await Member.start())
        holder, waiter = members
        measured: list[list[float]] = []
        async with open_backend() as storage:
            await holder.send("acquire s0")
            with anyio.fail_after(30):
                await holder.expect("acquired")
            for index in range(1, repeat * samples + 1):
                with anyio.fail_after(30):
                    await waiter.send(f"acquire s{index}")
                    key = f"s{index}"
                    await _until_pending(storage, key)
                    await holder.send("release")
                    released = await holder.expect("released")
                    acquired = await waiter.expect("acquired")
                if (index - 1) % samples == 0:
                    measured.append([])
                measured[-1].append((acquired - released) * 1000)
                holder, waiter = waiter, holder
            await holder.send("release")
            await holder.expect("released")
        return measured
    finally:
        with anyio.CancelScope(shield=True):
            for opened in members:
                await opened.close()


def handover(repeat: int, quick: bool) -> dict[str, list[float]]:
    """(b) on the current storage: the p50 and p99 of each repeat, in ms."""
    samples = QUICK_HANDOVERS if quick else HANDOVERS
    measured: list[list[float]] = run_sync(handover_latencies, repeat, samples)
    return {
        "handover_p50": [percentile(values, 0.5) for values in measured],
        "handover_p99": [percentile(values, 0.99) for values in measured],
    }


# --------------------------------------------------- (c) queue, two daemons


@rs.Asset
async def one_a() -> int:
    return 1


@rs.Asset
async def one_b() -> int:
    return 1


QUEUE = rs.RunQueueConfig(max_concurrent_runs=10, dequeue_interval="50ms")
queue_a = rs.CodeRepository([one_a], run_queue=QUEUE, name="bench_queue_a")
queue_b = rs.CodeRepository([one_b], run_queue=QUEUE, name="bench_queue_b")
DAEMONS = {"queue_a": queue_a, "queue_b": queue_b}
"""The daemons' repositories, by their attribute in this module."""


def start_daemon(attribute: str, log: Path) -> subprocess.Popen[bytes]:
    """Start ``rivers daemon -m benchmarks.postgres -a ATTRIBUTE`` (output: ``log``)."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "rivers", "daemon"),
                *("-m", "benchmarks.postgres", "-a", attribute, "--grace", "5"),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_serving(daemons: dict[Path, subprocess.Popen[bytes]]) -> None:
    """Return once every daemon says it serves its repository."""
    deadline = time.monotonic() + 60
    for log, process in daemons.items():
        while "serving repository" not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"a daemon did not start:\n{_tail(log)}")
            time.sleep(0.05)


def stop_daemons(daemons: dict[Path, subprocess.Popen[bytes]]) -> None:
    for process in daemons.values():
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    for process in daemons.values():
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


async def submit_and_wait(per_daemon: int) -> float:
    """Queue ``per_daemon`` runs of each daemon's repository; return the seconds
    until every run submitted has finished."""
    repositories = list(DAEMONS.values())
    async with open_backend() as storage:
        finished = await storage.runs.count_runs(FINISHED)
        succeeded = await storage.runs.count_runs([RunStatus.SUCCESS])
        total = finished + per_daemon * len(repositories)
        began = time.perf_counter()
        for repository in repositories:
            runs = [queued_run(repository, rs.RunRequest()) for _ in range(per_daemon)]
            await storage.processes.record_definitions(
                [(repository.name, repository.fingerprint, list(repository.assets))]
            )
            await write_queued(storage.runs, runs)
            now = storage.clock.time()
            await storage.events.append_events([(enqueued(run), now) for run in runs])
        with anyio.fail_after(600):
            while True:
                if await storage.runs.count_runs(FINISHED) >= total:
                    break
                await anyio.sleep(POLL_S)
        elapsed = time.perf_counter() - began
        now_succeeded = await storage.runs.count_runs([RunStatus.SUCCESS])
        if now_succeeded - succeeded != total - finished:
            raise RuntimeError(
                f"{total - finished - (now_succeeded - succeeded)} of "
                f"{total - finished} queued runs did not succeed"
            )
    return elapsed


FINISHED = (RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.CANCELED)


def queue(repeat: int, quick: bool) -> dict[str, list[float]]:
    """(c) on the current storage: runs per second, ``repeat`` times."""
    count = QUICK_QUEUE_RUNS if quick else QUEUE_RUNS
    per_daemon = count // len(DAEMONS)
    logs = {
        attribute: rivers_home() / f"daemon-{attribute}-{uuid.uuid4().hex[:8]}.log"
        for attribute in DAEMONS
    }
    daemons: dict[Path, subprocess.Popen[bytes]] = {}
    rates: list[float] = []
    try:
        for attribute, log in logs.items():
            daemons[log] = start_daemon(attribute, log)
        wait_serving(daemons)
        for _ in range(repeat):
            seconds: float = run_sync(submit_and_wait, per_daemon)
            rates.append(per_daemon * len(DAEMONS) / seconds)
    except BaseException:
        for log in logs.values():
            if log.exists():
                print(f"--- {log.name}\n{_tail(log)}", file=sys.stderr)
        raise
    finally:
        stop_daemons(daemons)
    return {"queue": rates}


# -------------------------------------------------------------------- collect

PARTS: tuple[Callable[[int, bool], dict[str, list[float]]], ...] = (
    round_trips,
    handover,
    queue,
    dag,
)


def collect(repeat: int, quick: bool) -> list[Figure]:
    """Measure every part on SQLite, then on PostgreSQL when a server is given."""
    server, skipped = postgres_server()
    if server is None:
        print(f"PostgreSQL figures skipped: {skipped}", flush=True)
    values: dict[tuple[str, str], list[float]] = {}
    for part in PARTS:
        with fresh_storage(None):
            for key, measured in part(repeat, quick).items():
                values[key, SQLITE] = measured
        if server is None:
            continue
        try:
            with fresh_storage(server):
                for key, measured in part(repeat, quick).items():
                    values[key, POSTGRES] = measured
        except Exception as exc:
            print(
                f"PostgreSQL {part.__name__} failed: {type(exc).__name__}: {exc}",
                flush=True,
            )
            traceback.print_exc()
    return [
        Figure(
            "postgres",
            metric_of(row, storage),
            row.unit,
            values[row.key, storage],
            better=row.better,
        )
        for row in ROWS
        for storage in (SQLITE, POSTGRES)
        if (row.key, storage) in values
    ]


def format_side_by_side(figures: list[Figure]) -> str:
    """One row per figure: SQLite | PostgreSQL | target (for PostgreSQL)."""
    by_metric = {figure.metric: figure for figure in figures}
    rows = []
    for row in ROWS:
        cells = []
        for storage in (SQLITE, POSTGRES):
            figure = by_metric.get(metric_of(row, storage))
            cells.append("-" if figure is None else _spread(figure))
        rows.append([row.metric, row.unit, *cells, row.target])
    header = ["figure", "unit", f"{SQLITE} median", f"{POSTGRES} median", "target"]
    return _render(header, rows)


def main(argv: list[str] | None = None) -> None:
    """Run the workload alone: ``python -m benchmarks.postgres``."""
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").strip().splitlines()[0]
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure")
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    parser.add_argument("--json", metavar="PATH", help="also write JSON lines here")
    args = parser.parse_args(argv)
    with temporary_home():
        figures = collect(max(1, args.repeat), args.quick)
    if args.quick:
        mark_quick(figures)
    print(format_side_by_side(figures))
    if args.quick:
        print("(quick sizes)")
    if args.json:
        write_json_lines(args.json, figures)


if __name__ == "__main__":
    main()
