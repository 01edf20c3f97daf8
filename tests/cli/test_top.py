"""``rivers top`` as users run it: beside a live daemon, under a terminal, read-only."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest

import rivers as rs
from rivers.storage import open_backend

PIPELINE = textwrap.dedent(
    """
    import os
    import anyio
    import rivers as rs

    STOP = {stop!r}

    @rs.Asset(pool="warehouse")
    async def load() -> None:
        while not os.path.exists(STOP):
            await anyio.sleep(0.05)

    repo = rs.CodeRepository(
        [load],
        run_queue=rs.RunQueueConfig(
            max_concurrent_runs=3,
            dequeue_interval="50ms",
            tag_concurrency_limits=[
                rs.TagConcurrencyLimit(key="env", value="prod", limit=1),
            ],
        ),
        pool_limits={{"warehouse": 1}},
    )
    """
)


def _env(home: Path, columns: int = 160) -> dict[str, str]:
    return {**os.environ, "RIVERS_HOME": str(home), "COLUMNS": str(columns)}


def _rivers(
    home: Path, *args: str, columns: int = 160
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rivers", *args],
        env=_env(home, columns),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _line(text: str, *needles: str) -> str:
    for line in text.splitlines():
        if all(needle in line for needle in needles):
            return line
    raise AssertionError(f"no line holds {needles!r} in:\n{text}")


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.py"
    path.write_text(PIPELINE.format(stop=str(tmp_path / "stop")))
    return path


async def test_top_once_beside_a_live_daemon_shows_every_gate(
    tmp_path: Path, pipeline: Path
) -> None:
    home = tmp_path / "home"
    for tag in ("env=prod", "env=prod", "env=dev"):
        done = _rivers(home, "submit", "-f", str(pipeline), "--tag", tag)
        assert done.returncode == 0, done.stderr
    with open(tmp_path / "daemon.log", "ab") as log:
        daemon = subprocess.Popen(
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
            env=_env(home),
            stdout=log,
            stderr=log,
        )
    try:
        async with open_backend(home / "rivers.db") as storage:
            with anyio.fail_after(30):
                while True:
                    started = await storage.runs.get_runs(status=rs.RunStatus.STARTED)
                    queued = await storage.runs.get_runs(status=rs.RunStatus.QUEUED)
                    pending = await storage.pools.get_pending_steps("warehouse")
                    if len(started) == 2 and len(pending) == 1 and queued[0].reason:
                        break
                    await anyio.sleep(0.05)
        done = _rivers(home, "top", "--once")
        assert done.returncode == 0, done.stderr
        text = done.stdout
        assert "\x1b" not in text  # piped: no colour or cursor codes
        assert "2/3 max_concurrent_runs" in _line(text, "in flight")
        assert "1/1" in _line(text, "env=prod", "█")
        assert "1/1" in _line(text, "warehouse", "repository")
        assert "runs: 2 in flight, 1 queued" in text
        (blocked,) = queued
        assert "tag env=prod 1/1" in _line(text, blocked.run_id, "QUEUED #1")
        (waiting,) = pending
        assert "load: pool warehouse 1/1, 1st in line" in _line(text, waiting.run_id)
        assert "STEP_POOL_BLOCKED" in text
        assert "RUN_BLOCKED" in text
    finally:
        # Cancel what is still queued before the steps end, so nothing new arrives
        # at the pool while its slot is handed to the waiting step.
        async with open_backend(home / "rivers.db") as storage:
            queued_ids = [
                r.run_id for r in await storage.runs.get_runs(status="QUEUED")
            ]
        for run_id in queued_ids:
            assert _rivers(home, "runs", "cancel", run_id).returncode == 0
        (tmp_path / "stop").touch()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 143  # drained, then 128 + SIGTERM


def _fingerprint(path: Path) -> tuple[object, ...]:
    stat = path.stat()
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        counts = tuple(
            conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("runs", "events", "steps", "kv", "pools", "processes")
        )
    return stat.st_mtime_ns, stat.st_size, counts


def test_top_never_writes_to_the_storage(tmp_path: Path) -> None:
    home = tmp_path / "home"
    quick = tmp_path / "quick.py"
    quick.write_text(
        "import rivers as rs\n\n@rs.Asset\ndef one() -> int:\n    return 1\n\n"
        "repo = rs.CodeRepository([one], executor=rs.Executor.in_process())\n"
    )
    assert _rivers(home, "materialize", "-f", str(quick)).returncode == 0
    db = home / "rivers.db"
    before = _fingerprint(db)
    assert _rivers(home, "top", "--once").returncode == 0
    # The live mode, with stdout a pipe, prints a frame per interval until stopped.
    watcher = subprocess.Popen(
        [sys.executable, "-m", "rivers", "top", "--interval", "0.1"],
        env=_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert watcher.stdout is not None
    seen = b""
    deadline = time.monotonic() + 30
    while seen.count(b"recent events") < 3 and time.monotonic() < deadline:
        seen += os.read(watcher.stdout.fileno(), 65536)
    watcher.send_signal(signal.SIGINT)
    try:
        watcher.communicate(timeout=30)
    finally:
        watcher.kill()  # a no-op once it has exited; never leaks into other tests
        watcher.communicate()
    assert watcher.returncode == 0  # Ctrl-C quits like q: cleanly
    assert seen.count(b"recent events") >= 3
    assert _fingerprint(db) == before


def test_top_on_a_missing_storage_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = _rivers(home, "top", "--once")
    assert done.returncode == 2
    assert done.stderr.startswith("rivers: error: no rivers storage at ")
    assert len(done.stderr.splitlines()) == 1
    assert not home.exists()


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_top_under_a_terminal_redraws_and_quits_on_q(tmp_path: Path) -> None:
    import fcntl
    import pty
    import struct
    import termios

    home = tmp_path / "home"
    quick = tmp_path / "quick.py"
    quick.write_text(
        "import rivers as rs\n\n@rs.Asset\ndef one() -> int:\n    return 1\n\n"
        "repo = rs.CodeRepository([one], executor=rs.Executor.in_process())\n"
    )
    assert _rivers(home, "materialize", "-f", str(quick)).returncode == 0
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    env = _env(home)
    env.pop("COLUMNS")
    process = subprocess.Popen(
        [sys.executable, "-m", "rivers", "top", "--interval", "0.2"],
        env=env,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        start_new_session=True,
    )
    os.close(secondary)
    try:
        output = b""
        deadline = time.monotonic() + 30
        while output.count(b"recent events") < 2 and time.monotonic() < deadline:
            output += os.read(primary, 65536)
        os.write(primary, b"q")
        assert process.wait(timeout=10) == 0
        try:
            while chunk := os.read(primary, 65536):
                output += chunk
        except OSError:  # the terminal closed with the process
            pass
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(primary)
    text = output.decode(errors="replace")
    assert "\x1b[?1049h" in text  # entered the alternate screen
    assert text.rstrip().endswith("\x1b[?1049l")  # and left it on q
    assert "q quits" in text
    assert "run queue" in text
