"""rivers._threads: pooled worker threads across event loops, lanes, and hops back."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from functools import partial

import anyio
import pytest

from rivers import _threads
from rivers._threads import Lane, call_from_thread, run_sync

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


def test_a_new_event_loop_reuses_the_threads_of_the_last() -> None:
    async def which_thread() -> int:
        return await run_sync(threading.get_ident)

    first = asyncio.run(which_thread())
    alive = {t.ident for t in _worker_threads()}
    assert first in alive
    assert first != threading.get_ident()
    # The next loop's job goes to a thread already idle (any of them, when earlier
    # tests left several), never to a new one.
    second = asyncio.run(which_thread())
    assert second in alive
    assert {t.ident for t in _worker_threads()} <= alive


async def test_run_sync_returns_the_value_raises_the_error_and_keeps_context() -> None:
    VAR.set("caller's")
    assert await run_sync(VAR.get) == "caller's"

    def fail() -> None:
        raise KeyError("from the thread")

    with pytest.raises(KeyError, match="from the thread"):
        await run_sync(fail)


async def test_a_cancelled_caller_waits_for_the_thread_unless_it_abandons_it() -> None:
    finished = threading.Event()

    def slow() -> None:
        time.sleep(0.3)
        finished.set()

    with anyio.move_on_after(0.05):
        await run_sync(slow)
    assert finished.is_set()  # the caller stayed until the thread returned

    finished.clear()
    began = time.monotonic()
    with anyio.move_on_after(0.05):
        await run_sync(slow, abandon_on_cancel=True)
    assert not finished.is_set()  # it left at once
    assert time.monotonic() - began < 0.25
    await anyio.to_thread.run_sync(finished.wait, 5)  # the dropped result is harmless


def test_call_from_thread_raises_once_the_loop_is_gone() -> None:
    async def start() -> tuple[asyncio.AbstractEventLoop, object]:
        loop = asyncio.get_running_loop()
        value = await run_sync(lambda: call_from_thread(loop, lambda x: x + 1, 41))
        return loop, value

    loop, value = asyncio.run(start())
    assert value == 42
    assert loop.is_closed()
    with pytest.raises(RuntimeError):
        call_from_thread(loop, print)


def test_call_from_thread_raises_when_the_loop_stops_before_running_it() -> None:
    loop = asyncio.new_event_loop()  # open, but never running
    try:
        with pytest.raises(RuntimeError, match="stopped"):
            call_from_thread(loop, print)
    finally:
        loop.close()


async def test_a_lane_runs_every_call_on_one_thread_in_order() -> None:
    lane = Lane()
    seen: list[tuple[int, int]] = []

    def record(i: int) -> None:
        seen.append((i, threading.get_ident()))

    await asyncio.gather(*(lane.call(partial(record, i)) for i in range(50)))
    assert [i for i, _ in seen] == list(range(50))
    assert len({thread for _, thread in seen}) == 1
    closed_on: list[int] = []
    await lane.close(lambda: closed_on.append(threading.get_ident()))
    assert closed_on == [seen[0][1]]
    with pytest.raises(RuntimeError, match="closed"):
        await lane.call(lambda: None)


async def test_jobs_beyond_the_worker_cap_wait_for_a_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await run_sync(lambda: None)  # at least one worker is alive and idle
    alive = _worker_threads()
    monkeypatch.setattr(_threads, "MAX_WORKERS", 0)  # no worker beyond those alive
    busy = 0
    most = 0
    lock = threading.Lock()

    def job() -> None:
        nonlocal busy, most
        with lock:
            busy += 1
            most = max(most, busy)
        time.sleep(0.01)
        with lock:
            busy -= 1

    await asyncio.gather(*(run_sync(job) for _ in range(20)))
    # Only threads already alive took jobs: no new one started for them.
    assert _worker_threads() <= alive
    assert 1 <= most <= len(alive)


def _worker_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "rivers-worker"}
