"""Output that is not a terminal: whole lines, and a daemon that logs its runs.

Real CLI subprocesses with piped output, a real daemon process and its signals.
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

LONG = "x" * 150

FAILING = textwrap.dedent(
    f"""
    import rivers as rs

    @rs.Asset
    def broken() -> int:
        raise ValueError("{LONG}")

    repo = rs.CodeRepository([broken], executor=rs.Executor.in_process())
    """
)

QUEUED = textwrap.dedent(
    """
    import rivers as rs

    @rs.Asset
    def fine() -> int:
        return 1

    @rs.Asset
    def boom() -> int:
        raise KeyError("missing_key")

    repo = rs.CodeRepository(
        [fine, boom],
        name="shop",
        executor=rs.Executor.in_process(),
        run_queue=rs.RunQueueConfig(max_concurrent_runs=1, dequeue_interval="50ms"),
    )
    """
)


def _env(home: Path) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return {**inherited, "RIVERS_HOME": str(home), "NO_COLOR": "1"}


def _rivers(cwd: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rivers", *args],
        cwd=cwd,
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_piped_output_prints_long_values_on_one_line(
    tmp_path: Path, rivers_home: Path
) -> None:
    (tmp_path / "failing.py").write_text(FAILING)
    done = _rivers(
        tmp_path,
        rivers_home,
        "materialize",
        "-f",
        "failing.py",
        "--tag",
        f"team={LONG}",
    )
    assert done.returncode == 1, done.stderr
    # The run's error, in the summary, is one line.
    assert f"ValueError: {LONG}" in done.stdout.splitlines()[-1]

    listed = _rivers(tmp_path, rivers_home, "runs", "list")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["RUN", "STATUS", "TAGS", "CREATED", "DURATION", "REASON"]
    assert f"team={LONG}" in row
    assert f"ValueError: {LONG}" in row


def test_columns_still_sets_the_width_of_piped_output(
    tmp_path: Path, rivers_home: Path
) -> None:
    (tmp_path / "failing.py").write_text(FAILING)
    _rivers(tmp_path, rivers_home, "materialize", "-f", "failing.py")
    listed = subprocess.run(
        [sys.executable, "-m", "rivers", "runs", "list"],
        cwd=tmp_path,
        env={**_env(rivers_home), "COLUMNS": "100"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) > 2  # the long reason folds
    assert max(len(line) for line in lines) <= 100


def _finished(home: Path) -> dict[str, str]:
    with sqlite3.connect(home / "rivers.db") as db:
        return dict(
            db.execute(
                "SELECT run_id, status FROM runs"
                " WHERE status IN ('SUCCESS', 'FAILURE', 'CANCELED')"
            ).fetchall()
        )


def test_the_daemon_logs_a_line_per_admitted_and_ended_run(
    tmp_path: Path, rivers_home: Path
) -> None:
    (tmp_path / "pipeline.py").write_text(QUEUED)
    submitted = []
    for step in ("fine", "boom"):
        done = _rivers(
            tmp_path, rivers_home, "submit", "-f", "pipeline.py", "--select", step
        )
        assert done.returncode == 0, done.stderr
        submitted.append(done.stdout.split()[2])
    good, bad = submitted
    log_path = tmp_path / "daemon.log"
    with open(log_path, "wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "rivers", "daemon", "-f", "pipeline.py"],
            cwd=tmp_path,
            env=_env(rivers_home),
            stdout=log,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + 30
        while len(_finished(rivers_home)) < 2:
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 143  # 128 + SIGTERM, after draining
    lines = log_path.read_text().splitlines()

    def about(run_id: str) -> list[str]:
        return [line for line in lines if f"run {run_id} " in line]

    prefix = "rivers daemon: run {} (repository 'shop') "
    admitted, succeeded = about(good)
    assert admitted.startswith(prefix.format(good) + "admitted after ")
    assert admitted.endswith("s in the queue")
    assert succeeded.startswith(prefix.format(good) + "SUCCESS in ")
    admitted, failed = about(bad)
    assert admitted.startswith(prefix.format(bad) + "admitted after ")
    assert failed.startswith(prefix.format(bad) + "FAILURE in ")
    assert failed.endswith("KeyError: 'missing_key'"), failed


def test_a_canceled_run_logs_its_time_since_it_started_and_one_line_reason() -> None:
    from datetime import UTC, datetime, timedelta

    from rivers.cli.daemon_log import run_line
    from rivers.storage.records import Event

    started = datetime(2026, 1, 1, tzinfo=UTC)
    canceled = Event(
        event_id=9,
        kind="RUN_CANCELED",
        run_id="r1",
        step_key=None,
        timestamp=started + timedelta(seconds=2.5),
        data={"reason": "canceled\nby [bold]ops[/]"},
    )
    assert run_line(canceled, "shop", started) == (
        "rivers daemon: run r1 (repository 'shop') CANCELED in 2.5s: "
        "canceled by \\[bold]ops\\[/]"
    )
    assert run_line(canceled, "shop", None) == (
        "rivers daemon: run r1 (repository 'shop') CANCELED: canceled by \\[bold]ops\\[/]"
    )
