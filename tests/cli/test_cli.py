"""The ``rivers`` command as users run it: a real process, exit codes, output."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

PIPELINE = textwrap.dedent(
    """
    import rivers as rs

    @rs.Asset
    def numbers() -> list[int]:
        return [1, 2, 3]

    @rs.Asset
    def total(numbers: list[int]) -> int:
        return sum(numbers)

    repo = rs.CodeRepository([numbers, total], executor=rs.Executor.in_process())
    """
)

FAILING = textwrap.dedent(
    """
    import rivers as rs

    @rs.Asset
    def fine() -> int:
        return 1

    @rs.Asset
    def broken(fine: int) -> int:
        raise ValueError("no data today")

    repo = rs.CodeRepository([fine, broken], executor=rs.Executor.in_process())
    """
)


def _rivers(
    *args: str, cwd: Path, home: Path, check_code: int | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RIVERS_HOME": str(home), "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "rivers", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if check_code is not None:
        assert done.returncode == check_code, (done.stdout, done.stderr)
    return done


def _assert_one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """Exit 2, one ``rivers: error:`` line on stderr, no traceback; return it."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert "Traceback" not in done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("rivers: error: ")
    return lines[0]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory holding pipeline.py (succeeds) and failing.py (one step fails)."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "pipeline.py").write_text(PIPELINE)
    (folder / "failing.py").write_text(FAILING)
    return folder


def _runs(project: Path, home: Path, *extra: str) -> list[dict[str, Any]]:
    done = _rivers(*extra, "runs", "list", "--json", cwd=project, home=home)
    assert done.returncode == 0, done.stderr
    runs: list[dict[str, Any]] = json.loads(done.stdout)
    return runs


def test_materialize_runs_the_pipeline_and_exits_0(
    project: Path, rivers_home: Path
) -> None:
    done = _rivers(
        "materialize", "-f", "pipeline.py", cwd=project, home=rivers_home, check_code=0
    )
    assert "SUCCESS: 2/2 steps succeeded" in done.stdout
    assert done.stderr == ""
    [run] = _runs(project, rivers_home)
    assert run["status"] == "SUCCESS"
    assert (rivers_home / "rivers.db").is_file()


def test_materialize_with_a_failing_step_exits_1(
    project: Path, rivers_home: Path
) -> None:
    done = _rivers(
        "materialize", "-f", "failing.py", cwd=project, home=rivers_home, check_code=1
    )
    assert "FAILURE" in done.stdout
    assert "no data today" in done.stdout
    # The user's traceback (from failing.py), never one of rivers itself.
    assert "Traceback" not in done.stderr
    assert f'File "{project / "failing.py"}", line 10, in broken' in done.stdout
    assert "rivers/actors" not in done.stdout
    [run] = _runs(project, rivers_home)
    assert run["status"] == "FAILURE"
    assert "ValueError: no data today" in run["reason"]


def test_materialize_select_runs_only_the_selection(
    project: Path, rivers_home: Path
) -> None:
    _rivers("materialize", "-f", "pipeline.py", cwd=project, home=rivers_home)
    done = _rivers(
        "materialize",
        "-f",
        "pipeline.py",
        "--select",
        "total",
        cwd=project,
        home=rivers_home,
        check_code=0,
    )
    assert "1/1 steps succeeded" in done.stdout
    newest = _runs(project, rivers_home)[0]
    assert newest["selection"] == ["total"]


def test_select_of_an_unknown_asset_exits_2_with_one_line(
    project: Path, rivers_home: Path
) -> None:
    done = _rivers(
        "materialize",
        "-f",
        "pipeline.py",
        "--select",
        "numbers,nope",
        cwd=project,
        home=rivers_home,
    )
    line = _assert_one_line_error(done)
    assert "no asset named 'nope'" in line
    assert done.stdout == ""


def test_a_missing_file_exits_2_with_one_line(project: Path, rivers_home: Path) -> None:
    done = _rivers("materialize", "-f", "missing.py", cwd=project, home=rivers_home)
    assert "no such file: 'missing.py'" in _assert_one_line_error(done)


def test_a_file_that_fails_to_import_exits_2_with_one_line(
    project: Path, rivers_home: Path
) -> None:
    (project / "broken.py").write_text("import rivers\nraise RuntimeError('oops')\n")
    done = _rivers("materialize", "-f", "broken.py", cwd=project, home=rivers_home)
    line = _assert_one_line_error(done)
    assert "importing 'broken.py' failed: RuntimeError: oops" in line


def test_a_file_with_invalid_definitions_exits_2_with_one_line(
    project: Path, rivers_home: Path
) -> None:
    (project / "cycle.py").write_text(
        textwrap.dedent(
            """
            import rivers as rs

            @rs.Asset
            def a(b: int) -> int:
                return b

            @rs.Asset
            def b(a: int) -> int:
                return a

            repo = rs.CodeRepository([a, b])
            """
        )
    )
    done = _rivers("materialize", "-f", "cycle.py", cwd=project, home=rivers_home)
    assert "a -> b -> a" in _assert_one_line_error(done)


