"""What a submitted run is written as: the one place of that rule, used by
``rt.submit``, ``rt.submit_many`` and ``rivers submit``.

A submitted run is written QUEUED with the request's selection (resolved against
the repository: an unknown asset fails before anything is written), tags, priority
and run key, and the fingerprint of the repository's definition, so only a runtime
serving that very definition runs it; a ``RUN_ENQUEUED`` event follows it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rivers._ids import new_run_id
from rivers._repr import short_repr
from rivers.definitions.requests import RunRequest
from rivers.errors import ConfigError
from rivers.messages import RunEnqueued
from rivers.storage.records import NewRun, RunStatus

if TYPE_CHECKING:
    from rivers.definitions.repository import CodeRepository

__all__ = ("enqueued", "queued_run")


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
