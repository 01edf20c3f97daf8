"""Run ownership across processes: which runtime may admit and launch what.

Real ``rivers daemon`` processes, real ``rivers submit`` / ``materialize`` / ``runs
why`` / ``top --once`` subprocesses, one SQLite file (and, for the tests marked
``EACH_BACKEND``, one PostgreSQL database too). Each test records what really ran
(the assets append their run id to a log file) and what storage says.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import rivers as rs
from rivers._ids import this_owner
from rivers.storage import open_backend
from rivers.storage.records import NewRun

START_HINT = "start one with `rivers daemon -f FILE`"


class Home:
    """One RIVERS_HOME shared by every process of a test; runs the CLI in it.

    ``storage``: the storage they share, the home's default SQLite file unless a
    PostgreSQL URL is given (then RIVERS_STORAGE names it to every process).
    """

    def __init__(self, tmp_path: Path, postgres_url: str | None = None) -> None:
        self.dir = tmp_path
        self.storage = postgres_url or str(tmp_path / "home" / "rivers.db")
        self.env = {
            **os.environ,
            "RIVERS_HOME": str(tmp_path / "home"),
            "COLUMNS": "200",
        }
        if postgres_url:
            self.env["RIVERS_STORAGE"] = postgres_url
        self.daemons: list[subprocess.Popen[bytes]] = []

    def file(self, name: str, *parts: str) -> Path:
        """Write a pipeline file from parts (each dedented on its own)."""
        path = self.dir / name
        path.write_text("\n".join(textwrap.dedent(part) for part in parts))
        return path

    def log(self, name: str) -> list[str]:
        path = self.dir / name
        return path.read_text().split() if path.exists() else []

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rivers", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def submit(self, pipeline: Path) -> tuple[str, str]:
        """Submit a run of ``pipeline``; return (its id, what submit printed to stderr)."""
        done = self.cli("submit", "-f", str(pipeline))
        assert done.returncode == 0, done.stderr
        return done.stdout.split()[2], done.stderr

    def why(self, run_id: str) -> str:
        done = self.cli("runs", "why", run_id)
        assert done.returncode == 0, done.stderr
        return " ".join(done.stdout.split())

    async def daemon(self, pipeline: Path) -> subprocess.Popen[bytes]:
        """Start ``rivers daemon -f pipeline``; return once it serves its repository."""
        log = self.dir / f"daemon-{len(self.daemons)}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "rivers", "daemon", "-f", str(pipeline)],
                env=self.env,
                stdout=out,
                stderr=out,
            )
        self.daemons.append(process)
        with anyio.fail_after(30):
            while "serving repository" not in log.read_text():
                assert process.poll() is None, log.read_text()
                await anyio.sleep(0.05)
        return process

    def daemon_log(self, index: int) -> str:
        return (self.dir / f"daemon-{index}.log").read_text()

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)

    async def runs(self) -> dict[str, rs.RunRecord]:
        async with open_backend(self.storage) as storage:
            return {r.run_id: r for r in await storage.runs.get_runs(limit=None)}

    async def wait_until_finished(self, *run_ids: str) -> dict[str, rs.RunRecord]:
        with anyio.fail_after(40):
            while True:
                runs = await self.runs()
                if all(runs[r].status.is_finished for r in run_ids):
                    return runs
                await anyio.sleep(0.1)


@pytest.fixture
def storage_url(request: pytest.FixtureRequest) -> str | None:
    """The PostgreSQL URL the test's processes share (None: a SQLite file): SQLite
    unless the test is marked ``EACH_BACKEND``."""
    if getattr(request, "param", "sqlite") == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return None


EACH_BACKEND = pytest.mark.parametrize(
    "storage_url",
    ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
"""Run the test on SQLite and on PostgreSQL (``storage_url``, ``home``)."""


@pytest.fixture
def home(tmp_path: Path, storage_url: str | None) -> Iterator[Home]:
    opened = Home(tmp_path, storage_url)
    yield opened
    for process in opened.daemons:
        opened.stop(process)


def _asset(name: str, log: str, seconds: float = 0.0) -> str:
    return f"""
    @rs.Asset
    async def {name}(context: rs.StepContext) -> None:
        with open(os.path.join(HERE, {log!r}), "a") as f:
            f.write(context.run_id + "\\n")
        await anyio.sleep({seconds})
    """


HEADER = """
import os
import anyio
import rivers as rs

