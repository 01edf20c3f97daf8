"""materialize() end to end, as users write it."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

import rivers as rs
from rivers.definitions.executor_configs import ExecutorConfig
from rivers.storage import open_backend


def _chain(executor: object | None = None) -> rs.CodeRepository:
    @rs.Asset
    def numbers() -> list[int]:
        return [1, 2, 3]

    @rs.Asset
    def doubled(numbers: list[int]) -> list[int]:
        return [n * 2 for n in numbers]

    @rs.Asset
    async def total(doubled: list[int]) -> int:
        await anyio.lowlevel.checkpoint()
        return sum(doubled)

    return rs.CodeRepository(
        [numbers, doubled, total],
        executor=executor or rs.Executor.in_process(),  # type: ignore[arg-type]
    )


def test_sync_materialize_outside_a_loop_returns_the_result() -> None:
    result = _chain().materialize()
    assert result.success
    assert result.status is rs.RunStatus.SUCCESS
    assert result.output_for("total") == 12
    assert [r.step_key for r in result.step_records] == ["numbers", "doubled", "total"]
    assert all(r.status is rs.StepStatus.SUCCESS for r in result.step_records)
    assert all(r.attempts == 1 for r in result.step_records)


async def test_materialize_inside_a_loop_is_awaitable() -> None:
    result = await _chain().materialize()
    assert result.success
    assert result.output_for("doubled") == [2, 4, 6]


async def test_subset_loads_unselected_upstream_values_from_the_io_manager() -> None:
    repo = _chain()
    assert (await repo.materialize()).success
    result = await repo.materialize(["total"])
    assert result.success
    assert [r.step_key for r in result.step_records] == ["total"]
    assert result.output_for("total") == 12


async def test_subset_with_a_never_materialized_upstream_names_the_asset() -> None:
    result = await _chain().materialize(["doubled"])
    assert not result.success
    record = result.step_record("doubled")
    assert record.status is rs.StepStatus.FAILURE
    assert record.error is not None
    assert "'numbers' has never been materialized" in record.error


async def test_unknown_selection_raises_asset_not_found() -> None:
    with pytest.raises(rs.AssetNotFound, match="no asset named 'nope'"):
        await _chain().materialize(["nope"])


async def test_failed_step_skips_downstream_and_keeps_independent_steps() -> None:
    @rs.Asset
    def source() -> int:
        return 1

    @rs.Asset
    def broken(source: int) -> int:
        raise ValueError(f"bad value {source}")

    @rs.Asset
    def after_broken(broken: int) -> int:
        return broken

    @rs.Asset
    def independent(source: int) -> int:
        return source + 1

    repo = rs.CodeRepository(
        [source, broken, after_broken, independent], executor=rs.Executor.in_process()
    )
    result = await repo.materialize()
    assert result.status is rs.RunStatus.FAILURE
    assert not result.success
    assert result.step_record("broken").status is rs.StepStatus.FAILURE
    assert "ValueError: bad value 1" in (result.step_record("broken").error or "")
    assert result.step_record("after_broken").status is rs.StepStatus.SKIPPED
    assert result.step_record("independent").status is rs.StepStatus.SUCCESS
    assert isinstance(result.error, rs.StepError)
    assert isinstance(result.error.__cause__, ValueError)
    run = await _get_run(result.run_id)
    assert run.status is rs.RunStatus.FAILURE
    assert "ValueError: bad value 1" in (run.reason or "")


async def _get_run(run_id: str) -> rs.RunRecord:
    async with open_backend() as storage:
        record = await storage.runs.get_run(run_id)
    assert record is not None
    return record


async def test_retry_policy_retries_until_success(tmp_path: Path) -> None:
    marker = tmp_path / "attempts"

    @rs.Asset(retry_policy=rs.RetryPolicy(max_retries=2, delay="10ms", backoff=2))
    def flaky(context: rs.StepContext) -> int:
        with marker.open("a") as f:
            f.write(f"{context.attempt}\n")
        if context.attempt < 3:
            raise RuntimeError("not yet")
        return context.attempt

    repo = rs.CodeRepository([flaky], executor=rs.Executor.in_process())
    result = await repo.materialize()
    assert result.success
    assert result.output_for("flaky") == 3
    assert result.step_record("flaky").attempts == 3
    assert marker.read_text().split() == ["1", "2", "3"]
    async with open_backend() as storage:
        kinds = [e.kind for e in await storage.events.get_events(run_id=result.run_id)]
    assert kinds.count("STEP_RETRY") == 2
    assert kinds.count("STEP_STARTED") == 3


async def test_retries_exhausted_fail_the_step() -> None:
    @rs.Asset(retry_policy=rs.RetryPolicy(max_retries=1))
    def always_fails() -> int:
        raise KeyError("missing")

    result = await rs.CodeRepository(
        [always_fails], executor=rs.Executor.in_process()
    ).materialize()
    record = result.step_record("always_fails")
    assert record.status is rs.StepStatus.FAILURE
    assert record.attempts == 2


async def test_timeout_fails_a_sync_step() -> None:
    @rs.Asset(timeout="100ms")
    def slow() -> int:
        time.sleep(2)
        return 1

    began = time.monotonic()
    result = await rs.CodeRepository(
        [slow], executor=rs.Executor.in_process()
    ).materialize()
    assert time.monotonic() - began < 1.5
    record = result.step_record("slow")
    assert record.status is rs.StepStatus.FAILURE
    assert "timed out after 0.1s" in (record.error or "")
    assert isinstance(result.error, rs.StepTimeout)


async def test_timeout_fails_an_async_step() -> None:
    @rs.Asset(timeout=0.05)
    async def slow() -> int:
        await anyio.sleep(10)
        return 1

    result = await rs.CodeRepository(
        [slow], executor=rs.Executor.in_process()
    ).materialize()
    assert result.step_record("slow").status is rs.StepStatus.FAILURE
    assert "timed out" in (result.step_record("slow").error or "")


@pytest.mark.parametrize(
    "executor", [rs.Executor.in_process(), rs.Executor.parallel(max_workers=1)]
)
async def test_an_async_step_that_blocks_the_loop_past_its_timeout_fails(
    executor: ExecutorConfig,
) -> None:
    @rs.Asset(timeout=0.2)
    async def blocks() -> int:
        time.sleep(0.8)  # never awaits: the deadline cannot interrupt it
        return 1

    @rs.Asset
    def downstream(blocks: int) -> int:
        return blocks

    result = await rs.CodeRepository([blocks, downstream]).materialize(
        executor=executor
    )
    record = result.step_record("blocks")
    assert record.status is rs.StepStatus.FAILURE
    assert isinstance(result.error, rs.StepTimeout)
    assert result.error.returned_after_s is not None
    assert result.error.returned_after_s >= 0.8
    assert (record.error or "").startswith(
        "step 'blocks' timed out after 0.2s: it returned after "
    )
    assert "event loop being blocked" in (record.error or "")
    assert result.step_record("downstream").status is rs.StepStatus.SKIPPED


async def test_step_context_and_logs_become_events() -> None:
    seen: dict[str, object] = {}

    @rs.Asset
    def logged(context: rs.StepContext) -> int:
        seen.update(
            run_id=context.run_id, asset=context.asset_key, tags=context.run_tags
        )
        context.log.info("hello %s", "world")
        context.log.warning("careful")
        return 1

    result = await rs.CodeRepository(
        [logged], executor=rs.Executor.in_process()
    ).materialize(tags={"team": "core"})
    assert result.success
    assert seen == {
        "run_id": result.run_id,
        "asset": "logged",
        "tags": {"team": "core"},
    }
    async with open_backend() as storage:
        logs = [
            (e.data["level"], e.data["message"])
            for e in await storage.events.get_events(run_id=result.run_id)
            if e.kind == "STEP_LOG"
        ]
        run = await storage.runs.get_run(result.run_id)
    assert logs == [("INFO", "hello world"), ("WARNING", "careful")]
    assert run is not None
    assert run.tags == {"team": "core"}


async def test_events_of_a_run_are_durable_and_ordered() -> None:
    result = await _chain().materialize()
    async with open_backend() as storage:
        events = await storage.events.get_events(run_id=result.run_id)
        steps = await storage.runs.get_step_records(result.run_id)
    kinds = [e.kind for e in events]
    assert kinds[0] == "RUN_STARTED"
    assert kinds[-1] == "RUN_SUCCESS"
    assert kinds.count("STEP_SUCCESS") == 3
    ids = [e.event_id for e in events]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(e.timestamp.tzinfo is not None for e in events)
    assert {s.step_key: s.status for s in steps} == {
        "numbers": rs.StepStatus.SUCCESS,
        "doubled": rs.StepStatus.SUCCESS,
        "total": rs.StepStatus.SUCCESS,
    }


async def test_asset_is_callable_directly() -> None:
    @rs.Asset
    def add_one(x: int) -> int:
        return x + 1

    assert add_one(x=1) == 2
