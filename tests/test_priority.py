"""Priority everywhere (issue 21 §4): a step's effective priority is its run's
priority plus its asset's, in every pool line and at the executor gate."""

from __future__ import annotations

from typing import Any

import anyio

import rivers as rs


class Recorder:
    """Async assets that record the order they start in; ``first`` holds its slot
    until the test lets it go."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release_first = anyio.Event()

    def asset(
        self, name: str, pool: str | None, priority: int = 0
    ) -> rs.Asset[Any, Any]:
        async def body() -> None:
            self.started.append(name)
            if name == "first":
                await self.release_first.wait()

        body.__name__ = name
        return rs.Asset(body, pool=pool, priority=priority)


async def _pending(rt: rs.Runtime, pool: str, count: int) -> None:
    with anyio.fail_after(10):
        while (await rt.storage.get_pool_info(pool)).pending_steps != count:
            await anyio.sleep(0.01)


async def test_a_priority_runs_steps_overtake_the_waiting_steps_of_earlier_runs() -> (
    None
):
    recorder = Recorder()
    assets = [recorder.asset("first", "db")]
    assets += [recorder.asset(f"early{i}", "db") for i in range(2)]
    assets += [recorder.asset(f"urgent{i}", "db") for i in range(2)]
    repo = rs.CodeRepository(assets, pool_limits={"db": 1})
    async with rs.Runtime(repo) as rt:
        early = await rt.submit(rs.RunRequest(selection=["first", "early0", "early1"]))
        await _pending(rt, "db", 2)
        urgent = await rt.submit(
            rs.RunRequest(selection=["urgent0", "urgent1"], priority=10)
        )
        await _pending(rt, "db", 4)
        recorder.release_first.set()
        with anyio.fail_after(20):
            records = [await rt.wait_for(h.run_id) for h in (early, urgent)]
    assert all(r.status is rs.RunStatus.SUCCESS for r in records)
    assert recorder.started[0] == "first"
    assert sorted(recorder.started[1:3]) == ["urgent0", "urgent1"]
    assert sorted(recorder.started[3:]) == ["early0", "early1"]


async def test_run_priority_adds_to_asset_priority_in_the_pool_line() -> None:
    recorder = Recorder()
    assets = [
        recorder.asset("first", "db", priority=100),  # takes the slot before the rest
        recorder.asset("important", "db", priority=8),  # 0 + 8
        recorder.asset("plain", "db"),  # 5 + 0
        recorder.asset("plain_too", "db", priority=4),  # 5 + 4
    ]
    repo = rs.CodeRepository(assets, pool_limits={"db": 1})
    async with rs.Runtime(repo) as rt:
        first = await rt.submit(rs.RunRequest(selection=["first", "important"]))
        await _pending(rt, "db", 1)
        second = await rt.submit(
            rs.RunRequest(selection=["plain", "plain_too"], priority=5)
        )
        await _pending(rt, "db", 3)
        line = await rt.storage.get_pending_steps("db")
        recorder.release_first.set()
        with anyio.fail_after(20):
            for handle in (first, second):
                await rt.wait_for(handle.run_id)
    assert [(p.step_key, p.priority) for p in line] == [
        ("plain_too", 9),
        ("important", 8),
        ("plain", 5),
    ]
    assert recorder.started == ["first", "plain_too", "important", "plain"]


async def test_ready_steps_take_executor_slots_in_priority_order() -> None:
    recorder = Recorder()
    assets = [
        recorder.asset(name, None, priority)
        for name, priority in [("a", 0), ("b", 5), ("c", 1), ("d", 9)]
    ]
    repo = rs.CodeRepository(assets, executor=rs.Executor.in_process())
    result = await repo.materialize()
    assert result.success
    assert recorder.started == ["d", "b", "c", "a"]
