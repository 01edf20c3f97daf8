"""How long an actor may spend recording an ending after it was cancelled.

When a runtime stops, its actors are cancelled in the middle of what they do. What
must still reach storage (a run's final status, a step's released pool claim, a
run put back in the queue) is written in a shielded scope bounded by
``CLEANUP_TIMEOUT_S``: long enough for a write waiting behind another process's
SQLite write lock (whose busy timeout is shorter), short enough that a stuck
storage cannot hold a shutdown forever. Whatever a bounded write leaves undone is
repaired later by lease expiry (claims) or the process monitor (runs).
"""

from __future__ import annotations

__all__ = ("CLEANUP_TIMEOUT_S",)

CLEANUP_TIMEOUT_S = 10.0
"""The bound on one shielded clean-up write (a waiting shutdown allows twice it)."""
