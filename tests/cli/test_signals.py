"""SIGTERM is Ctrl-C: the runs are canceled, slots released, workers gone, exit 143.

Each test starts a real process (the CLI, or a script calling ``repo.materialize()``)
whose step holds a pool slot in a worker process, sends it SIGTERM once the step
runs, and reads the storage afterwards. Before, SIGTERM killed the process at once:
the run stayed STARTED and its slot claimed until another process recovered it.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

_PIPELINE = """
import os
import time

import rivers as rs


@rs.Asset(pool="db")
def holds() -> int:
    with open(os.environ["STEP_MARKER"], "w") as marker:
        marker.write(str(os.getpid()))
    go = os.environ["STEP_MARKER"] + ".go"
    for _ in range(600):  # until the test says go, at most a minute
        if os.path.exists(go):
            return 1
        time.sleep(0.1)
    return 1


repo = rs.CodeRepository(
    [holds],
    executor=rs.Executor.parallel(max_workers=1),
    pool_limits={"db": 1},
    run_queue=rs.RunQueueConfig(dequeue_interval="50ms"),
)
"""


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RIVERS_HOME": str(tmp_path / "home"),
        "STEP_MARKER": str(tmp_path / "step.pid"),
    }


def _write_pipeline(tmp_path: Path, tail: str = "") -> Path:
    path = tmp_path / "pipeline.py"
    path.write_text(_PIPELINE + textwrap.dedent(tail))
    return path


def _submit(tmp_path: Path, pipeline: Path) -> None:
    """Queue one run of ``pipeline`` for a daemon (``rivers submit``)."""
    submitted = subprocess.run(
        [sys.executable, "-m", "rivers", "submit", "-f", str(pipeline)],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert submitted.returncode == 0, submitted.stderr


def _start(tmp_path: Path, *argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *argv],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _terminate_once_the_step_runs(
    tmp_path: Path, process: subprocess.Popen[str], signum: int = signal.SIGTERM
) -> tuple[int, str, str, int]:
    """Wait for the step's marker, send ``signum``; return (code, out, err, worker)."""
    marker = tmp_path / "step.pid"
    deadline = time.monotonic() + 60
    while not (marker.exists() and marker.read_text()):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    worker = int(marker.read_text())
    assert psutil.pid_exists(worker)
    process.send_signal(signum)
    try:
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, out, err, worker


def _stored(tmp_path: Path) -> tuple[list[tuple[str, str | None]], int]:
    """The runs' (status, reason) and the number of pool claims left."""
    conn = sqlite3.connect(tmp_path / "home" / "rivers.db")
    try:
        runs = conn.execute("SELECT status, reason FROM runs").fetchall()
        claims = conn.execute("SELECT COUNT(*) FROM pool_claims").fetchone()[0]
    finally:
        conn.close()
    return runs, claims


def _assert_gone(pid: int) -> None:
    deadline = time.monotonic() + 5
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie":
        assert time.monotonic() < deadline, f"worker {pid} outlived its runtime"
        time.sleep(0.05)


def test_sigterm_cancels_a_cli_materialize_and_exits_143(tmp_path: Path) -> None:
    pipeline = _write_pipeline(tmp_path)
    process = _start(tmp_path, "-m", "rivers", "materialize", "-f", str(pipeline))
    code, _, err, worker = _terminate_once_the_step_runs(tmp_path, process)
    assert code == 143, err
    assert "Traceback" not in err
    assert err.rstrip().endswith("terminated")
    runs, claims = _stored(tmp_path)
    assert runs == [("CANCELED", "the runtime stopped")]
    assert claims == 0
    _assert_gone(worker)


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)]
)
def test_sigterm_or_ctrl_c_drains_the_daemon_then_exits_128_plus_the_signal(
    tmp_path: Path, signum: signal.Signals, code: int
) -> None:
    pipeline = _write_pipeline(tmp_path)
    _submit(tmp_path, pipeline)
    process = _start(
        tmp_path, "-m", "rivers", "daemon", "-f", str(pipeline), "--grace", "0.2"
    )
    exit_code, _, err, worker = _terminate_once_the_step_runs(tmp_path, process, signum)
    assert exit_code == code, err
    assert "Traceback" not in err
    assert f"{signum.name}: no new runs admitted" in err
    runs, claims = _stored(tmp_path)
    assert runs == [("CANCELED", "the runtime stopped")]
    assert claims == 0
    _assert_gone(worker)


def test_sigterm_to_the_daemons_process_group_lets_running_steps_finish(
    tmp_path: Path,
) -> None:
    # systemd (KillMode=control-group) and `kill -TERM -PGID` signal the workers
    # too: they leave it to the daemon, which drains, so the step still finishes.
    pipeline = _write_pipeline(tmp_path)
    _submit(tmp_path, pipeline)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "rivers", "daemon", "-f", str(pipeline)],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    marker = tmp_path / "step.pid"
    try:
        deadline = time.monotonic() + 60
        while not (marker.exists() and marker.read_text()):
            assert daemon.poll() is None, daemon.communicate()
            assert time.monotonic() < deadline, "the step never started"
            time.sleep(0.05)
        os.killpg(daemon.pid, signal.SIGTERM)
        # Pending in every process of the group before the step can see "go".
        (tmp_path / "step.pid.go").touch()
        _, rest = daemon.communicate(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    assert daemon.returncode == 143, rest
    runs, claims = _stored(tmp_path)
    assert runs == [("SUCCESS", None)]
    assert claims == 0


def test_sigterm_cancels_repo_materialize_in_a_plain_script(tmp_path: Path) -> None:
    script = _write_pipeline(
        tmp_path,
        """
        try:
            repo.materialize()
        finally:
            print("finally ran")
        """,
    )
    process = _start(tmp_path, str(script))
    code, out, err, worker = _terminate_once_the_step_runs(tmp_path, process)
    assert code == 143, err
    assert out == "finally ran\n"  # a SystemExit: the script's own cleanup runs
    assert "Traceback" not in err
    runs, claims = _stored(tmp_path)
    assert runs == [("CANCELED", "the runtime stopped")]
    assert claims == 0
    _assert_gone(worker)


def test_sigterm_stops_top_with_143(tmp_path: Path) -> None:
    quick = tmp_path / "quick.py"
    quick.write_text(
        "import rivers as rs\n\n@rs.Asset\ndef one() -> int:\n    return 1\n\n"
        "repo = rs.CodeRepository([one], executor=rs.Executor.in_process())\n"
    )
    env = _env(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "rivers", "materialize", "-f", str(quick)],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    top = subprocess.Popen(
        [sys.executable, "-m", "rivers", "top", "--interval", "0.1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert top.stdout is not None
    seen = b""
    deadline = time.monotonic() + 30
    while b"recent events" not in seen and time.monotonic() < deadline:
        seen += os.read(top.stdout.fileno(), 65536)
    top.send_signal(signal.SIGTERM)
    try:
        _, err = top.communicate(timeout=30)
    finally:
        top.kill()  # a no-op once it has exited
        top.communicate()
    assert top.returncode == 143, err
    assert b"Traceback" not in err
