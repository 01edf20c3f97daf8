"""``rivers runs list|show|logs|why|cancel|prune``: inspect and control runs in the
storage, and delete old finished ones."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import anyio
import typer

from rivers._durations import MAX_RETENTION_S, parse_duration
from rivers._text import format_seconds, safe
from rivers.cancel import CancelOutcome, request_cancel
from rivers.cli._common import CliState, parse_tag_filter
from rivers.cli._help import RiversGroup
from rivers.cli._storage import existing_storage, resolve_run_id
from rivers.cli.output import (
    console,
    drawing_width,
    format_log_line,
    print_failures,
    print_json,
    run_table,
    step_table,
)
from rivers.errors import ConfigError
from rivers.materialize import run_sync
from rivers.storage.facade import Storage
from rivers.storage.records import Event, PruneResult, RunRecord, RunStatus, StepRecord

if TYPE_CHECKING:
    from rivers.storage.base import StorageBackend

__all__ = ("app",)

app = typer.Typer(
    cls=RiversGroup,
    rich_markup_mode=None,  # as the rivers group it joins (rivers.cli.app)
    help="Inspect and control runs.",
    no_args_is_help=True,
)

RunIdArgument = Annotated[
    str,
    typer.Argument(
        metavar="RUN",
        help="The run id, or any unique prefix or suffix of it (4+ characters).",
        show_default=False,
    ),
]
CANCEL_POLL_S = 0.1


def _statuses(values: list[str]) -> list[RunStatus]:
    statuses = []
    for value in values:
        try:
            statuses.append(RunStatus(value.upper()))
        except ValueError:
            known = ", ".join(s.value for s in RunStatus)
            raise ConfigError(
                f"--status {value!r} is not a run status; use one of {known}"
            ) from None
    return statuses


@app.command("list")
def list_runs(
    ctx: typer.Context,
    status: Annotated[
        list[str] | None,
        typer.Option("--status", metavar="STATUS", help="Only runs in this status."),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option(
            "--tag",
            metavar="KEY=VALUE",
            help="Only runs with this tag. Repeat it: every key must match; the same "
            "key twice matches either value (--tag env=dev --tag env=prod).",
        ),
    ] = None,
    limit: Annotated[
        int,
        typer.Option(
            "--limit", metavar="N", min=1, max=100_000, help="At most N runs."
        ),
    ] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List runs, newest first.

    Filters combine: a run is listed when its status is one of --status and, for
    every --tag key, its tag has one of the values given for that key.

    Example: rivers runs list --tag env=dev --tag env=prod --tag team=core
    """
    state: CliState = ctx.obj
    statuses = _statuses(status or []) or None
    tags = parse_tag_filter(tag or [])

    async def read() -> list[RunRecord]:
        async with existing_storage(state.storage) as storage:
            return await storage.runs.get_runs(status=statuses, tags=tags, limit=limit)

    runs = run_sync(read)
    if as_json:
        print_json(runs)
    else:
        console().print(run_table(runs))


