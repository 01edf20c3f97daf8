"""CLI habits people expect (issue 16 §4-5), as users run them: real processes.

Read-only commands never create a storage; run ids may be shortened as in git and
docker; a typo in ``pools set`` is not a new pool; ``--tag`` filters combine as
documented; a cancel that arrives too late says so; ``--version``; help text
without type placeholders or cut descriptions.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

import rivers as rs
from rivers.actors import liveness
from rivers.storage import open_backend
from rivers.storage.records import LATE_CANCEL_REASON, NewRun

PIPELINE = textwrap.dedent(
    """
    import rivers as rs

    @rs.Asset
    def numbers() -> list[int]:
        return [1, 2, 3]

    repo = rs.CodeRepository([numbers], executor=rs.Executor.in_process())
    """
)

ONE = "019000000001aaaa3522d4007"
"""Unique by its tail, as ``rivers top`` shows it on narrow terminals."""
TWO = "019000000002bbbb77ee11c0"
THREE = "019000000003cccc77ee11c0"
"""TWO and THREE share a tail; all three share a head."""


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "RIVERS_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "80"}


def _rivers_many(
    home: Path, *argvs: list[str], cwd: Path | None = None
) -> list[subprocess.CompletedProcess[str]]:
    """Run several ``rivers`` commands at once (each its own process); in order."""
    started = [
        (
            argv,
            subprocess.Popen(
                [sys.executable, "-m", "rivers", *argv],
                cwd=cwd,
                env=_env(home),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
        for argv in argvs
    ]
    done = []
    for argv, process in started:
        out, err = process.communicate(timeout=90)
        done.append(subprocess.CompletedProcess(argv, process.returncode, out, err))
    return done


def _rivers(home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    [done] = _rivers_many(home, list(argv))
    return done


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """Exit 2, one ``rivers: error:`` line on stderr, no traceback; return it."""
    assert done.returncode == 2, (done.args, done.stdout, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("rivers: error: ")
    return lines[0]


def _new_run(run_id: str, tags: dict[str, str] | None = None) -> NewRun:
    return NewRun(
        run_id=run_id,
        status=rs.RunStatus.QUEUED,
        repository="repo",
        tags=tags or {},
        selection=None,
    )


async def _seed(path: Path, *runs: NewRun) -> None:
    async with open_backend(path) as storage:
        await storage.pools.declare_pools({"warehouse": 2}, "repo")
        for run in runs:
            await storage.runs.create_run(run)


# ------------------------------------------------------------ missing storage


def test_commands_on_a_missing_storage_exit_2_and_create_nothing(
    tmp_path: Path, rivers_home: Path
) -> None:
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    missing = tmp_path / "nonexistent" / "dir" / "x.db"
    commands = [
        ["runs", "list"],
        ["runs", "show", "3522d4007"],
        ["runs", "why", "3522d4007"],
        ["runs", "cancel", "3522d4007"],
        ["pools", "list"],
        ["pools", "info", "warehouse"],
        ["pools", "set", "warehouse", "3"],
        ["pools", "reset", "warehouse"],
        ["pools", "free", "3522d4007"],
        ["pools", "advise", "warehouse"],
        ["triggers", "list", "-f", "pipeline.py"],
        ["top", "--once"],
    ]
    results = _rivers_many(
        rivers_home,
        *(["--storage", str(missing), *argv] for argv in commands),
        cwd=tmp_path,
    )
    for done in results:
        line = _one_line_error(done)
        assert f"no rivers storage at '{missing}'" in line, (done.args, line)
    # The default storage ($RIVERS_HOME/rivers.db) is not created either.
    line = _one_line_error(_rivers(rivers_home, "runs", "list"))
    assert f"no rivers storage at '{rivers_home / 'rivers.db'}'" in line
    assert not (tmp_path / "nonexistent").exists()
    assert not rivers_home.exists()


# ---------------------------------------------------------------- short ids


def test_run_ids_resolve_from_any_unique_prefix_or_suffix(
    tmp_path: Path, rivers_home: Path
) -> None:
    path = tmp_path / "runs.db"
    anyio.run(_seed, path, _new_run(ONE), _new_run(TWO), _new_run(THREE))
    at = ["--storage", str(path)]
    show_tail, show_ellipsis, show_head, why, free, *ambiguous = _rivers_many(
        rivers_home,
        [*at, "runs", "show", "3522d4007", "--json"],
        [*at, "runs", "show", "…3522d4007", "--json"],
        [*at, "runs", "show", "019000000001", "--json"],
        [*at, "runs", "why", "d4007"],
        [*at, "pools", "free", "aaaa3522d4007"],
        [*at, "runs", "show", "77ee11c0"],
        [*at, "runs", "why", "0190"],
        [*at, "runs", "show", "019"],
        [*at, "pools", "free", "nope1234"],
    )
    for done in (show_tail, show_ellipsis, show_head):
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["run"]["run_id"] == ONE
    assert why.returncode == 0, why.stderr
    assert ONE in why.stdout
    assert free.returncode == 0, free.stderr
    assert f"freed 0 slot(s) held by {ONE}" in free.stdout
    tail_clash, head_clash, too_short, unknown = (_one_line_error(d) for d in ambiguous)
    assert "run id '77ee11c0' is ambiguous" in tail_clash
    assert TWO in tail_clash
    assert THREE in tail_clash
    assert ONE not in tail_clash
    assert all(run_id in head_clash for run_id in (ONE, TWO, THREE))
    assert "at least 4 characters" in too_short
    assert "no run with id 'nope1234'" in unknown

    cancel = _rivers(rivers_home, *at, "runs", "cancel", "3522d4007")
    assert cancel.returncode == 0, cancel.stderr
    assert f"run {ONE}: CANCELED (canceled while queued)" in cancel.stdout


# ------------------------------------------------------------------- pools


def test_pools_set_of_an_undeclared_name_suggests_the_declared_one(
    tmp_path: Path, rivers_home: Path
) -> None:
    path = tmp_path / "pools.db"
    anyio.run(_seed, path)
    at = ["--storage", str(path)]
    typo = _one_line_error(_rivers(rivers_home, *at, "pools", "set", "warehose", "5"))
    assert "no pool named 'warehose'" in typo
    assert "did you mean 'warehouse'?" in typo
    assert "--create" in typo
    listed = _rivers(rivers_home, *at, "pools", "list", "--json")
    assert [pool["name"] for pool in json.loads(listed.stdout)] == ["warehouse"]

    created, declared = _rivers_many(
        rivers_home,
        [*at, "pools", "set", "staging", "5", "--create"],
        [*at, "pools", "set", "warehouse", "3"],
    )
    assert created.returncode == 0, created.stderr
    assert "pool staging: limit 5 (override)" in created.stdout
    assert declared.returncode == 0, declared.stderr
    assert "pool warehouse: limit 3 (override)" in declared.stdout
    # Set before (with --create): a name the storage knows needs no flag again.
    again = _rivers(rivers_home, *at, "pools", "set", "staging", "6")
    assert again.returncode == 0, again.stderr


# -------------------------------------------------------------------- tags


async def _tagged(path: Path) -> None:
    await _seed(
        path,
        _new_run("r-dev", {"env": "dev"}),
        _new_run("r-prod-a", {"env": "prod", "team": "a"}),
        _new_run("r-prod-b", {"env": "prod", "team": "b"}),
        _new_run("r-test-a", {"env": "test", "team": "a"}),
    )


def test_runs_list_tags_all_keys_must_match_and_a_repeated_key_means_any(
    tmp_path: Path, rivers_home: Path
) -> None:
    path = tmp_path / "tags.db"
    anyio.run(_tagged, path)
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    listing = ["--storage", str(path), "runs", "list", "--json"]
    either, narrowed, none, twice = _rivers_many(
        rivers_home,
        [*listing, "--tag", "env=dev", "--tag", "env=prod"],
        [*listing, "--tag", "env=dev", "--tag", "env=prod", "--tag", "team=a"],
        [*listing, "--tag", "env=dev", "--tag", "team=a"],
        ["materialize", "-f", "pipeline.py", "--tag", "env=dev", "--tag", "env=prod"],
        cwd=tmp_path,
    )

    def ids(done: subprocess.CompletedProcess[str]) -> set[str]:
        assert done.returncode == 0, done.stderr
        return {run["run_id"] for run in json.loads(done.stdout)}

    assert ids(either) == {"r-dev", "r-prod-a", "r-prod-b"}
    assert ids(narrowed) == {"r-prod-a"}
    assert ids(none) == set()
    line = _one_line_error(twice)
    assert "--tag 'env' is given 2 times (env=dev, env=prod)" in line
    assert not rivers_home.exists()  # refused before any storage was opened


async def test_get_runs_takes_a_list_of_values_per_tag_key(tmp_path: Path) -> None:
    path = tmp_path / "tags.db"
    await _tagged(path)
    async with open_backend(path) as storage:
        either = await storage.runs.get_runs(tags={"env": ["dev", "test"]})
        assert {run.run_id for run in either} == {"r-dev", "r-test-a"}
        both = await storage.runs.get_runs(tags={"env": ["prod", "test"], "team": "a"})
        assert {run.run_id for run in both} == {"r-prod-a", "r-test-a"}
        assert await storage.runs.get_runs(tags={"env": []}) == []


# ------------------------------------------------------------------ cancel


async def test_a_cancel_that_arrives_after_the_last_step_says_the_run_finished_first(
    tmp_path: Path, rivers_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The runtime reads cancel requests at its heartbeat: with none in this test,
    # the step always ends before the request reaches it, as when a user cancels
    # a second before the end.
    monkeypatch.setattr(liveness, "HEARTBEAT_INTERVAL_S", 3600.0)
    path = tmp_path / "late.db"

    @rs.Asset
    async def last_step(context: rs.StepContext) -> int:
        async with open_backend(path) as storage:
            while True:
                run = await storage.runs.get_run(context.run_id)
                assert run is not None
                if run.status is rs.RunStatus.CANCELING:
                    return 1  # the request is there; the step ends anyway
                await anyio.sleep(0.01)

    repo = rs.CodeRepository([last_step], executor=rs.Executor.in_process())
    backend = rs.RunBackendConfig(storage=str(path))
    results: list[rs.MaterializeResult] = []
    async with rs.Runtime(repo, backend=backend) as rt, anyio.create_task_group() as tg:

        async def materialize() -> None:
            results.append(await rt.materialize())

        tg.start_soon(materialize)
        with anyio.fail_after(30):
            while not await rt.storage.get_runs(status=rs.RunStatus.STARTED):
                await anyio.sleep(0.01)
        [run] = await rt.storage.get_runs()
        done = await anyio.to_thread.run_sync(
            lambda: _rivers(
                rivers_home,
                "--storage",
                str(path),
                "runs",
                "cancel",
                run.run_id[-9:],
            )
        )
    assert done.returncode == 0, done.stderr
    assert f"run {run.run_id}: SUCCESS ({LATE_CANCEL_REASON})" in done.stdout
    [result] = results
    assert result.status is rs.RunStatus.SUCCESS
    async with open_backend(path) as storage:
        record = await storage.runs.get_run(run.run_id)
    assert record is not None
    assert record.status is rs.RunStatus.SUCCESS
    assert record.reason == "finished before the cancel took effect"


async def test_cancel_waits_for_the_run_to_stop_and_says_it_was_canceled(
    tmp_path: Path, rivers_home: Path
) -> None:
    path = tmp_path / "cancel.db"

    @rs.Asset
    async def endless() -> int:
        await anyio.sleep_forever()
        return 1

    repo = rs.CodeRepository([endless], executor=rs.Executor.in_process())
    backend = rs.RunBackendConfig(storage=str(path))
    async with rs.Runtime(repo, backend=backend) as rt:
        handle = await rt.submit(rs.RunRequest())
        with anyio.fail_after(30):
            while await handle.status() is not rs.RunStatus.STARTED:
                await anyio.sleep(0.01)
        done = await anyio.to_thread.run_sync(
            lambda: _rivers(
                rivers_home, "--storage", str(path), "runs", "cancel", handle.run_id
            )
        )
        assert done.returncode == 0, done.stderr
        assert f"run {handle.run_id}: CANCELED" in done.stdout
        assert (await handle.wait()).status is rs.RunStatus.CANCELED


# --------------------------------------------------------- version and help


def _command_paths() -> list[list[str]]:
    """Every command and group of the ``rivers`` tree, as argv prefixes."""
    import typer
    from typer.core import TyperGroup

    from rivers.cli.app import app

    paths: list[list[str]] = []

    def walk(command: object, prefix: list[str]) -> None:
        paths.append(prefix)
        if isinstance(command, TyperGroup):
            # Through the group's API: `rivers` loads some commands only on use.
            context = typer.Context(command)
            for name in command.list_commands(context):
                walk(command.get_command(context, name), [*prefix, name])

    walk(typer.main.get_command(app), [])
    return paths


def test_version_prints_the_package_version(rivers_home: Path) -> None:
    done = _rivers(rivers_home, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"rivers {rs.__version__}\n"


def test_help_has_no_type_placeholders_and_no_cut_descriptions(
    rivers_home: Path,
) -> None:
    paths = _command_paths()
    assert ["runs", "show"] in paths
    assert ["pools", "free"] in paths
    results = _rivers_many(rivers_home, *([*path, "--help"] for path in paths))
    for path, done in zip(paths, results, strict=True):
        assert done.returncode == 0, (path, done.stderr)
        text = done.stdout
        assert not re.search(r"<[a-z ]+>", text), (path, text)  # <float range>, <str>
        usage = text.splitlines()[0]
        assert "{" not in usage, (path, usage)  # {RUN}
        arguments = usage.partition("[OPTIONS]")[2]
        assert arguments == arguments.upper(), (path, usage)  # RUN, not run_id
        commands = text.partition("\nCommands:\n")[2]
        for line in commands.splitlines():
            assert not line.rstrip().endswith("..."), (path, line)
    usage = _rivers(rivers_home, "pools", "free", "--help").stdout.splitlines()[0]
    assert usage.endswith(" rivers pools free [OPTIONS] RUN [STEP]"), usage
