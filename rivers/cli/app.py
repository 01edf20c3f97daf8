"""The typer application: ``rivers [--storage PATH] COMMAND ...``.

Every command reports bad input as one line on stderr and exits 2; a materialization
whose run fails exits 1. No traceback reaches the user.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated, ClassVar, NoReturn

import typer

from rivers._error_groups import rivers_errors_line
from rivers._signals import EXIT_SIGTERM, Terminated
from rivers.cli._common import CliState, fail, parse_tags
from rivers.cli._help import LazyCommand, LazyRiversGroup
from rivers.cli.options import (  # noqa: TC001  # typer reads them at runtime
    AttributeOption,
    FileOption,
    ModuleOption,
    SelectOption,
    TagsOption,
)
from rivers.errors import RiversError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ("app", "run")


class _Rivers(LazyRiversGroup):
    # The command groups and `top` import rich, anyio, the storage and the runtime:
    # their modules load when one of them runs, never for `rivers --help`.
    lazy_commands: ClassVar[Mapping[str, LazyCommand]] = {
        "top": LazyCommand(
            "rivers.cli.top:top",
            "Watch the run queue, tag limits, pools, runs and recent events live.",
        ),
        "runs": LazyCommand("rivers.cli.runs:app", "Inspect and control runs."),
        "pools": LazyCommand(
            "rivers.cli.pools:app", "Inspect and steer concurrency pools."
        ),
        "queue": LazyCommand(
            "rivers.cli.queue_controls:app",
            "Pause, resume and re-limit a repository's run queue while it runs.",
        ),
        "triggers": LazyCommand(
            "rivers.cli.triggers:app",
            "Inspect schedules, sensors and automation conditions.",
        ),
    }


app = typer.Typer(
    cls=_Rivers,
    name="rivers",
    help="Materialize data assets under four composable concurrency layers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from rivers import __version__

        typer.echo(f"rivers {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            metavar="PATH|URL",
            help="SQLite file, sqlite:///path or postgresql:// URL (default: "
            "$RIVERS_STORAGE, else $RIVERS_HOME/rivers.db).",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version of rivers and exit.",
        ),
    ] = False,
) -> None:
    ctx.obj = CliState(storage=storage)


@app.command()
def materialize(
    ctx: typer.Context,
    file: FileOption = None,
    module: ModuleOption = None,
    attribute: AttributeOption = None,
    select: SelectOption = None,
    tag: TagsOption = None,
) -> None:
    """Run assets now, bypassing the run queue (pools and executor limits apply).

    Example: rivers materialize -f pipeline.py --select orders,report --tag env=dev
    """
    from rivers.cli.materialize import materialize_command

    state: CliState = ctx.obj
    selection = [s.strip() for s in select.split(",") if s.strip()] if select else None
    code = materialize_command(
        state, file, module, attribute, selection, parse_tags(tag or [])
    )
    raise typer.Exit(code)


@app.command()
def submit(
    ctx: typer.Context,
    file: FileOption = None,
    module: ModuleOption = None,
    attribute: AttributeOption = None,
    select: SelectOption = None,
    tag: TagsOption = None,
    priority: Annotated[
        int, typer.Option("--priority", metavar="N", help="Higher goes first.")
    ] = 0,
    count: Annotated[
        int,
        typer.Option(
            "--count",
            metavar="N",
            min=1,
            max=1_000_000,
            help="Queue N identical runs at once (5,000 per transaction).",
        ),
    ] = 1,
) -> None:
    """Queue a run (or --count N runs) for the daemon (`rivers daemon`) to admit.

    Example: rivers submit -f pipeline.py --select report --tag team=core --priority 5
    """
    from rivers.cli.queue import submit_command

    state: CliState = ctx.obj
    selection = [s.strip() for s in select.split(",") if s.strip()] if select else None
    submit_command(
        state,
        file,
        module,
        attribute,
        selection,
        parse_tags(tag or []),
        priority,
        count,
    )


@app.command()
def daemon(
    ctx: typer.Context,
    file: FileOption = None,
    module: ModuleOption = None,
    attribute: AttributeOption = None,
    grace: Annotated[
        float,
        typer.Option(
            "--grace",
            metavar="SECONDS",
            min=0,
            help="Seconds running runs get to finish on stop.",
        ),
    ] = 30.0,
    metrics_addr: Annotated[
        str | None,
        typer.Option(
            "--metrics-addr",
            metavar="HOST:PORT",
            help="Serve Prometheus metrics at http://HOST:PORT/metrics.",
        ),
    ] = None,
) -> None:
    """Run the queue, pools and lease GC until SIGINT/SIGTERM, then stop gracefully.

    Example: rivers daemon -f pipeline.py --grace 60 --metrics-addr 127.0.0.1:9464
    """
    from rivers.cli.queue import daemon_command

    state: CliState = ctx.obj
    daemon_command(state, file, module, attribute, grace, metrics_addr)


@app.command()
def doctor(ctx: typer.Context) -> None:
    """Check the storage file (PRAGMA integrity_check); say how to recover it.

    Exits 0 when it is whole, 1 when it is damaged. Read-only: safe while
    runtimes use it. Example: rivers --storage ~/.rivers/rivers.db doctor
    """
    from rivers.cli.doctor import doctor_command

    raise typer.Exit(doctor_command(ctx.obj))


def run(argv: list[str] | None = None) -> NoReturn:
    """Run the CLI; exit 2 with one line on bad input, never a traceback."""
    if os.environ.get("NO_COLOR") is None and not sys.stdout.isatty():
        os.environ.setdefault("NO_COLOR", "1")
    try:
        code = app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.TyperException as exc:
        context = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and context is not None:
            typer.echo(context.get_help())
            sys.exit(0)
        command = getattr(context, "command_path", "rivers")
        fail(f"{exc.format_message()} (see '{command} --help')", exc.exit_code or 2)
    except RiversError as exc:
        fail(str(exc))
    except BaseExceptionGroup as group:
        # A runtime that stopped on an error (the storage became unwritable, say)
        # raises its task group's errors: one line for ours, a traceback for bugs.
        line = rivers_errors_line(group)
        if line is None:
            raise
        fail(line)
    except KeyboardInterrupt:
        sys.exit(130)
    except Terminated:
        typer.echo("terminated", err=True)  # SIGTERM; the runs were canceled first
        sys.exit(EXIT_SIGTERM)
    sys.exit(code if isinstance(code, int) else 0)
