"""``rivers materialize``: run assets now and print a summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rivers.cli.loading import load_repository
from rivers.cli.output import console, print_result
from rivers.dashboard.progress import materialize_progress
from rivers.definitions.configs import RunBackendConfig
from rivers.materialize import run_sync
from rivers.runtime import one_off_runtime

if TYPE_CHECKING:
    from rivers.cli._common import CliState
    from rivers.results import MaterializeResult
    from rivers.storage.records import Event

__all__ = ("materialize_command",)


def materialize_command(
    state: CliState,
    file: str | None,
    module: str | None,
    attribute: str | None,
    selection: list[str] | None,
    tags: dict[str, str],
) -> int:
    """Materialize and return the exit code (0 success, 1 the run failed)."""
    repository = load_repository(file, module, attribute)
    repository.resolve_selection(selection)
    backend = repository.backend or RunBackendConfig()
    if state.storage is not None:
        backend = RunBackendConfig(
            storage=state.storage,
            lease_duration=backend.lease_duration,
            lease_gc_interval=backend.lease_gc_interval,
        )

    async def go() -> tuple[MaterializeResult, list[Event]]:
        async with (
            one_off_runtime(repository, backend) as runtime,
            materialize_progress(runtime),
        ):
            result = await runtime.materialize(selection, tags=tags)
            failures = []
            if not result.success:
                failures = await runtime.storage.get_events(
                    result.run_id, kinds=("STEP_FAILURE",)
                )
            return result, failures

    result, failures = run_sync(go)
    print_result(console(), result, failures)
    return 0 if result.success else 1
