"""A PostgreSQL server that goes away and comes back, under a storage in use.

Each test runs on a private server of its own (``scripts/postgres-server``), so
it can stop and start it without touching the server the rest of the suite
shares. The storage's connection is lost when the server stops: a read, or a
write that had not sent its COMMIT, reconnects with backoff and is tried again
for up to ``WRITE_PATIENCE_S`` (monkeypatched to a few seconds here), then
raises ``StorageUnavailable``.

- a write issued while the server is down succeeds once it is back, exactly once;
- past the patience a call fails in about the patience, with one line that names
  the storage (without its password) and says it is unreachable;
- pool claims from two storages around a restart never grant a limit-1 pool's
  slot twice;
- a daemon whose database stays away past its patience and its event writer's
  retries (both cut to seconds by a launcher) exits with that one line instead
  of hanging, and once the server is back a new runtime fails the run on
  recovery and leaves no claim held.

A claim that waited out an outage longer than its lease is not granted already
expired (the time is read inside the transaction); and the run of a Runtime that
stopped on an outage is failed by the next runtime of the same process (its owner
id is the process's, so only ``RUNS_HERE`` tells that no runtime drives it).
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import psycopg
import pytest

import rivers as rs
import rivers.actors.events as event_writer
import rivers.actors.run_failure as run_failure
from rivers.storage import _pg_connection as pg_connection, open_backend
from rivers.storage.base import StorageBackend
from rivers.storage.records import NewRun
from tests._postgres import drop_database, fresh_database

pytestmark = pytest.mark.postgres

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "postgres-server"
PATIENCE_S = 2.0
"""``WRITE_PATIENCE_S`` in the tests that wait it out."""


@dataclass
class Server:
    """A private PostgreSQL server: stop it and start it again on its port."""

    cluster: Path
    admin_url: str

    async def stop(self) -> None:
        await anyio.run_process([str(SCRIPT), "stop", str(self.cluster)])

    async def start(self) -> None:
        await anyio.run_process([str(SCRIPT), "start", str(self.cluster)])

    def is_up(self) -> bool:
        try:
            psycopg.connect(self.admin_url, connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True


@pytest.fixture(scope="module")
def private_server() -> Iterator[Server]:
    """A PostgreSQL server of this module's own, deleted after it."""
    if not (glob.glob("/usr/lib/postgresql/*/bin/initdb") or shutil.which("pg_ctl")):
        if os.environ.get("CI"):
            raise RuntimeError("CI must test PostgreSQL: install Debian's postgresql")
        pytest.skip(
            "no PostgreSQL server binaries: install Debian's postgresql package"
        )
    parent = Path(tempfile.mkdtemp(prefix="rivers-pg-outage-"))
    parent.chmod(0o755)  # as root the server runs as another user: it must reach pg/
    cluster = parent / "pg"
    try:
        url = subprocess.run(
            [SCRIPT, "up", cluster], stdout=subprocess.PIPE, text=True, check=True
        ).stdout.strip()
        yield Server(cluster, url)
    finally:
        subprocess.run([SCRIPT, "down", cluster], check=False)
        shutil.rmtree(parent, ignore_errors=True)


def _ensure_up(server: Server) -> None:
    if not server.is_up():
        subprocess.run([SCRIPT, "start", server.cluster], check=True)


@pytest.fixture
def server(private_server: Server) -> Iterator[Server]:
    """The private server, up at the start and the end of every test."""
    _ensure_up(private_server)
    yield private_server
    _ensure_up(private_server)


@pytest.fixture
def outage_url(server: Server) -> Iterator[str]:
    """A fresh database on the private server (up again if a test failed while
    it was stopped)."""
    url = fresh_database(server.admin_url)
    yield url
    _ensure_up(server)
    drop_database(server.admin_url, url)


def _count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def _new_run(run_id: str, *, run_key: str | None = None) -> NewRun:
    return NewRun(
        run_id=run_id,
        status=rs.RunStatus.QUEUED,
        repository="default",
        tags={},
        selection=None,
        run_key=run_key,
    )


