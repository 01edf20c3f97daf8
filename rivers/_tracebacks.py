"""The traceback a user reads for a failed step: their own frames, from any process."""

from __future__ import annotations

import os
import traceback
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import TracebackType

__all__ = (
    "MAX_TRACEBACK_CHARS",
    "RemoteTraceback",
    "format_user_frames",
    "remote_traceback",
    "step_traceback",
)

MAX_TRACEBACK_CHARS = 16_000
"""Tracebacks are stored up to this many characters (their end is kept)."""

_RIVERS_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class RemoteTraceback(Exception):
    """The traceback of an exception raised in another process (as its cause)."""

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__(text)

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


def step_traceback(exc: BaseException) -> str:
    """Return the traceback of a step's exception as the user should read it.

    An exception rebuilt from a worker process (or a Kubernetes Job) brings the
    worker's traceback as a ``RemoteTraceback`` cause: that text is returned. A
    local one is formatted without the frames that called the user's code, so it
    starts at the user's function.
    """
    remote = remote_traceback(exc)
    if remote is not None:
        return remote
    return "".join(format_user_frames(exc))[-MAX_TRACEBACK_CHARS:]


def remote_traceback(exc: BaseException) -> str | None:
    """The text of the ``RemoteTraceback`` among the causes of ``exc``, if any."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, RemoteTraceback):
            return cause.text[-MAX_TRACEBACK_CHARS:]
        seen.add(id(cause))
        cause = cause.__cause__
    return None


def format_user_frames(exc: BaseException) -> list[str]:
    """``traceback.format_exception`` from where rivers last called the user's code.

    The frames before it (rivers, anyio, threads) are how the call was made, not
    where it failed; the whole traceback is kept when rivers never called out.
    """
    start = tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        if _is_rivers(tb) and not _is_rivers(tb.tb_next):
            start = tb.tb_next
        tb = tb.tb_next
    return traceback.format_exception(type(exc), exc, start)


def _is_rivers(tb: TracebackType) -> bool:
    return tb.tb_frame.f_code.co_filename.startswith(_RIVERS_DIR)
