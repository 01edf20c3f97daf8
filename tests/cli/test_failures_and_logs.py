"""``rivers materialize``/``runs show`` tracebacks and ``rivers runs logs``, as run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

BOOM = textwrap.dedent(
    """
    import rivers as rs


    @rs.Asset
    def boom() -> int:
        data: dict[str, int] = {}
        return data["missing_key"]


    repo = rs.CodeRepository([boom], executor=rs.Executor.parallel(max_workers=1))
    """
)
BOOM_LINE = 8  # return data["missing_key"]

LOGS = textwrap.dedent(
    """
    import rivers as rs


    @rs.Asset
    def orders(context: rs.StepContext) -> list[int]:
        context.log.info("loading %d orders", 2)
        return [5, 7]


    @rs.Asset
    async def revenue(context: rs.StepContext, orders: list[int]) -> int:
        context.log.warning("revenue is %d", sum(orders))
        return sum(orders)


    repo = rs.CodeRepository(
        [orders, revenue], executor=rs.Executor.parallel(max_workers=2)
    )
    """
)

SLOW = textwrap.dedent(
    """
    import os
    import time

    import rivers as rs

    HERE = os.path.dirname(os.path.abspath(__file__))


    @rs.Asset
    def waits(context: rs.StepContext) -> None:
        context.log.info("first line")
        open(os.path.join(HERE, "started"), "w").close()
        while not os.path.exists(os.path.join(HERE, "go")):
            time.sleep(0.01)
        context.log.info("second line")


    repo = rs.CodeRepository([waits], executor=rs.Executor.parallel(max_workers=1))
    """
)


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "RIVERS_HOME": str(home), "NO_COLOR": "1"}


def _rivers(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rivers", *args],
        cwd=cwd,
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "boom.py").write_text(BOOM)
    (folder / "logs.py").write_text(LOGS)
    (folder / "slow.py").write_text(SLOW)
    return folder


def _only_run(project: Path, home: Path) -> str:
    done = _rivers("runs", "list", "--json", cwd=project, home=home)
    [run] = json.loads(done.stdout)
    run_id: str = run["run_id"]
    return run_id


def test_a_failed_materialize_prints_the_traceback_of_the_users_file(
    project: Path, rivers_home: Path
) -> None:
    done = _rivers("materialize", "-f", "boom.py", cwd=project, home=rivers_home)
    assert done.returncode == 1, done.stderr
    where = f'File "{project / "boom.py"}", line {BOOM_LINE}, in boom'
    assert where in done.stdout, done.stdout
    assert "KeyError: 'missing_key'" in done.stdout
    assert "<dynamic-code>" not in done.stdout
    assert "Traceback" not in done.stderr


def test_a_module_named_with_m_shows_its_file_too(
    project: Path, rivers_home: Path
) -> None:
    # Importable by name: the worker imports boom itself (by reference).
    done = _rivers("materialize", "-m", "boom", cwd=project, home=rivers_home)
    assert done.returncode == 1, done.stderr
    where = f'File "{project / "boom.py"}", line {BOOM_LINE}, in boom'
    assert where in done.stdout, done.stdout


def test_runs_show_prints_the_stored_traceback_and_duration(
    project: Path, rivers_home: Path
) -> None:
    _rivers("materialize", "-f", "boom.py", cwd=project, home=rivers_home)
    run_id = _only_run(project, rivers_home)
    shown = _rivers("runs", "show", run_id, cwd=project, home=rivers_home)
    assert shown.returncode == 0, shown.stderr
    where = f'File "{project / "boom.py"}", line {BOOM_LINE}, in boom'
    assert where in shown.stdout, shown.stdout
    as_json = _rivers("runs", "show", run_id, "--json", cwd=project, home=rivers_home)
    [failure] = json.loads(as_json.stdout)["failures"]
    assert where in failure["data"]["traceback"]
    assert isinstance(failure["data"]["duration_s"], float)


def test_runs_logs_prints_each_steps_lines(project: Path, rivers_home: Path) -> None:
    done = _rivers("materialize", "-f", "logs.py", cwd=project, home=rivers_home)
    assert done.returncode == 0, done.stderr
    run_id = _only_run(project, rivers_home)
    logs = _rivers("runs", "logs", run_id, cwd=project, home=rivers_home)
    assert logs.returncode == 0, logs.stderr
    lines = logs.stdout.splitlines()
    assert len(lines) == 2, logs.stdout
    assert lines[0].endswith(" orders INFO loading 2 orders")
    assert lines[1].endswith(" revenue WARNING revenue is 12")
    one = _rivers(
        "runs", "logs", run_id, "--step", "revenue", cwd=project, home=rivers_home
    )
    assert one.stdout.splitlines() == [lines[1]]
    # A short id (the suffix rivers top shows) names the run too.
    short = _rivers("runs", "logs", run_id[-9:], cwd=project, home=rivers_home)
    assert short.stdout.splitlines() == lines


def test_runs_logs_shows_what_a_worker_step_printed(
    project: Path, rivers_home: Path
) -> None:
    (project / "printer.py").write_text(
        textwrap.dedent(
            """
            import rivers as rs


            @rs.Asset
            def noisy() -> int:
                print("hello from print")
                return 1


            repo = rs.CodeRepository([noisy], executor=rs.Executor.parallel())
            """
        )
    )
    done = _rivers("materialize", "-f", "printer.py", cwd=project, home=rivers_home)
    assert done.returncode == 0, done.stderr
    run_id = _only_run(project, rivers_home)
    logs = _rivers("runs", "logs", run_id, cwd=project, home=rivers_home)
    [line] = logs.stdout.splitlines()
    assert line.endswith(" noisy stdout hello from print"), line


def test_runs_logs_json_prints_one_event_per_line(
    project: Path, rivers_home: Path
) -> None:
    _rivers("materialize", "-f", "logs.py", cwd=project, home=rivers_home)
    run_id = _only_run(project, rivers_home)
    done = _rivers("runs", "logs", run_id, "--json", cwd=project, home=rivers_home)
    events: list[dict[str, Any]] = [json.loads(x) for x in done.stdout.splitlines()]
    assert [(e["kind"], e["step_key"], e["data"]["message"]) for e in events] == [
        ("STEP_LOG", "orders", "loading 2 orders"),
        ("STEP_LOG", "revenue", "revenue is 12"),
    ]


@pytest.mark.parametrize(
    "args",
    [("runs", "logs", "no-such-run"), ("runs", "logs", "no-such-run", "--follow")],
    ids=["plain", "follow"],
)
def test_runs_logs_of_an_unknown_run_exits_2_with_one_line(
    project: Path, rivers_home: Path, args: tuple[str, ...]
) -> None:
    _rivers("materialize", "-f", "logs.py", cwd=project, home=rivers_home)
    done = _rivers(*args, cwd=project, home=rivers_home)
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["rivers: error: no run with id 'no-such-run'"]
    assert done.stdout == ""


def test_runs_logs_of_an_unknown_step_exits_2_with_one_line(
    project: Path, rivers_home: Path
) -> None:
    _rivers("materialize", "-f", "logs.py", cwd=project, home=rivers_home)
    run_id = _only_run(project, rivers_home)
    done = _rivers(
        "runs", "logs", run_id, "--step", "nope", cwd=project, home=rivers_home
    )
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("rivers: error: ")
    assert "'nope'" in line


def _wait_for(path: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_runs_logs_follow_streams_lines_until_the_run_ends(
    project: Path, rivers_home: Path
) -> None:
    run = subprocess.Popen(
        [sys.executable, "-m", "rivers", "materialize", "-f", "slow.py"],
        cwd=project,
        env=_env(rivers_home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        _wait_for(project / "started", run)
        run_id = _only_run(project, rivers_home)
        follow = subprocess.Popen(
            [sys.executable, "-m", "rivers", "runs", "logs", run_id, "--follow"],
            cwd=project,
            env=_env(rivers_home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert follow.stdout is not None
        first = follow.stdout.readline()
        assert first.endswith(" waits INFO first line\n"), first
        assert follow.poll() is None  # the run goes on, so does --follow
        (project / "go").touch()
        rest, errors = follow.communicate(timeout=60)
        assert follow.returncode == 0, errors
        assert rest.splitlines()[-1].endswith(" waits INFO second line")
        assert run.wait(timeout=60) == 0
    finally:
        run.kill()
        run.wait()
