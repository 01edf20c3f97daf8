"""Storage faults on real files: a lock held by another writer, a full disk, a
read-only file or directory, a corrupted file, a schema from a newer rivers.

Each fault gives one clear error naming the file (exit 2 and one line from the
CLI, never a traceback), the runtime outlives what it can, and the file is never
left corrupt: it is reopened afterwards and checked with ``PRAGMA integrity_check``.
The lock held by another writer is a real second SQLite connection; the full disk
is ``RLIMIT_FSIZE`` in a child process (and a real 256 KiB tmpfs where a user
namespace may mount one); read-only is ``chmod`` (``chattr +i`` as root).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

import rivers as rs
from rivers.cli.app import run as cli_run
from rivers.storage import _sqlite_connection as sqlite_connection, open_backend
from rivers.storage.base import StorageBackend
from rivers.storage.records import IN_FLIGHT_STATUSES, NewRun
from rivers.storage.schema import SCHEMA_VERSION


def _new_run(run_id: str, **tags: str) -> NewRun:
    return NewRun(
        run_id=run_id,
        status=rs.RunStatus.QUEUED,
        repository="default",
        tags=tags,
        selection=None,
    )


async def _fill(path: Path, count: int) -> None:
    async with open_backend(path) as storage:
        for index in range(count):
            await storage.runs.create_run(_new_run(f"r{index}", n=str(index)))


def _integrity(path: Path) -> tuple[str, int]:
    """Return ``PRAGMA integrity_check`` and the number of runs, read directly."""
    conn = sqlite3.connect(path)
    try:
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
        runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    finally:
        conn.close()
    return check, runs


def _cli(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int | str | None, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli_run(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def _one_line_error(code: int | str | None, out: str, err: str) -> str:
    """Exit 2, one ``rivers: error:`` line on stderr, no traceback; return it."""
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("rivers: error: ")
    return lines[0]


# ------------------------------------------------------------------------ locks


@contextmanager
def _locked(path: Path, for_s: float | None = None) -> Iterator[threading.Event]:
    """Hold ``BEGIN EXCLUSIVE`` from another connection until released (or ``for_s``)."""
    release = threading.Event()
    holding = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            holding.set()
            release.wait(for_s)
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    holder = threading.Thread(target=hold, name="lock-holder")
    holder.start()
    try:
        assert holding.wait(10)
        yield release
    finally:
        release.set()
        holder.join(10)


async def test_a_write_waits_out_a_short_lock_then_succeeds(
    storage: StorageBackend,
) -> None:
    with _locked(Path(storage.describe), for_s=0.5):
        began = time.monotonic()
        with anyio.fail_after(sqlite_connection.BUSY_TIMEOUT_S):
            created = await storage.runs.create_run(_new_run("waited"))
        waited = time.monotonic() - began
    assert created is not None
    assert waited >= 0.3  # it did wait for the lock instead of failing at once
    assert (await storage.runs.get_run("waited")) is not None


@rs.Asset
async def quick() -> int:
    await anyio.sleep(0.01)
    return 1


@rs.Asset(pool="db")
async def pooled(quick: int) -> int:
    await anyio.sleep(0.01)
    return quick


async def test_a_runtime_outlives_a_lock_held_past_the_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The busy timeout is shortened so the lock outlasts it several times over.
    monkeypatch.setattr(sqlite_connection, "BUSY_TIMEOUT_S", 0.2)
    path = tmp_path / "locked.db"
    repo = rs.CodeRepository(
        [quick, pooled],
        run_queue=rs.RunQueueConfig(max_concurrent_runs=3, dequeue_interval="20ms"),
        pool_limits={"db": 1},
        executor=rs.Executor.in_process(),
        backend=rs.RunBackendConfig(storage=str(path), lease_duration="5s"),
    )
    async with rs.Runtime(repo) as rt:
        handles = [await rt.submit(rs.RunRequest()) for _ in range(12)]
        with _locked(path, for_s=1.2):
            await anyio.sleep(1.2)  # the runtime works against the lock meanwhile
        with anyio.fail_after(30):
            records = [await handle.wait() for handle in handles]
    # Every run ended; a run that could not record its progress failed alone,
    # saying why, and the runtime itself carried on to a clean exit.
    for record in records:
        assert record.status in (rs.RunStatus.SUCCESS, rs.RunStatus.FAILURE)
        if record.status is rs.RunStatus.FAILURE:
            assert "locked" in (record.reason or ""), record
    assert sum(r.status is rs.RunStatus.SUCCESS for r in records) >= 1
    async with open_backend(path) as storage:
        assert await storage.runs.count_runs(IN_FLIGHT_STATUSES) == 0
        pool = await storage.pools.get_pool_info("db")
        assert (pool.claimed_slots, pool.pending_steps) == (0, 0)
    assert _integrity(path) == ("ok", 12)


def test_the_cli_on_a_locked_database_reads_but_refuses_writes_in_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sqlite_connection, "BUSY_TIMEOUT_S", 0.2)
    monkeypatch.setattr(sqlite_connection, "WRITE_PATIENCE_S", 0.5)
    path = tmp_path / "locked.db"
    anyio.run(_fill, path, 2)
    with _locked(path):
        code, out, err = _cli(
            ["--storage", str(path), "runs", "list", "--json"], capsys
        )
        assert code == 0, err
        assert len(json.loads(out)) == 2  # WAL: readers are not blocked
        line = _one_line_error(
            *_cli(
                ["--storage", str(path), "pools", "set", "db", "3", "--create"], capsys
            )
        )
    assert "locked by another process" in line
    assert str(path) in line
    assert _integrity(path) == ("ok", 2)


# -------------------------------------------------------------------- full disk

_FILL_UNTIL_FULL = textwrap.dedent(
    """
    import json, resource, signal, sys
    from pathlib import Path

    import anyio
    import rivers as rs
    from rivers.storage import open_backend
    from rivers.storage.records import NewRun

    path, headroom = Path(sys.argv[1]), int(sys.argv[2])

    def run(run_id):
        return NewRun(run_id=run_id, status=rs.RunStatus.QUEUED,
                      repository="default", tags={"pad": "x" * 1000}, selection=None)

    async def main():
        async with open_backend(path) as storage:
            if headroom:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                biggest = max(p.stat().st_size for p in path.parent.glob(path.name + "*"))
                limit = biggest + headroom
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
            created = []
            try:
                for index in range(100_000):
                    await storage.runs.create_run(run(f"full-{index}"))
                    created.append(f"full-{index}")
            except rs.RiversError as exc:
                error = [type(exc).__name__, str(exc)]
            # Reads still work once writes fail.
            readable = len(await storage.runs.get_runs(limit=None))
        print(json.dumps({"error": error, "created": len(created), "readable": readable}))

    anyio.run(main)
    """
)


def test_a_full_disk_is_a_clear_error_and_leaves_the_file_intact(
    tmp_path: Path,
) -> None:
    path = tmp_path / "full.db"
    anyio.run(_fill, path, 3)
    done = subprocess.run(
        [sys.executable, "-c", _FILL_UNTIL_FULL, str(path), str(64 * 1024)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    kind, message = report["error"]
    assert kind == "StorageUnavailable"
    assert str(path) in message
    assert "disk" in message
    assert "\n" not in message
    assert report["created"] >= 1
    assert report["readable"] == 3 + report["created"]
    # Every write that was acknowledged is there; the failed one left nothing.
    assert _integrity(path) == ("ok", 3 + report["created"])


def _tmpfs_available() -> bool:
    if shutil.which("unshare") is None:
        return False
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.mark.skipif(
    not _tmpfs_available(), reason="no user namespace to mount a small tmpfs in"
)
def test_a_really_full_filesystem_says_the_disk_is_full(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    script = tmp_path / "fill.py"
    script.write_text(_FILL_UNTIL_FULL)
    check = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        "print(c.execute('PRAGMA integrity_check').fetchone()[0], "
        "c.execute('SELECT COUNT(*) FROM runs').fetchone()[0])"
    )
    # The tmpfs lives as long as the namespace: fill it, then check it, inside.
    shell = (
        'mount -t tmpfs -o size=256k tmpfs "$1" && '
        '"$2" "$3" "$1/full.db" 0 && "$2" -c "$4" "$1/full.db"'
    )
    done = subprocess.run(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            shell,
            "sh",
            str(mount),
            sys.executable,
            str(script),
            check,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report_line, check_line = done.stdout.splitlines()
    report = json.loads(report_line)
    kind, message = report["error"]
    assert kind == "StorageUnavailable"
    assert "the disk is full" in message
    assert check_line == f"ok {report['created']}"


_DAEMON_PIPELINE = """
import anyio
import rivers as rs