async def test_a_write_issued_while_the_server_is_down_succeeds_once_it_is_back(
    server: Server, outage_url: str
) -> None:
    async with open_backend(outage_url) as storage:
        await storage.pools.set_pool_limit("db", 1)
        assert await storage.runs.get_run("r1") is None  # connected
        await server.stop()
        began = time.monotonic()
        finished: dict[str, float] = {}
        created: list[rs.RunRecord | None] = []
        claims = []

        async def create() -> None:
            created.append(await storage.runs.create_run(_new_run("r1", run_key="k1")))
            finished["create"] = time.monotonic()

        async def claim() -> None:
            claims.append(
                await storage.pools.claim_pool_slots(
                    run_id="r1",
                    step_key="s",
                    pools=("db",),
                    slots=1,
                    owner="host-a:1:1",
                    lease_s=30.0,
                )
            )
            finished["claim"] = time.monotonic()

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(create)
                tg.start_soon(claim)
                await anyio.sleep(2.0)
                assert finished == {}  # both wait for the server
                await server.start()
        # Both waited the outage out, then went through.
        assert min(finished.values()) - began >= 2.0
        (record,) = created
        assert record is not None  # its run key was free: no earlier try committed
        (result,) = claims
        assert result.granted
        stored = await storage.runs.get_run("r1")
        assert stored is not None
        assert stored.status is rs.RunStatus.QUEUED
    # Exactly once: one run, counted once; one claim, and the pool's fencing token
    # was taken once (a try rolled back with its connection takes none).
    assert _count(outage_url, "SELECT COUNT(*) FROM runs") == 1
    assert _count(outage_url, "SELECT SUM(runs) FROM run_counts") == 1
    assert _count(outage_url, "SELECT COUNT(*) FROM pool_claims") == 1
    assert _count(outage_url, "SELECT last_token FROM pools WHERE name = 'db'") == 1


async def test_a_server_down_past_the_patience_fails_a_call_in_one_line(
    server: Server, outage_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_connection, "WRITE_PATIENCE_S", PATIENCE_S)
    # The test server trusts loopback: the password is ignored, and must not show.
    with_password = outage_url.replace("//rivers@", "//rivers:hunter2@")
    shown = outage_url.replace("//rivers@", "//rivers:***@")
    async with open_backend(with_password) as storage:
        await storage.runs.create_run(_new_run("r1"))
        await server.stop()
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "read": lambda: storage.runs.get_run("r1"),
            "write": lambda: storage.runs.create_run(_new_run("r2")),
            "claim": lambda: storage.pools.claim_pool_slots(
                run_id="r1",
                step_key="s",
                pools=("db",),
                slots=1,
                owner="host-a:1:1",
                lease_s=30.0,
            ),
        }
        for name, call in calls.items():
            began = time.monotonic()
            with (
                anyio.fail_after(PATIENCE_S + 10),
                pytest.raises(rs.StorageUnavailable) as raised,
            ):
                await call()
            waited = time.monotonic() - began
            assert PATIENCE_S - 1.0 <= waited <= PATIENCE_S + 3.0, (name, waited)
            message = str(raised.value)
            assert "\n" not in message, message
            assert "unreachable" in message, message
            assert shown in message, message
            assert "hunter2" not in message, message
        await server.start()
        # The same storage works again once the server is back.
        assert await storage.runs.get_run("r1") is not None
    assert _count(outage_url, "SELECT COUNT(*) FROM runs") == 1


@dataclass
class Hold:
    """One grant of the pool's slot, as its holder saw it."""

    who: str
    start: float  # when the grant came back
    end: float  # when the holder gave it back (or its lease ended, if sooner)
    lease_expires_at: float


