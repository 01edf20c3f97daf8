"""Run-granularity pools (issue 21 §3): ``pool_granularity="run"`` — a run holds one
slot of each pool its selection uses from before its first step to its end; its
steps claim nothing. What ran at once is recorded."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

import rivers as rs
from rivers.actors.run_pools import RUN_CLAIM_KEY


class Recorder:
    """Async assets in pool ``db`` that record when each ran, per run."""

    def __init__(self) -> None:
        self.intervals: dict[tuple[str, str], tuple[float, float]] = {}
        self.gate = anyio.Event()
        self.gate.set()

    def asset(self, name: str, seconds: float) -> rs.Asset[Any, Any]:
        async def body(context: rs.StepContext) -> None:
            began = time.monotonic()
            await self.gate.wait()
            await anyio.sleep(seconds)
            self.intervals[(context.run_id, name)] = (began, time.monotonic())

        body.__name__ = name
        return rs.Asset(body, pool="db")


def _repo(recorder: Recorder, **options: Any) -> rs.CodeRepository:
    return rs.CodeRepository(
        [recorder.asset("a", 0.15), recorder.asset("b", 0.15)],
        pool_limits={"db": 1},
        pool_granularity="run",
        **options,
    )


async def test_a_run_holds_the_pool_and_its_steps_run_together() -> None:
    recorder = Recorder()
    repo = _repo(recorder)
    results: list[rs.MaterializeResult] = []
    async with rs.Runtime(repo) as rt, anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(lambda: _collect(rt, results))
    assert [r.status for r in results] == [rs.RunStatus.SUCCESS] * 2
    first, second = sorted(
        results,
        key=lambda r: min(
            v[0] for k, v in recorder.intervals.items() if k[0] == r.run_id
        ),
    )
    steps_of = {
        r.run_id: [v for k, v in recorder.intervals.items() if k[0] == r.run_id]
        for r in results
    }
    a, b = steps_of[first.run_id]
    # One run's two steps overlapped: its steps claim nothing of the pool.
    assert a[0] < b[1]
    assert b[0] < a[1]
    assert max(e for _, e in steps_of[first.run_id]) <= min(
        s for s, _ in steps_of[second.run_id]
    )  # the pool of limit 1 held one run at a time


async def _collect(rt: rs.Runtime, results: list[rs.MaterializeResult]) -> None:
    results.append(await rt.materialize())


async def test_a_queued_run_waits_in_the_queue_until_the_pool_has_a_slot() -> None:
    recorder = Recorder()
    recorder.gate = anyio.Event()  # the first run's steps hold until released
    repo = _repo(
        recorder,
        run_queue=rs.RunQueueConfig(max_concurrent_runs=5, dequeue_interval="20ms"),
    )
    async with rs.Runtime(repo) as rt:
        first = await rt.submit(rs.RunRequest())
        with anyio.fail_after(10):
            while not (await rt.storage.get_pool_slot_holders("db")):
                await anyio.sleep(0.01)
        holders = await rt.storage.get_pool_slot_holders("db")
        second = await rt.submit(rs.RunRequest())
        await anyio.sleep(0.3)
        status = (await rt.storage.get_run(second.run_id)).status  # type: ignore[union-attr]
        why = await rt.explain(second.run_id)
        recorder.gate.set()
        with anyio.fail_after(10):
            records = [await rt.wait_for(h.run_id) for h in (first, second)]
    assert [(h.run_id, h.step_key) for h in holders] == [(first.run_id, RUN_CLAIM_KEY)]
    assert status is rs.RunStatus.QUEUED
    assert "it holds a slot of each of its pools, and one is full: db 1/1" in why
    assert all(r.status is rs.RunStatus.SUCCESS for r in records)


def test_pool_granularity_is_checked() -> None:
    with pytest.raises(
        rs.ConfigError, match="pool_granularity must be 'step' or 'run'"
    ):
        rs.CodeRepository([], pool_granularity="batch")
    recorder = Recorder()
    assert _repo(recorder).run_pools(["a", "b"]) == ("db",)
    step = rs.CodeRepository([recorder.asset("c", 0.1)], pool_limits={"db": 1})
    assert step.run_pools(["c"]) == ()


async def test_a_run_whose_claim_is_freed_fails_with_lease_lost() -> None:
    recorder = Recorder()
    recorder.gate = anyio.Event()  # the steps hold until the test is done
    repo = _repo(recorder)
    async with rs.Runtime(repo) as rt, anyio.create_task_group() as tg:
        results: list[rs.MaterializeResult] = []
        tg.start_soon(lambda: _collect(rt, results))
        with anyio.fail_after(10):
            while not (holders := await rt.storage.get_pool_slot_holders("db")):
                await anyio.sleep(0.01)
        assert await rt.storage.free_pool_slots(holders[0].run_id) == 1
    (result,) = results
    assert result.status is rs.RunStatus.FAILURE
    assert isinstance(result.error, rs.LeaseLost)
    async with rs.open_storage() as storage:
        record = await storage.get_run(result.run_id)
        held = await storage.get_pool_slot_holders("db")
        waiting = await storage.get_pending_steps("db")
    assert record is not None
    assert record.reason is not None
    assert "(run)" in record.reason
    assert recorder.intervals == {}  # the steps were stopped, none finished
    assert (held, waiting) == ([], [])  # nothing of the pool is left held
