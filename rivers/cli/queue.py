"""``rivers submit`` and ``rivers daemon``: the run queue from the command line."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, NoReturn

import anyio
import msgspec

from rivers._durations import parse_duration
from rivers._liveness import live_served
from rivers._signals import exit_for_signal
from rivers._text import safe
from rivers.cli.daemon_log import follow_runs
from rivers.cli.loading import load_repository
from rivers.cli.output import console
from rivers.core.ownership import clash_warning, unserved_reason
from rivers.definitions.configs import RunBackendConfig
from rivers.definitions.requests import RunRequest
from rivers.materialize import run_sync
from rivers.metrics import parse_metrics_addr
from rivers.runtime import Runtime
from rivers.storage import describe_storage, open_backend, resolve_storage
from rivers.storage.facade import backend_of
from rivers.submission import enqueued, queued_run, write_queued

if TYPE_CHECKING:
    from rivers.cli._common import CliState
    from rivers.definitions.repository import CodeRepository

__all__ = ("daemon_command", "submit_command")


def _backend(state: CliState, repository: CodeRepository) -> RunBackendConfig:
    backend = repository.backend or RunBackendConfig()
    if state.storage is None:
        return backend
    return msgspec.structs.replace(backend, storage=state.storage)


def submit_command(
    state: CliState,
    file: str | None,
    module: str | None,
    attribute: str | None,
    selection: list[str] | None,
    tags: dict[str, str],
    priority: int,
    count: int = 1,
) -> list[str]:
    """Write ``count`` QUEUED runs (5,000 per transaction) for the daemon to admit;
    return their ids."""
    repository = load_repository(file, module, attribute)
    request = RunRequest(
        selection=None if selection is None else tuple(selection),
        tags=tags,
        priority=priority,
    )
    runs = [queued_run(repository, request) for _ in range(count)]
    steps = runs[0].selection or list(repository.assets)
    path = resolve_storage(_backend(state, repository).storage)

    async def write() -> list[str]:
        async with open_backend(path) as storage:
            await storage.processes.record_definitions(
                [(repository.name, repository.fingerprint, list(repository.assets))]
            )
            named = await write_queued(storage.runs, runs)
            now = storage.clock.time()
            await storage.events.append_events(
                [
                    (enqueued(run), now)
                    for run, existing in zip(runs, named, strict=True)
                    if existing is None
                ]
            )
            live = await live_served(storage)
            notes = [
                clash_warning("", repository.name, repository.fingerprint, live),
                unserved_reason(repository.name, repository.fingerprint, steps, live),
            ]
            return [note for note in notes if note is not None]

    notes: list[str] = run_sync(write)
    if count == 1:
        console().print(f"submitted run {runs[0].run_id} (QUEUED)")
    else:
        console().print(
            f"submitted {count} runs (QUEUED), {runs[0].run_id} .. {runs[-1].run_id}"
        )
    for note in notes:
        console(stderr=True).print(safe(note))
    return [run.run_id for run in runs]


def daemon_command(
    state: CliState,
    file: str | None,
    module: str | None,
    attribute: str | None,
    grace_s: float,
    metrics_addr: str | None = None,
) -> NoReturn:
    """Run the runtime (queue, pools, lease GC) until SIGINT or SIGTERM.

    Either signal drains: no new runs, running ones get ``grace_s`` to end and are
    then cancelled, slots released, workers stopped. The process then exits
    128 + the signal's number (143 after SIGTERM, 130 after Ctrl-C).
    """
    grace_s = parse_duration(grace_s, "--grace")
    if metrics_addr is not None:
        parse_metrics_addr(metrics_addr)  # a malformed address fails before any loading
    repository = load_repository(file, module, attribute)
    backend = _backend(state, repository)

    async def serve() -> int:
        out = console(stderr=True)
        # The run log follows the runtime's events until the runtime closes them,
        # so the runs that end while it stops are logged too.
        async with (
            anyio.create_task_group() as tg,
            Runtime(repository, backend=backend, metrics_addr=metrics_addr) as runtime,
        ):
            await tg.start(follow_runs, runtime, out, name="rivers.daemon.log")
            clash = clash_warning(
                runtime.owner,
                repository.name,
                repository.fingerprint,
                await live_served(backend_of(runtime.storage)),
            )
            if clash is not None:  # before "serving", which scripts wait for
                out.print(safe(f"rivers daemon: {clash}"))
            out.print(
                f"rivers daemon: serving repository {repository.name!r} on "
                f"{describe_storage(resolve_storage(backend.storage))} (Ctrl-C to stop)"
            )
            if runtime.metrics_url is not None:
                out.print(f"rivers daemon: metrics at {runtime.metrics_url}")
            # While it serves, this receiver owns SIGTERM (run_sync's cancels at once).
            stopped_by = signal.SIGTERM
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    stopped_by = signum
                    out.print(
                        f"rivers daemon: {signal.Signals(signum).name}: no new runs "
                        f"admitted; waiting up to {grace_s:g}s for running runs"
                    )
                    break
            await runtime.drain(grace_s)
        out.print("rivers daemon: stopped")
        return int(stopped_by)

    raise exit_for_signal(run_sync(serve))