async def _claim_in_a_loop(
    storage: StorageBackend,
    who: str,
    holds: list[Hold],
    errors: list[str],
    stop: anyio.Event,
) -> None:
    """Claim the limit-1 pool again and again, hold it briefly, release it."""
    attempt = 0
    while not stop.is_set():
        attempt += 1
        step = f"{who}-{attempt}"
        try:
            result = await storage.pools.claim_pool_slots(
                run_id="r",
                step_key=step,
                pools=("db",),
                slots=1,
                owner=f"{who}:1:1",
                lease_s=10.0,
            )
        except rs.StorageUnavailable as exc:
            # Its COMMIT was lost in flight: the claim may have been written, so it
            # is given back (as nobody else may hold the slot meanwhile).
            errors.append(f"claim {step}: {exc}")
            await storage.pools.release_pool_slots("r", step)
            continue
        if not result.granted:
            await anyio.sleep(0.01)
            continue
        start = time.time()
        assert result.lease_expires_at is not None
        await anyio.sleep(0.05)
        holds.append(Hold(who, start, time.time(), result.lease_expires_at))
        try:
            await storage.pools.release_pool_slots("r", step)
        except rs.StorageUnavailable as exc:  # held until its lease ends
            errors.append(f"release {step}: {exc}")


async def _sample_claims(url: str, seen: list[int], stop: anyio.Event) -> None:
    """Read the live claims of the pool from a connection of its own."""
    while not stop.is_set():
        try:
            conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
            async with conn:
                while not stop.is_set():
                    cursor = await conn.execute(
                        "SELECT COALESCE(SUM(slots), 0) FROM pool_claims "
                        "WHERE pool = 'db' AND lease_expires_at > "
                        "EXTRACT(EPOCH FROM clock_timestamp())"
                    )
                    row = await cursor.fetchone()
                    assert row is not None
                    seen.append(int(row[0]))
                    await anyio.sleep(0.005)
        except psycopg.OperationalError:
            await anyio.sleep(0.05)


@pytest.fixture
async def two_storages(outage_url: str) -> AsyncIterator[list[StorageBackend]]:
    """Two storages (two connections, as two processes) on the outage database."""
    async with open_backend(outage_url) as one, open_backend(outage_url) as two:
        await one.pools.set_pool_limit("db", 1)
        yield [one, two]


async def test_claims_from_two_storages_around_a_restart_never_grant_twice(
    server: Server, outage_url: str, two_storages: list[StorageBackend]
) -> None:
    holds: list[Hold] = []
    errors: list[str] = []
    seen: list[int] = []
    stop = anyio.Event()
    with anyio.fail_after(40):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_sample_claims, outage_url, seen, stop)
            for index, storage in enumerate(two_storages):
                for worker in range(2):
                    tg.start_soon(
                        _claim_in_a_loop,
                        storage,
                        f"s{index}w{worker}",
                        holds,
                        errors,
                        stop,
                    )
            await anyio.sleep(1.0)
            before = len(holds)
            await server.stop()
            stopped_at = time.time()
            await anyio.sleep(2.0)
            await server.start()
            # A call retries every 2 s at most: the claimers are back within it.
            await anyio.sleep(4.0)
            stop.set()  # each claimer gives its slot back and stops
    after = [h for h in holds if h.start > stopped_at]
    assert before >= 3, holds
    assert len(after) >= 3, (errors, holds)  # claims went on after the restart
    assert len({h.who for h in holds}) >= 3  # every storage got the slot
    # No two holders ever held the slot at once, as they saw it: each from when its
    # grant came back until it gave the slot back or its lease ended.
    spans = sorted((h.start, min(h.end, h.lease_expires_at), h.who) for h in holds)
    for (_, end, who), (start, _, other) in itertools.pairwise(spans):
        assert start >= end, f"{other} got the slot at {start} while {who} held it"
    # Every grant's lease was still running when it came back.
    assert all(h.lease_expires_at > h.start for h in holds)
    # Nor did the storage ever count two live claims.
    assert seen
    assert max(seen) <= 1
    # Every claim was given back (a release lost in flight stays until its lease).
    released_unknown = sum(e.startswith("release") for e in errors)
    assert _count(outage_url, "SELECT COUNT(*) FROM pool_claims") <= released_unknown


