"""What every step launcher offers the RunExecutor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from rivers.context import PoolLease, StepContext, StepLog

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from rivers.definitions.asset import Asset
    from rivers.executors.gate import StepGate, TagGates
    from rivers.io import IOManager
    from rivers.messages import EventBody

__all__ = (
    "LaunchResult",
    "OnStart",
    "StepLauncher",
    "StepRequest",
    "call_step",
    "load_inputs",
)


@dataclass(slots=True)
class StepRequest:
    """One attempt of one step, as handed to a launcher."""

    run_id: str
    asset: Asset[Any, Any]
    attempt: int
    run_tags: Mapping[str, str]
    known_values: Mapping[str, object]
    io_manager: IOManager
    emit: Callable[[EventBody], None]
    on_start: OnStart
    """Call once the attempt really runs, naming where (``pid 1234``, ``thread``)."""
    pool_lease: PoolLease | None = None
    """The step's pool claim (``context.pool_lease``)."""


class OnStart(Protocol):
    """``on_start(worker, startup_s)``: the attempt runs now, on ``worker``.

    ``startup_s`` is how long it waited for its worker to start (0: it was warm);
    that wait is not part of the step's run time.
    """

    def __call__(self, worker: str, startup_s: float = 0.0) -> None: ...


@dataclass(slots=True)
class LaunchResult:
    """What a finished attempt produced: its value if it is in this process."""

    value: object
    has_value: bool


class StepLauncher(Protocol):
    """Runs steps for one run of one executor configuration."""

    tag_gates: TagGates
    """The executor's tag limits over asset tags (held around each attempt)."""

    def gate(self, asset: Asset[Any, Any]) -> StepGate:
        """Return the executor slot limiter the step must hold while it runs."""
        ...

    async def warm(self, levels: Sequence[Sequence[Asset[Any, Any]]]) -> None:
        """Get ready for a run (start workers); called as it starts.

        ``levels``: its steps by depth; the steps of a level may run at once.
        """
        ...

    async def launch(self, request: StepRequest) -> LaunchResult:
        """Run the attempt to its end and store its value.

        Raises:
            Exception: whatever the step raised (the RunExecutor records it).
        """
        ...


def load_inputs(
    asset: Asset[Any, Any], known: Mapping[str, object], io_manager: IOManager
) -> dict[str, object]:
    """Return the step's keyword arguments: known values, others from the IO manager."""
    inputs: dict[str, object] = {}
    for name in asset.params:
        if name in known:
            inputs[name] = known[name]
        else:
            inputs[name] = io_manager.load(name)
    return inputs


def call_step(
    asset: Asset[Any, Any],
    inputs: dict[str, object],
    *,
    run_id: str,
    run_tags: Mapping[str, str],
    attempt: int,
    emit: Callable[[EventBody], None],
    pool_lease: PoolLease | None = None,
    echo: bool = True,
) -> object:
    """Call the asset's function with its inputs (and a ``context`` if it takes one).

    The one place a step's function is called, wherever it runs: on the event loop
    or a thread (``in_process``), in a worker process (``_worker_main``), in a
    step pod (``rivers.worker``). An async asset gives its coroutine, for the
    caller to await. ``emit`` gets the step's ``context.log`` lines; ``echo=False``
    when whoever receives them logs them (a worker process's parent).
    """
    if asset.takes_context:
        inputs["context"] = StepContext(
            run_id=run_id,
            asset_key=asset.name,
            run_tags=run_tags,
            attempt=attempt,
            log=StepLog(run_id, asset.name, emit, echo=echo),
            pool_lease=pool_lease,
        )
    return asset.fn(**inputs)
