"""Why is this run waiting? A one-line answer with live numbers, from storage only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rivers._liveness import live_served
from rivers.core.ownership import queue_config_key, unserved_reason
from rivers.core.pool_admission import POOLS_REASONS
from rivers.core.queue import binding_tag_limit
from rivers.core.queue_config import decode_queue_config
from rivers.core.queue_controls import paused_reason
from rivers.errors import RunNotFound
from rivers.forecasts import bucket_of, pool_forecast, queue_forecast, tag_forecast
from rivers.storage.records import IN_FLIGHT_STATUSES, RunStatus

if TYPE_CHECKING:
    from rivers.storage.base import StorageBackend
    from rivers.storage.records import RunRecord

__all__ = ("explain_run", "ordinal", "run_assets")


def ordinal(n: int) -> str:
    """Return ``1st``, ``2nd``, ``3rd``, ``4th``..."""
    suffix = (
        "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    )
    return f"{n}{suffix}"


async def explain_run(storage: StorageBackend, run_id: str) -> str:
    """Return why a run is where it is (the binding gate for a queued run).

    Raises:
        RunNotFound: no run has this id.
    """
    record = await storage.runs.get_run(run_id)
    if record is None:
        raise RunNotFound(run_id)
    if record.status is not RunStatus.QUEUED:
        detail = f": {record.reason}" if record.reason else ""
        lines = [f"run {run_id} is {record.status.value}{detail}"]
        if record.status in IN_FLIGHT_STATUSES:
            lines.extend(await _pool_waits(storage, run_id))
        return "\n".join(lines)
    position = await storage.queue.queue_position(run_id) or 0
    where = f"{ordinal(position)} in the queue"
    live = await live_served(storage)
    unserved = unserved_reason(
        record.repository,
        record.fingerprint,
        await run_assets(storage, record),
        live,
    )
    if unserved is not None:
        return f"run {run_id} is QUEUED, {where}: {unserved}"
    fingerprint = record.fingerprint or next(
        s.fingerprint for s in live if s.repository == record.repository
    )
    key = queue_config_key(record.repository, fingerprint)
    config = decode_queue_config(await storage.state.get_state(key), key)
    if config is None:
        return (
            f"run {run_id} is QUEUED, {where}: a daemon serving repository "
            f"{record.repository!r} is starting"
        )
    if config.max_concurrent_runs is None:
        return (
            f"run {run_id} is QUEUED, {where}: repository {record.repository!r} has "
            "no run queue; the daemon serving it starts it within a second"
        )
    if config.paused:
        return (
            f"run {run_id} is QUEUED, {where}: {paused_reason(record.repository)}; "
            "expected start unknown"
        )
    in_flight = await storage.runs.count_runs(IN_FLIGHT_STATUSES)
    limit = config.max_concurrent_runs
    if in_flight >= limit:
        expected = await queue_forecast(storage, position, limit)
        source = config.max_concurrent_runs_source
        source = f" ({source})" if source != "repository" else ""
        return (
            f"run {run_id} is QUEUED, {where}: max_concurrent_runs{source} "
            f"{in_flight}/{limit} in flight; {expected.describe()}"
        )
    binding = binding_tag_limit(
        config.tag_concurrency_limits,
        record.tags,
        await storage.queue.get_in_flight_tags(),
    )
    if binding is not None:
        rule, bucket, used = binding
        expected = await tag_forecast(storage, record, position, rule, bucket)
        source = " (override)" if config.is_overridden("tag_concurrency_limits") else ""
        return (
            f"run {run_id} is QUEUED, {where}: {rule.blocked_reason(bucket, used)}"
            f"{source}; {expected.describe()}"
        )
    if record.reason is not None and record.reason.startswith(POOLS_REASONS):
        return f"run {run_id} is QUEUED, {where}: {record.reason}"
    return f"run {run_id} is QUEUED, {where}: waiting for the next dequeue tick"


async def _pool_waits(storage: StorageBackend, run_id: str) -> list[str]:
    """One line per pool a step of the run waits in, with its expected start."""
    lines = []
    for info in await storage.pools.get_all_pool_infos():
        if not info.pending_steps or info.limit is None:
            continue
        for pending in await storage.pools.get_pending_steps(info.name):
            if pending.run_id != run_id:
                continue
            rate = bucket_of(info)
            expected = await pool_forecast(
                storage, info.name, info.limit, run_id, pending.step_key, rate
            )
            rate_text = "" if info.rate is None else f", rate {info.rate}"
            if expected is not None:
                lines.append(
                    f"  step {pending.step_key} waits for pool {info.name} "
                    f"({info.claimed_slots}/{info.limit} slots{rate_text}): "
                    f"{expected.describe()}"
                )
    return lines


async def run_assets(storage: StorageBackend, record: RunRecord) -> list[str]:
    """Return a run's assets: its selection, else its definition's (empty: unknown)."""
    if record.selection is not None:
        return list(record.selection)
    if record.fingerprint is None:
        return []
    return await storage.processes.get_definition_assets(record.fingerprint)
