"""An exception raised by user code is that code's failure, never the runtime's.

Steps, sensors, schedules and IO managers may raise anything: ``sys.exit()``,
``KeyboardInterrupt``, ``GeneratorExit`` or any other ``BaseException``, not only
an ``Exception``. Let through, such an exception stops whatever called the code: a
worker thread hands it to the event loop, asyncio re-raises ``SystemExit`` and
``KeyboardInterrupt`` out of the loop, and the whole runtime goes down with every
other run. So the one place that catches the code's exceptions (the RunExecutor
for every executor's steps, the TriggerRunner for sensors and schedules, the
worker processes for what runs in them) catches ``BaseException`` and records it
as the failure of that step or trigger, with the exceptions below:

- the runtime's own cancellation (a timeout, a run cancel, the runtime stopping)
  passes through: it is the cancellation exception *while the task is being
  cancelled*. A cancellation exception the code raised by itself is a failure.

This module is the rule; its callers only use it. It is also imported by the step
worker process, so it imports nothing heavy at module level.
"""

from __future__ import annotations

from rivers._error_groups import leaves

__all__ = (
    "UserCodeExited",
    "describe",
    "is_runtime_cancellation",
    "message_of",
    "original",
)


class UserCodeExited(Exception):
    """A ``BaseException`` from user code, carried as an ``Exception``.

    Callers that record failures with ``except Exception`` receive this; the user's
    own exception is ``exception`` (and ``__cause__``).
    """

    def __init__(self, exception: BaseException) -> None:
        self.exception = exception
        super().__init__(describe(exception))
        self.__cause__ = exception

    @classmethod
    def contain(cls, exc: BaseException) -> Exception:
        """Return ``exc`` as an ``Exception`` to record as the user code's failure.

        Raises:
            BaseException: ``exc`` itself when it is the runtime's own cancellation.
        """
        if isinstance(exc, Exception):
            return exc
        if is_runtime_cancellation(exc):
            raise exc
        return cls(exc)


def original(exc: BaseException) -> BaseException:
    """Return the user's own exception: unwrap a ``UserCodeExited``."""
    return exc.exception if isinstance(exc, UserCodeExited) else exc


def message_of(exc: BaseException) -> str:
    """The message of an exception as rivers shows it (``sys.exit(3) was called``)."""
    if isinstance(exc, SystemExit):
        return f"sys.exit({exc.code!r}) was called"
    return str(exc)


def describe(exc: BaseException) -> str:
    """``ValueError: bad``, ``SystemExit: sys.exit(3) was called``, ``KeyboardInterrupt``."""
    message = message_of(exc)
    name = type(exc).__name__
    return f"{name}: {message}" if message else name


def is_runtime_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` is the runtime cancelling the running task (let it through).

    True for the event loop's cancellation exception (or a group of nothing else)
    raised while the current task has a cancellation pending; False for anything
    else, a ``CancelledError`` the code raised by itself included. Outside asyncio
    (trio) user code cannot raise the cancellation exception, so it is always the
    runtime's.
    """
    import asyncio

    import anyio

    cancelled = anyio.get_cancelled_exc_class()
    if not all(isinstance(leaf, cancelled) for leaf in leaves(exc)):
        return False
    try:
        task = asyncio.current_task()
    except RuntimeError:  # not on an asyncio loop
        return True
    return task is None or task.cancelling() > 0
