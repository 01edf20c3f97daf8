"""How long a storage call keeps trying while the storage is locked or away.

One rule for both connections: pause between tries with growing delays (the last
one repeats), and give up before the next pause would pass the patience. The
SQLite connection retries a write while another process holds the write lock; the
PostgreSQL connection retries any call while the server is unreachable.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, final

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("Patience",)


@final
class Patience:
    """The pauses of one call's retries, counted from its first try (now)."""

    def __init__(self, delays_s: Sequence[float], patience_s: float) -> None:
        self._delays_s = delays_s
        self._patience_s = patience_s
        self._began = time.monotonic()
        self._tries = 0

    @property
    def waited_s(self) -> float:
        """Seconds since the first try."""
        return time.monotonic() - self._began

    def next_delay(self) -> float | None:
        """The pause before the next try, or None: it would pass the patience."""
        delay = self._delays_s[min(self._tries, len(self._delays_s) - 1)]
        if self.waited_s + delay > self._patience_s:
            return None
        self._tries += 1
        return delay
