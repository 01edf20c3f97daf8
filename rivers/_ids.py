"""Identifier types and their generators."""

from __future__ import annotations

import os
import secrets
import socket
import time
from typing import NewType

__all__ = ("AssetKey", "OwnerId", "RunId", "StepKey", "new_run_id", "this_owner")

RunId = NewType("RunId", str)
AssetKey = NewType("AssetKey", str)
StepKey = NewType("StepKey", str)
OwnerId = NewType("OwnerId", str)


def new_run_id() -> RunId:
    """Return a new run id: sortable by creation time, unique across processes."""
    # 6 bytes of milliseconds, then 5 random bytes: sorts by time, no coordination.
    millis = int(time.time() * 1000)
    return RunId(f"{millis:012x}{secrets.token_hex(5)}")


_OWNER: OwnerId | None = None


def this_owner() -> OwnerId:
    """Return this process's owner id: ``host:pid:start-time``.

    The start time makes a reused pid distinguishable from the process that owned
    a run before it.
    """
    global _OWNER
    if _OWNER is None or _OWNER.split(":")[1] != str(os.getpid()):
        _OWNER = OwnerId(
            f"{socket.gethostname()}:{os.getpid()}:{process_start(os.getpid())}"
        )
    return _OWNER


def process_start(pid: int) -> str:
    """Return a token for when process ``pid`` started ("" when unknown)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return ""
    # The command name may hold spaces and parentheses; fields follow the last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else ""