HERE = os.path.dirname(os.path.abspath(__file__))
"""


async def test_a_one_off_materialize_leaves_the_queued_backlog_and_triggers_alone(
    home: Home,
) -> None:
    # Before: `rivers materialize` led the queue, admitted the queued run, and
    # cancelled it on exit ("the runtime stopped"); it also evaluated the sensor.
    pipeline = home.file(
        "pipeline.py",
        HEADER,
        _asset("job", "ran.log", seconds=1.5),
        """
    @rs.sensor(interval="1s")
    def watch(context: rs.SensorContext) -> None:
        with open(os.path.join(HERE, "sensor.log"), "a") as f:
            f.write("evaluated\\n")

    repo = rs.CodeRepository(
        [job],
        sensors=[watch],
        run_queue=rs.RunQueueConfig(max_concurrent_runs=5, dequeue_interval="50ms"),
    )
    """,
    )
    queued, _ = home.submit(pipeline)
    done = home.cli("materialize", "-f", str(pipeline))
    assert done.returncode == 0, done.stderr
    runs = await home.runs()
    assert runs[queued].status is rs.RunStatus.QUEUED, runs[queued].reason
    (materialized,) = (r for r in runs if r != queued)
    assert home.log("ran.log") == [materialized]  # only its own run ran
    assert home.log("sensor.log") == []  # no trigger was evaluated
    # A daemon still runs the backlog afterwards.
    await home.daemon(pipeline)
    runs = await home.wait_until_finished(queued)
    assert runs[queued].status is rs.RunStatus.SUCCESS
    assert home.log("sensor.log")  # the daemon runs triggers


async def test_without_a_run_queue_a_daemon_starts_submitted_runs(
    home: Home,
) -> None:
    # Before: the run stayed QUEUED forever and `runs why` said to start the daemon.
    pipeline = home.file(
        "pipeline.py",
        HEADER,
        _asset("job", "ran.log"),
        "repo = rs.CodeRepository([job])",
    )
    await home.daemon(pipeline)
    first, _ = home.submit(pipeline)
    second, _ = home.submit(pipeline)
    runs = await home.wait_until_finished(first, second)
    assert runs[first].status is rs.RunStatus.SUCCESS
    assert runs[second].status is rs.RunStatus.SUCCESS
    assert sorted(home.log("ran.log")) == sorted([first, second])


@EACH_BACKEND
async def test_a_daemon_never_runs_a_run_of_another_definition_of_its_name(
    home: Home,
) -> None:
    # Before: the daemon of one.py ran drop_tables for two.py's run (SUCCESS).
    queue = 'run_queue=rs.RunQueueConfig(dequeue_interval="50ms")'
    one = home.file(
        "one.py",
        HEADER,
        _asset("drop_tables", "dropped.log"),
        f"repo = rs.CodeRepository([drop_tables], {queue})",
    )
    two = home.file(
        "two.py",
        HEADER,
        _asset("harmless_report", "report.log"),
        f"repo = rs.CodeRepository([harmless_report], {queue})",
    )
    await home.daemon(one)
    theirs, warning = home.submit(two)
    assert "also served on this storage with another definition" in warning
    unserved = "no runtime serves repository 'default' with asset harmless_report"
    assert unserved in " ".join(warning.split())
    # The daemon is admitting: a run of its own definition submitted after
    # two.py's finishes, while two.py's stays queued.
    ours, _ = home.submit(one)
    runs = await home.wait_until_finished(ours)
    assert runs[ours].status is rs.RunStatus.SUCCESS
    assert runs[theirs].status is rs.RunStatus.QUEUED
    assert home.log("dropped.log") == [ours]
    assert unserved in home.why(theirs)
    # The right daemon runs it, and says the name is shared.
    await home.daemon(two)
    assert "another definition" in " ".join(home.daemon_log(1).split())
    runs = await home.wait_until_finished(theirs)
    assert runs[theirs].status is rs.RunStatus.SUCCESS
    assert home.log("report.log") == [theirs]
    assert home.log("dropped.log") == [ours]


@EACH_BACKEND
async def test_two_named_repositories_on_one_storage_each_run_their_runs(
    home: Home,
) -> None:
    # Before: one storage-wide leader read only its own repository's runs, so the
    # other repository's runs stayed QUEUED forever.
    paths = {
        name: home.file(
            f"{name}.py",
            HEADER,
            _asset(f"{name}_job", f"{name}.log", seconds=0.2),
            f"repo = rs.CodeRepository([{name}_job], name={name!r}, "
            "run_queue=rs.RunQueueConfig(max_concurrent_runs=1, "
            'dequeue_interval="50ms"))\n',
        )
        for name in ("alpha", "beta")
    }
    for path in paths.values():
        await home.daemon(path)
    submitted = {
        name: [home.submit(path)[0] for _ in range(2)] for name, path in paths.items()
    }
    runs = await home.wait_until_finished(*submitted["alpha"], *submitted["beta"])
    assert {r.status for r in runs.values()} == {rs.RunStatus.SUCCESS}
    assert sorted(home.log("alpha.log")) == sorted(submitted["alpha"])
    assert sorted(home.log("beta.log")) == sorted(submitted["beta"])
    # Admission stays storage-wide: max_concurrent_runs=1 counts both repositories'
    # runs, so no two runs were ever in flight together.
    spans = sorted((r.started_at, r.ended_at) for r in runs.values())
    for (_, ended), (started, _) in itertools.pairwise(spans):
        assert ended is not None
        assert started is not None
        assert started >= ended


async def test_explanations_say_when_no_daemon_serves_a_queued_run(
    home: Home, tmp_path: Path
) -> None:
    # Before: `runs why` and `top` said "waiting for the next dequeue tick" after
    # the daemon stopped, with the queue settings of whichever repository ran last.
    pipeline = home.file(
        "pipeline.py",
        HEADER,
        _asset("job", "ran.log")
        + "repo = rs.CodeRepository([job], run_queue=rs.RunQueueConfig("
        'max_concurrent_runs=0, dequeue_interval="50ms"))\n',
    )
    run_id, note = home.submit(pipeline)
    no_daemon = f"no daemon is running for repository 'default'; {START_HINT}"
    assert no_daemon in " ".join(note.split())
    assert no_daemon in home.why(run_id)
    daemon = await home.daemon(pipeline)
    assert "max_concurrent_runs 0/0" in home.why(run_id)
    home.stop(daemon)
    assert no_daemon in home.why(run_id)
    top = home.cli("top", "--once")
    assert top.returncode == 0, top.stderr
    assert "no daemon is running for repository 'default'" in " ".join(
        top.stdout.split()
    )
    assert "no daemon with a run queue is running" in top.stdout

    # A runtime of another repository on the storage explains it the same way.
    @rs.Asset
    def unrelated() -> None:
        pass

    other = rs.CodeRepository([unrelated], name="other")
    backend = rs.RunBackendConfig(storage=home.storage)
    async with rs.Runtime(other, backend=backend) as rt:
        assert no_daemon in await rt.explain(run_id)


@EACH_BACKEND
async def test_a_run_admitted_to_a_runtime_that_died_before_launching_it_is_queued_again(
    tmp_path: Path, storage_url: str | None
) -> None:
    async with open_backend(storage_url or tmp_path / "storage.db") as storage:
        await storage.runs.create_run(
            NewRun(
                run_id="r1",
                status=rs.RunStatus.QUEUED,
                repository="default",
                tags={},
                selection=None,
            )
        )
        host, _, _ = this_owner().split(":")
        dead = f"{host}:999999999:0"
        assert await storage.queue.admit_runs(
            [("r1", [])], owner=dead, max_concurrent_runs=1
        )
        assert await storage.processes.fail_runs_of_owner(dead, "died") == []
        run = await storage.runs.get_run("r1")
    assert run is not None
    assert run.status is rs.RunStatus.QUEUED
    assert run.owner is None
    assert "returned to the queue" in (run.reason or "")


@EACH_BACKEND
async def test_a_killed_daemon_serves_nothing_and_the_next_runtime_forgets_it(
    home: Home,
) -> None:
    pipeline = home.file(
        "pipeline.py",
        HEADER,
        _asset("job", "ran.log"),
        "repo = rs.CodeRepository([job], run_queue=rs.RunQueueConfig())",
    )
    daemon = await home.daemon(pipeline)
    daemon.send_signal(signal.SIGKILL)
    daemon.wait()
    async with open_backend(home.storage) as storage:
        owners = {served.owner for served, _ in await storage.processes.get_served()}
    assert [owner.split(":")[1] for owner in owners] == [str(daemon.pid)]
    # Its row is still there, but nothing takes it for a live daemon.
    run_id, note = home.submit(pipeline)
    assert "no daemon is running for repository 'default'" in " ".join(note.split())

    @rs.Asset
    def unrelated() -> None:
        pass

    other = rs.CodeRepository([unrelated], name="other")
    backend = rs.RunBackendConfig(storage=home.storage)
    async with rs.Runtime(other, backend=backend) as rt:
        served = await rt._roles.processes.get_served()
        assert [s.repository for s, _ in served] == ["other"]
        assert "no daemon is running" in await rt.explain(run_id)


async def test_a_repository_attached_to_a_running_runtime_is_served_too(
    tmp_path: Path,
) -> None:
    # Before: only the repositories given to Runtime(...) had a queue coordinator,
    # so a run submitted with repository= to a queued repository never started.
    ran: list[str] = []

    @rs.Asset
    def first() -> None:
        pass

    @rs.Asset
    async def later(context: rs.StepContext) -> None:
        ran.append(context.run_id)

    queue = rs.RunQueueConfig(dequeue_interval="20ms")
    backend = rs.RunBackendConfig(storage=str(tmp_path / "rivers.db"))
    attached = rs.CodeRepository([later], name="attached", run_queue=queue)
    initial = rs.CodeRepository([first], run_queue=queue)
    async with rs.Runtime(initial, backend=backend) as rt:
        handle = await rt.submit(rs.RunRequest(), repository=attached)
        with anyio.fail_after(20):
            record = await handle.wait()
        assert record.status is rs.RunStatus.SUCCESS
        assert ran == [handle.run_id]
        served = {s.repository for s, _ in await rt._roles.processes.get_served()}
    assert served == {"default", "attached"}
