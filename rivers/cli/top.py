"""``rivers top``: a live dashboard of every gate, read from the storage only.

It works beside any daemon or embedded runtime sharing the storage, because it
only reads: the storage must exist already, and the connection is switched to
``PRAGMA query_only`` right after opening. On a terminal it redraws in the
alternate screen every ``--interval`` until ``q`` (or Ctrl-C); with ``--once``, or
when stdout is not a terminal, it prints frames instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import TYPE_CHECKING, Annotated

import anyio
import typer

from rivers.cli._storage import existing_storage, existing_storage_path
from rivers.cli.output import console
from rivers.materialize import run_sync

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from rich.console import Console
    from rich.live import Live

    from rivers.cli._common import CliState
    from rivers.storage.base import StorageBackend

__all__ = ("QUIT_KEYS", "top")

QUIT_KEYS = frozenset(b"qQ")
KEY_READ_SIZE = 64


def top(
    ctx: typer.Context,
    interval: Annotated[
        float,
        typer.Option(
            "--interval",
            metavar="SECONDS",
            min=0.1,
            max=3600,
            help="Seconds between refreshes.",
        ),
    ] = 1.0,
    once: Annotated[
        bool, typer.Option("--once", help="Print one frame and exit (for scripts).")
    ] = False,
) -> None:
    """Watch the run queue, tag limits, pools, runs and recent events live.

    Reads the storage only, so it runs beside any daemon or runtime. Press q to
    quit. The layout follows the terminal size (two columns from 120 wide);
    set COLUMNS to choose the width of --once output.

    Example: rivers --storage /srv/rivers.db top --interval 2
    """
    state: CliState = ctx.obj
    path = existing_storage_path(state.storage)
    out = console(drawing=True)
    if once:
        run_sync(_print_frame, path, out)
    else:
        run_sync(_watch, path, out, interval)


async def _print_frame(path: Path, out: Console) -> None:
    from rivers.dashboard.render import render
    from rivers.dashboard.snapshot import read_snapshot

    async with existing_storage(path) as storage:
        snapshot = await read_snapshot(storage)
    out.print(render(snapshot, out.width))


async def _watch(path: Path, out: Console, interval_s: float) -> None:
    from rich.live import Live

    async with existing_storage(path) as storage:
        if not out.is_terminal:
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    _stop_on_signals, tg.cancel_scope, name="rivers.top.signals"
                )
                await _print_frames(storage, out, interval_s)
            return
        with (
            _cbreak_stdin() as keys,
            Live(
                console=out,
                screen=True,
                auto_refresh=False,
                vertical_overflow="crop",
            ) as live,
        ):
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    _redraw,
                    storage,
                    live,
                    out,
                    interval_s,
                    keys is not None,
                    name="rivers.top.redraw",
                )
                tg.start_soon(
                    _stop_on_signals, tg.cancel_scope, name="rivers.top.signals"
                )
                if keys is not None:
                    await _wait_for_quit(keys)
                    tg.cancel_scope.cancel()


async def _print_frames(
    storage: StorageBackend, out: Console, interval_s: float
) -> None:
    """Print a frame every interval (stdout is a file or a pipe: no redrawing)."""
    from rivers.dashboard.render import render
    from rivers.dashboard.snapshot import read_snapshot

    while True:
        out.print(render(await read_snapshot(storage), out.width))
        out.print()
        await anyio.sleep(interval_s)


async def _redraw(
    storage: StorageBackend, live: Live, out: Console, interval_s: float, keys: bool
) -> None:
    from rich.console import Group
    from rich.text import Text

    from rivers._text import format_seconds
    from rivers.dashboard.render import render
    from rivers.dashboard.snapshot import read_snapshot

    hint = "q quits" if keys else "Ctrl-C quits"
    while True:
        snapshot = await read_snapshot(storage)
        frame = render(snapshot, out.width, out.height - 1)
        footer = Text(
            f"{hint}, refreshing every {format_seconds(interval_s)}", style="dim"
        )
        live.update(Group(frame, footer), refresh=True)
        await anyio.sleep(interval_s)


async def _stop_on_signals(scope: anyio.CancelScope) -> None:
    """Leave cleanly (terminal restored) on Ctrl-C or SIGHUP, as on q.

    The loop's own handler, not Python's default one: a KeyboardInterrupt raised
    wherever the main thread happens to be can be lost inside the event loop.
    SIGTERM is ``run_sync``'s: it leaves as cleanly, then exits 143.
    """
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGHUP) as signals:
        async for _ in signals:
            scope.cancel()
            return


async def _wait_for_quit(fd: int) -> None:
    """Return once q is pressed; keep waiting quietly if stdin reaches its end."""
    while True:
        await anyio.wait_readable(fd)
        data = os.read(fd, KEY_READ_SIZE)
        if not data:
            await anyio.sleep_forever()
        if QUIT_KEYS.intersection(data):
            return


@contextlib.contextmanager
def _cbreak_stdin() -> Iterator[int | None]:
    """Read keys one at a time from a terminal stdin; yield its fd (None: no TTY).

    The terminal's settings are restored on the way out, however it is left.
    """
    try:
        fd = sys.stdin.fileno()
        is_tty = os.isatty(fd)
    except (AttributeError, ValueError, OSError):
        is_tty = False
    if not is_tty:
        yield None
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
