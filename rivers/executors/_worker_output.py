"""What a step in a worker process writes to stdout and stderr, sent to the parent.

The worker's file descriptors 1 and 2 are pipes read by two threads here, so
nothing a step writes (``print``, logging, a C library, a child process) lands on
the user's terminal beside the parent's live display. Each line becomes a
``TaskLog`` with its stream; the parent prints it through its own stdout or stderr
and records it as a ``STEP_LOG`` event. Output written between steps (a thread the
step left behind) goes to the worker's original stream instead.

At the end of a step the worker writes a marker into each pipe and waits until
its reader has passed it, so every line of the step is sent before its reply.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import TYPE_CHECKING, final

from rivers.executors._protocol import TaskLog

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("CapturedOutput",)

_MARKER = b"\x00rivers:end-of-step\x00"
_MAX_LINE = 64 * 1024
"""A longer run of bytes without a newline is sent as a line of its own."""
SYNC_TIMEOUT_S = 5.0
"""How long the end of a step waits for a reader (a step may have taken its fd)."""
_LEVELS = {"stdout": "INFO", "stderr": "WARNING"}


@final
class _Stream:
    __slots__ = ("fd", "name", "original", "passed", "read_fd")

    def __init__(self, fd: int, name: str) -> None:
        self.fd = fd
        self.name = name
        self.original = os.dup(fd)
        self.read_fd, write_fd = os.pipe()
        os.dup2(write_fd, fd)
        os.close(write_fd)
        self.passed = threading.Event()


@final
class CapturedOutput:
    """Owns fds 1 and 2 of this process and forwards their lines.

    Args:
        send: sends one reply to the parent (thread-safe).
    """

    def __init__(self, send: Callable[[TaskLog], None]) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._task_id: int | None = None
        for python_stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                python_stream.flush()
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
        with self._lock:
            self._task_id = task_id

    def end(self) -> None:
        """Send every line the step wrote (up to now), then stop attributing them."""
        for python_stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                python_stream.flush()
        waiting = []
        for stream in self._streams:
            stream.passed.clear()
            try:
                os.write(stream.fd, _MARKER)
            except OSError:  # the step closed or replaced the descriptor
                continue
            waiting.append(stream)
        for stream in waiting:
            stream.passed.wait(SYNC_TIMEOUT_S)
        with self._lock:
            self._task_id = None

    def _pump(self, stream: _Stream) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(stream.read_fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            pending = self._lines(stream, pending + chunk)

    def _lines(self, stream: _Stream, data: bytes) -> bytes:
        """Forward each complete line of ``data``; return the unfinished rest."""
        while True:
            newline = data.find(b"\n")
            marker = data.find(_MARKER)
            if newline != -1 and (marker == -1 or newline < marker):
                self._forward(stream, data[:newline])
                data = data[newline + 1 :]
            elif marker != -1:
                if marker:  # an unfinished line ends with its step
                    self._forward(stream, data[:marker])
                data = data[marker + len(_MARKER) :]
                stream.passed.set()
            elif len(data) > _MAX_LINE:
                keep = len(_MARKER) - 1  # the start of a marker may be at the end
                self._forward(stream, data[:-keep])
                data = data[-keep:]
            else:
                return data

    def _forward(self, stream: _Stream, line: bytes) -> None:
        with self._lock:
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
