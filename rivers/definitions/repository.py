"""``rs.CodeRepository``: a validated set of assets and their concurrency settings."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, final

from rivers._repr import short_repr
from rivers._validate import MAX_LIMIT, REPOSITORY_NAME, check_int, check_name
from rivers.core.plan import PlanState
from rivers.definitions.asset import Asset
from rivers.definitions.configs import (
    RunBackendConfig,
    RunQueueConfig,
)
from rivers.definitions.executor_configs import ExecutorConfig, ParallelExecutor
from rivers.definitions.graph import find_cycle, topological_order
from rivers.definitions.pool_limit import PoolLimit, check_pool_limits
from rivers.definitions.triggers import AutomationCondition, Schedule, Sensor
from rivers.errors import AssetNotFound, ConfigError

if TYPE_CHECKING:
    from rivers.core.pool_admission import Roots
    from rivers.io import IOManager

__all__ = (
    "CodeRepository",
    "Materializer",
    "definition_fingerprint",
    "use_materializer",
)


class Materializer(Protocol):
    """What ``CodeRepository.materialize`` hands its arguments to (see ``use_materializer``)."""

    def __call__(
        self,
        repository: CodeRepository,
        selection: Iterable[Asset[Any, Any] | str] | str | None,
        *,
        tags: Mapping[str, str] | None,
        executor: ExecutorConfig | None,
    ) -> Any: ...


_materializer: Materializer | None = None


def use_materializer(materializer: Materializer) -> None:
    """Make ``CodeRepository.materialize`` call ``materializer``.

    Definitions sit below the runtime and may not import it, so the package root
    (``rivers/__init__.py``, which every ``import rivers...`` runs first) passes a
    function that imports ``rivers.materialize.materialize`` on its first call.
    """
    global _materializer
    _materializer = materializer


def definition_fingerprint(upstream: Mapping[str, Sequence[str]]) -> str:
    """Return a short hash of a repository's assets and their upstreams.

    Two repositories with the same assets wired the same way share it; renaming,
    adding or rewiring an asset changes it (the code inside an asset does not).
    """
    import hashlib  # loads OpenSSL: on the first repository, not on import

    text = "\n".join(
        f"{name}<-{','.join(sorted(deps))}" for name, deps in sorted(upstream.items())
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


_DIGITS = re.compile(r"[0-9]+")


def _is_io_manager(value: object) -> bool:
    # rivers.io (pathlib, fcntl, ctypes) loads with an IO manager, not on import.
    from rivers.io import IOManager

    return isinstance(value, IOManager)


@final
class CodeRepository:
    """A set of assets with the settings that govern how they run.

    Args:
        assets: the assets (``rs.Asset`` objects).
        run_queue: the run queue; None means submitted runs start at once.
        pool_limits: the declared limit of each pool: an int, or an
            ``rs.PoolLimit`` whose windows change the limit at set hours.
        pool_granularity: ``"step"`` (each step claims its pools while it runs)
            or ``"run"`` (a run claims one slot of each pool its selection uses,
            before its first step, and holds it to its end; steps claim nothing;
            with a run queue, a run waits QUEUED until every such pool has a free
            slot). Accepts: "step" or "run".
        default_pool_limit: the limit of every pool an asset names that
            ``pool_limits`` does not (a stored ``rivers pools set-default`` wins over
            it); None leaves such pools unlimited. Accepts: None or an int in
            0..10,000.
        executor: how steps run (default ``rs.Executor.parallel()``).
        schedules: ``rs.schedule`` objects whose runs go through the queue.
        sensors: ``rs.sensor`` objects whose runs go through the queue.
        io_manager: where values are stored (default ``rs.FilesystemIOManager()``).
        backend: storage and lease settings (default ``rs.RunBackendConfig()``).
        name: a name for this repository (default ``"default"``): 1 to 128
            letters, digits and '_.:/-'.

    Raises:
        ConfigError: duplicate names, unknown dependencies, cycles, ``pool_slots``
            above a declared limit, a trigger that is not a schedule or sensor, two
            triggers with one name, a trigger selecting an unknown asset, an
            ``automation_condition`` that is not a ``rs.AutomationCondition``, or a
            bad setting; the message names it.

    Warns:
        UserWarning: an asset's pool is not in ``pool_limits`` but is spelled like
            one that is ("did you mean 'warehouse'?").
    """

    def __init__(
        self,
        assets: Iterable[Asset[Any, Any]],
        *,
        run_queue: RunQueueConfig | None = None,
        pool_limits: Mapping[str, int | PoolLimit] | None = None,
        default_pool_limit: int | None = None,
        pool_granularity: str = "step",
        executor: ExecutorConfig | None = None,
        schedules: Sequence[Schedule] = (),
        sensors: Sequence[Sensor] = (),
        io_manager: IOManager | None = None,
        backend: RunBackendConfig | None = None,
        name: str = "default",
    ) -> None:
        given: object = assets  # callers may pass anything
        if isinstance(given, Asset) or not isinstance(given, Iterable):
            raise ConfigError("CodeRepository(assets=...) must be a list of rs.Asset")
        self.assets: dict[str, Asset[Any, Any]] = {}
        for asset in assets:
            if not isinstance(asset, Asset):
                raise ConfigError(
                    f"CodeRepository assets must be rs.Asset objects, got {short_repr(asset)}; "
                    "decorate the function with @rs.Asset"
                )
            if asset.name in self.assets:
                raise ConfigError(
                    f"two assets are named {asset.name!r}; give one of them "
                    "@rs.Asset(name=...)"
                )
            self.assets[asset.name] = asset
        if run_queue is not None and not isinstance(run_queue, RunQueueConfig):
            raise ConfigError(
                f"run_queue must be a rs.RunQueueConfig, got {short_repr(run_queue)}"
            )
        if executor is not None and not isinstance(executor, ExecutorConfig):
            raise ConfigError(
                f"executor must come from rs.Executor.in_process(), .parallel() or "
                f".kubernetes(), got {short_repr(executor)}"
            )
        if io_manager is not None and not _is_io_manager(io_manager):
            raise ConfigError(
                "io_manager must have store(asset_key, value) and load(asset_key) "
                f"methods, such as rs.FilesystemIOManager(), got {short_repr(io_manager)}"
            )
        if backend is not None and not isinstance(backend, RunBackendConfig):
            raise ConfigError(
                f"backend must be a rs.RunBackendConfig, got {short_repr(backend)}"
            )
        self.name: str = check_name(name, REPOSITORY_NAME, "CodeRepository name")
        self.run_queue = run_queue
        self.pool_limit_configs: dict[str, PoolLimit] = check_pool_limits(pool_limits)
        self.pool_limits: dict[str, int] = {
            name: config.slots for name, config in self.pool_limit_configs.items()
        }
        if pool_granularity not in ("step", "run"):
            raise ConfigError(
                f"pool_granularity must be 'step' or 'run', got {short_repr(pool_granularity)}"
            )
        self.pool_granularity: str = pool_granularity
        self.default_pool_limit: int | None = (
            None
            if default_pool_limit is None
            else check_int(
                default_pool_limit, "default_pool_limit", minimum=0, maximum=MAX_LIMIT
            )
        )
        self.executor: ExecutorConfig = executor or ParallelExecutor()
        self.schedules: tuple[Schedule, ...] = _triggers(schedules, Schedule)
        self.sensors: tuple[Sensor, ...] = _triggers(sensors, Sensor)
        self.backend = backend
        self._io_manager = io_manager
        self._check_graph()
        self._check_pools()
        self._warn_of_near_pool_names()
        self._check_triggers()
        self.upstream: dict[str, tuple[str, ...]] = {
            name: asset.upstream for name, asset in self.assets.items()
        }
        self.priority: dict[str, int] = {
            name: asset.priority
            for name, asset in self.assets.items()
            if asset.priority
        }
        """Each asset's ``priority``, where it is not 0."""
        self.order: list[str] = topological_order(self.upstream)
        self.fingerprint: str = definition_fingerprint(self.upstream)
        """What tells this repository apart from another of the same name: a hash
        of its assets and their upstreams (stored on each run it creates)."""

    @property
    def io_manager(self) -> IOManager:
        """The IO manager (a ``FilesystemIOManager`` unless one was given)."""
        if self._io_manager is None:
            from rivers.io import FilesystemIOManager

            self._io_manager = FilesystemIOManager()
        return self._io_manager

    @property
    def pools(self) -> tuple[str, ...]:
        """Every pool named by an asset or by ``pool_limits``, sorted."""
        names = set(self.pool_limits)
        for asset in self.assets.values():
            names.update(asset.pools)
        return tuple(sorted(names))

    def _check_graph(self) -> None:
        for asset in self.assets.values():
            for dep in asset.upstream:
                if dep not in self.assets:
                    how = "parameter" if dep in asset.params else "deps entry"
                    raise ConfigError(
                        f"asset {asset.name!r} depends on {dep!r} ({how}), which is not "
                        "in this repository; add it to assets= or fix the name"
                    )
                if dep == asset.name:
                    raise ConfigError(f"asset {asset.name!r} depends on itself")
        cycle = find_cycle({name: a.upstream for name, a in self.assets.items()})
        if cycle is not None:
            raise ConfigError(
                f"the assets form a cycle: {' -> '.join(cycle)}; remove one of these "
                "dependencies"
            )

    def _check_pools(self) -> None:
        for asset in self.assets.values():
            for pool in asset.pools:
                config = self.pool_limit_configs.get(pool)
                if config is None:
                    default = self.default_pool_limit
                    if default and asset.pool_slots > default:
                        raise ConfigError(
                            f"asset {asset.name!r} claims pool_slots={asset.pool_slots} "
                            f"of pool {pool!r}, whose limit is default_pool_limit="
                            f"{default}; lower pool_slots or declare the pool in "
                            "pool_limits"
                        )
                    continue
                limits = [(config.slots, "")] + [
                    (slots, f" during window {cron!r}")
                    for cron, slots in (config.windows or {}).items()
                ]
                for limit, when in limits:
                    # 0 pauses the pool; it does not make a step too big.
                    if 0 < limit < asset.pool_slots:
                        raise ConfigError(
                            f"asset {asset.name!r} claims pool_slots={asset.pool_slots} "
                            f"of pool {pool!r}, whose limit is {limit}{when}; lower "
                            "pool_slots or raise pool_limits"
                        )

    def _warn_of_near_pool_names(self) -> None:
        """Warn of a pool named like a declared one but not declared itself.

        It has no limit here (unless ``rivers pools set`` or another repository
        gives it one), so a typo such as ``"warehous"`` would run unlimited. A
        warning, not an error: that limit may be meant to come from elsewhere.
        Names that differ only in digits (``shard1``, ``shard2``) are taken as meant.
        """
        warned: set[str] = set()
        for asset in self.assets.values():
            for pool in asset.pools:
                if pool in self.pool_limits or pool in warned:
                    continue
                from rivers._suggest import closest_name  # difflib: only when needed

                near = closest_name(
                    pool,
                    (
                        declared
                        for declared in self.pool_limits
                        if _DIGITS.sub("", declared) != _DIGITS.sub("", pool)
                    ),
                )
                if near is not None:
                    warned.add(pool)
                    what = (
                        "no limit here"
                        if self.default_pool_limit is None
                        else f"the default limit {self.default_pool_limit} here"
                    )
                    warnings.warn(
                        f"asset {asset.name!r} claims pool {pool!r}, which pool_limits "
                        f"does not declare, so it has {what}; did you mean {near!r}?",
                        UserWarning,
                        stacklevel=3,
                    )

    def _check_triggers(self) -> None:
        seen: dict[str, str] = {}
        triggers: tuple[Schedule | Sensor, ...] = (*self.schedules, *self.sensors)
        for trigger in triggers:
            kind = "schedule" if isinstance(trigger, Schedule) else "sensor"
            if trigger.name in seen:
                raise ConfigError(
                    f"two triggers are named {trigger.name!r} (a {seen[trigger.name]} "
                    f"and a {kind}); give one of them name=..."
                )
            seen[trigger.name] = kind
            for selected in trigger.selection or ():
                if selected not in self.assets:
                    raise ConfigError(
                        f"{kind} {trigger.name!r} selects {selected!r}, which is not in "
                        "this repository; add it to assets= or fix the name"
                    )
        for asset in self.assets.values():
            condition = asset.automation_condition
            if condition is not None and not isinstance(condition, AutomationCondition):
                raise ConfigError(
                    f"asset {asset.name!r}: automation_condition must be "
                    "rs.AutomationCondition.eager() or .on_cron(cron), got "
                    f"{short_repr(condition)}"
                )

    @property
    def automation_conditions(self) -> dict[str, AutomationCondition]:
        """Each asset's automation condition, for the assets that have one."""
        return {
            name: asset.automation_condition
            for name, asset in self.assets.items()
            if isinstance(asset.automation_condition, AutomationCondition)
        }

    @property
    def has_triggers(self) -> bool:
        """Whether the repository has schedules, sensors or automation conditions."""
        return bool(self.schedules or self.sensors or self.automation_conditions)

    def resolve_selection(
        self, selection: Iterable[Asset[Any, Any] | str] | str | None
    ) -> list[str]:
        """Return the selected asset names in dependency order.

        Raises:
            AssetNotFound: a name is not in the repository.
        """
        if selection is None:
            return list(self.order)
        if isinstance(selection, str | Asset):
            selection = [selection]
        wanted: set[str] = set()
        for item in selection:
            name = item.name if isinstance(item, Asset) else item
            if not isinstance(name, str) or name not in self.assets:
                raise AssetNotFound(str(name), tuple(self.assets))
            wanted.add(name)
        return [name for name in self.order if name in wanted]

    def root_pools(self, selection: Sequence[str] | None) -> Roots | None:
        """Return the pools each first step of a run claims (pool-aware admission),
        or None when one claims none or the selection is no longer valid here.
        With ``pool_granularity="run"``: the run's own claim, one root of every pool
        its selection uses."""
        # Not at the top: it loads rivers.core.queue, which `import rivers` skips.
        from rivers.core.pool_admission import roots_of

        try:
            steps = self.resolve_selection(selection)
        except AssetNotFound:
            return None
        if self.pool_granularity == "run":
            run_pools = self.run_pools(steps)
            return (run_pools,) if run_pools else None
        pools = {name: self.assets[name].pools for name in steps}
        return roots_of(steps, self.upstream, pools)

    def plan(self, steps: Sequence[str]) -> PlanState:
        """The dependency state of a run of ``steps`` (ready steps by priority)."""
        return PlanState.build(steps, self.upstream, self.priority)

    def run_pools(self, steps: Iterable[str]) -> tuple[str, ...]:
        """The pools a run of ``steps`` claims one slot of, before its first step
        (``pool_granularity="run"``; none with ``"step"``)."""
        if self.pool_granularity != "run":
            return ()
        return tuple(
            sorted({pool for step in steps for pool in self.assets[step].pools})
        )

    def materialize(
        self,
        selection: Iterable[Asset[Any, Any] | str] | str | None = None,
        *,
        tags: Mapping[str, str] | None = None,
        executor: ExecutorConfig | None = None,
    ) -> Any:
        """Run the selected assets now, bypassing the run queue.

        Outside an event loop this blocks and returns a ``MaterializeResult``; inside
        one it returns an awaitable of it. Inside ``async with rs.Runtime(...)`` it uses
        that runtime; otherwise it starts a short-lived one. Pool limits and executor
        limits still apply.

        Raises:
            AssetNotFound: a selected name is not in the repository.
            ConfigError: bad tags or executor.
            SystemExit: status 143, when it blocks and the process receives SIGTERM:
                the run was cancelled first, as on Ctrl-C (which raises
                ``KeyboardInterrupt``).
        """
        if _materializer is None:  # pragma: no cover - rivers/__init__.py sets it
            raise RuntimeError("rivers is not fully imported: use `import rivers`")
        return _materializer(self, selection, tags=tags, executor=executor)

    def __repr__(self) -> str:
        return f"CodeRepository(name={self.name!r}, assets={list(self.assets)!r})"


_Trigger = TypeVar("_Trigger", Schedule, Sensor)


def _triggers(given: object, kind: type[_Trigger]) -> tuple[_Trigger, ...]:
    label = "schedules" if kind is Schedule else "sensors"
    how = "@rs.schedule(cron=...)" if kind is Schedule else "@rs.sensor(...)"
    if isinstance(given, str | kind) or not isinstance(given, Iterable):
        raise ConfigError(f"CodeRepository({label}=...) must be a list")
    items: list[_Trigger] = []
    for item in given:
        if not isinstance(item, kind):
            raise ConfigError(
                f"CodeRepository {label} must be made with {how}, got {short_repr(item)}"
            )
        items.append(item)
    return tuple(items)
