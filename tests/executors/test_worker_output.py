"""What worker processes print: nothing of their own, and the step's lines via the parent.

Real worker processes, real CLI and script subprocesses, a real pseudo-terminal.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

QUIET = textwrap.dedent(
    """
    import rivers as rs

    @rs.Asset
    def numbers() -> list[int]:
        return [1, 2, 3]

    @rs.Asset
    def total(numbers: list[int]) -> int:
        return sum(numbers)

    repo = rs.CodeRepository(
        [numbers, total], executor=rs.Executor.parallel(max_workers=2)
    )

    if __name__ == "__main__":
        assert repo.materialize().success
    """
)

CHATTY = textwrap.dedent(
    """
    import logging
    import os
    import subprocess
    import sys

    import rivers as rs

    @rs.Asset
    def chatty(context: rs.StepContext) -> int:
        print("printed line")
        print("to stderr", file=sys.stderr)
        logging.getLogger("user").warning("logged warning")
        os.write(1, b"raw fd line\\n")
        subprocess.run([sys.executable, "-c", "print('child line')"], check=True)
        context.log.warning("careful")
        sys.stdout.write("no newline at the end")
        return 1

    repo = rs.CodeRepository([chatty], executor=rs.Executor.parallel(max_workers=1))
    """
)


def _env(home: Path) -> dict[str, str]:
    inherited = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RIVERS_NO_PROGRESS", "NO_COLOR", "PYTHONWARNINGS")
    }
    return {**inherited, "RIVERS_HOME": str(home)}


def _run(argv: list[str], home: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=cwd,
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _step_logs(home: Path) -> list[tuple[str, str | None, str]]:
    """(message, stream, level) of every STEP_LOG event, oldest first."""
    with sqlite3.connect(home / "rivers.db") as db:
        rows = db.execute(
            "SELECT json_extract(data, '$.message'), json_extract(data, '$.stream'),"
            " json_extract(data, '$.level') FROM events WHERE kind = 'STEP_LOG'"
            " ORDER BY event_id"
        ).fetchall()
    return [(str(m), s, str(level)) for m, s, level in rows]


def test_cli_materialize_of_sync_steps_prints_nothing_on_stderr(
    tmp_path: Path, rivers_home: Path
) -> None:
    (tmp_path / "pipeline.py").write_text(QUIET)
    done = _run(
        [sys.executable, "-m", "rivers", "materialize", "-f", "pipeline.py"],
        rivers_home,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "SUCCESS: 2/2 steps succeeded" in done.stdout
    assert done.stderr == ""


def test_a_script_materializing_sync_steps_prints_nothing(
    tmp_path: Path, rivers_home: Path
) -> None:
    (tmp_path / "pipeline.py").write_text(QUIET)
    done = _run([sys.executable, "pipeline.py"], rivers_home, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout == ""


def test_what_a_worker_step_prints_reaches_the_user_and_the_event_log(
    tmp_path: Path, rivers_home: Path
) -> None:
    (tmp_path / "pipeline.py").write_text(CHATTY)
    done = _run(
        [sys.executable, "-m", "rivers", "materialize", "-f", "pipeline.py"],
        rivers_home,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    printed = ["printed line", "raw fd line", "child line", "no newline at the end"]
    assert done.stdout.splitlines()[: len(printed)] == printed
    errors = done.stderr.splitlines()
    assert errors[:2] == ["to stderr", "logged warning"]
    # context.log is logged once, by the parent, not echoed again from the worker.
    assert len(errors) == 3
    assert errors[2].endswith(" chatty] careful")
    logs = _step_logs(rivers_home)
    by_stream = {
        stream: [(message, level) for message, s, level in logs if s == stream]
        for stream in ("stdout", "stderr", None)
    }
    assert by_stream["stdout"] == [(line, "INFO") for line in printed]
    assert by_stream["stderr"] == [
        ("to stderr", "WARNING"),
        ("logged warning", "WARNING"),
    ]
    assert by_stream[None] == [("careful", "WARNING")]
    assert len(logs) == 7


WAITS_THEN_PRINTS = textwrap.dedent(
    """
    import os
    import time

    import rivers as rs

    @rs.Asset
    def slow() -> int:
        go = os.environ["GO_FILE"]
        while not os.path.exists(go):  # the test saw the progress line
            time.sleep(0.01)
        print("a line from the step")
        return 1

    repo = rs.CodeRepository([slow], executor=rs.Executor.parallel(max_workers=1))
    """
)


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_a_worker_line_prints_above_the_live_progress_line(
    tmp_path: Path, rivers_home: Path
) -> None:
    import pty

    (tmp_path / "pipeline.py").write_text(WAITS_THEN_PRINTS)
    go = tmp_path / "go"
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "rivers", "materialize", "-f", "pipeline.py"],
        cwd=tmp_path,
        env={**_env(rivers_home), "GO_FILE": str(go)},
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
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
            if b"1 running" in output and not go.exists():
                go.touch()
        assert process.wait(timeout=30) == 0, output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(primary)
    text = output.decode(errors="replace")
    at = text.index("a line from the step")
    # rich erased the progress line first (it is drawn again below the line) ...
    assert text[:at].endswith("\x1b[2K"), repr(text[at - 80 : at])
    # ... so the line stands alone, not appended to the progress line.
    assert "1 running" in text[at:]


async def test_a_step_printing_more_than_a_pipe_holds_sends_every_line(
    capfd: pytest.CaptureFixture[str],
) -> None:
    import rivers as rs

    @rs.Asset
    def flood() -> int:
        for n in range(2000):
            sys.stdout.write(f"line {n} " + "y" * 60 + "\n")
        sys.stdout.write("z" * 100_000)  # one unfinished line longer than a pipe
        return 1

    repo = rs.CodeRepository([flood], executor=rs.Executor.parallel(max_workers=1))
    async with rs.Runtime(repo) as runtime:
        result = await runtime.materialize()
        assert result.success
        events = await runtime.storage.get_events(result.run_id, kinds=["STEP_LOG"])
    lines = [str(e.data["message"]) for e in events]
    assert lines[:2000] == [f"line {n} " + "y" * 60 for n in range(2000)]
    assert "".join(lines[2000:]) == "z" * 100_000
    assert {e.data["stream"] for e in events} == {"stdout"}
    out = capfd.readouterr().out
    assert out.startswith("line 0 ")
    assert out.count("\n") == len(lines)
