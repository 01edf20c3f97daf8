"""``RunDesk``: the way runs go through one runtime, and the runtime's calls about them.

The desk puts together the run path: the queue coordinators that admit queued runs
(``QueueCoordinators``), the ``RunSupervisor`` that runs them, over the inbox the
runtime made, and the ``RunBuilder`` that builds each (over a worker pool made at
the first sync step); the runtime starts the coordinators and the supervisor, and
``stop()`` stops them. Then ``rt.materialize`` writes a STARTING run and runs it in
the caller's task, past the queue (``run_now``); ``rt.submit_many`` writes QUEUED
runs and tells the repository's coordinator, or without a run queue admits them
here at once (``submit``); ``rt.wait_for`` waits for a run's end (``wait_for``);
``rt.cancel`` applies the cancel rule (``cancel``). The runtime checks each request
and registers its repository first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

import anyio

from rivers._ids import new_run_id
from rivers._validate import check_tags
from rivers.actors.coordinators import QueueCoordinators
from rivers.actors.run_builder import RunBuilder
from rivers.actors.run_supervisor import RunSupervisor
from rivers.cancel import CancelOutcome, request_cancel
from rivers.commands import CancelRun
from rivers.definitions import ExecutorConfig
from rivers.errors import ConfigError, RiversError, RunNotFound
from rivers.executors.process_pool import WorkerPool
from rivers.messages import RunCanceling
from rivers.storage.records import NewRun, RunStatus
from rivers.submission import enqueue, start_here

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from rivers._clock import Clock
    from rivers.actors.ports import EventLog, PoolClaims
    from rivers.commands import SupervisorCommand
    from rivers.definitions.asset import Asset
    from rivers.definitions.repository import CodeRepository
    from rivers.results import MaterializeResult
    from rivers.storage import StorageBackend
    from rivers.storage.records import RunRecord

__all__ = ("DirectRun", "RunDesk", "WAIT_POLL_S", "direct_run")

WAIT_POLL_S = 0.25
"""How often ``wait_for`` reads the record of another process's run."""


@dataclass(frozen=True, slots=True)
class DirectRun:
    """A ``rt.materialize`` request, checked: a run to start here, past the queue."""

    steps: list[str]
    selection: list[str] | None  # as recorded: None for the whole repository
    tags: dict[str, str]
    config: ExecutorConfig


def direct_run(
    repository: CodeRepository,
    selection: Iterable[Asset[Any, Any] | str] | str | None,
    tags: Mapping[str, str] | None,
    executor: ExecutorConfig | None,
) -> DirectRun:
    """Check a ``rt.materialize`` request against ``repository``.

    Raises:
        AssetNotFound: a selected name is not in the repository.
        ConfigError: bad tags or executor.
    """
    steps = repository.resolve_selection(selection)
    run_tags = check_tags(tags)
    config = executor or repository.executor
    if not isinstance(config, ExecutorConfig):
        raise ConfigError(f"executor must come from rs.Executor, got {config!r}")
    selected = None if selection is None else steps
    return DirectRun(steps=steps, selection=selected, tags=run_tags, config=config)


