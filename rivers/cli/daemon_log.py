"""``rivers daemon``'s log: one line per run admitted, and per run ended.

``rivers daemon: run 01a2... (repository 'shop') FAILURE in 0.4s: step 'load' failed: ...``
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from rivers._text import format_seconds, safe
from rivers.errors import RiversError

if TYPE_CHECKING:
    from datetime import datetime

    from anyio.abc import TaskStatus
    from rich.console import Console

    from rivers.runtime import Runtime
    from rivers.storage.records import Event

__all__ = ("follow_runs", "run_line")

_ENDED = {
    "RUN_SUCCESS": "SUCCESS",
    "RUN_FAILURE": "FAILURE",
    "RUN_CANCELED": "CANCELED",
}
_LOGGED = {"RUN_DEQUEUED", *_ENDED}


def run_line(event: Event, repository: str, started_at: datetime | None) -> str | None:
    """Return the log line of ``event`` (rich markup), or None for other kinds.

    Args:
        repository: the name of the run's repository.
        started_at: when the run started, for runs whose end carries no duration.
    """
    if event.kind not in _LOGGED or event.run_id is None:
        return None
    head = (
        f"rivers daemon: run {safe(event.run_id)} (repository {safe(repr(repository))})"
    )
    data = event.data
    if event.kind == "RUN_DEQUEUED":
        waited = data.get("waited_s")
        waited_s = float(waited) if isinstance(waited, int | float) else None
        return f"{head} admitted after {format_seconds(waited_s)} in the queue"
    duration = data.get("duration_s")
    duration_s = float(duration) if isinstance(duration, int | float) else None
    if duration_s is None and started_at is not None:
        duration_s = (event.timestamp - started_at).total_seconds()
    line = f"{head} {_ENDED[event.kind]}"
    if duration_s is not None:
        line += f" in {format_seconds(duration_s)}"
    reason = data.get("reason")
    if reason:
        line += ": " + safe(" ".join(str(reason).split()))
    return line


async def follow_runs(
    runtime: Runtime,
    out: Console,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Print a line for each run ``runtime`` admits or ends, until its events stop."""
    repositories: dict[str, str] = {}
    started: dict[str, datetime] = {}
    events = runtime.events()
    # The subscription is registered when the generator first runs, which
    # happens before this task yields control: no event of a later run is missed.
    task_status.started()
    try:
        async for event in events:
            run_id = event.run_id
            if run_id is None:
                continue
            if event.kind == "RUN_STARTED":
                started[run_id] = event.timestamp
                continue
            if event.kind not in _LOGGED:
                continue
            if run_id not in repositories:
                repositories[run_id] = await _repository(runtime, run_id)
            line = run_line(event, repositories[run_id], started.get(run_id))
            if event.kind in _ENDED:
                repositories.pop(run_id, None)
                started.pop(run_id, None)
            if line is not None:
                out.print(line)
    except RiversError as exc:  # a lagging reader catching up on a failed storage
        # The log is not worth stopping the daemon for; the runtime reports the
        # storage's state itself.
        out.print(f"rivers daemon: no more run lines: {safe(exc)}")


async def _repository(runtime: Runtime, run_id: str) -> str:
    try:
        record = await runtime.storage.get_run(run_id)
    except RiversError:  # the runtime is stopping: its storage may be closed
        return "?"
    return "?" if record is None else record.repository
