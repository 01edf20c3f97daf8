"""``python -m rivers.worker``: one step in this process, as a Kubernetes pod runs it."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import rivers as rs
from rivers import worker

WriteModule = Callable[[str], tuple[str, Path]]


@pytest.fixture
def write_module(tmp_path: Path) -> Iterator[WriteModule]:
    """Write a pipeline file whose module name is not importable (like a pod sees)."""
    names: list[str] = []

    def write(body: str) -> tuple[str, Path]:
        name = f"worker_pipeline_{secrets.token_hex(4)}"
        path = tmp_path / "code" / f"{name}.py"
        path.parent.mkdir(exist_ok=True)
        header = "from __future__ import annotations\nimport sys\nimport rivers as rs\n"
        path.write_text(header + textwrap.dedent(body))
        names.append(name)
        return name, path

    yield write
    for name in [*names, "__rivers_main__"]:
        sys.modules.pop(name, None)


def _records(out: str) -> list[dict[str, object]]:
    marker = "::rivers::"
    return [
        json.loads(line[len(marker) :])
        for line in out.splitlines()
        if line.startswith(marker)
    ]


def _run(name: str, path: Path, asset: str, *extra: str) -> int:
    return worker.main(
        [
            "--module",
            name,
            "--file",
            str(path),
            "--asset",
            asset,
            "--run-id",
            "r1",
            *extra,
        ]
    )


def test_runs_the_step_and_stores_its_value_through_the_io_manager(
    write_module: WriteModule, capsys: pytest.CaptureFixture[str], rivers_home: Path
) -> None:
    name, path = write_module(
        """
        @rs.Asset
        def base() -> int:
            return 20

        @rs.Asset
        def plus(base: int, context: rs.StepContext) -> int:
            context.log.info("tags %s", context.run_tags)
            return base + 1

        repo = rs.CodeRepository([base, plus])
        """
    )
    rs.FilesystemIOManager().store("base", 20)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RIVERS_RUN_TAGS", json.dumps({"team": "core"}))
        assert _run(name, path, "plus", "--attribute", "repo") == 0
    assert rs.FilesystemIOManager().load("plus") == 21
    records = _records(capsys.readouterr().out)
    assert records == [{"level": "INFO", "message": "tags {'team': 'core'}"}]


def test_the_step_sees_the_pool_lease_its_job_carries(
    write_module: WriteModule, capsys: pytest.CaptureFixture[str], rivers_home: Path
) -> None:
    name, path = write_module(
        """
        @rs.Asset(pool="db")
        def leased(context: rs.StepContext) -> int:
            lease = context.pool_lease
            context.log.info("%s %s %s", lease.token, lease.pool, lease.slots)
            return 1

        repo = rs.CodeRepository([leased])
        """
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RIVERS_POOL_LEASE", json.dumps([41, "db", 1, 2e9]))
        assert _run(name, path, "leased") == 0
    records = _records(capsys.readouterr().out)
    assert records == [{"level": "INFO", "message": "41 db 1"}]


def test_async_steps_run_on_an_event_loop(
    write_module: WriteModule, rivers_home: Path
) -> None:
    name, path = write_module(
        """
        @rs.Asset
        async def later() -> str:
            return "done"

        repo = rs.CodeRepository([later])
        """
    )
    assert _run(name, path, "later") == 0
    assert rs.FilesystemIOManager().load("later") == "done"


def test_a_raising_step_exits_1_and_reports_the_error(
    write_module: WriteModule, capsys: pytest.CaptureFixture[str]
) -> None:
    name, path = write_module(
        """
        @rs.Asset
        def broken() -> int:
            raise KeyError("missing")

        repo = rs.CodeRepository([broken])
        """
    )
    assert _run(name, path, "broken") == 1
    captured = capsys.readouterr()
    (record,) = _records(captured.out)
    error = record["error"]
    assert isinstance(error, dict)
    assert error["type"] == "KeyError"
    assert error["exception"]
    assert "KeyError: 'missing'" in captured.err


def test_sys_exit_in_a_step_becomes_the_exit_status(write_module: WriteModule) -> None:
    name, path = write_module(
        """
        @rs.Asset
        def leaves() -> int:
            sys.exit(3)

        repo = rs.CodeRepository([leaves])
        """
    )
    assert _run(name, path, "leaves") == 3


@pytest.mark.parametrize(
    ("asset", "error_type", "message"),
    [
        ("interrupted", "KeyboardInterrupt", ""),
        ("async_interrupted", "KeyboardInterrupt", ""),
        ("custom", "Custom", "mine"),
        ("async_exits", "SystemExit", "sys.exit('bye') was called"),
    ],
)
def test_any_base_exception_in_a_step_exits_1_with_its_error_record(
    write_module: WriteModule, asset: str, error_type: str, message: str
) -> None:
    name, path = write_module(
        """
        class Custom(BaseException):
            pass

        @rs.Asset
        def interrupted() -> int:
            raise KeyboardInterrupt

        @rs.Asset
        async def async_interrupted() -> int:
            raise KeyboardInterrupt

        @rs.Asset
        def custom() -> int:
            raise Custom("mine")

        @rs.Asset
        async def async_exits() -> int:
            sys.exit("bye")

        repo = rs.CodeRepository([interrupted, async_interrupted, custom, async_exits])
        """
    )
    # A real process, as in a pod: a KeyboardInterrupt that escaped used to end it
    # with a traceback, signal status and no error record for the launcher.
    argv = ["--module", name, "--file", str(path), "--asset", asset, "--run-id", "r1"]
    done = subprocess.run(
        [sys.executable, "-m", "rivers.worker", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    (record,) = _records(done.stdout)
    error = record["error"]
    assert isinstance(error, dict)
    assert (error["type"], error["message"]) == (error_type, message)


def test_an_unknown_asset_exits_2_naming_it(
    write_module: WriteModule, capsys: pytest.CaptureFixture[str]
) -> None:
    name, path = write_module("repo = rs.CodeRepository([])\n")
    assert _run(name, path, "ghost") == 2
    (record,) = _records(capsys.readouterr().out)
    assert "holding asset 'ghost'" in str(record["error"])


def test_an_unknown_module_without_a_file_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = worker.main(
        ["--module", "no_such_module_xyz", "--asset", "a", "--run-id", "r"]
    )
    assert status == 2
    assert "cannot import module 'no_such_module_xyz'" in capsys.readouterr().out


def test_a_script_is_loaded_without_running_its_main_block(
    write_module: WriteModule, rivers_home: Path
) -> None:
    _, path = write_module(
        """
        @rs.Asset
        def value() -> int:
            return 5

        repo = rs.CodeRepository([value])

        if __name__ == "__main__":
            raise SystemExit("the main block ran")
        """
    )
    assert _run("__main__", path, "value") == 0
    assert rs.FilesystemIOManager().load("value") == 5


def test_import_rivers_does_not_import_the_kubernetes_client() -> None:
    code = (
        "import sys, rivers; "
        "print('kubernetes_asyncio' in sys.modules, 'aiohttp' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]


def test_a_jobs_traceback_starts_at_the_users_file_and_line(
    write_module: WriteModule, capsys: pytest.CaptureFixture[str]
) -> None:
    name, path = write_module(
        """
        @rs.Asset
        def broken() -> int:
            raise KeyError("missing")

        repo = rs.CodeRepository([broken])
        """
    )
    assert _run(name, path, "broken") == 1
    (record,) = _records(capsys.readouterr().out)
    error = record["error"]
    assert isinstance(error, dict)
    lines = str(error["traceback"]).splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    line = path.read_text().splitlines().index('    raise KeyError("missing")') + 1
    assert lines[1] == f'  File "{path}", line {line}, in broken'
