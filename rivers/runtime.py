"""``rs.Runtime``: opens the storage, makes the inboxes and starts the actors.

One anyio task group owns every actor (EventWriter, ProcessMonitor, PoolManager,
RunSupervisor, the queue coordinators, ...); the RunSupervisor owns every run.
``async with rs.Runtime(repo) as rt`` starts them and, on exit, cancels what still
runs (recording it CANCELED), writes every pending event, and closes the storage.
Nothing outlives the block.
"""

from __future__ import annotations

import logging
import math
from contextlib import AsyncExitStack
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, final

import anyio

from rivers._clock import SYSTEM_CLOCK, Clock
from rivers._error_groups import leaves, raise_one_storage_error
from rivers._ids import new_run_id, this_owner
from rivers._validate import check_tags
from rivers.actors.events import EventWriter
from rivers.actors.leases import LeaseGC
from rivers.actors.limit_windows import LimitWindows
from rivers.actors.liveness import ProcessMonitor
from rivers.actors.pools import PoolManager
from rivers.actors.queue import QueueCoordinator
from rivers.actors.queue_wakeups import relay_queue_wakeups
from rivers.actors.retention import Retention
from rivers.actors.run_builder import RunBuilder
from rivers.actors.run_executor import CLEANUP_TIMEOUT_S
from rivers.actors.run_supervisor import RunSupervisor
from rivers.actors.triggers import TriggerRunner
from rivers.cancel import CancelOutcome, request_cancel
from rivers.commands import (
    CancelRun,
    CoordinatorMessage,
    RunsSubmitted,
    StartRun,
    SupervisorCommand,
)
from rivers.definitions import ExecutorConfig, RunBackendConfig
from rivers.definitions.repository import CodeRepository
from rivers.errors import ConfigError, RiversError, RunNotFound
from rivers.executors.process_pool import WorkerPool
from rivers.explain import explain_run
from rivers.messages import RunCanceling
from rivers.metrics import MetricsServer, parse_metrics_addr
from rivers.run_handle import RunHandle
from rivers.storage import Storage, StorageBackend, connect_backend
from rivers.storage.records import Event, NewRun, RunRecord, RunStatus
from rivers.submission import enqueued, queued_run, write_queued

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable, Mapping
    from types import TracebackType

    from anyio.abc import TaskGroup, TaskStatus
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from rivers.definitions.asset import Asset
    from rivers.definitions.requests import RunRequest
    from rivers.results import MaterializeResult

__all__ = ("RunHandle", "Runtime", "current_runtime", "one_off_runtime")

WAIT_POLL_S = 0.25

logger = logging.getLogger(__name__)

_CURRENT: ContextVar[Runtime | None] = ContextVar("rivers_runtime", default=None)


def current_runtime() -> Runtime | None:
    """Return the runtime whose ``async with`` block the caller is in, if any."""
    return _CURRENT.get()