async def test_a_claim_that_waited_out_an_outage_longer_than_its_lease_is_not_granted_expired(
    server: Server, two_storages: list[StorageBackend]
) -> None:
    first, second = two_storages
    await server.stop()
    results = []

    async def claim() -> None:
        results.append(
            await first.pools.claim_pool_slots(
                run_id="r1",
                step_key="s",
                pools=("db",),
                slots=1,
                owner="host-a:1:1",
                lease_s=1.0,
            )
        )

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(claim)
            await anyio.sleep(3.0)  # longer than the lease
            await server.start()
    returned_at = time.time()
    (result,) = results
    other = await second.pools.claim_pool_slots(
        run_id="r2",
        step_key="s",
        pools=("db",),
        slots=1,
        owner="host-b:1:1",
        lease_s=10.0,
    )
    # Either the late claim is refused, or its lease runs from when it was granted
    # and the other storage's claim is refused meanwhile.
    if result.granted:
        assert result.lease_expires_at is not None
        assert result.lease_expires_at > returned_at, (
            f"granted with a lease that ended "
            f"{returned_at - result.lease_expires_at:.1f}s before the grant came back"
        )
        assert not other.granted


PIPELINE = """
import os
import anyio
import rivers as rs

HERE = os.path.dirname(os.path.abspath(__file__))


@rs.Asset(pool="db")
async def slow(context: rs.StepContext) -> int:
    with open(os.path.join(HERE, "started.log"), "a") as f:
        f.write(context.run_id + "\\n")
    await anyio.sleep({seconds})
    return 1


@rs.Asset
def after(slow: int) -> int:
    return slow + 1


repo = rs.CodeRepository(
    [slow, after],
    pool_limits={{"db": 1}},
    backend=rs.RunBackendConfig(lease_duration="{lease_s}s"),
)
"""

LEASE_S = 3.0
EVENT_RETRY_DELAYS_S = (0.1, 0.2)
"""The event writer's pauses between tries (by default it tries for minutes)."""

LAUNCHER = f"""
import sys

import rivers.actors.events as events
import rivers.actors.run_failure as run_failure
import rivers.storage._pg_connection as pg_connection

pg_connection.WRITE_PATIENCE_S = {PATIENCE_S}
events.RETRY_DELAYS_S = {EVENT_RETRY_DELAYS_S}
run_failure.FAILURE_RETRY_DELAYS_S = (0.5,)

from rivers.cli import main

sys.argv[0] = "rivers"
main()
"""
"""``rivers`` with a short patience: ``python -c LAUNCHER ARGS`` is ``rivers ARGS``."""


async def _wait_for_line(
    path: Path, text: str, process: subprocess.Popen[bytes]
) -> None:
    with anyio.fail_after(30):
        while not path.exists() or text not in path.read_text():
            assert process.poll() is None, path.read_text()
            await anyio.sleep(0.05)


async def test_a_daemon_whose_database_stays_away_exits_and_its_run_is_recovered(
    server: Server, outage_url: str, tmp_path: Path
) -> None:
    pipeline = tmp_path / "pipeline.py"
    pipeline.write_text(PIPELINE.format(seconds=2.0, lease_s=LEASE_S))
    log = tmp_path / "daemon.log"
    env = {**os.environ, "RIVERS_STORAGE": outage_url}
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, "daemon", "-f", str(pipeline)],
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        await _wait_for_line(log, "serving repository", daemon)
        async with open_backend(outage_url) as storage:
            await storage.runs.create_run(_new_run("r1"))
        await _wait_for_line(tmp_path / "started.log", "r1", daemon)
        await server.stop()
        stopped, stopped_at = time.monotonic(), time.time()
        # It rides out the patience and the event writer's retries, then stops on
        # the error instead of hanging.
        with anyio.fail_after(30):
            while daemon.poll() is None:
                await anyio.sleep(0.1)
        exited_after = time.monotonic() - stopped
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert daemon.returncode not in (0, None)
    last = log.read_text().strip().splitlines()[-1]
    assert last.startswith("rivers: error: PostgreSQL storage "), last
    assert "unreachable" in last
    assert outage_url in last
    assert exited_after >= PATIENCE_S

    await server.start()
    # The daemon could not give its step's claim back; its lease (never renewed
    # since the server stopped) ended within LEASE_S of the stop.
    with psycopg.connect(outage_url) as conn:
        leftover = conn.execute(
            "SELECT owner, lease_expires_at FROM pool_claims"
        ).fetchall()
    assert [owner.split(":")[1] for owner, _ in leftover] == [str(daemon.pid)]
    assert all(expires <= stopped_at + LEASE_S for _, expires in leftover)
    # A new runtime fails the dead daemon's run on recovery, and the claim its
    # step held is gone.
    repo = _load_repo(pipeline)
    backend = rs.RunBackendConfig(storage=outage_url, lease_duration=f"{LEASE_S}s")
    async with (
        rs.Runtime(repo, backend=backend) as runtime,
        rs.open_storage(outage_url) as inspect,
    ):
        with anyio.fail_after(10):
            while True:
                run = await inspect.get_run("r1")
                assert run is not None
                if run.status.is_finished:
                    break
                await anyio.sleep(0.1)
        assert run.status is rs.RunStatus.FAILURE
        assert "marked FAILURE on recovery" in (run.reason or ""), run.reason
        with anyio.fail_after(LEASE_S + 5):
            while (await inspect.get_pool_info("db")).claimed_slots:
                await anyio.sleep(0.1)
        # The pool serves the next run.
        handle = await runtime.submit(rs.RunRequest())
        with anyio.fail_after(20):
            record = await handle.wait()
        assert record.status is rs.RunStatus.SUCCESS, record.reason
        assert await inspect.get_pool_slot_holders("db") == []
    assert _count(outage_url, "SELECT COUNT(*) FROM pool_claims") == 0


