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
from typing import TYPE_CHECKING, Any, TypeVar, final

import anyio

from rivers._clock import SYSTEM_CLOCK, Clock
from rivers._ids import this_owner
from rivers._unwind import unwind, unwind_failed_start
from rivers.actors.cleanup import CLEANUP_TIMEOUT_S
from rivers.actors.events import EventWriter
from rivers.actors.leases import LeaseGC
from rivers.actors.limit_windows import LimitWindows
from rivers.actors.liveness import ProcessMonitor
from rivers.actors.pools import PoolManager
from rivers.actors.retention import Retention
from rivers.actors.triggers import TriggerRunner
from rivers.attached_repositories import AttachedRepositories
from rivers.commands import SupervisorCommand
from rivers.definitions import ExecutorConfig, RunBackendConfig
from rivers.errors import ConfigError, RiversError
from rivers.explain import explain_run
from rivers.metrics import MetricsServer, parse_metrics_addr
from rivers.run_desk import RunDesk, direct_run
from rivers.run_handle import RunHandle
from rivers.storage import Storage, StorageBackend, connect_backend
from rivers.submission import queued_run

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable, Mapping
    from types import TracebackType

    from anyio.abc import TaskGroup
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from rivers.actors.run_builder import RunBuilder
    from rivers.definitions.asset import Asset
    from rivers.definitions.repository import CodeRepository
    from rivers.definitions.requests import RunRequest
    from rivers.results import MaterializeResult
    from rivers.storage.records import Event, RunRecord

__all__ = ("RunHandle", "Runtime", "current_runtime", "one_off_runtime")

logger = logging.getLogger(__name__)