@final
class RunDesk:
    """The run path of one runtime (coordinators, supervisor, builder) and the calls
    about its runs.

    It owns the worker pool; the RunSupervisor owns the runs. It writes through the
    storage roles and sends to the RunSupervisor's inbox and the coordinators'.
    """

    def __init__(
        self,
        *,
        inbox: MemoryObjectReceiveStream[SupervisorCommand],
        to_supervisor: MemoryObjectSendStream[SupervisorCommand],
        roles: StorageBackend,
        events: EventLog,
        pools: PoolClaims,
        repositories: Mapping[str, CodeRepository],
        clock: Clock,
        owner: str,
        lease_s: float,
    ) -> None:
        self._runs = roles.runs
        self._queue = roles.queue
        self._events = events
        self._to_supervisor = to_supervisor
        self._owner = owner
        self._lease_s = lease_s
        self._worker_pool: WorkerPool | None = None
        self.queues = QueueCoordinators(
            roles=roles,
            events=events,
            owner=owner,
            clock=clock,
            supervisor=to_supervisor,
        )
        self.builder = RunBuilder(
            repositories=repositories,
            worker_pool=self._get_worker_pool,
            events=events,
            pools=pools,
            clock=clock,
            owner=owner,
        )
        self.supervisor = RunSupervisor(
            inbox=inbox,
            runs=roles.runs,
            pools=roles.pools,
            events=events,
            builder=self.builder,
            coordinators=self.queues.inboxes,
        )

    def _get_worker_pool(self) -> WorkerPool:
        if self._worker_pool is None:
            self._worker_pool = WorkerPool(stopped_parent_limit_s=self._lease_s)
        return self._worker_pool

    @property
    def worker_pids(self) -> list[int]:
        """The pids of the step worker processes (none before the first sync step)."""
        return [] if self._worker_pool is None else self._worker_pool.pids

    async def stop(self) -> None:
        """Stop the coordinators (nothing more is admitted); cancel every run and wait
        for their ends; stop the worker processes."""
        self.queues.stop()
        await self.queues.wait_stopped()
        await self.supervisor.stop()
        if self._worker_pool is not None:
            await self._worker_pool.aclose()

    async def run_now(
        self, repository: CodeRepository, request: DirectRun
    ) -> MaterializeResult:
        """Write the STARTING run ``request`` asks for; run it in the caller's task,
        so cancelling the caller cancels it."""
        run_id = new_run_id()
        await self._runs.create_run(
            NewRun(
                run_id=run_id,
                status=RunStatus.STARTING,
                repository=repository.name,
                tags=request.tags,
                selection=request.selection,
                owner=self._owner,
                fingerprint=repository.fingerprint,
            )
        )
        run = self.builder.build(
            run_id, repository, request.steps, request.tags, request.config
        )
        return await self.supervisor.execute(run)

    async def submit(
        self, repository: CodeRepository, runs: Sequence[NewRun]
    ) -> list[str]:
        """Write the QUEUED ``runs`` of ``repository`` and see them admitted; return
        their ids, in order (a run whose ``run_key`` names another run gives that
        run's id, and is not written).

        With a run queue, its coordinator is told (the leader admits them); without
        one, they are admitted here at once.

        Raises:
            RiversError: no run queue, and the runtime is stopping (the runs stay
                queued).
        """
        run_ids, written = await enqueue(self._runs, self._events, runs)
        if repository.run_queue is not None:
            if written:
                self.queues.submitted(repository.name, written)
        elif written and self.supervisor.closing:
            raise RiversError("the runtime is stopping; the runs stay queued")
        elif written:
            await start_here(self._queue, self._to_supervisor, self._owner, written)
        return run_ids

    async def wait_for(self, run_id: str) -> RunRecord:
        """Wait until a run (of any process) has finished; return its record.

        A run of this process is waited for without polling, and answered from
        the record it finished with; another process's run is read every
        ``WAIT_POLL_S``.

        Raises:
            RunNotFound: no run has this id.
        """
        runs = self.supervisor
        while True:
            if (kept := runs.finished_record(run_id)) is not None:
                return kept
            if runs.is_running(run_id):
                await runs.end_of(run_id).wait()
                continue
            record = await self._runs.get_run(run_id)
            if record is None:
                raise RunNotFound(run_id)
            if record.status.is_finished:
                return record
            with anyio.move_on_after(WAIT_POLL_S):
                await runs.end_of(run_id).wait()

    async def cancel(self, run_id: str) -> None:
        """Apply the cancel rule to a run; stop it at once if it runs here.

        Raises:
            RunNotFound: no run has this id.
        """
        requested = await request_cancel(self._runs, run_id)
        if requested is None:
            raise RunNotFound(run_id)
        _, outcome = requested
        if outcome is CancelOutcome.CANCELING:
            self._events.emit(RunCanceling(run_id=run_id))
        if outcome in (CancelOutcome.CANCELING, CancelOutcome.STOPPING):
            self._to_supervisor.send_nowait(
                CancelRun(run_id=run_id, reason="canceled by request")
            )
