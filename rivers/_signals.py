"""SIGTERM stops what rivers runs the way Ctrl-C does.

asyncio turns the first Ctrl-C (SIGINT) into a cancellation of the loop's main
task: runs are recorded CANCELED, pool slots released, worker processes stopped,
then ``KeyboardInterrupt`` is raised (exit 130 from the CLI). SIGTERM, what
``kill``, ``timeout``, systemd and Kubernetes send, would kill the process at once
instead: its runs stayed STARTED and their slots claimed until another process
recovered them, about a lease later. Every event loop rivers starts itself
(``run_sync``: the CLI, ``repo.materialize()`` outside a loop) therefore handles
SIGTERM the same way: it cancels the work, lets it clean up, and raises
``Terminated``, a ``SystemExit`` with status 143 (128 + SIGTERM), as a shell
reports a process ended by SIGTERM.

Only when SIGTERM still has its default action, on the main thread: a program
that installed its own SIGTERM handler keeps it. A second SIGTERM while cleaning
up kills the process at once (the default action is back by then).
"""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ("EXIT_SIGTERM", "SigtermGuard", "Terminated", "exit_for_signal")

EXIT_SIGTERM = 128 + signal.SIGTERM
"""The exit status after SIGTERM stopped the work cleanly (143)."""


class Terminated(SystemExit):
    """SIGTERM stopped the work, which was cancelled and cleaned up first.

    A ``SystemExit``: uncaught, the process exits with status 143.
    """

    def __init__(self) -> None:
        super().__init__(EXIT_SIGTERM)


def exit_for_signal(signum: int) -> SystemExit:
    """Return the exit to raise once a signal stopped the work cleanly: 128 + its number."""
    return SystemExit(128 + signum)


@final
class SigtermGuard:
    """Runs a coroutine function; SIGTERM cancels it (see the module docstring).

    ``received`` says afterwards whether SIGTERM arrived.
    """

    def __init__(self) -> None:
        self.received = False

    async def run(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Await ``fn(*args)``; on SIGTERM cancel it and return None once it ended.

        The task is cancelled as asyncio cancels it on Ctrl-C (``Task.cancel``),
        not through a cancel scope: a scope would cancel every task under it at
        once, the runtime's event writer among them, before the runs it stops
        have recorded their end.
        """
        import asyncio  # loaded already (a loop runs this); not on `import rivers.cli`

        task = asyncio.current_task()
        if task is None or not _may_handle_sigterm():
            return await fn(*args)
        loop = asyncio.get_running_loop()

        def on_sigterm() -> None:
            self.received = True
            loop.remove_signal_handler(signal.SIGTERM)  # a second one kills
            task.cancel()

        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        try:
            return await fn(*args)
        except asyncio.CancelledError:
            if self.received and task.uncancel() == 0:
                return None
            raise
        finally:
            loop.remove_signal_handler(signal.SIGTERM)


def _may_handle_sigterm() -> bool:
    return (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    )
