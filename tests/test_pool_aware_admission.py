"""Pool-aware admission (issue 21 §1): with ``block_pool_limited_runs`` a run whose
first steps all wait on full pools stays QUEUED and takes no run slot, and a run
behind it that can start is admitted. What started, and when, is recorded."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import rivers as rs


class Recorder:
    """Assets that record the order they start in; ``holder`` keeps the db pool."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.running_queries = 0
        self.peak_queries = 0
        self.release = anyio.Event()

    def assets(self) -> list[rs.Asset[Any, Any]]:
        @rs.Asset(pool="db")
        async def holder() -> None:
            self.started.append("holder")
            await self.release.wait()

        @rs.Asset(pool="db")
        async def query() -> None:
            self.started.append("query")
            self.running_queries += 1
            self.peak_queries = max(self.peak_queries, self.running_queries)
            await anyio.sleep(0.05)
            self.running_queries -= 1

        @rs.Asset
        async def report() -> None:
            self.started.append("report")

        return [holder, query, report]


def _repo(recorder: Recorder, block: bool, **queue: Any) -> rs.CodeRepository:
    return rs.CodeRepository(
        recorder.assets(),
        pool_limits={"db": 1},
        run_queue=rs.RunQueueConfig(
            max_concurrent_runs=2,
            dequeue_interval="20ms",
            block_pool_limited_runs=block,
            **queue,
        ),
    )


async def _hold_the_pool(rt: rs.Runtime, recorder: Recorder, tg: Any) -> None:
    tg.start_soon(rt.materialize, ["holder"])  # in flight: one of the two run slots
    with anyio.fail_after(10):
        while (await rt.storage.get_pool_info("db")).claimed_slots < 1:
            await anyio.sleep(0.01)


async def test_runs_waiting_on_a_full_pool_stay_queued_and_others_go_first() -> None:
    recorder = Recorder()
    repo = _repo(recorder, block=True)
    async with rs.Runtime(repo) as rt, anyio.create_task_group() as tg:
        await _hold_the_pool(rt, recorder, tg)
        queries = [
            await rt.submit(rs.RunRequest(selection=["query"])) for _ in range(3)
        ]
        report = await rt.submit(rs.RunRequest(selection=["report"]))
        with anyio.fail_after(10):
            assert (await rt.wait_for(report.run_id)).status is rs.RunStatus.SUCCESS
        why = await rt.explain(queries[0].run_id)
        statuses = [(await rt.storage.get_run(q.run_id)).status for q in queries]  # type: ignore[union-attr]
        recorder.release.set()
        with anyio.fail_after(20):
            records = [await rt.wait_for(q.run_id) for q in queries]
    assert recorder.started[:2] == ["holder", "report"]
    assert statuses == [rs.RunStatus.QUEUED] * 3
    assert "its first steps all wait on full pools: db 1/1" in why
    assert all(r.status is rs.RunStatus.SUCCESS for r in records)
    assert recorder.peak_queries == 1


async def test_without_it_pool_limited_runs_take_the_run_slots() -> None:
    recorder = Recorder()
    repo = _repo(recorder, block=False)
    async with rs.Runtime(repo) as rt, anyio.create_task_group() as tg:
        await _hold_the_pool(rt, recorder, tg)
        queries = [
            await rt.submit(rs.RunRequest(selection=["query"])) for _ in range(3)
        ]
        report = await rt.submit(rs.RunRequest(selection=["report"]))
        await anyio.sleep(0.5)
        report_status = (await rt.storage.get_run(report.run_id)).status  # type: ignore[union-attr]
        recorder.release.set()
        with anyio.fail_after(20):
            for handle in [*queries, report]:
                await rt.wait_for(handle.run_id)
    assert report_status is rs.RunStatus.QUEUED  # a query run took the last slot


async def test_a_buffer_keeps_slots_free_of_new_runs() -> None:
    recorder = Recorder()
    repo = rs.CodeRepository(
        recorder.assets(),
        pool_limits={"db": 2},
        run_queue=rs.RunQueueConfig(
            max_concurrent_runs=5,
            dequeue_interval="20ms",
            block_pool_limited_runs=True,
            pool_slot_buffer=1,
        ),
    )
    async with rs.Runtime(repo) as rt, anyio.create_task_group() as tg:
        await _hold_the_pool(rt, recorder, tg)  # db 1/2: 1 + buffer 1 >= 2
        query = await rt.submit(rs.RunRequest(selection=["query"]))
        await anyio.sleep(0.3)
        held = (await rt.storage.get_run(query.run_id)).status  # type: ignore[union-attr]
        why = await rt.explain(query.run_id)
        recorder.release.set()
        with anyio.fail_after(10):
            assert (await rt.wait_for(query.run_id)).status is rs.RunStatus.SUCCESS
    assert held is rs.RunStatus.QUEUED
    assert "db 1/2 (with pool_slot_buffer 1)" in why


def test_bad_settings_are_named_and_roots_are_the_first_steps_pools() -> None:
    repo = _repo(Recorder(), block=True)
    with pytest.raises(rs.ConfigError, match="pool_slot_buffer must be in 0"):
        rs.RunQueueConfig(pool_slot_buffer=-1)
    with pytest.raises(rs.ConfigError, match="block_pool_limited_runs must be True"):
        rs.RunQueueConfig(block_pool_limited_runs="yes")  # type: ignore[arg-type]
    assert repo.root_pools(["query"]) == (("db",),)
    assert repo.root_pools(["report", "query"]) is None  # report claims no pool
