"""Build the step launcher for a run from its executor configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rivers.definitions.executor_configs import (
    ExecutorConfig,
    InProcessExecutor,
    ParallelExecutor,
)
from rivers.errors import ConfigError
from rivers.executors.in_process import InProcessLauncher
from rivers.executors.kubernetes_config import KubernetesExecutor
from rivers.executors.parallel import ParallelLauncher

if TYPE_CHECKING:
    from collections.abc import Callable

    from rivers.executors.base import StepLauncher
    from rivers.executors.process_pool import WorkerPool

__all__ = ("describe_executor", "make_launcher")


def make_launcher(
    config: ExecutorConfig, worker_pool: Callable[[], WorkerPool]
) -> StepLauncher:
    """Return a launcher for one run under ``config``.

    ``worker_pool`` returns the runtime's shared pool (started on first use).
    """
    match config:
        case InProcessExecutor():
            return InProcessLauncher()
        case ParallelExecutor():
            return ParallelLauncher(config, worker_pool())
        case KubernetesExecutor():
            from rivers.executors.kubernetes import KubernetesLauncher

            return KubernetesLauncher(config)
        case _:
            raise ConfigError(f"unknown executor configuration {config!r}")


def describe_executor(config: ExecutorConfig) -> str:
    """Return a short label such as ``parallel(max_workers=2)``."""
    match config:
        case InProcessExecutor():
            return "in_process"
        case ParallelExecutor():
            return (
                f"parallel(max_workers={config.max_workers}, "
                f"max_async_concurrent={config.max_async_concurrent})"
            )
        case KubernetesExecutor():
            return f"kubernetes(max_concurrent_steps={config.max_concurrent_steps})"
        case _:
            return type(config).__name__
