"""When a step's attempt overran its timeout without the timer firing."""

from __future__ import annotations

import anyio

__all__ = ("overrun",)


def overrun(deadline: anyio.CancelScope, timeout_s: float) -> float | None:
    """Seconds an attempt took when it returned past its deadline, else None.

    An async step that blocks the event loop returns before the deadline's timer
    can fire; the scope then never cancelled it, and this tells it overran.
    """
    now = anyio.current_time()
    if deadline.cancelled_caught or now < deadline.deadline:
        return None
    return now - (deadline.deadline - timeout_s)
