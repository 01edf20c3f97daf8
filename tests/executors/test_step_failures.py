"""A failed step says where: the user's file and line, how long it ran, by reference.

Real worker processes; the tracebacks are read back from the stored STEP_FAILURE.
"""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rivers as rs
from rivers.storage import open_backend
from rivers.storage.records import Event


async def _failure(run_id: str) -> Event:
    async with open_backend() as storage:
        [failure] = await storage.events.get_events(run_id, kinds=("STEP_FAILURE",))
    return failure


def _line_of(text: str, path: str) -> int:
    """The 1-based line of ``path`` that holds ``text``."""
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


async def test_a_worker_traceback_names_the_file_and_line_of_a_local_asset() -> None:
    # Defined in a function: cloudpickle sends it by value; it keeps its file.
    @rs.Asset
    def boom() -> int:
        data: dict[str, int] = {}
        return data["missing_key"]  # the failing line

    repo = rs.CodeRepository([boom], executor=rs.Executor.parallel(max_workers=1))
    result = await repo.materialize()
    assert not result.success
    trace = (await _failure(result.run_id)).data["traceback"]
    line = _line_of('return data["missing_key"]  # the failing line', __file__)
    assert f'File "{__file__}", line {line}, in boom' in trace, trace
    assert "<dynamic-code>" not in trace
    assert trace.rstrip().endswith("KeyError: 'missing_key'")
    # The user's frames only: not the worker loop that called them.
    assert "_worker_main.py" not in trace


@pytest.fixture
def importable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A module ``where_mod`` on sys.path; it notes each process that imports it."""
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "where_mod.py").write_text(
        textwrap.dedent(
            f"""
            import os
            import rivers as rs

            with open(os.path.join({str(tmp_path)!r}, f"imported.{{os.getpid()}}"), "w"):
                pass


            @rs.Asset
            def boom() -> int:
                data: dict[str, int] = {{}}
                return data["missing_key"]


            repo = rs.CodeRepository(
                [boom], executor=rs.Executor.parallel(max_workers=1)
            )
            """
        )
    )
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    sys.modules.pop("where_mod", None)


async def test_an_importable_asset_goes_by_reference_and_names_its_module_file(
    importable: Path, tmp_path: Path
) -> None:
    import where_mod  # type: ignore[import-not-found]

    repo: rs.CodeRepository = where_mod.repo
    result = await repo.materialize()
    assert not result.success
    failure = await _failure(result.run_id)
    trace = failure.data["traceback"]
    path = str(importable / "where_mod.py")
    line = _line_of('return data["missing_key"]', path)
    assert f'File "{path}", line {line}, in boom' in trace, trace
    # By reference: the worker that ran the step imported the module itself.
    worker = result.step_record("boom").worker or ""
    assert worker.startswith("pid ")
    assert (tmp_path / f"imported.{worker.removeprefix('pid ')}").exists()


async def test_an_in_process_traceback_starts_at_the_users_function() -> None:
    @rs.Asset
    def broken() -> None:
        raise ValueError("no data today")

    repo = rs.CodeRepository([broken], executor=rs.Executor.in_process())
    result = await repo.materialize()
    trace = (await _failure(result.run_id)).data["traceback"]
    assert trace.startswith("Traceback (most recent call last):\n"), trace
    first_frame = trace.splitlines()[1]
    assert first_frame.startswith(f'  File "{__file__}"'), trace
    assert "run_executor.py" not in trace


@pytest.mark.parametrize(
    "executor",
    [rs.Executor.parallel(max_workers=1), rs.Executor.in_process()],
    ids=["parallel", "in_process"],
)
async def test_step_failure_records_how_long_the_step_ran(executor: Any) -> None:
    @rs.Asset
    def slow_then_broken() -> None:
        time.sleep(0.3)
        raise ValueError("late")

    repo = rs.CodeRepository([slow_then_broken], executor=executor)
    result = await repo.materialize()
    ran = (await _failure(result.run_id)).data["duration_s"]
    assert isinstance(ran, float)
    assert 0.3 <= ran < 10


async def test_a_timed_out_step_records_its_duration() -> None:
    @rs.Asset(timeout="300ms")
    def hangs() -> None:
        time.sleep(30)

    repo = rs.CodeRepository([hangs], executor=rs.Executor.parallel(max_workers=1))
    result = await repo.materialize()
    failure = await _failure(result.run_id)
    assert failure.data["error_type"] == "StepTimeout"
    assert 0.3 <= failure.data["duration_s"] < 10