@app.command("show")
def show_run(
    ctx: typer.Context,
    run_id: RunIdArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a run, its steps, where each step's time went, and why steps failed.

    The timeline has one bar per step: waiting for the run queue, for a worker
    (a free slot, or a worker process starting), for a pool, for a retry, and
    running. Each failed step's traceback follows.

    Example: rivers runs show 3522d4007
    """
    from rivers.dashboard.timeline import (
        TIMELINE_EVENT_KINDS,
        build_timeline,
        render_timeline,
    )

    state: CliState = ctx.obj

    async def read() -> tuple[RunRecord, list[StepRecord], list[Event]]:
        async with existing_storage(state.storage) as storage:
            full_id = await resolve_run_id(storage, run_id)
            run = await storage.runs.get_run(full_id)
            assert run is not None
            steps = await storage.runs.get_step_records(full_id)
            events = await storage.events.get_events(
                full_id, kinds=TIMELINE_EVENT_KINDS
            )
            return run, steps, events

    run, steps, events = run_sync(read)
    timeline = build_timeline(run, events, datetime.now(UTC))
    failures = [e for e in events if e.kind == "STEP_FAILURE"]
    if as_json:
        print_json(
            {"run": run, "steps": steps, "timeline": timeline, "failures": failures}
        )
        return
    out = console()
    out.print(run_table([run]))
    out.print()
    out.print(step_table(steps))
    out.print()
    out.print("[bold]timeline[/]")
    out.print(render_timeline(timeline, drawing_width(out)))
    if any(e.data.get("traceback") for e in failures):
        out.print()
        print_failures(out, failures)


LOG_EVENT_KINDS = ("STEP_LOG",)
"""The events ``runs logs`` prints: lines from ``context.log`` and step output."""
FOLLOW_POLL_S = 0.25


@app.command("logs")
def run_logs(
    ctx: typer.Context,
    run_id: RunIdArgument,
    step: Annotated[
        str | None,
        typer.Option("--step", metavar="STEP", help="Only this step's lines."),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Keep printing new lines until the run ends."
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON event per line.")
    ] = False,
) -> None:
    """Print the log lines of a run's steps (context.log and captured output).

    Each line shows its time, step, level (or stream) and message, oldest first.
    With --follow it keeps printing lines as they are written and returns once
    the run has ended.

    Example: rivers runs logs 3522d4007 --step revenue --follow
    """
    state: CliState = ctx.obj
    out = console()

    def show(events: list[Event]) -> None:
        for event in events:
            if step is not None and event.step_key != step:
                continue
            if as_json:
                print_json(event)
            else:
                out.print(safe(format_log_line(event)), highlight=False, soft_wrap=True)

    async def read() -> None:
        async with existing_storage(state.storage) as storage:
            full_id = await resolve_run_id(storage, run_id)
            run = await storage.runs.get_run(full_id)
            assert run is not None
            if (
                step is not None
                and run.status.is_finished
                and step not in await _step_names(storage, run)
            ):
                raise ConfigError(
                    f"run {full_id} has no step {step!r}; see rivers runs show "
                    f"{full_id}"
                )
            last: int | None = None
            while True:
                finished = run.status.is_finished
                events = await storage.events.get_events(
                    full_id, after=last, kinds=LOG_EVENT_KINDS
                )
                show(events)
                if events:
                    last = events[-1].event_id
                if not follow or finished:
                    return
                await anyio.sleep(FOLLOW_POLL_S)
                current = await storage.runs.get_run(full_id)
                assert current is not None
                run = current

    run_sync(read)


async def _step_names(storage: StorageBackend, run: RunRecord) -> set[str]:
    """The steps a run selected or recorded."""
    names = {s.step_key for s in await storage.runs.get_step_records(run.run_id)}
    return names | set(run.selection or ())


@app.command("why")
def why_run(ctx: typer.Context, run_id: RunIdArgument) -> None:
    """Say which gate holds a run, with live numbers.

    Example: rivers runs why 3522d4007
    """
    from rivers.explain import explain_run

    state: CliState = ctx.obj

    async def read() -> str:
        async with existing_storage(state.storage) as storage:
            return await explain_run(storage, await resolve_run_id(storage, run_id))

    console().print(safe(run_sync(read)))


@app.command("cancel")
def cancel_run(
    ctx: typer.Context,
    run_id: RunIdArgument,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            metavar="SECONDS",
            min=0,
            max=3600,
            help="Seconds to wait for the run to stop and say how it ended (0: do "
            "not wait).",
        ),
    ] = 10.0,
) -> None:
    """Cancel a run: a queued one never starts; a running one stops its steps.

    The runtime running it sees the request within about a second; the command
    waits (up to --wait) and says how the run ended. A run whose steps all end
    before the request reaches them ends SUCCESS, with the reason "finished before
    the cancel took effect".

    Example: rivers runs cancel 3522d4007
    """
    state: CliState = ctx.obj
    run, message = run_sync(_cancel, state.storage, run_id, wait)
    line = f"run {safe(run.run_id)}: {run.status.value}"
    if run.reason:
        line += f" ({safe(run.reason)})"
    console().print(line + (f"; {message}" if message else ""))


async def _cancel(
    where: str | None, text: str, wait_s: float
) -> tuple[RunRecord, str | None]:
    """Request the cancel, wait up to ``wait_s`` for the end; return it and a note."""
    async with existing_storage(where, write=True) as storage:
        run_id = await resolve_run_id(storage, text)
        requested = await request_cancel(storage.runs, run_id)
        assert requested is not None
        before, outcome = requested
        if outcome is CancelOutcome.FINISHED:
            return before, "it had already finished; nothing to cancel"
        with anyio.move_on_after(wait_s):
            while True:
                run = await storage.runs.get_run(run_id)
                assert run is not None
                if run.status.is_finished:
                    return run, None
                await anyio.sleep(CANCEL_POLL_S)
        run = await storage.runs.get_run(run_id)
        assert run is not None
        if run.status.is_finished or wait_s == 0:
            return run, None
        return run, (
            f"still stopping after {format_seconds(wait_s)}; "
            f"'rivers runs show {run_id}' tells how it ends"
        )


@app.command("prune")
def prune_runs(
    ctx: typer.Context,
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            metavar="AGE",
            help="Delete the finished runs created and ended more than AGE ago, "
            "such as 30d, 12h or 90m.",
            show_default=False,
        ),
    ],
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Only say what would be deleted."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Delete old finished runs with their events and steps (each asset's latest
    materialization is kept); queued and running runs are never touched.

    It deletes a few hundred runs per transaction, so it can run beside a busy
    daemon. RunBackendConfig(retention="30d") makes a daemon do it every hour.

    Example: rivers runs prune --older-than 30d --dry-run
    """
    state: CliState = ctx.obj
    age_s = parse_duration(older_than, "--older-than", maximum=MAX_RETENTION_S)

    async def prune() -> PruneResult:
        async with existing_storage(state.storage, write=not dry_run) as backend:
            return await Storage(backend).prune(older_than=age_s, dry_run=dry_run)

    result = run_sync(prune)
    if as_json:
        print_json(result)
        return
    what = (
        f"{result.runs} finished run(s) created and ended before "
        f"{result.cutoff:%Y-%m-%d %H:%M:%S} UTC: {result.events} event(s), "
        f"{result.steps} step(s), {result.materializations} superseded "
        "materialization(s)"
    )
    if result.dry_run:
        console().print(f"would prune {what}; nothing deleted (--dry-run)")
        return
    console().print(
        f"pruned {what}; database {_mib(result.bytes_before)} -> "
        f"{_mib(result.bytes_after)}"
    )


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"
