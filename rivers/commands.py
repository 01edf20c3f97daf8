"""Commands: the messages an actor sends to another actor's inbox.

Events (``rivers.messages``) say what happened and go to storage and subscribers;
commands ask one actor to act and go to its inbox, an anyio memory object stream
that only that actor reads. Each inbox takes a union of commands, matched
exhaustively (``typing.assert_never``) by its reader.
"""

from __future__ import annotations

import msgspec

from rivers.storage.records import RunRecord, RunStatus

__all__ = (
    "CancelRun",
    "CoordinatorMessage",
    "LeasesReclaimed",
    "PoolMessage",
    "RunEnded",
    "RunsSubmitted",
    "StartRun",
    "SupervisorCommand",
)


class StartRun(msgspec.Struct, frozen=True):
    """Run a run the queue admitted to this process (STARTING, owned here)."""

    record: RunRecord


class CancelRun(msgspec.Struct, frozen=True):
    """Stop a run of this process, if it is running here."""

    run_id: str
    reason: str


SupervisorCommand = StartRun | CancelRun
"""What the RunSupervisor's inbox takes."""


class RunEnded(msgspec.Struct, frozen=True):
    """A run of this process ended: what it held in the queue's limits is free."""

    run_id: str
    status: RunStatus | None
    """How it ended; None when an error ended it before its end was recorded."""


class RunsSubmitted(msgspec.Struct, frozen=True):
    """Runs were queued here and left to the queue to admit (by ``rt.submit`` under
    a run queue, or by the TriggerRunner): it may admit them now. Without a run
    queue the coordinator starts them here at once, leader or not."""

    run_ids: tuple[str, ...]


class RunsChangedElsewhere(msgspec.Struct, frozen=True):
    """Another process queued runs or ended one (a wake-up through the storage):
    the queue may admit now."""


CoordinatorMessage = RunEnded | RunsSubmitted | RunsChangedElsewhere
"""What a QueueCoordinator's inbox takes."""


class LeasesReclaimed(msgspec.Struct, frozen=True):
    """Expired claims were deleted (by LeaseGC): their local holders stop, and the
    freed slots go to the waiters."""

    claims: tuple[tuple[str, str, str, int, str], ...]
    """(pool, run id, step key, slots, owner) of each claim deleted."""


PoolMessage = LeasesReclaimed
"""What the PoolManager's inbox takes."""
