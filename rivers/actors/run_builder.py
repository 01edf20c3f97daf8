"""RunBuilder: makes the RunExecutor of a run, from a request or an admitted record."""

from __future__ import annotations

from typing import TYPE_CHECKING, final

from rivers.actors.run_executor import RunExecutor
from rivers.errors import ConfigError
from rivers.executors.factory import describe_executor, make_launcher

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from rivers._clock import Clock
    from rivers.actors.ports import EventLog, PoolClaims
    from rivers.definitions import ExecutorConfig
    from rivers.definitions.repository import CodeRepository
    from rivers.executors.process_pool import WorkerPool
    from rivers.storage.records import RunRecord

__all__ = ("RunBuilder",)


@final
class RunBuilder:
    """What every run of a runtime shares (events, pools, clock, owner, the worker
    pool, the repositories by name), put together for one run."""

    def __init__(
        self,
        *,
        repositories: Mapping[str, CodeRepository],
        worker_pool: Callable[[], WorkerPool],
        events: EventLog,
        pools: PoolClaims,
        clock: Clock,
        owner: str,
    ) -> None:
        self._repositories = (
            repositories  # the runtime's: repositories attached later count
        )
        self._worker_pool = worker_pool
        self._events = events
        self._pools = pools
        self._clock = clock
        self._owner = owner

    def build(
        self,
        run_id: str,
        repository: CodeRepository,
        steps: list[str],
        tags: Mapping[str, str],
        config: ExecutorConfig,
        priority: int = 0,
    ) -> RunExecutor:
        """The executor of a STARTING run of this process."""
        return RunExecutor(
            run_id=run_id,
            repository=repository,
            selection=steps,
            tags=tags,
            launcher=make_launcher(config, self._worker_pool),
            executor_name=describe_executor(config),
            events=self._events,
            pools=self._pools,
            clock=self._clock,
            owner=self._owner,
            priority=priority,
        )

    def for_record(self, record: RunRecord) -> RunExecutor:
        """The executor of a run the queue admitted here.

        Raises:
            ConfigError: this runtime does not have the run's repository.
            AssetNotFound: its selection names an asset the repository lacks.
        """
        repository = self._repositories.get(record.repository)
        if repository is None:
            raise ConfigError(
                f"run {record.run_id!r} belongs to repository {record.repository!r}, "
                "which this runtime does not have"
            )
        steps = repository.resolve_selection(record.selection)
        return self.build(
            record.run_id,
            repository,
            steps,
            record.tags,
            repository.executor,
            record.priority,
        )
