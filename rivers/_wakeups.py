"""Wake-ups between the processes that share one storage file.

Each runtime listens on a UNIX datagram socket whose path is derived from the
storage file and its owner id (``host:pid:start``), so any process that knows an
owner from a storage row can wake it without a lookup. A wake-up carries nothing:
it tells the receiver to re-read the pools from storage now rather than at its next
safety check. Sending never blocks and never fails the sender (a process that is
gone, on another host, or run by another user simply is not woken and finds out at
its next check). Where UNIX sockets are missing, nothing is sent or received.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

    from anyio.abc import TaskStatus

__all__ = ("QUEUE_WAKEUPS", "SocketWakes", "WakeSender", "listen", "wake_path")

QUEUE_WAKEUPS = "rivers:queue"
"""What the queue coordinators of every runtime listen as: a storage that can tell
(PostgreSQL, by a trigger) wakes it when a run is queued or finishes."""

_SUPPORTED = hasattr(socket, "AF_UNIX") and hasattr(os, "getuid")
_BIND_ATTEMPTS = 3


def wake_path(storage: Path, owner: str) -> str | None:
    """Return the socket path of ``owner``'s runtime on ``storage`` (None: unsupported)."""
    if not _SUPPORTED:
        return None
    import hashlib  # here: the import of rivers stays cheap
    import tempfile

    digest = hashlib.sha256(f"{storage}\0{owner}".encode()).hexdigest()[:24]
    folder = os.path.join(tempfile.gettempdir(), f"rivers-{os.getuid()}")
    return os.path.join(folder, f"{digest}.sock")


class WakeSender:
    """Sends wake-ups to the runtimes of one storage (never blocks, never raises)."""

    def __init__(self, storage: Path) -> None:
        self._storage = storage
        self._socket: socket.socket | None = None

    def wake(self, owners: Iterable[str]) -> None:
        """Wake each owner's runtime, if it listens."""
        for owner in owners:
            path = wake_path(self._storage, owner)
            if path is None:
                return
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            with contextlib.suppress(
                OSError
            ):  # gone, not listening, or its buffer full
                self._socket.sendto(b"w", path)

    def close(self) -> None:
        """Close the sending socket."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


async def listen(
    storage: Path,
    owner: str,
    on_wake: Callable[[], None],
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Call ``on_wake`` for every wake-up sent to ``owner`` until cancelled.

    Without UNIX sockets, or if the socket cannot be made, it only reports started
    and waits: the caller's safety checks still run.
    """
    path = wake_path(storage, owner)
    if path is None:
        task_status.started()
        await anyio.sleep_forever()
        return
    folder = os.path.dirname(path)
    receiver = None
    for _ in range(_BIND_ATTEMPTS):
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            if not _private(folder):
                break  # another user's folder: never listen where others may write
            with contextlib.suppress(FileNotFoundError):
                os.unlink(
                    path
                )  # stale, or another runtime of this process on this file
            # Bound here, not through anyio's socket factory, which binds in a
            # worker thread: two thread hops added to every runtime's start.
            receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                receiver.bind(path)
                receiver.setblocking(False)
            except OSError:
                receiver.close()
                receiver = None
                raise
            break
        except FileNotFoundError:
            continue  # the last runtime leaving removed the folder meanwhile: again
        except OSError:
            break
    if receiver is None:
        task_status.started()
        await anyio.sleep_forever()
        return
    try:
        task_status.started()
        with receiver:
            while True:
                await anyio.wait_readable(receiver)
                with contextlib.suppress(BlockingIOError):
                    while receiver.recv(16):  # every wake-up pending: one re-read
                        pass
                on_wake()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(folder)  # the last runtime of this user leaves nothing behind


def _private(folder: str) -> bool:
    """Whether ``folder`` is this user's own and closed to everyone else."""
    info = os.lstat(folder)  # a link planted there is not followed
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.getuid()
        and info.st_mode & 0o077 == 0
    )


class SocketWakes:
    """The wake-ups of the runtimes sharing one SQLite file, over UNIX sockets."""

    def __init__(self, storage: Path) -> None:
        self._storage = storage
        self._sender: WakeSender | None = None

    def send(self, owners: Iterable[str]) -> None:
        """Wake the runtimes of ``owners`` (never blocks, never raises)."""
        if owners:
            if self._sender is None:
                self._sender = WakeSender(self._storage)
            self._sender.wake(owners)

    async def listen(
        self,
        owner: str,
        on_wake: Callable[[], None],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Call ``on_wake`` for every wake-up sent to ``owner`` until cancelled."""
        await listen(self._storage, owner, on_wake, task_status=task_status)

    def close(self) -> None:
        """Close the sending socket."""
        if self._sender is not None:
            self._sender.close()
