"""``rs.StepContext``: what a running step knows about itself."""

from __future__ import annotations

import logging
import traceback
from typing import TYPE_CHECKING, final

from rivers.messages import EventBody, StepLogged

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ("StepContext", "StepLog", "echo_step_log")

_LOGGER = logging.getLogger("rivers.step")


def echo_step_log(run_id: str, step_key: str, level: int | str, text: str) -> None:
    """Log a ``context.log`` line to the ``rivers.step`` logger of this process."""
    number = level if isinstance(level, int) else logging.getLevelName(level)
    _LOGGER.log(
        number if isinstance(number, int) else logging.INFO,
        "[%s %s] %s",
        run_id,
        step_key,
        text,
    )


@final
class StepLog:
    """A logger whose lines become ``STEP_LOG`` events of the run.

    Methods take %-style arguments like ``logging.Logger``. With ``echo`` each line
    is also logged to the ``rivers.step`` logger here (a worker process leaves that
    to its parent).
    """

    __slots__ = ("_echo", "_emit", "_run_id", "_step_key")

    def __init__(
        self,
        run_id: str,
        step_key: str,
        emit: Callable[[EventBody], None],
        *,
        echo: bool = True,
    ) -> None:
        self._run_id = run_id
        self._step_key = step_key
        self._emit = emit
        self._echo = echo

    def log(self, level: int, msg: object, *args: object) -> None:
        """Record a line at ``level``."""
        text = str(msg) % args if args else str(msg)
        if self._echo:
            echo_step_log(self._run_id, self._step_key, level, text)
        self._emit(
            StepLogged(
                run_id=self._run_id,
                step_key=self._step_key,
                level=logging.getLevelName(level),
                message=text,
            )
        )

    def debug(self, msg: object, *args: object) -> None:
        """Record a DEBUG line."""
        self.log(logging.DEBUG, msg, *args)

    def info(self, msg: object, *args: object) -> None:
        """Record an INFO line."""
        self.log(logging.INFO, msg, *args)

    def warning(self, msg: object, *args: object) -> None:
        """Record a WARNING line."""
        self.log(logging.WARNING, msg, *args)

    def error(self, msg: object, *args: object) -> None:
        """Record an ERROR line."""
        self.log(logging.ERROR, msg, *args)

    def exception(self, msg: object, *args: object) -> None:
        """Record an ERROR line with the current exception's traceback."""
        text = str(msg) % args if args else str(msg)
        self.log(logging.ERROR, "%s\n%s", text, traceback.format_exc().rstrip())


@final
class StepContext:
    """What a step knows: its run, its asset, the run's tags, its attempt, a log.

    Declare a parameter named ``context`` to receive it.
    """

    __slots__ = ("asset_key", "attempt", "log", "run_id", "run_tags")

    def __init__(
        self,
        *,
        run_id: str,
        asset_key: str,
        run_tags: Mapping[str, str],
        attempt: int,
        log: StepLog,
    ) -> None:
        self.run_id = run_id
        self.asset_key = asset_key
        self.run_tags: dict[str, str] = dict(run_tags)
        self.attempt = attempt
        self.log = log

    @property
    def step_key(self) -> str:
        """The step's key (its asset name)."""
        return self.asset_key

    def __repr__(self) -> str:
        return (
            f"StepContext(run_id={self.run_id!r}, asset_key={self.asset_key!r}, "
            f"attempt={self.attempt})"
        )