@final
class Runtime:
    """The rivers runtime: storage, actors, runs.

    Args:
        *repositories: the code repositories whose assets this runtime runs.
        backend: storage and leases (default: the first repository's backend, else
            ``RunBackendConfig()``).
        clock: the time source (tests inject a manual one).
        metrics_addr: ``HOST:PORT`` to serve Prometheus metrics at ``/metrics``
            (port 0 picks a free port; ``rt.metrics_url`` tells where).

    Use it with ``async with``; ``rt.storage``, ``rt.materialize()``, ``rt.cancel()``
    and ``rt.events()`` work inside the block.
    """

    def __init__(
        self,
        *repositories: CodeRepository,
        backend: RunBackendConfig | None = None,
        clock: Clock = SYSTEM_CLOCK,
        metrics_addr: str | None = None,
    ) -> None:
        self._repositories: dict[str, CodeRepository] = {}
        for repository in repositories:
            self._attach(repository)
        if backend is None:
            backend = next(
                (r.backend for r in repositories if r.backend is not None),
                RunBackendConfig(),
            )
        if not isinstance(backend, RunBackendConfig):
            raise ConfigError(f"backend must be a rs.RunBackendConfig, got {backend!r}")
        self.backend = backend
        self.clock = clock
        self._metrics_addr = (
            None if metrics_addr is None else parse_metrics_addr(metrics_addr)
        )
        self._metrics: MetricsServer | None = None
        self.owner = this_owner()
        self._backend: StorageBackend | None = None
        self._storage: Storage | None = None
        self._events: EventWriter | None = None
        self._task_group: TaskGroup | None = None
        self._stack: AsyncExitStack | None = None
        self._token: Token[Runtime | None] | None = None
        self._worker_pool: WorkerPool | None = None
        self._pools: PoolManager | None = None
        self._coordinators: dict[str, QueueCoordinator] = {}
        self._coordinator_inboxes: dict[
            str, MemoryObjectSendStream[CoordinatorMessage]
        ] = {}
        self._inbox_ends: list[MemoryObjectReceiveStream[Any]] = []
        self._supervisor: RunSupervisor | None = None
        self._to_supervisor: MemoryObjectSendStream[SupervisorCommand] | None = None
        self._builder: RunBuilder | None = None
        self._long_lived = True
        self._coordinator_scope = anyio.CancelScope()
        self._coordinator_group: TaskGroup | None = None
        self._coordinator_done = anyio.Event()
        self._coordinator_done.set()
        self._limit_windows: LimitWindows | None = None
        self.triggers: TriggerRunner | None = None

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Runtime:
        if self._stack is not None:
            raise RiversError("this Runtime is already running; create a new one")
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            self._backend = backend = await connect_backend(
                self.backend.storage, clock=self.clock
            )
            stack.push_async_callback(backend.aclose)
            self._storage = Storage(backend)
            self._to_supervisor, supervisor_inbox = anyio.create_memory_object_stream[
                SupervisorCommand
            ](math.inf)
            self._inbox_ends.append(supervisor_inbox)
            stack.callback(self._close_inboxes)
            self._task_group = tg = anyio.create_task_group()
            await stack.enter_async_context(tg)
            stack.push_async_callback(self._shutdown)
            self._events = EventWriter(backend.events, self.clock)
            await self._task_group.start(self._events.run, name="rivers.events")
            if self._metrics_addr is not None:
                host, port = self._metrics_addr
                self._metrics = MetricsServer(
                    storage=backend, events=self._events, host=host, port=port
                )
                await self._task_group.start(self._metrics.run, name="rivers.metrics")
            monitor = ProcessMonitor(
                storage=backend.processes,
                events=self._events,
                owner=self.owner,
                clock=self.clock,
                supervisor=self._to_supervisor,
            )
            await self._task_group.start(monitor.run, name="rivers.monitor")
            self._pools = PoolManager(
                storage=backend.pools,
                events=self._events,
                owner=self.owner,
                clock=self.clock,
                lease_s=self.backend.lease_s,
            )
            await self._task_group.start(self._pools.run, name="rivers.pools")
            gc = LeaseGC(
                storage=backend.pools,
                events=self._events,
                pools=self._pools,
                interval_s=self.backend.lease_gc_interval_s,
            )
            await self._task_group.start(gc.run, name="rivers.lease_gc")
            self._builder = RunBuilder(
                repositories=self._repositories,
                worker_pool=self._get_worker_pool,
                events=self._events,
                pools=self._pools,
                clock=self.clock,
                owner=self.owner,
            )
            self._supervisor = RunSupervisor(
                inbox=supervisor_inbox,
                runs=backend.runs,
                pools=backend.pools,
                events=self._events,
                builder=self._builder,
                coordinators=self._coordinator_inboxes,
            )
            await self._task_group.start(self._supervisor.run, name="rivers.runs")
            self._limit_windows = LimitWindows(
                backend.pools, backend.state, self.clock, tg
            )
            for repository in self._repositories.values():
                await self._register(repository)
            if self._long_lived:
                await self._task_group.start(
                    self._run_coordinators, backend, name="rivers.queue"
                )
            if self._long_lived and self.backend.retention_s is not None:
                retention = Retention(
                    backend.runs, self.clock, self.backend.retention_s
                )
                await self._task_group.start(retention.run, name="rivers.retention")
            # Schedules, sensors and automation conditions, submitting through
            # self.submit. Started last; stopped first (the stack unwinds LIFO).
            # A one-off runtime runs none of them.
            if self._long_lived and any(
                r.has_triggers for r in self._repositories.values()
            ):
                self.triggers = TriggerRunner(
                    tuple(self._repositories.values()),
                    storage=backend.runs,
                    kv=backend.state,
                    events=self._events,
                    owner=self.owner,
                    clock=self.clock,
                    submit=self.submit,
                )
                await self._task_group.start(self.triggers.run, name="rivers.triggers")
                stack.push_async_callback(self.triggers.aclose)
        except BaseException as exc:
            try:
                await stack.__aexit__(type(exc), exc, exc.__traceback__)
            except BaseExceptionGroup as group:
                if leaves(group) == [exc]:
                    raise exc from None
                raise_one_storage_error(group)
                raise
            raise
        self._stack = stack
        self._token = _CURRENT.set(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if self._token is not None:
            _CURRENT.reset(self._token)
            self._token = None
        stack = self._stack
        assert stack is not None, "Runtime.__aexit__ without __aenter__"
        try:
            suppress = await stack.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # The task group wraps what the block raised; give the user their own
            # exception back when it is the only one.
            if exc is not None and leaves(group) == [exc]:
                raise exc.with_traceback(tb) from exc.__cause__
            raise_one_storage_error(group)
            raise
        finally:
            self._stack = None
        if not suppress and isinstance(exc, BaseExceptionGroup):
            raise_one_storage_error(exc)
        return suppress

    async def _serve(self, repositories: Iterable[CodeRepository]) -> None:
        """Record that this runtime serves ``repositories``; admit their queued runs.

        One coordinator per repository: with a run queue it admits under the
        queue's limits, without one it admits runs submitted elsewhere at once.
        """
        assert self._backend is not None
        assert self._events is not None
        added = list(repositories)
        await self._backend.processes.serve(
            self.owner, [(r.name, r.fingerprint, list(r.assets)) for r in added]
        )
        assert self._to_supervisor is not None
        for repository in added:
            to_coordinator, inbox = anyio.create_memory_object_stream[
                CoordinatorMessage
            ](math.inf)
            self._coordinator_inboxes[repository.name] = to_coordinator
            self._inbox_ends.append(inbox)
            coordinator = QueueCoordinator(
                storage=self._backend.queue,
                kv=self._backend.state,
                runs=self._backend.runs,
                events=self._events,
                owner=self.owner,
                clock=self.clock,
                pools=self._backend.pools,
                repository=repository,
                inbox=inbox,
                supervisor=self._to_supervisor,
            )
            self._coordinators[repository.name] = coordinator
            if self._coordinator_group is not None:
                await self._coordinator_group.start(
                    coordinator.run, name=f"rivers.queue[{repository.name}]"
                )

    async def _run_coordinators(
        self, roles: StorageBackend, *, task_status: TaskStatus[None]
    ) -> None:
        """Run every coordinator (and later ones); relay queue wake-ups to them."""
        self._coordinator_done = anyio.Event()
        try:
            with self._coordinator_scope:
                async with anyio.create_task_group() as group:
                    self._coordinator_group = group
                    inboxes = self._coordinator_inboxes
                    await group.start(relay_queue_wakeups, roles.pools, inboxes)
                    await self._serve(self._repositories.values())
                    task_status.started()
                    await anyio.sleep_forever()
        finally:
            self._coordinator_group = None
            self._coordinator_done.set()

    async def drain(self, grace_s: float) -> None:
        """Stop admitting queued runs; wait up to ``grace_s`` for running runs to end.

        Runs still running afterwards are cancelled when the runtime exits. Queued
        runs stay queued in storage.
        """
        self._coordinator_scope.cancel()
        with anyio.move_on_after(grace_s):
            await self._runs.wait_idle()

    def _close_inboxes(self) -> None:
        """Close both ends of every inbox (once every actor has stopped)."""
        if self._to_supervisor is not None:
            self._to_supervisor.close()
        for inbox in self._coordinator_inboxes.values():
            inbox.close()
        for end in self._inbox_ends:
            end.close()

    async def _shutdown(self) -> None:
        """Cancel running runs, drain events, stop the actors (shielded, bounded)."""
        self._coordinator_scope.cancel()
        with anyio.move_on_after(CLEANUP_TIMEOUT_S * 2, shield=True):
            await self._coordinator_done.wait()
            if self._supervisor is not None:
                await self._supervisor.stop()
            if self._worker_pool is not None:
                await self._worker_pool.aclose()
            assert self._backend is not None
            assert self._events is not None
            await self._events.aclose()
            try:
                if self._backend.corrupted is None:  # else it refuses every write
                    await self._backend.processes.unregister_process(self.owner)
            except RiversError as exc:
                logger.warning("could not unregister %s: %s", self.owner, exc)
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()

    # ------------------------------------------------------------------- access

    @property
    def storage(self) -> Storage:
        """The open storage, as users inspect it (inside the ``async with`` block only)."""
        if self._storage is None or self._stack is None:
            raise RiversError("Runtime must be used with 'async with' before use")
        return self._storage

    @property
    def _roles(self) -> StorageBackend:
        """The open storage's role objects, for the runtime and its actors (tests too)."""
        if self._backend is None or self._stack is None:
            raise RiversError("Runtime must be used with 'async with' before use")
        return self._backend

    @property
    def repositories(self) -> Mapping[str, CodeRepository]:
        """The attached repositories by name."""
        return dict(self._repositories)

    def _attach(self, repository: CodeRepository) -> None:
        if not isinstance(repository, CodeRepository):
            raise ConfigError(
                f"Runtime takes rs.CodeRepository objects, got {repository!r}"
            )
        existing = self._repositories.get(repository.name)
        if existing is not None and existing is not repository:
            raise ConfigError(
                f"two repositories are named {repository.name!r}; give each "
                "CodeRepository(name=...) a distinct name"
            )
        self._repositories[repository.name] = repository

    async def _register(self, repository: CodeRepository) -> None:
        """Declare a repository's pools and record its definition (once)."""
        if self._limit_windows is None:
            raise RiversError("Runtime must be used with 'async with' before use")
        if not await self._limit_windows.declare(repository):
            return
        if self._long_lived and self._coordinator_group is not None:
            # Attached after start (``submit(..., repository=)``): serve it too.
            await self._serve([repository])

    @property
    def pools(self) -> PoolManager:
        """The pool manager (inside the ``async with`` block only)."""
        if self._pools is None or self._stack is None:
            raise RiversError("Runtime must be used with 'async with' before use")
        return self._pools

    def _get_worker_pool(self) -> WorkerPool:
        if self._worker_pool is None:
            self._worker_pool = WorkerPool(stopped_parent_limit_s=self.backend.lease_s)
        return self._worker_pool

    @property
    def worker_pids(self) -> list[int]:
        """The pids of this runtime's step worker processes (for inspection)."""
        return [] if self._worker_pool is None else self._worker_pool.pids

    @property
    def metrics_url(self) -> str | None:
        """Where this runtime serves ``/metrics`` (None without ``metrics_addr``)."""
        return None if self._metrics is None else self._metrics.url

    def _writer(self) -> EventWriter:
        if self._events is None or self._stack is None:
            raise RiversError("Runtime must be used with 'async with' before use")
        return self._events

    async def events(self) -> AsyncIterator[Event]:
        """Yield every event stored from now on, oldest first."""
        async for event in self._writer().subscribe():
            yield event

    # ---------------------------------------------------------------------- runs

    async def materialize(
        self,
        selection: Iterable[Asset[Any, Any] | str] | str | None = None,
        *,
        tags: Mapping[str, str] | None = None,
        executor: ExecutorConfig | None = None,
        repository: CodeRepository | None = None,
    ) -> MaterializeResult:
        """Run the selected assets now, bypassing the run queue; return the result.

        Pool and executor limits apply. Cancelling the caller cancels the run (it is
        recorded CANCELED).

        Raises:
            AssetNotFound: a selected name is not in the repository.
            ConfigError: bad tags or executor, or no repository.
        """
        repo = self._repository(repository)
        steps = repo.resolve_selection(selection)
        run_tags = check_tags(tags)
        config = executor or repo.executor
        if not isinstance(config, ExecutorConfig):
            raise ConfigError(f"executor must come from rs.Executor, got {config!r}")
        await self._register(repo)
        run_id = new_run_id()
        await self._roles.runs.create_run(
            NewRun(
                run_id=run_id,
                status=RunStatus.STARTING,
                repository=repo.name,
                tags=run_tags,
                selection=None if selection is None else steps,
                owner=self.owner,
                fingerprint=repo.fingerprint,
            )
        )
        run = self._run_builder.build(run_id, repo, steps, run_tags, config)
        return await self._runs.execute(run)

    @property
    def _runs(self) -> RunSupervisor:
        if self._supervisor is None or self._stack is None:
            raise RiversError("Runtime must be used with 'async with' before use")
        return self._supervisor

    @property
    def _run_builder(self) -> RunBuilder:
        if self._builder is None or self._stack is None:
            raise RiversError("Runtime must be used with 'async with' before use")
        return self._builder

    # --------------------------------------------------------------- the queue

    async def submit(
        self, request: RunRequest, repository: CodeRepository | None = None
    ) -> RunHandle:
        """Queue a run; return a handle to wait for it.

        The run is written QUEUED before this returns, so it survives a restart.
        With a ``run_queue`` the leader of the repository's queue (a long-lived
        runtime serving the same definition) admits it under the queue and tag
        limits; without one it starts here at once. A ``run_key`` used before returns
        the handle of the run it named instead of submitting again.

        Raises:
            AssetNotFound: a selected asset is not in the repository.
        """
        (handle,) = await self.submit_many([request], repository)
        return handle

    async def submit_many(
        self, requests: Iterable[RunRequest], repository: CodeRepository | None = None
    ) -> list[RunHandle]:
        """Queue many runs at once; return their handles, in order. Every request is
        checked before any is written (one bad request writes none); each run is
        admitted as ``submit`` admits one, and a ``run_key`` used before (or earlier
        in ``requests``) gives the handle of the run it named.

        Raises:
            ConfigError: an item is not a ``rs.RunRequest``.
            AssetNotFound: a selected asset is not in the repository.
        """
        repo = self._repository(repository)
        runs = [queued_run(repo, request) for request in requests]
        await self._register(repo)
        named = await write_queued(self._roles.runs, runs)
        handles, written = [], []
        for run, existing in zip(runs, named, strict=True):
            if existing is not None:  # its key named another run
                handles.append(RunHandle(self, existing))
                continue
            self._writer().emit(enqueued(run))
            handles.append(RunHandle(self, run.run_id))
            written.append(run.run_id)
        if repo.run_queue is not None:
            if written and (inbox := self._coordinator_inboxes.get(repo.name)):
                inbox.send_nowait(RunsSubmitted(count=len(written)))
        elif written and self._runs.closing:
            raise RiversError("the runtime is stopping; the runs stay queued")
        elif written:
            admitted = await self._roles.queue.admit_queued(
                [(run_id, []) for run_id in written],
                owner=self.owner,
                max_concurrent_runs=2**31,
            )
            for record in admitted:
                if record is not None:
                    self._supervisor_inbox.send_nowait(StartRun(record=record))
        return handles

    @property
    def _supervisor_inbox(self) -> MemoryObjectSendStream[SupervisorCommand]:
        if self._to_supervisor is None or self._stack is None:
            raise RiversError("Runtime must be used with 'async with' before use")
        return self._to_supervisor

    async def wait_for(self, run_id: str) -> RunRecord:
        """Wait until a run (of any process) has finished; return its record.

        A run of this process is waited for without polling, and answered from
        the record it finished with; another process's run is read every
        ``WAIT_POLL_S``.

        Raises:
            RunNotFound: no run has this id.
        """
        runs = self._runs
        while True:
            if (kept := runs.finished_record(run_id)) is not None:
                return kept
            if runs.is_running(run_id):
                await runs.end_of(run_id).wait()
                continue
            record = await self._roles.runs.get_run(run_id)
            if record is None:
                raise RunNotFound(run_id)
            if record.status.is_finished:
                return record
            with anyio.move_on_after(WAIT_POLL_S):
                await runs.end_of(run_id).wait()

    async def explain(self, run_id: str) -> str:
        """Say why a run is where it is: the gate holding a queued run, with numbers.

        Raises:
            RunNotFound: no run has this id.
        """
        return await explain_run(self._roles, run_id)

    def _repository(self, repository: CodeRepository | None) -> CodeRepository:
        if repository is not None:
            self._attach(repository)
            return repository
        if not self._repositories:
            raise ConfigError(
                "this Runtime has no repository; pass one to Runtime(...)"
            )
        return next(iter(self._repositories.values()))

    async def cancel(self, run_id: str) -> None:
        """Cancel a run: a running one goes CANCELING, stops its steps, then CANCELED.

        A run owned by another process is marked CANCELING; that process stops it
        within about a second. Cancelling a finished run does nothing.

        Raises:
            RunNotFound: no run has this id.
        """
        requested = await request_cancel(self._roles.runs, run_id)
        if requested is None:
            raise RunNotFound(run_id)
        _, outcome = requested
        if outcome is CancelOutcome.CANCELING:
            self._writer().emit(RunCanceling(run_id=run_id))
        if outcome in (CancelOutcome.CANCELING, CancelOutcome.STOPPING):
            self._supervisor_inbox.send_nowait(
                CancelRun(run_id=run_id, reason="canceled by request")
            )


def one_off_runtime(
    repository: CodeRepository, backend: RunBackendConfig | None = None
) -> Runtime:
    """Return a runtime for one ``materialize()`` (``repo.materialize()``, the CLI).

    It runs only what it is asked to: it serves no repository, so it never leads
    a run queue, never admits or adopts queued runs (which a stop would cancel)
    and never evaluates schedules, sensors or automation conditions.
    """
    runtime = Runtime(repository, backend=backend)
    runtime._long_lived = False
    return runtime
