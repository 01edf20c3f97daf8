"""What a submitted run is written as, and how: the one place of that rule, used
by ``rt.submit``, ``rt.submit_many`` and ``rivers submit``.

A submitted run is written QUEUED with the request's selection (resolved against
the repository: an unknown asset fails before anything is written), tags, priority
and run key, and the fingerprint of the repository's definition, so only a runtime
serving that very definition runs it (``queued_run``). ``write_queued`` writes such
runs, a run whose key names a run already stored giving that run instead; a
``RUN_ENQUEUED`` event (``enqueued``) follows each run written; ``enqueue`` does
both (the runtime's ``submit`` and the TriggerRunner write runs through it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rivers._ids import new_run_id
from rivers._repr import short_repr
from rivers.commands import StartRun
from rivers.definitions.requests import RunRequest
from rivers.errors import ConfigError
from rivers.messages import RunEnqueued
from rivers.storage.records import NewRun, RunStatus

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anyio.streams.memory import MemoryObjectSendStream

    from rivers.actors.ports import EventLog
    from rivers.commands import SupervisorCommand
    from rivers.definitions.repository import CodeRepository
    from rivers.storage.base import QueueStore, RunStore

__all__ = ("enqueue", "enqueued", "queued_run", "start_here", "write_queued")


def queued_run(repository: CodeRepository, request: object) -> NewRun:
    """Return the QUEUED run ``request`` asks ``repository`` for (a new id).

    Raises:
        ConfigError: ``request`` is not a ``rs.RunRequest``.
        AssetNotFound: a selected asset is not in the repository.
    """
    if not isinstance(request, RunRequest):
        raise ConfigError(
            f"submit takes rs.RunRequest values, got {short_repr(request)}"
        )
    selection = None if request.selection is None else list(request.selection)
    steps = repository.resolve_selection(selection)
    return NewRun(
        run_id=new_run_id(),
        status=RunStatus.QUEUED,
        repository=repository.name,
        tags=dict(request.tags or {}),
        selection=None if selection is None else steps,
        priority=request.priority,
        run_key=request.run_key,
        fingerprint=repository.fingerprint,
    )


def enqueued(run: NewRun) -> RunEnqueued:
    """The ``RUN_ENQUEUED`` event of a run just written."""
    return RunEnqueued(run_id=run.run_id, priority=run.priority, tags=dict(run.tags))


async def write_queued(store: RunStore, runs: Sequence[NewRun]) -> list[str | None]:
    """Write the QUEUED ``runs``; return, for each, None if it was written, else
    the id of the run its ``run_key`` names (stored before, or earlier in ``runs``).

    A keyed run whose namesake is pruned between the write and the lookup is
    written after all.
    """
    records = await store.create_runs(runs)
    named: list[str | None] = []
    for run, record in zip(runs, records, strict=True):
        existing = None
        while record is None and existing is None:  # its key named another run
            existing = await store.get_run_by_key(run.run_key or "")
            if existing is None:  # pruned meanwhile: write this one after all
                (record,) = await store.create_runs([run])
        named.append(None if existing is None else existing.run_id)
    return named


async def enqueue(
    store: RunStore, events: EventLog, runs: Sequence[NewRun]
) -> tuple[list[str], list[str]]:
    """Write the QUEUED ``runs``, each written one followed by its ``RUN_ENQUEUED``
    event; return the id each request came to, in order (a keyed run's namesake
    when its key was used before), and the ids of the runs written."""
    named = await write_queued(store, runs)
    run_ids, written = [], []
    for run, existing in zip(runs, named, strict=True):
        if existing is not None:  # its key named another run
            run_ids.append(existing)
            continue
        events.emit(enqueued(run))
        run_ids.append(run.run_id)
        written.append(run.run_id)
    return run_ids, written


async def start_here(
    queue: QueueStore,
    supervisor: MemoryObjectSendStream[SupervisorCommand],
    owner: str,
    run_ids: Sequence[str],
) -> None:
    """Admit the queued ``run_ids`` of a repository without a run queue (no limit
    applies) to ``owner`` and hand each to its RunSupervisor (``StartRun``); a run
    another process admitted first is left to it."""
    admitted = await queue.admit_queued(
        [(run_id, []) for run_id in run_ids], owner=owner, max_concurrent_runs=2**31
    )
    for record in admitted:
        if record is not None:
            supervisor.send_nowait(StartRun(record=record))
