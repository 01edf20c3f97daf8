"""rivers: materialize data assets under four composable concurrency layers.

``import rivers as rs``; see API.md for the contract every name here keeps.

``import rivers`` loads the definitions layer only (assets, repositories, configs,
triggers, errors): what a code module needs to declare its assets. The names whose
modules pull in the runtime, storage, executors or the IO managers load on first use
(PEP 562 ``__getattr__`` below), so a process that only declares assets, and
``rivers --help``, never import anyio, asyncio, aiosqlite or the executors.
"""

from __future__ import annotations

import typing

import msgspec

from rivers.definitions.asset import Asset
from rivers.definitions.configs import (
    RetryPolicy,
    RunBackendConfig,
    RunQueueConfig,
    TagConcurrencyLimit,
)
from rivers.definitions.pool_limit import PoolLimit
from rivers.definitions.repository import CodeRepository, use_materializer
from rivers.definitions.requests import RunRequest
from rivers.definitions.triggers import (
    AutomationCondition,
    Schedule,
    ScheduleContext,
    Sensor,
    SensorContext,
    schedule,
    sensor,
)
from rivers.errors import (
    AssetNotFound,
    ConfigError,
    ExecutionError,
    JobFailed,
    KubernetesApiError,
    LaunchFailed,
    LeaseLost,
    MigrationError,
    NotFoundError,
    PoolTooSmall,
    RiversError,
    RunNotFound,
    StepError,
    StepTimeout,
    StorageCorrupted,
    StorageError,
    StorageLocked,
    StorageUnavailable,
    ValueNotFound,
    WorkerCrashed,
)

if typing.TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

    from rivers.context import PoolLease, StepContext
    from rivers.definitions.executor_configs import ExecutorConfig
    from rivers.executors.configs import Executor
    from rivers.io import FilesystemIOManager, IOManager
    from rivers.io_upath import UPathIOManager
    from rivers.results import MaterializeResult
    from rivers.run_handle import RunHandle
    from rivers.runtime import Runtime
    from rivers.storage import open_storage
    from rivers.storage.records import (
        Event,
        PendingStep,
        PoolInfo,
        PruneResult,
        RunRecord,
        RunStatus,
        SlotHolder,
        StepRecord,
        StepStatus,
    )

__all__ = (
    "Asset",
    "AssetNotFound",
    "AutomationCondition",
    "CodeRepository",
    "ConfigError",
    "Event",
    "ExecutionError",
    "Executor",
    "FilesystemIOManager",
    "IOManager",
    "JobFailed",
    "KubernetesApiError",
    "LaunchFailed",
    "LeaseLost",
    "MaterializeResult",
    "MigrationError",
    "NotFoundError",
    "PendingStep",
    "PoolInfo",
    "PoolLease",
    "PoolLimit",
    "PoolTooSmall",
    "PruneResult",
    "RetryPolicy",
    "RiversError",
    "RunBackendConfig",
    "RunHandle",
    "RunNotFound",
    "RunQueueConfig",
    "RunRecord",
    "RunRequest",
    "RunStatus",
    "Runtime",
    "Schedule",
    "ScheduleContext",
    "Sensor",
    "SensorContext",
    "SlotHolder",
    "StepContext",
    "StepError",
    "StepRecord",
    "StepStatus",
    "StepTimeout",
    "StorageCorrupted",
    "StorageError",
    "StorageLocked",
    "StorageUnavailable",
    "TagConcurrencyLimit",
    "UPathIOManager",
    "ValueNotFound",
    "WorkerCrashed",
    "__version__",
    "open_storage",
    "schedule",
    "sensor",
)

__version__ = "0.1.0"

# The public names loaded on first use, by the module that defines them.
_LAZY: dict[str, str] = {
    "Event": "rivers.storage.records",
    "Executor": "rivers.executors.configs",
    "FilesystemIOManager": "rivers.io",
    "IOManager": "rivers.io",
    "MaterializeResult": "rivers.results",
    "PendingStep": "rivers.storage.records",
    "PoolInfo": "rivers.storage.records",
    "PoolLease": "rivers.context",
    "PruneResult": "rivers.storage.records",
    "RunHandle": "rivers.run_handle",
    "RunRecord": "rivers.storage.records",
    "RunStatus": "rivers.storage.records",
    "Runtime": "rivers.runtime",
    "SlotHolder": "rivers.storage.records",
    "StepContext": "rivers.context",
    "StepRecord": "rivers.storage.records",
    "StepStatus": "rivers.storage.records",
    "UPathIOManager": "rivers.io_upath",
    "open_storage": "rivers.storage",
}


def _show_as_public(obj: object) -> None:
    # Tracebacks and reprs show the public path (rivers.Asset, not the module): the
    # names imported above now, a lazy one when it is first read from here (every
    # exception is imported above). msgspec Structs keep their module: msgspec
    # resolves their field annotations in it.
    if isinstance(obj, type) and not issubclass(obj, msgspec.Struct):
        obj.__module__ = "rivers"


def _materialize(
    repository: CodeRepository,
    selection: Iterable[Asset[Any, Any] | str] | str | None,
    *,
    tags: Mapping[str, str] | None,
    executor: ExecutorConfig | None,
) -> Any:
    # The runtime loads on the first repo.materialize(), not on import.
    from rivers.materialize import materialize

    return materialize(repository, selection, tags=tags, executor=executor)


# The composition root: repo.materialize() runs on the runtime, which the definitions
# layer below it may not import.
use_materializer(_materialize)
del use_materializer

for _name in __all__:
    if _name not in _LAZY:
        _show_as_public(globals()[_name])
del _name

if not typing.TYPE_CHECKING:
    # Hidden from mypy, which sees the names through the imports above and would
    # otherwise accept any attribute of the package.

    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(module), name)
        _show_as_public(value)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(_LAZY))
