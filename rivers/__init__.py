"""rivers: materialize data assets under four composable concurrency layers.

``import rivers as rs``; see API.md for the contract every name here keeps.
"""

from __future__ import annotations

import msgspec

from rivers.context import PoolLease, StepContext
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
    WorkerCrashed,
)
from rivers.executors.configs import Executor
from rivers.io import FilesystemIOManager, IOManager, ValueNotFound
from rivers.io_upath import UPathIOManager
from rivers.materialize import materialize as _materialize
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

# The composition root: repo.materialize() runs on the runtime, which the definitions
# layer below it may not import.
use_materializer(_materialize)
del use_materializer, _materialize

for _name in __all__:
    _obj = globals()[_name]
    # Tracebacks and reprs show the public path (rivers.Asset, not the module).
    # msgspec Structs keep their module: msgspec resolves their field annotations
    # in it.
    if isinstance(_obj, type) and not issubclass(_obj, msgspec.Struct):
        _obj.__module__ = "rivers"
del _name, _obj
