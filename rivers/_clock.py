"""Time sources: the only place rivers reads the clock."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ("SYSTEM_CLOCK", "Clock", "ManualClock", "SystemClock")


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


class ManualClock:
    """A clock that moves only when told to (tests; deterministic triggers).

    Both wall time and monotonic time advance together, by ``advance()`` or
    ``set()``. Nothing sleeps on it: code that waits for a time computed from it
    must also be woken (the trigger actor's ``tick_now()``).

    Args:
        start: the initial wall time in epoch seconds.
    """

    __slots__ = ("_monotonic", "_now")

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._monotonic = 0.0

    def time(self) -> float:
        """Return the current (manual) wall time in epoch seconds."""
        return self._now

    def monotonic(self) -> float:
        """Return the current (manual) monotonic time."""
        return self._monotonic

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (>= 0); return the new wall time.

        Raises:
            ValueError: ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError(f"a clock only moves forward; got {seconds!r} seconds")
        self._now += seconds
        self._monotonic += seconds
        return self._now

    def set(self, epoch_s: float) -> None:
        """Jump the wall time to ``epoch_s`` (monotonic time moves forward only)."""
        self._monotonic += max(0.0, epoch_s - self._now)
        self._now = float(epoch_s)
