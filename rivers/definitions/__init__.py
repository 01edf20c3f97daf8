"""Definitions: assets, repositories, configurations, durations."""

from __future__ import annotations

from rivers._durations import parse_duration
from rivers.definitions.asset import Asset
from rivers.definitions.configs import (
    RetryPolicy,
    RunBackendConfig,
    RunQueueConfig,
    TagConcurrencyLimit,
)
from rivers.definitions.executor_configs import (
    ExecutorConfig,
    InProcessExecutor,
    ParallelExecutor,
)
from rivers.definitions.pool_limit import PoolLimit
from rivers.definitions.repository import CodeRepository

__all__ = (
    "Asset",
    "CodeRepository",
    "ExecutorConfig",
    "InProcessExecutor",
    "ParallelExecutor",
    "PoolLimit",
    "RetryPolicy",
    "RunBackendConfig",
    "RunQueueConfig",
    "TagConcurrencyLimit",
    "parse_duration",
)
