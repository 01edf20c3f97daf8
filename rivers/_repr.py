"""``short_repr``: a value quoted in an error message, never the whole of a huge one."""

from __future__ import annotations

__all__ = ("short_repr",)

LIMIT = 60


def short_repr(value: object) -> str:
    """Return ``repr(value)``, cut to 60 characters with ``...`` when longer."""
    try:
        shown = repr(value)
    except Exception:
        shown = f"<{type(value).__name__} object>"
    return shown if len(shown) <= LIMIT else shown[: LIMIT - 3] + "..."