@rs.Asset
async def step() -> int:
    await anyio.sleep(0.01)
    return 1

repo = rs.CodeRepository(
    [step],
    run_queue=rs.RunQueueConfig(max_concurrent_runs=2, dequeue_interval="50ms"),
    executor=rs.Executor.in_process(),
    backend=rs.RunBackendConfig(storage={storage!r}),
)
"""


def test_a_daemon_on_a_full_disk_stops_admitting_and_exits_with_one_line(
    tmp_path: Path,
) -> None:
    import resource
    import signal

    path = tmp_path / "daemon.db"
    pipeline = tmp_path / "pipeline.py"
    pipeline.write_text(_DAEMON_PIPELINE.format(storage=str(path)))
    anyio.run(_fill, path, 40)
    limit = path.stat().st_size + 48 * 1024
    log = tmp_path / "daemon.log"

    def full_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    with log.open("w") as err:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "rivers", "daemon", "-f", str(pipeline)],
            stderr=err,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "RIVERS_HOME": str(tmp_path / "home")},
            preexec_fn=full_disk,
        )
        try:
            deadline = time.monotonic() + 30
            while "disk I/O error" not in log.read_text():
                assert daemon.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            time.sleep(0.5)  # it keeps serving, and keeps refusing to admit
            assert daemon.poll() is None, log.read_text()
        finally:
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(30)
    text = log.read_text()
    assert "Traceback" not in text
    # It stops with one clear line (exit 2), or cleanly if nothing was left to write
    # (143: 128 + SIGTERM, the signal that stopped it).
    assert code in (143, 2), text
    if code == 2:
        assert text.splitlines()[-1].startswith("rivers: error: storage ")
    assert "disk I/O error" in text
    # No corruption, no run lost: whatever was left in flight is recovered.
    assert _integrity(path) == ("ok", 40)

    async def recover() -> list[rs.RunRecord]:
        async with rs.Runtime(backend=rs.RunBackendConfig(storage=str(path))) as rt:
            return await rt.storage.get_runs(limit=None)

    runs = anyio.run(recover)
    assert len(runs) == 40
    queued = [r for r in runs if r.status is rs.RunStatus.QUEUED]
    assert queued  # the full disk stopped admission; these wait for a next daemon
    for run in runs:
        assert run.status in (
            rs.RunStatus.QUEUED,
            rs.RunStatus.SUCCESS,
            rs.RunStatus.FAILURE,
        ), run
        if run.status is rs.RunStatus.FAILURE:
            assert "marked FAILURE on recovery" in (run.reason or ""), run


# -------------------------------------------------------------------- read-only


@contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """Make ``path`` unwritable: ``chmod`` for a user, ``chattr +i`` for root."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(mode & ~0o222)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("running as root without chattr: nothing makes a file read-only")
    done = subprocess.run([chattr, "+i", str(path)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"chattr +i is not allowed here: {done.stderr!r}")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


async def test_a_read_only_file_is_read_but_writes_are_refused_clearly(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ro.db"
    await _fill(path, 2)
    with _read_only(path):
        async with open_backend(path) as storage:
            assert len(await storage.runs.get_runs()) == 2
            with pytest.raises(rs.StorageUnavailable, match="is read-only") as raised:
                await storage.runs.create_run(_new_run("refused"))
            assert str(path) in str(raised.value)
        # A runtime refuses to start rather than run without recording anything.
        with pytest.raises(rs.StorageUnavailable, match="is read-only"):
            async with rs.Runtime(backend=rs.RunBackendConfig(storage=str(path))):
                pass
    assert _integrity(path) == ("ok", 2)


def test_the_cli_on_a_read_only_file_lists_runs_but_refuses_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ro.db"
    anyio.run(_fill, path, 2)
    with _read_only(path):
        code, out, err = _cli(
            ["--storage", str(path), "runs", "list", "--json"], capsys
        )
        assert code == 0, err
        assert len(json.loads(out)) == 2
        line = _one_line_error(
            *_cli(["--storage", str(path), "runs", "cancel", "r0"], capsys)
        )
    assert "is read-only" in line
    assert str(path) in line
    assert _integrity(path) == ("ok", 2)


def test_a_read_only_directory_is_a_clear_error_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    path = folder / "rivers.db"
    anyio.run(_fill, path, 1)
    assert sorted(p.name for p in folder.iterdir()) == ["rivers.db"]
    with _read_only(folder):
        line = _one_line_error(*_cli(["--storage", str(path), "runs", "list"], capsys))
    assert str(path) in line
    assert _integrity(path) == ("ok", 1)


# ------------------------------------------------------------ corrupt or foreign


def _corrupt(path: Path) -> bytes:
    """Overwrite every page but the first (the header) with noise; return the bytes."""
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    assert len(data) >= 3 * page
    noise = bytes((i * 37 + 11) % 256 for i in range(len(data) - page))
    data[page:] = noise
    path.write_bytes(bytes(data))
    return bytes(data)


async def test_a_corrupted_rivers_file_is_refused_naming_it_and_left_alone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "corrupt.db"
    await _fill(path, 50)
    before = _corrupt(path)
    with pytest.raises(rs.StorageUnavailable, match="corrupted") as raised:
        async with open_backend(path) as storage:
            await storage.runs.get_runs()
    assert str(path) in str(raised.value)
    assert path.read_bytes() == before


def test_the_cli_on_a_corrupted_or_truncated_file_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corrupt = tmp_path / "corrupt.db"
    anyio.run(_fill, corrupt, 50)
    _corrupt(corrupt)
    truncated = tmp_path / "truncated.db"
    anyio.run(_fill, truncated, 50)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    for path in (corrupt, truncated):
        line = _one_line_error(*_cli(["--storage", str(path), "runs", "list"], capsys))
        assert str(path) in line
        assert "corrupted" in line


def test_the_cli_refuses_a_schema_from_a_newer_rivers_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "future.db"
    anyio.run(_fill, path, 1)
    conn = sqlite3.connect(path)
    try:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    finally:
        conn.close()
    for argv in (["runs", "list"], ["pools", "set", "db", "2"]):
        line = _one_line_error(*_cli(["--storage", str(path), *argv], capsys))
        assert "newer rivers" in line
        assert "upgrade rivers" in line
        assert str(path) in line
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    finally:
        conn.close()