def test_runs_list_json_has_the_runs_newest_first(
    project: Path, rivers_home: Path
) -> None:
    _rivers("materialize", "-f", "pipeline.py", cwd=project, home=rivers_home)
    _rivers("materialize", "-f", "failing.py", cwd=project, home=rivers_home)
    runs = _runs(project, rivers_home)
    assert [r["status"] for r in runs] == ["FAILURE", "SUCCESS"]
    assert {"run_id", "status", "tags", "created_at", "reason"} <= set(runs[0])
    filtered = _rivers(
        "runs",
        "list",
        "--json",
        "--status",
        "success",
        cwd=project,
        home=rivers_home,
        check_code=0,
    )
    assert [r["status"] for r in json.loads(filtered.stdout)] == ["SUCCESS"]


def test_runs_list_with_a_bad_status_exits_2(project: Path, rivers_home: Path) -> None:
    done = _rivers("runs", "list", "--status", "bogus", cwd=project, home=rivers_home)
    assert "--status 'bogus' is not a run status" in _assert_one_line_error(done)


def test_runs_show_json_has_the_run_and_its_steps(
    project: Path, rivers_home: Path
) -> None:
    _rivers("materialize", "-f", "failing.py", cwd=project, home=rivers_home)
    [run] = _runs(project, rivers_home)
    done = _rivers(
        "runs",
        "show",
        run["run_id"],
        "--json",
        cwd=project,
        home=rivers_home,
        check_code=0,
    )
    shown = json.loads(done.stdout)
    assert shown["run"]["run_id"] == run["run_id"]
    assert shown["run"]["status"] == "FAILURE"
    steps = {s["step_key"]: s for s in shown["steps"]}
    assert steps["fine"]["status"] == "SUCCESS"
    assert steps["broken"]["status"] == "FAILURE"
    assert "no data today" in steps["broken"]["error"]
    assert steps["broken"]["attempts"] == 1


def test_runs_show_of_an_unknown_run_exits_2(project: Path, rivers_home: Path) -> None:
    _rivers("materialize", "-f", "pipeline.py", cwd=project, home=rivers_home)
    done = _rivers("runs", "show", "unknown", cwd=project, home=rivers_home)
    assert "no run with id 'unknown'" in _assert_one_line_error(done)


def test_the_storage_option_is_honoured(
    project: Path, rivers_home: Path, tmp_path: Path
) -> None:
    other = tmp_path / "elsewhere" / "runs.db"
    _rivers(
        "--storage",
        str(other),
        "materialize",
        "-f",
        "pipeline.py",
        cwd=project,
        home=rivers_home,
        check_code=0,
    )
    assert other.is_file()
    [run] = _runs(project, rivers_home, "--storage", str(other))
    assert run["status"] == "SUCCESS"
    # Nothing went to $RIVERS_HOME/rivers.db, and reading it does not create it.
    done = _rivers("runs", "list", cwd=project, home=rivers_home)
    assert "no rivers storage at" in _assert_one_line_error(done)
    assert not (rivers_home / "rivers.db").exists()
    by_url = _runs(project, rivers_home, "--storage", f"sqlite:///{other}")
    assert [r["run_id"] for r in by_url] == [run["run_id"]]


def test_a_storage_file_of_another_app_exits_2(
    project: Path, rivers_home: Path, tmp_path: Path
) -> None:
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    try:
        conn.execute("CREATE TABLE notes (body TEXT)")
    finally:
        conn.close()
    done = _rivers(
        "--storage", str(foreign), "runs", "list", cwd=project, home=rivers_home
    )
    assert "did not create" in _assert_one_line_error(done)


def test_tags_are_stored_on_the_run(project: Path, rivers_home: Path) -> None:
    _rivers(
        "materialize",
        "-f",
        "pipeline.py",
        "--tag",
        "env=dev",
        "--tag",
        "team=core",
        cwd=project,
        home=rivers_home,
        check_code=0,
    )
    [run] = _runs(project, rivers_home)
    assert run["tags"] == {"env": "dev", "team": "core"}
    done = _rivers(
        "runs", "list", "--json", "--tag", "env=dev", cwd=project, home=rivers_home
    )
    assert json.loads(done.stdout) == [run]
    done = _rivers(
        "runs", "list", "--json", "--tag", "env=prod", cwd=project, home=rivers_home
    )
    assert json.loads(done.stdout) == []


def test_a_tag_without_a_value_exits_2(project: Path, rivers_home: Path) -> None:
    done = _rivers(
        "materialize",
        "-f",
        "pipeline.py",
        "--tag",
        "novalue",
        cwd=project,
        home=rivers_home,
    )
    assert "--tag 'novalue' must look like KEY=VALUE" in _assert_one_line_error(done)
    assert not (rivers_home / "rivers.db").exists()


def test_an_unknown_command_exits_2_with_one_line(
    project: Path, rivers_home: Path
) -> None:
    done = _rivers("bogus", cwd=project, home=rivers_home)
    assert "No such command 'bogus'" in _assert_one_line_error(done)


def test_a_tag_with_control_characters_exits_2_without_echoing_them(
    project: Path, rivers_home: Path
) -> None:
    done = _rivers(
        "materialize",
        "-f",
        "pipeline.py",
        "--tag",
        "color=\x1b[31mred",
        cwd=project,
        home=rivers_home,
    )
    line = _assert_one_line_error(done)
    assert "must be printable" in line
    assert "\x1b" not in done.stderr  # never sent to the terminal raw...
    assert r"\x1b[31mred" in line  # ...but shown escaped
