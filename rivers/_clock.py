"""Time sources: the only place rivers reads the clock."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ("Clock", "SystemClock")


class Clock(Protocol):
    """Where rivers gets time: wall time for storage, monotonic for deadlines."""

    def time(self) -> float:
        """Return the wall-clock time in epoch seconds (stored, UTC)."""
        ...

    def monotonic(self) -> float:
        """Return a monotonic time in seconds (in-process deadlines)."""
        ...


class SystemClock:
    """The real clock."""

    __slots__ = ()

    def time(self) -> float:
        """Return ``time.time()``."""
        return time.time()

    def monotonic(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()


SYSTEM_CLOCK = SystemClock()
