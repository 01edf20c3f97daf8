"""rs.Runtime end to end: lifecycle, events, cancel, and recovery after a crash."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

import rivers as rs
from rivers.storage import open_backend


def _repo(storage: Path, *, pool: str | None = None) -> rs.CodeRepository:
    @rs.Asset(pool=pool)
    def numbers() -> list[int]:
        return [1, 2, 3]

    @rs.Asset
    async def total(numbers: list[int]) -> int:
        await anyio.lowlevel.checkpoint()
        return sum(numbers)

    return rs.CodeRepository(
        [numbers, total],
        executor=rs.Executor.in_process(),
        backend=rs.RunBackendConfig(storage=str(storage)),
    )


def _forever_repo(storage: Path) -> rs.CodeRepository:
    @rs.Asset
    async def forever() -> int:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    return rs.CodeRepository(
        [forever],
        executor=rs.Executor.in_process(),
        backend=rs.RunBackendConfig(storage=str(storage)),
    )


# --------------------------------------------------------------------- lifecycle


async def test_using_a_runtime_outside_async_with_is_a_rivers_error(
    tmp_path: Path,
) -> None:
    rt = rs.Runtime(_repo(tmp_path / "s.db"))
    with pytest.raises(rs.RiversError, match="must be used with 'async with'"):
        _ = rt._roles
    with pytest.raises(rs.RiversError, match="must be used with 'async with'"):
        await rt.cancel("r-1")
    with pytest.raises(rs.RiversError, match="must be used with 'async with'"):
        await rt.materialize()
    with pytest.raises(rs.RiversError, match="must be used with 'async with'"):
        async for _event in rt.events():
            pass


async def test_materialize_outside_async_with_is_a_rivers_error_with_pools(
    tmp_path: Path,
) -> None:
    rt = rs.Runtime(_repo(tmp_path / "s.db", pool="db"))
    with pytest.raises(rs.RiversError, match="must be used with 'async with'"):
        await rt.materialize()


async def test_a_runtime_cannot_be_entered_twice_at_once(tmp_path: Path) -> None:
    rt = rs.Runtime(_repo(tmp_path / "s.db"))
    async with rt:
        with pytest.raises(rs.RiversError, match="already running"):
            async with rt:
                pass
        # The failed re-entry did not break the running runtime.
        assert (await rt.materialize()).success


async def test_a_runtime_after_its_block_is_unusable(tmp_path: Path) -> None:
    rt = rs.Runtime(_repo(tmp_path / "s.db"))
    async with rt:
        pass
    with pytest.raises(rs.RiversError, match="must be used with 'async with'"):
        _ = rt._roles


async def test_clean_shutdown_leaves_no_tasks_and_closes_the_storage(
    tmp_path: Path,
) -> None:
    before = asyncio.all_tasks()
    async with rs.Runtime(_repo(tmp_path / "s.db")) as rt:
        storage = rt._roles
        result = await rt.materialize()
        assert result.success
        assert len(asyncio.all_tasks() - before) > 0  # the actors run meanwhile
    assert asyncio.all_tasks() == before
    with pytest.raises(rs.StorageError, match="is closed"):
        await storage.runs.get_run(result.run_id)
    # Everything was written before the storage closed.
    async with open_backend(tmp_path / "s.db") as reopened:
        record = await reopened.runs.get_run(result.run_id)
        kinds = [e.kind for e in await reopened.events.get_events(run_id=result.run_id)]
    assert record is not None
    assert record.status is rs.RunStatus.SUCCESS
    assert kinds[-1] == "RUN_SUCCESS"


async def test_the_runtime_stores_runs_where_the_backend_says(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere" / "runs.db"
    async with rs.Runtime(_repo(path)) as rt:
        assert Path(rt._roles.describe) == path
        result = await rt.materialize(tags={"team": "core"})
    async with open_backend(path) as storage:
        record = await storage.runs.get_run(result.run_id)
    assert record is not None
    assert record.tags == {"team": "core"}


# ------------------------------------------------------------------------ events


async def test_events_yields_the_step_success_events_of_a_run(tmp_path: Path) -> None:
    seen: list[rs.Event] = []
    run_ended = anyio.Event()

    async with rs.Runtime(_repo(tmp_path / "s.db")) as rt:

        async def watch() -> None:
            async for event in rt.events():
                seen.append(event)
                if event.kind == "RUN_SUCCESS":
                    run_ended.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await anyio.wait_all_tasks_blocked()  # the watcher is subscribed
            result = await rt.materialize()
            with anyio.fail_after(2):
                await run_ended.wait()
            tg.cancel_scope.cancel()
        stored = await rt.storage.get_events(run_id=result.run_id)

    successes = [e for e in seen if e.kind == "STEP_SUCCESS"]
    assert [e.step_key for e in successes] == ["numbers", "total"]
    assert all(e.run_id == result.run_id for e in successes)
    ids = [e.event_id for e in seen]
    assert ids == sorted(ids)
    # Live events are the stored ones, with their ids.
    assert [e for e in seen if e.run_id == result.run_id] == stored


# ------------------------------------------------------------------------ cancel


async def test_cancel_of_an_unknown_run_raises_run_not_found(tmp_path: Path) -> None:
    async with rs.Runtime(_repo(tmp_path / "s.db")) as rt:
        with pytest.raises(rs.RunNotFound, match="no run with id 'nope'"):
            await rt.cancel("nope")


async def test_cancel_of_a_finished_run_changes_nothing(tmp_path: Path) -> None:
    async with rs.Runtime(_repo(tmp_path / "s.db")) as rt:
        result = await rt.materialize()
        await rt.cancel(result.run_id)
        record = await rt.storage.get_run(result.run_id)
    assert record is not None
    assert record.status is rs.RunStatus.SUCCESS


async def test_cancelling_a_running_materialize_cancels_the_run_and_step(
    tmp_path: Path,
) -> None:
    step_started = anyio.Event()
    started_runs: list[str] = []
    results: list[rs.MaterializeResult] = []

    async with rs.Runtime(_forever_repo(tmp_path / "s.db")) as rt:

        async def watch() -> None:
            async for event in rt.events():
                if event.kind == "STEP_STARTED" and event.run_id is not None:
                    started_runs.append(event.run_id)
                    step_started.set()

        async def run() -> None:
            results.append(await rt.materialize())

        with anyio.fail_after(3):
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch)
                await anyio.wait_all_tasks_blocked()
                async with anyio.create_task_group() as runs:
                    runs.start_soon(run)
                    await step_started.wait()
                    running = await rt.storage.get_run(started_runs[0])
                    assert running is not None
                    assert running.status is rs.RunStatus.STARTED
                    await rt.cancel(started_runs[0])
                tg.cancel_scope.cancel()
        run_id = started_runs[0]
        record = await rt.storage.get_run(run_id)
        steps = await rt._roles.runs.get_step_records(run_id)
        kinds = [e.kind for e in await rt.storage.get_events(run_id=run_id)]

    [result] = results
    assert result.run_id == run_id
    assert result.status is rs.RunStatus.CANCELED
    assert not result.success
    assert result.step_record("forever").status is rs.StepStatus.CANCELED
    assert record is not None
    assert record.status is rs.RunStatus.CANCELED
    assert record.ended_at is not None
    assert [(s.step_key, s.status) for s in steps] == [
        ("forever", rs.StepStatus.CANCELED)
    ]
    assert "RUN_CANCELING" in kinds
    assert kinds[-1] == "RUN_CANCELED"


# ---------------------------------------------------------------------- recovery

_SLEEPER = textwrap.dedent(
    """
    import sys

    import anyio
    import rivers as rs

    @rs.Asset
    async def sleeps_forever() -> int:
        await anyio.sleep_forever()
        return 0

    repo = rs.CodeRepository(
        [sleeps_forever],
        executor=rs.Executor.in_process(),
        backend=rs.RunBackendConfig(storage=sys.argv[1]),
    )

    async def main() -> None:
        async with rs.Runtime(repo) as rt:
            await rt.materialize()

    anyio.run(main)
    """
)


async def _start_sleeper(path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start a process whose run sleeps forever; return it once its step runs."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLEEPER, str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with anyio.fail_after(10):
            while not path.exists():
                assert proc.poll() is None, proc.communicate()[1].decode()
                await anyio.sleep(0.02)
            async with open_backend(path) as storage:
                while True:
                    assert proc.poll() is None, proc.communicate()[1].decode()
                    runs = await storage.runs.get_runs(status=rs.RunStatus.STARTED)
                    if runs:
                        steps = await storage.runs.get_step_records(runs[0].run_id)
                        if [s.status for s in steps] == [rs.StepStatus.RUNNING]:
                            return proc, runs[0].run_id
                    await anyio.sleep(0.02)
    except BaseException:
        proc.kill()
        proc.wait()
        raise


async def test_a_run_of_a_killed_process_is_failed_when_a_runtime_starts(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.db"
    proc, run_id = await _start_sleeper(path)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=5) == -signal.SIGKILL
    proc.communicate()

    async with rs.Runtime(_repo(path)) as rt:
        # Recovery runs before the runtime's block is entered.
        record = await rt.storage.get_run(run_id)
        steps = await rt._roles.runs.get_step_records(run_id)
    # Its RUN_FAILURE event goes through the batched writer, drained on exit.
    async with open_backend(path) as storage:
        events = await storage.events.get_events(run_id=run_id, kinds=["RUN_FAILURE"])

    assert record is not None
    assert record.status is rs.RunStatus.FAILURE
    assert record.reason is not None
    assert "died" in record.reason
    assert record.ended_at is not None
    assert [(s.step_key, s.status) for s in steps] == [
        ("sleeps_forever", rs.StepStatus.FAILURE)
    ]
    assert "died" in (steps[0].error or "")
    assert [e.data["reason"] for e in events] == [record.reason]


async def test_a_run_of_a_live_process_is_left_alone_by_recovery(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.db"
    proc, run_id = await _start_sleeper(path)
    try:
        async with rs.Runtime(_repo(path)) as rt:
            record = await rt.storage.get_run(run_id)
    finally:
        proc.kill()
        proc.wait()
        proc.communicate()
    assert record is not None
    assert record.status is rs.RunStatus.STARTED
