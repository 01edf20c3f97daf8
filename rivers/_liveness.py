"""Is the process that owns a run still alive? Which runtimes serve what, now?"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

from rivers._ids import process_start

if TYPE_CHECKING:
    from rivers.core.ownership import Served
    from rivers.storage.base import StorageBackend

__all__ = ("RUNS_HERE", "STALE_AFTER_S", "live_served", "owner_is_alive")

STALE_AFTER_S = 30.0
"""A process on another host whose heartbeat is older than this is taken as dead."""

RUNS_HERE: set[str] = set()
"""The runs some runtime of this process drives now (each RunSupervisor adds a run
before it starts and removes it after its end). A STARTED run of this process's
owner that is not here was left by a runtime that stopped without recording its
end (its storage was unreachable): ``ProcessMonitor`` fails it."""


async def live_served(storage: StorageBackend) -> list[Served]:
    """Return what the live long-lived runtimes of ``storage`` serve."""
    now = storage.clock.time()
    return [
        served
        for served, heartbeat_at in await storage.processes.get_served()
        if owner_is_alive(served.owner, heartbeat_at, now, STALE_AFTER_S)
    ]


def owner_is_alive(
    owner: str, heartbeat_at: float | None, now: float, stale_after_s: float
) -> bool:
    """Return whether ``owner`` (``host:pid:start``) still runs.

    On this host the process table decides (a reused pid has another start time);
    elsewhere a heartbeat newer than ``stale_after_s`` does.
    """
    host, _, rest = owner.partition(":")
    pid_text, _, start = rest.partition(":")
    if host == socket.gethostname() and pid_text.isdigit():
        pid = int(pid_text)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        current = process_start(pid)
        if start and current and current != start:
            return False
        if current or not start:
            return _not_zombie(pid)
    return heartbeat_at is not None and now - heartbeat_at < stale_after_s


def _not_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True
    fields = stat[stat.rfind(b")") + 2 :].split()
    return not fields or fields[0] != b"Z"
