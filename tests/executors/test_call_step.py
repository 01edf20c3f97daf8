"""``call_step``: the one place a step's function is called, in every executor."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import rivers as rs
from rivers.context import PoolLease
from rivers.executors.base import call_step
from rivers.messages import EventBody


@rs.Asset
def plain(upstream: int) -> int:
    return upstream + 1


@rs.Asset
def with_context(context: rs.StepContext) -> tuple[str, int, str, int | None]:
    context.log.info("hello %s", context.run_tags["team"])
    lease = context.pool_lease
    return (
        context.run_id,
        context.attempt,
        context.asset_key,
        None if lease is None else lease.token,
    )


@rs.Asset
async def later(upstream: int) -> int:
    return upstream * 2


def test_a_step_without_context_gets_only_its_inputs() -> None:
    lines: list[EventBody] = []
    value = call_step(
        plain, {"upstream": 1}, run_id="r", run_tags={}, attempt=1, emit=lines.append
    )
    assert value == 2
    assert lines == []


def test_a_step_with_context_gets_its_attempt_lease_and_a_log_to_emit() -> None:
    lines: list[EventBody] = []
    lease = PoolLease(token=7, pool="db", slots=1, expires_at=datetime.now(UTC))
    value = call_step(
        with_context,
        {},
        run_id="run-1",
        run_tags={"team": "a"},
        attempt=3,
        emit=lines.append,
        pool_lease=lease,
        echo=False,
    )
    assert value == ("run-1", 3, "with_context", 7)
    assert [getattr(line, "message", None) for line in lines] == ["hello a"]


def test_an_async_step_gives_its_coroutine_to_await() -> None:
    result = call_step(
        later, {"upstream": 4}, run_id="r", run_tags={}, attempt=1, emit=print
    )
    assert asyncio.iscoroutine(result)
    assert asyncio.run(result) == 8
