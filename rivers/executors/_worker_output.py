"""What a step in a worker process writes to stdout and stderr, sent to the parent.

The worker's file descriptors 1 and 2 are pipes, so nothing a step writes
(``print``, logging, a C library, a child process) lands on the user's terminal
beside the parent's live display. Each line becomes a ``TaskLog`` with its stream;
the parent prints it through its own stdout or stderr and records it as a
``STEP_LOG`` event. Output written between steps (a thread the step left behind)
goes to the worker's original stream instead.

A thread per pipe forwards lines while the step runs (a chatty step never fills a
pipe). At the end of the step the worker reads what is left itself, holding the
threads' locks, so every line of the step is sent before its reply without
waiting for another thread.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import threading
from typing import TYPE_CHECKING, final

from rivers.executors._protocol import TaskLog

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("CapturedOutput",)

_READ_SIZE = 65536
_MAX_LINE = 64 * 1024
"""A longer run of bytes without a newline is sent as a line of its own."""
_LEVELS = {"stdout": "INFO", "stderr": "WARNING"}


@final
class _Stream:
    """One captured descriptor: its pipe, its unfinished line, the original."""

    __slots__ = ("lock", "name", "original", "pending", "read_fd")

    def __init__(self, fd: int, name: str) -> None:
        self.name = name
        self.original = os.dup(fd)
        self.read_fd, write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.dup2(write_fd, fd)
        os.close(write_fd)
        self.pending = b""
        self.lock = threading.Lock()
        """Held while bytes are read from the pipe and forwarded."""


@final
class CapturedOutput:
    """Owns fds 1 and 2 of this process and forwards their lines.

    Args:
        send: sends one reply to the parent (thread-safe).
    """

    def __init__(self, send: Callable[[TaskLog], None]) -> None:
        self._send = send
        self._task_id: int | None = None
        _flush_python_streams()
        self._streams = (_Stream(1, "stdout"), _Stream(2, "stderr"))
        with contextlib.suppress(Exception):  # a pipe now: flush each line as written
            sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        for stream in self._streams:
            threading.Thread(
                target=self._pump,
                args=(stream,),
                name=f"rivers.worker.{stream.name}",
                daemon=True,
            ).start()

    def begin(self, task_id: int) -> None:
        """Send what is written from now on as lines of task ``task_id``."""
        with self._streams[0].lock, self._streams[1].lock:
            self._task_id = task_id

    def end(self) -> None:
        """Send every line the step wrote, then stop attributing lines to it."""
        _flush_python_streams()
        with self._streams[0].lock, self._streams[1].lock:
            try:
                readable = select.select([s.read_fd for s in self._streams], [], [], 0)
            except OSError:
                readable = ([s.read_fd for s in self._streams], [], [])
            for stream in self._streams:
                if stream.read_fd in readable[0]:
                    self._drain(stream)
                if stream.pending:  # an unfinished line ends with its step
                    self._forward(stream, stream.pending)
                    stream.pending = b""
            self._task_id = None

    def _pump(self, stream: _Stream) -> None:
        while True:
            try:
                select.select([stream.read_fd], [], [])
            except OSError:
                return
            with stream.lock:
                if self._drain(stream):
                    return

    def _drain(self, stream: _Stream) -> bool:
        """Forward the complete lines the pipe holds (lock held); True at its end.

        The end comes only when the step closed fds 1 or 2 and everything else
        holding the pipe exited.
        """
        while True:
            try:
                chunk = os.read(stream.read_fd, _READ_SIZE)
            except OSError:  # BlockingIOError: another reader emptied it first
                return False
            if not chunk:
                return True
            data = stream.pending + chunk
            *lines, data = data.split(b"\n")
            for line in lines:
                self._forward(stream, line)
            while len(data) > _MAX_LINE:
                self._forward(stream, data[:_MAX_LINE])
                data = data[_MAX_LINE:]
            stream.pending = data
            if len(chunk) < _READ_SIZE:  # the pipe is empty now
                return False

    def _forward(self, stream: _Stream, line: bytes) -> None:
        task_id = self._task_id
        if task_id is None:
            with contextlib.suppress(OSError):
                os.write(stream.original, line + b"\n")
            return
        with contextlib.suppress(OSError):
            self._send(
                TaskLog(
                    task_id=task_id,
                    level=_LEVELS[stream.name],
                    message=line.decode(errors="replace").removesuffix("\r"),
                    stream=stream.name,
                )
            )


def _flush_python_streams() -> None:
    for python_stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # replaced or closed by the step
            python_stream.flush()
