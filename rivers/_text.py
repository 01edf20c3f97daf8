"""Text for a terminal, shared by the CLI and the dashboard: safe user text, short durations."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.markup import escape

__all__ = ("format_age", "format_seconds", "safe")


def safe(text: object) -> str:
    """Return ``text`` with control characters replaced and markup escaped.

    Tag values and error messages come from users; they must not drive the
    terminal (escape sequences) or rich markup.
    """
    cleaned = "".join(
        ch if ch.isprintable() or ch == "\n" else "\ufffd" for ch in str(text)
    )
    return escape(cleaned)


def format_age(when: datetime | None, now: datetime | None = None) -> str:
    """Return a compact duration since ``when`` (``3s``, ``4m12s``, ``2h05m``)."""
    if when is None:
        return "-"
    seconds = ((now or datetime.now(UTC)) - when).total_seconds()
    return format_seconds(seconds)


def format_seconds(seconds: float | None) -> str:
    """Return a compact duration (``850ms``, ``3.2s``, ``4m12s``, ``2h05m``)."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
