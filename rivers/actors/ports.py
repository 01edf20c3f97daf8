"""What an actor holds of another actor: the narrow views its constructor takes.

An actor never imports another actor's class. It is given either the other's inbox
(the send end of an anyio memory object stream of ``rivers.commands``) or one of
these Protocols, which name exactly the calls it may make; the runtime wires each
to the actor that implements it (``EventWriter`` is the ``EventLog``,
``PoolManager`` the ``PoolClaims``, ``RunBuilder`` the ``RunFactory`` and each
``RunExecutor`` a ``RunDriver``). ``tests/test_architecture.py`` keeps it so.

The calls that stay calls rather than messages are the ones on a step's hot path
(a pool claim and its release, an event appended to the log's buffer): each is
applied on the event loop without a task switch, which an inbox round trip would
add to every step (docs/architecture.md says why and what it costs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from rivers.actors.pool_claim import Claim
    from rivers.messages import EventBody, StepPoolClaimed
    from rivers.results import MaterializeResult
    from rivers.storage.records import Event, RunChange, RunRecord

__all__ = ("EventLog", "PoolClaims", "RunDriver", "RunFactory")


class EventLog(Protocol):
    """The event log as an actor appends to it (``EventWriter``)."""

    def emit(self, body: EventBody) -> None:
        """Queue ``body`` for the next batch, stamped with the current time."""

    async def change_run(self, change: RunChange) -> tuple[bool, list[Event]]:
        """Write a run's status change with the events before it; return whether
        it applied and its event as stored."""
        ...

    def publish(self, events: list[Event]) -> None:
        """Hand already-stored ``events`` to every subscriber."""


class PoolClaims(Protocol):
    """Pool slots as a run's steps claim and give them back (``PoolManager``)."""

    async def acquire(
        self,
        *,
        run_id: str,
        step_key: str,
        pools: tuple[str, ...],
        slots: int,
        priority: int,
        wait: bool,
    ) -> Claim | None:
        """Claim ``slots`` of every pool, all or nothing (None: not now)."""
        ...

    async def release(self, claim: Claim) -> None:
        """Give the claim's slots back and wake the next waiters."""

    def claimed_event(self, claim: Claim, waited_s: float) -> StepPoolClaimed:
        """The STEP_POOL_CLAIMED event of a fresh claim."""
        ...


class RunDriver(Protocol):
    """One run, as the RunSupervisor drives it (``RunExecutor``)."""

    @property
    def run_id(self) -> str:
        """The run's id."""
        ...

    def cancel(self, reason: str) -> None:
        """Stop the run: its steps are cancelled and it ends CANCELED."""

    async def run(self) -> MaterializeResult:
        """Run the run to its end; return its result."""
        ...


class RunFactory(Protocol):
    """What makes the RunDriver of a run the queue admitted (``RunBuilder``)."""

    def for_record(self, record: RunRecord) -> RunDriver:
        """The driver of an admitted run of this process.

        Raises:
            ConfigError: this runtime does not have the run's repository.
            AssetNotFound: its selection names an asset the repository lacks.
        """
        ...
