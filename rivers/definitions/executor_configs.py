"""The executor configurations of the definitions layer: in-process and parallel.

``CodeRepository(executor=...)`` and ``materialize(executor=...)`` accept any
``ExecutorConfig``; the Kubernetes one is in ``rivers.executors.kubernetes_config``
(its checks and manifests belong with the launcher), and ``rs.Executor`` builds every
kind (``rivers.executors.configs``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import final

import msgspec
from msgspec.structs import force_setattr

from rivers._validate import MAX_LIMIT, check_int
from rivers.definitions.configs import TagConcurrencyLimit, check_tag_limits

__all__ = (
    "ExecutorConfig",
    "InProcessExecutor",
    "ParallelExecutor",
    "usable_cpus",
)


def usable_cpus() -> int:
    """Return the CPUs this process may run on (container and affinity aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


class ExecutorConfig(msgspec.Struct, frozen=True, tag=True):
    """The base of every executor configuration."""


@final
class InProcessExecutor(ExecutorConfig, frozen=True, tag="in_process"):
    """Steps run one at a time in the calling process."""


@final
class ParallelExecutor(ExecutorConfig, frozen=True, tag="parallel"):
    """Sync steps in a warm pool of worker processes, async steps on the loop.

    Args:
        max_workers: sync steps of one run running at once, each in a worker
            process (default: the CPUs this process may use). Accepts: None or an
            int in 1..1024.
        max_async_concurrent: async steps of one run running at once on the event
            loop (default unbounded). Accepts: None or an int in 1..100,000.
        tag_concurrency_limits: ceilings on the steps of one run running at once
            by asset tag (``@rs.Asset(tags=...)``), as the run queue's limits do for
            runs: ``rs.TagConcurrencyLimit(key="database", value="redshift",
            limit=2)``. A waiting step holds no worker. Accepts: a list of
            TagConcurrencyLimit with limits >= 1.
    """

    max_workers: int | None = None
    max_async_concurrent: int | None = None
    tag_concurrency_limits: Sequence[TagConcurrencyLimit] = ()

    def __post_init__(self) -> None:
        if self.max_workers is None:
            force_setattr(self, "max_workers", usable_cpus())
        check_int(
            self.max_workers, "Executor.parallel max_workers", minimum=1, maximum=1024
        )
        if self.max_async_concurrent is not None:
            check_int(
                self.max_async_concurrent,
                "Executor.parallel max_async_concurrent",
                minimum=1,
                maximum=MAX_LIMIT * 10,
            )
        force_setattr(
            self,
            "tag_concurrency_limits",
            check_tag_limits(
                self.tag_concurrency_limits,
                "Executor.parallel tag_concurrency_limits",
                minimum=1,
            ),
        )

    @property
    def workers(self) -> int:
        """``max_workers`` resolved to a number."""
        assert self.max_workers is not None
        return self.max_workers
