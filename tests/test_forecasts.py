"""``rt.explain()`` (and so ``runs why``) gives an expected start with its basis.

Real runtimes on real SQLite files: the history is runs and pool holds that really
happened; the forecast is checked against the shape of the gate (how many ahead,
what holds it, how many holds it learned from), and its figure against the known
service time, loosely (the forecast error itself is measured by
``benchmarks/forecast.py``).
"""

from __future__ import annotations

import re

import anyio

import rivers as rs

HOLD_S = 0.2


@rs.Asset
async def nap() -> None:
    await anyio.sleep(HOLD_S)


@rs.Asset(pool="p")
async def first() -> None:
    await anyio.sleep(HOLD_S)


@rs.Asset(pool="p")
async def second() -> None:
    await anyio.sleep(HOLD_S)


@rs.Asset(pool="p")
async def third() -> None:
    await anyio.sleep(HOLD_S)


async def test_a_queued_run_is_given_an_expected_start_from_recent_runs() -> None:
    repo = rs.CodeRepository(
        [nap],
        run_queue=rs.RunQueueConfig(max_concurrent_runs=1, dequeue_interval="20ms"),
    )
    async with rs.Runtime(repo) as rt:
        for _ in range(2):  # the history: two runs of ~HOLD_S
            await (await rt.submit(rs.RunRequest())).wait()
        running, behind, last = [await rt.submit(rs.RunRequest()) for _ in range(3)]
        with anyio.fail_after(10):
            while await running.status() is not rs.RunStatus.STARTED:
                await anyio.sleep(0.01)
        why = await rt.explain(last.run_id)
        for handle in (running, behind, last):
            await handle.wait()
    prefix = (
        f"run {last.run_id} is QUEUED, 2nd in the queue: max_concurrent_runs 1/1 in "
        "flight; expected in "
    )
    assert why.startswith(prefix), why
    match = re.fullmatch(
        r"~(0\.\d) s \(1 ahead, 1/1 held; a run holds it ~0\.\d s, mean of the "
        r"last 2\)",
        why[len(prefix) :],
    )
    assert match is not None, why
    # One run ahead and one running, each ~HOLD_S: about two holds away.
    assert HOLD_S <= float(match[1]) <= 3 * HOLD_S, why


async def test_a_step_waiting_in_a_pool_line_gets_an_expected_start() -> None:
    repo = rs.CodeRepository(
        [first, second, third],
        pool_limits={"p": 1},
        executor=rs.Executor.parallel(max_workers=1, max_async_concurrent=3),
    )
    async with rs.Runtime(repo) as rt:
        await rt.materialize()  # the history: three holds of ~HOLD_S
        async with anyio.create_task_group() as tg:
            tg.start_soon(rt.materialize)
            with anyio.fail_after(10):
                while len(line := await rt.storage.get_pending_steps("p")) < 2:
                    await anyio.sleep(0.005)
            run_id = line[0].run_id
            why = await rt.explain(run_id)
    lines = why.splitlines()
    assert lines[0] == f"run {run_id} is STARTED", why
    waiting = sorted(lines[1:])
    assert len(waiting) == 2, why
    pattern = (
        r"  step (first|second|third) waits for pool p \(1/1 slots\): expected in "
        r"~(0\.\d) s \((\d) ahead, 1/1 held; a step holds it ~0\.\d s, mean of the "
        r"last 3\)"
    )
    matches = [re.fullmatch(pattern, text) for text in waiting]
    assert all(matches), why
    ahead = sorted(int(m[3]) for m in matches if m is not None)
    assert ahead == [0, 1], why


async def test_top_shows_the_expected_starts_of_queued_runs_and_pooled_steps() -> None:
    from rivers.dashboard.snapshot import read_snapshot

    queue = rs.RunQueueConfig(max_concurrent_runs=1, dequeue_interval="20ms")
    repo = rs.CodeRepository(
        [nap, first, second, third],
        pool_limits={"p": 1},
        run_queue=queue,
        executor=rs.Executor.parallel(max_workers=1, max_async_concurrent=3),
    )
    async with rs.Runtime(repo) as rt:
        for _ in range(2):  # the history: runs and pool holds of ~HOLD_S
            await (await rt.submit(rs.RunRequest())).wait()
        pooled = await rt.submit(rs.RunRequest(selection=["first", "second", "third"]))
        queued = await rt.submit(rs.RunRequest(selection=["nap"]))
        with anyio.fail_after(10):
            while len(await rt.storage.get_pending_steps("p")) < 2:
                await anyio.sleep(0.005)
        snapshot = await read_snapshot(rt._roles)
        for handle in (pooled, queued):
            await handle.wait()
    views = {view.run_id: view for view in snapshot.runs}
    in_flight, waiting = views[pooled.run_id], views[queued.run_id]
    assert in_flight.waiting_on is not None
    assert re.search(
        r": pool p 1/1, \d\w\w in line, expected in ~\d\.\d s", in_flight.waiting_on
    ), in_flight.waiting_on
    assert waiting.waiting_on is not None
    assert re.fullmatch(
        r"queue 1/1 in flight, expected in ~\d\.\d s", waiting.waiting_on
    ), waiting.waiting_on
