"""Expected starts for ``runs why``, ``rt.explain()`` and ``rivers top``: gates read
from storage.

Each function reads what one gate looks like right now (who holds it, who waits
ahead, how long recent holders held it) and hands it to the pure forecast in
``rivers.core.forecast``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rivers.core.forecast import HISTORY, Forecast, Gate, forecast
from rivers.core.rates import parse_rate, start_in_s
from rivers.storage.records import IN_FLIGHT_STATUSES

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rivers.core.queue import Bucket, LimitRule
    from rivers.storage.base import StorageBackend
    from rivers.storage.records import (
        Event,
        PendingStep,
        PoolInfo,
        RunRecord,
        SlotHolder,
    )

__all__ = (
    "bucket_of",
    "pool_forecast",
    "pool_forecasts",
    "queue_forecast",
    "recent_releases",
    "queue_forecasts",
    "tag_forecast",
)

_RELEASED = "POOL_SLOTS_RELEASED"  # PoolSlotsReleased


async def queue_forecast(
    storage: StorageBackend, position: int, limit: int
) -> Forecast:
    """When does the ``position``-th queued run get one of ``limit`` run slots?"""
    return (await queue_forecasts(storage, [position], limit))[position]


async def tag_forecast(
    storage: StorageBackend,
    record: RunRecord,
    position: int,
    rule: LimitRule,
    bucket: Bucket,
) -> Forecast:
    """When does a queued run get a place in its full tag bucket?"""
    holding = [
        held for tags, held in await _running(storage) if rule.bucket(tags) == bucket
    ]
    ahead = [
        run
        for run in await storage.dashboard.get_queued_runs(max(position - 1, 0))
        if run.run_id != record.run_id and rule.bucket(run.tags) == bucket
    ]
    return forecast(
        Gate(
            label=f"tag {rule.describe(bucket)}",
            capacity=rule.limit,
            holding=[(1, held) for held in holding],
            ahead=[1] * len(ahead),
            need=1,
            holds=await _run_durations(storage),
        )
    )


async def pool_forecast(
    storage: StorageBackend,
    pool: str,
    limit: int,
    run_id: str,
    step_key: str,
    rate: tuple[str, float] | None = None,
) -> Forecast | None:
    """When does a step waiting in ``pool``'s line get its slots? None: not in line.

    ``rate``: the pool's rate and the tokens its bucket holds now, if it has one."""
    line = await storage.pools.get_pending_steps(pool)
    if not any((p.run_id, p.step_key) == (run_id, step_key) for p in line):
        return None
    holders = await storage.pools.get_pool_slot_holders(pool)
    released = await recent_releases(storage)
    now = storage.clock.time()
    forecasts = pool_forecasts(pool, limit, line, holders, released, now, rate)
    return forecasts[(run_id, step_key)]


async def recent_releases(storage: StorageBackend) -> list[Event]:
    """The recent releases of every pool: the history of ``pool_forecasts``."""
    return await storage.dashboard.get_recent_events([_RELEASED], HISTORY * 4)


def pool_forecasts(
    pool: str,
    limit: int,
    line: Sequence[PendingStep],
    holders: Sequence[SlotHolder],
    released: Sequence[Event],
    now: float,
    rate: tuple[str, float] | None = None,
) -> dict[tuple[str, str], Forecast]:
    """The expected start of every step in ``pool``'s line, learning from
    ``released`` (``recent_releases``, read once for every pool of a frame).

    For a rate-limited pool (``rate``: its rate and the tokens its bucket holds
    now) no step is expected before its bucket allows its start."""
    holds = [
        float(event.data["held_s"])
        for event in released
        if pool in event.data.get("pools", ())
    ][:HISTORY]
    holding = [(h.slots, now - h.claimed_at.timestamp()) for h in holders]
    return {
        (step.run_id, step.step_key): _no_sooner_than_rate(
            forecast(
                Gate(
                    label=f"pool {pool}",
                    capacity=limit,
                    holding=holding,
                    ahead=[p.slots for p in line[:index]],
                    need=step.slots,
                    holds=holds,
                    noun="step",
                )
            ),
            rate,
            index + 1,
        )
        for index, step in enumerate(line)
    }


def bucket_of(info: PoolInfo) -> tuple[str, float] | None:
    """A pool's rate and the tokens its bucket holds now, as the forecasts take them
    (None: the pool has no rate)."""
    return None if info.rate is None else (info.rate, info.tokens or 0.0)


def _no_sooner_than_rate(
    expected: Forecast, rate: tuple[str, float] | None, place: int
) -> Forecast:
    """``expected``, or later if the pool's rate allows the ``place``-th start later."""
    if rate is None:
        return expected
    text, tokens = rate
    by_rate = start_in_s(tokens, parse_rate(text), place)
    if expected.seconds is not None and expected.seconds >= by_rate:
        return expected
    return Forecast(by_rate, f"rate {text}: start {place} from now")


async def queue_forecasts(
    storage: StorageBackend, positions: Sequence[int], limit: int
) -> dict[int, Forecast]:
    """``queue_forecast`` for several queue positions, reading the history once."""
    holding = [(1, held) for _, held in await _running(storage)]
    holds = await _run_durations(storage)
    return {
        position: forecast(
            Gate(
                label="the run queue",
                capacity=limit,
                holding=holding,
                ahead=[1] * (position - 1),
                need=1,
                holds=holds,
            )
        )
        for position in positions
    }


async def _running(storage: StorageBackend) -> list[tuple[dict[str, str], float]]:
    """The in-flight runs' tags and how long each has held its run slot."""
    now = storage.clock.time()
    runs = await storage.runs.get_runs(status=IN_FLIGHT_STATUSES, limit=None)
    return [
        (run.tags, now - (run.started_at or run.created_at).timestamp()) for run in runs
    ]


async def _run_durations(storage: StorageBackend) -> list[float]:
    """How long the recent finished runs held their run slot (start to end)."""
    return [
        (run.ended_at - run.started_at).total_seconds()
        for run in await storage.dashboard.get_recent_finished_runs(HISTORY)
        if run.started_at is not None and run.ended_at is not None
    ]