class NotRecovered(Exception):
    """The run of a runtime that stopped on the outage was never finished."""


async def test_a_runtime_whose_database_stays_away_raises_and_its_run_is_recovered(
    server: Server,
    outage_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pg_connection, "WRITE_PATIENCE_S", PATIENCE_S)
    monkeypatch.setattr(event_writer, "RETRY_DELAYS_S", EVENT_RETRY_DELAYS_S)
    monkeypatch.setattr(run_failure, "FAILURE_RETRY_DELAYS_S", (0.5,))
    pipeline = tmp_path / "pipeline.py"
    pipeline.write_text(PIPELINE.format(seconds=2.0, lease_s=LEASE_S))
    repo = _load_repo(pipeline)
    backend = rs.RunBackendConfig(storage=outage_url, lease_duration=f"{LEASE_S}s")
    run_id = ""
    stopped = 0.0

    async def run_until_the_runtime_stops() -> None:
        nonlocal run_id, stopped
        async with rs.Runtime(repo, backend=backend) as runtime:
            handle = await runtime.submit(rs.RunRequest())
            run_id = handle.run_id
            started = tmp_path / "started.log"
            while not started.exists() or run_id not in started.read_text():
                await anyio.sleep(0.05)
            await server.stop()
            stopped = time.monotonic()
            await handle.wait()  # cancelled when the runtime stops on the error

    with anyio.fail_after(40), pytest.raises(rs.StorageUnavailable) as raised:
        await run_until_the_runtime_stops()
    assert time.monotonic() - stopped >= PATIENCE_S
    message = str(raised.value)
    assert "\n" not in message
    assert "unreachable" in message
    assert outage_url in message

    await server.start()
    async with (
        rs.Runtime(repo, backend=backend),
        rs.open_storage(outage_url) as inspect,
    ):
        with anyio.move_on_after(5):
            while True:
                run = await inspect.get_run(run_id)
                assert run is not None
                if run.status.is_finished:
                    break
                await anyio.sleep(0.2)
        run = await inspect.get_run(run_id)
        assert run is not None
        if not run.status.is_finished:
            raise NotRecovered(
                f"run {run_id} still {run.status.value}, owned by {run.owner}, 5s "
                "after a new runtime started"
            )
        assert run.status is rs.RunStatus.FAILURE
        assert "stopped without recording its end" in (run.reason or "")
        # Nothing it claimed is still held (no one renews its claim: the lease ends).
        with anyio.move_on_after(LEASE_S + 5):
            while await inspect.get_pool_slot_holders("db"):
                await anyio.sleep(0.2)
        assert await inspect.get_pool_slot_holders("db") == []


def _load_repo(pipeline: Path) -> rs.CodeRepository:
    """The repository of ``pipeline`` (a file), imported under a fresh name."""
    import importlib.util

    name = f"outage_pipeline_{time.monotonic_ns()}"
    spec = importlib.util.spec_from_file_location(name, pipeline)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    repo: rs.CodeRepository = module.repo
    return repo
