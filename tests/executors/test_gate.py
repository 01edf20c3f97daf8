"""StepGate: an executor's slots go to waiting steps by priority, then arrival; a
cancelled waiter never keeps a slot."""

from __future__ import annotations

import math

import anyio
import pytest

from rivers.executors.gate import StepGate


async def test_freed_slots_go_to_the_highest_priority_then_the_longest_waiting() -> (
    None
):
    gate = StepGate(1)
    gate.acquire_nowait()
    order: list[str] = []

    async def wait(name: str, priority: int) -> None:
        await gate.acquire(priority)
        order.append(name)

    async with anyio.create_task_group() as tg:
        for name, priority in [("low", 0), ("high", 5), ("mid", 1), ("high2", 5)]:
            tg.start_soon(wait, name, priority)
            await anyio.wait_all_tasks_blocked()
        assert gate.waiting == 4
        for _ in range(4):
            gate.release()
            await anyio.wait_all_tasks_blocked()
    assert order == ["high", "high2", "mid", "low"]
    gate.release()
    assert gate.try_acquire()  # every slot came back


async def test_a_free_slot_is_not_taken_past_a_waiter() -> None:
    gate = StepGate(1)
    gate.acquire_nowait()
    async with anyio.create_task_group() as tg:
        tg.start_soon(gate.acquire, 0)
        await anyio.wait_all_tasks_blocked()
        gate.release()  # handed to the waiter, not freed
        with pytest.raises(anyio.WouldBlock):
            gate.acquire_nowait()
    gate.release()
    assert gate.try_acquire()


async def test_a_cancelled_waiter_leaves_the_line_and_keeps_no_slot() -> None:
    gate = StepGate(1)
    gate.acquire_nowait()
    got: list[str] = []

    async def wait(name: str, priority: int) -> None:
        await gate.acquire(priority)
        got.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait, "patient", 0)
        async with anyio.create_task_group() as inner:
            inner.start_soon(wait, "cancelled", 9)  # first in line
            await anyio.wait_all_tasks_blocked()
            assert gate.waiting == 2
            inner.cancel_scope.cancel()
        assert gate.waiting == 1
        gate.release()  # goes past the cancelled waiter to the next in line
        await anyio.wait_all_tasks_blocked()
    assert got == ["patient"]
    assert gate.waiting == 0
    gate.release()
    assert gate.try_acquire()


async def test_an_unlimited_gate_never_blocks() -> None:
    gate = StepGate(math.inf)
    for _ in range(1000):
        assert gate.try_acquire()
    assert gate.total_tokens == math.inf
