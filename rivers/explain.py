"""Why is this run waiting? A one-line answer with live numbers, from storage only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rivers._liveness import live_served
from rivers.core.ownership import queue_config_key, unserved_reason
from rivers.core.queue import stored_rules, tag_limit_reason
from rivers.errors import RunNotFound
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
        return f"run {run_id} is {record.status.value}{detail}"
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
    config = await storage.state.get_state(
        queue_config_key(record.repository, fingerprint)
    )
    if not isinstance(config, dict):
        return (
            f"run {run_id} is QUEUED, {where}: a daemon serving repository "
            f"{record.repository!r} is starting"
        )
    if config.get("max_concurrent_runs") is None:
        return (
            f"run {run_id} is QUEUED, {where}: repository {record.repository!r} has "
            "no run queue; the daemon serving it starts it within a second"
        )
    in_flight = await storage.runs.count_runs(IN_FLIGHT_STATUSES)
    limit = int(config.get("max_concurrent_runs", 0))
    if in_flight >= limit:
        return (
            f"run {run_id} is QUEUED, {where}: max_concurrent_runs "
            f"{in_flight}/{limit} in flight"
        )
    reason = tag_limit_reason(
        stored_rules(config), record.tags, await storage.queue.get_in_flight_tags()
    )
    if reason is not None:
        return f"run {run_id} is QUEUED, {where}: {reason}"
    return f"run {run_id} is QUEUED, {where}: waiting for the next dequeue tick"


async def run_assets(storage: StorageBackend, record: RunRecord) -> list[str]:
    """Return a run's assets: its selection, else its definition's (empty: unknown)."""
    if record.selection is not None:
        return list(record.selection)
    if record.fingerprint is None:
        return []
    return await storage.processes.get_definition_assets(record.fingerprint)
