"""The materialize progress display: shown on a terminal, erased after, else absent."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rivers.dashboard.progress import ProgressState, progress_enabled
from rivers.storage.records import Event

PIPELINE = textwrap.dedent(
    """
    import anyio
    import rivers as rs

    @rs.Asset
    async def extract() -> int:
        await anyio.sleep(0.3)
        return 1

    @rs.Asset(pool="db")
    async def load_a(extract: int) -> int:
        await anyio.sleep(0.4)
        return 2

    @rs.Asset(pool="db")
    async def load_b(extract: int) -> int:
        await anyio.sleep(0.4)
        return 3

    repo = rs.CodeRepository([extract, load_a, load_b], pool_limits={"db": 1})

    if __name__ == "__main__":
        result = repo.materialize()
        print("finished", result.status.value)
    """
)


def _event(n: int, kind: str, step: str | None = None, **data: object) -> Event:
    return Event(
        event_id=n,
        kind=kind,
        run_id="r1",
        step_key=step,
        timestamp=datetime.now(UTC),
        data=dict(data),
    )


def test_the_state_counts_done_running_and_pool_waits() -> None:
    state = ProgressState()
    for event in (
        _event(1, "RUN_STARTED", steps=4),
        _event(2, "STEP_STARTED", "a"),
        _event(3, "STEP_SUCCESS", "a"),
        _event(4, "STEP_POOL_BLOCKED", "b", pool="db"),
        _event(5, "STEP_POOL_BLOCKED", "c", pool="db"),
        _event(6, "STEP_STARTED", "d"),
        _event(7, "STEP_POOL_CLAIMED", "c"),
        _event(8, "STEP_STARTED", "c"),
    ):
        state.apply(event)
    run = state.runs["r1"]
    assert (run.total, run.finished) == (4, 1)
    assert run.detail() == "2 running, 1 waiting on pool db"
    state.apply(_event(9, "STEP_FAILURE", "d", error="boom"))
    assert run.detail() == "1 running, 1 waiting on pool db, 1 failed"
    assert run.finished == 2


def test_events_of_runs_started_before_listening_are_ignored() -> None:
    state = ProgressState()
    assert state.apply(_event(1, "STEP_STARTED", "a")) is None
    assert state.runs == {}


def test_progress_is_off_when_disabled_or_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not progress_enabled()  # pytest captures stdout: not a terminal
    monkeypatch.setattr(sys, "stdout", open(os.devnull, "w"))  # noqa: SIM115
    try:
        assert not progress_enabled()
    finally:
        sys.stdout.close()
    monkeypatch.setenv("RIVERS_NO_PROGRESS", "1")
    assert not progress_enabled()


def _in_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal as stdin, stdout and stderr."""
    import pty

    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        argv, env=env, stdin=secondary, stdout=secondary, stderr=secondary
    )
    os.close(secondary)
    output = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            output += chunk
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(primary)
    return code, output.decode(errors="replace")


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.py"
    path.write_text(PIPELINE)
    return path


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    inherited = {
        key: value
        for key, value in os.environ.items()
        if key not in ("RIVERS_NO_PROGRESS", "NO_COLOR")
    }
    return {**inherited, "RIVERS_HOME": str(tmp_path / "home"), **extra}


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_cli_materialize_on_a_terminal_shows_progress_then_erases_it(
    tmp_path: Path, pipeline: Path
) -> None:
    code, text = _in_terminal(
        [sys.executable, "-m", "rivers", "materialize", "-f", str(pipeline)],
        _env(tmp_path),
    )
    assert code == 0, text
    assert "steps" in text
    assert "1 waiting on pool db" in text
    assert "3/3" in text
    # The last progress frame is erased before the summary is printed.
    progress_end = text.rindex("1 waiting on pool db")
    assert "\x1b[2K" in text[progress_end:]
    summary = text[text.rindex("STEP") :]
    assert "SUCCESS" in summary
    assert "waiting on pool" not in summary


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_repo_materialize_on_a_terminal_shows_progress(
    tmp_path: Path, pipeline: Path
) -> None:
    code, text = _in_terminal([sys.executable, str(pipeline)], _env(tmp_path))
    assert code == 0, text
    assert "waiting on pool db" in text
    assert "finished SUCCESS" in text


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_rivers_no_progress_turns_it_off_on_a_terminal(
    tmp_path: Path, pipeline: Path
) -> None:
    code, text = _in_terminal(
        [sys.executable, str(pipeline)], _env(tmp_path, RIVERS_NO_PROGRESS="1")
    )
    assert code == 0, text
    assert "waiting on pool" not in text
    assert "finished SUCCESS" in text


def test_no_progress_when_stdout_is_not_a_terminal(
    tmp_path: Path, pipeline: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rivers", "materialize", "-f", str(pipeline)],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "waiting on pool" not in done.stdout + done.stderr
    assert "\x1b" not in done.stdout
    assert "SUCCESS" in done.stdout
