"""``repo.materialize()``: blocking outside an event loop, awaitable inside one."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from typing import TYPE_CHECKING, Any

import anyio

from rivers._signals import SigtermGuard, Terminated
from rivers._validate import check_tags
from rivers.definitions.executor_configs import ExecutorConfig
from rivers.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from rivers.definitions.asset import Asset
    from rivers.definitions.repository import CodeRepository
    from rivers.results import MaterializeResult

__all__ = ("materialize", "run_sync")


def uvloop_available() -> bool:
    """Return whether loops rivers starts itself use uvloop.

    True when uvloop is importable, unless ``RIVERS_UVLOOP=0`` turns it off.
    """
    if os.environ.get("RIVERS_UVLOOP", "1") == "0":
        return False
    return importlib.util.find_spec("uvloop") is not None


def run_sync(fn: Any, *args: Any) -> Any:
    """Run ``fn(*args)`` in a new event loop (uvloop when available).

    SIGTERM stops it as Ctrl-C does (see ``rivers._signals``).

    Raises:
        Terminated: SIGTERM arrived; ``fn`` was cancelled and has cleaned up.
    """
    guard = SigtermGuard()
    result = anyio.run(
        guard.run, fn, *args, backend_options={"use_uvloop": uvloop_available()}
    )
    if guard.received:
        raise Terminated
    return result


def materialize(
    repository: CodeRepository,
    selection: Iterable[Asset[Any, Any] | str] | str | None,
    *,
    tags: Mapping[str, str] | None,
    executor: ExecutorConfig | None,
) -> Any:
    """Validate now, then run (see ``CodeRepository.materialize``)."""
    repository.resolve_selection(selection)
    check_tags(tags)
    if executor is not None and not isinstance(executor, ExecutorConfig):
        raise ConfigError(f"executor must come from rs.Executor, got {executor!r}")
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run_sync(_materialize, repository, selection, tags, executor)
    return _materialize(repository, selection, tags, executor)


async def _materialize(
    repository: CodeRepository,
    selection: Iterable[Asset[Any, Any] | str] | str | None,
    tags: Mapping[str, str] | None,
    executor: ExecutorConfig | None,
) -> MaterializeResult:
    from rivers.runtime import current_runtime, one_off_runtime

    runtime = current_runtime()
    if runtime is not None:
        return await runtime.materialize(
            selection, tags=tags, executor=executor, repository=repository
        )
    from rivers.dashboard.progress import materialize_progress

    async with one_off_runtime(repository) as runtime, materialize_progress(runtime):
        return await runtime.materialize(selection, tags=tags, executor=executor)