T = TypeVar("T")

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
        self._repositories = AttachedRepositories(repositories)
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
        self._pools: PoolManager | None = None
        self._inbox_ends: list[MemoryObjectReceiveStream[Any]] = []
        self._to_supervisor: MemoryObjectSendStream[SupervisorCommand] | None = None
        self._desk: RunDesk | None = None
        self._long_lived = True
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
                pools=self._pools.inbox,
                interval_s=self.backend.lease_gc_interval_s,
            )
            await self._task_group.start(gc.run, name="rivers.lease_gc")
            self._desk = desk = RunDesk(
                inbox=supervisor_inbox,
                to_supervisor=self._to_supervisor,
                roles=backend,
                events=self._events,
                pools=self._pools,
                repositories=self._repositories,
                clock=self.clock,
                owner=self.owner,
                lease_s=self.backend.lease_s,
            )
            await self._task_group.start(desk.supervisor.run, name="rivers.runs")
            self._limit_windows = LimitWindows(
                backend.pools, backend.state, self.clock, tg
            )
            for repository in self._repositories.values():
                await self._register(repository)
            if self._long_lived:
                await self._task_group.start(
                    desk.queues.run, self._repositories.values(), name="rivers.queue"
                )
            if self._long_lived and self.backend.retention_s is not None:
                retention = Retention(
                    backend.runs, self.clock, self.backend.retention_s
                )
                await self._task_group.start(retention.run, name="rivers.retention")
            # Schedules, sensors and automation conditions, submitting to the
            # queue coordinators' inboxes. Started last; stopped first (the
            # stack unwinds LIFO).
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
                    queues=desk.queues.inboxes,
                )
                await self._task_group.start(self.triggers.run, name="rivers.triggers")
                stack.push_async_callback(self.triggers.aclose)
        except BaseException as exc:
            await unwind_failed_start(stack, exc)
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
            return await unwind(stack, exc_type, exc, tb)
        finally:
            self._stack = None

    async def drain(self, grace_s: float) -> None:
        """Stop admitting queued runs; wait up to ``grace_s`` for running runs to end.

        Runs still running afterwards are cancelled when the runtime exits. Queued
        runs stay queued in storage.
        """
        desk = self._started(self._desk)
        desk.queues.stop()
        with anyio.move_on_after(grace_s):
            await desk.supervisor.wait_idle()

    def _close_inboxes(self) -> None:
        """Close both ends of every inbox (once every actor has stopped)."""
        if self._to_supervisor is not None:
            self._to_supervisor.close()
        if self._desk is not None:
            self._desk.queues.close_inboxes()
        for end in self._inbox_ends:
            end.close()

    async def _shutdown(self) -> None:
        """Cancel running runs, drain events, stop the actors (shielded, bounded)."""
        with anyio.move_on_after(CLEANUP_TIMEOUT_S * 2, shield=True):
            if self._desk is not None:
                await self._desk.stop()
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

    def _started(self, part: T | None) -> T:
        """``part`` of the running runtime: inside the ``async with`` block only."""
        if part is None or self._stack is None:
            raise RiversError("Runtime must be used with 'async with' before use")
        return part

    @property
    def storage(self) -> Storage:
        """The open storage, as users inspect it (inside the ``async with`` block only)."""
        return self._started(self._storage)

    @property
    def _roles(self) -> StorageBackend:
        """The open storage's role objects, for the runtime and its actors (tests too)."""
        return self._started(self._backend)

    @property
    def _builder(self) -> RunBuilder | None:
        """The runtime's RunBuilder, once started (for tests)."""
        return None if self._desk is None else self._desk.builder

    @property
    def repositories(self) -> Mapping[str, CodeRepository]:
        """The attached repositories by name."""
        return dict(self._repositories)

    async def _register(self, repository: CodeRepository) -> None:
        """Declare a repository's pools and record its definition (once)."""
        if self._limit_windows is None:
            raise RiversError("Runtime must be used with 'async with' before use")
        if not await self._limit_windows.declare(repository):
            return
        if self._desk is not None and self._desk.queues.running:
            # Attached after start (``submit(..., repository=)``): serve it too.
            await self._desk.queues.serve([repository])

    @property
    def _pool_manager(self) -> PoolManager:
        """The pool manager (inside the ``async with`` block only; for tests and
        benchmarks: users see pools through ``rt.storage``)."""
        return self._started(self._pools)

    @property
    def worker_pids(self) -> list[int]:
        """The pids of this runtime's step worker processes (for inspection)."""
        return [] if self._desk is None else self._desk.worker_pids

    @property
    def metrics_url(self) -> str | None:
        """Where this runtime serves ``/metrics`` (None without ``metrics_addr``)."""
        return None if self._metrics is None else self._metrics.url

    def _writer(self) -> EventWriter:
        return self._started(self._events)

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
        repo = self._repositories.pick(repository)
        request = direct_run(repo, selection, tags, executor)
        await self._register(repo)
        return await self._started(self._desk).run_now(repo, request)

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
        repo = self._repositories.pick(repository)
        runs = [queued_run(repo, request) for request in requests]
        await self._register(repo)
        run_ids = await self._started(self._desk).submit(repo, runs)
        return [RunHandle(self, run_id) for run_id in run_ids]

    async def wait_for(self, run_id: str) -> RunRecord:
        """Wait until a run (of any process) has finished; return its record.

        A run of this process is waited for without polling, and answered from
        the record it finished with; another process's run is read every
        ``WAIT_POLL_S`` (``rivers.run_desk``).

        Raises:
            RunNotFound: no run has this id.
        """
        return await self._started(self._desk).wait_for(run_id)

    async def explain(self, run_id: str) -> str:
        """Say why a run is where it is: the gate holding a queued run, with numbers.

        Raises:
            RunNotFound: no run has this id.
        """
        return await explain_run(self._roles, run_id)

    async def cancel(self, run_id: str) -> None:
        """Cancel a run: a running one goes CANCELING, stops its steps, then CANCELED.

        A run owned by another process is marked CANCELING; that process stops it
        within about a second. Cancelling a finished run does nothing.

        Raises:
            RunNotFound: no run has this id.
        """
        await self._started(self._desk).cancel(run_id)


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
