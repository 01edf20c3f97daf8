"""Small text widgets the dashboard panels share: bars, sparklines, short ids.

Each returns rich markup built only from numbers and fixed glyphs, so callers can
embed it next to user text that went through ``output.safe()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("bar", "short_run_id", "sparkline", "status_markup")

FULL = "█"
EMPTY = "░"
SPARKS = "▁▂▃▄▅▆▇█"

_STATUS_STYLE = {
    "SUCCESS": "green",
    "FAILURE": "red",
    "CANCELED": "yellow",
    "CANCELING": "yellow",
    "QUEUED": "cyan",
    "STARTING": "blue",
    "STARTED": "blue",
}


def bar(used: int, limit: int | None, width: int) -> str:
    """Return a used/limit bar such as ``██████░░ 3/4`` (``∞`` when unlimited).

    Green below 80%, yellow from 80%, red when full (a limit of 0 is full).
    """
    if limit is None:
        return f"[dim]{'·' * width}[/] {used}/∞"
    if limit <= 0:
        filled, style = width, "red"
    else:
        filled = min(width, round(width * used / limit))
        if used > 0:
            filled = max(filled, 1)
        ratio = used / limit
        style = "red" if ratio >= 1 else "yellow" if ratio >= 0.8 else "green"
    empty = EMPTY * (width - filled)
    return f"[{style}]{FULL * filled}[/][dim]{empty}[/] {used}/{limit}"


def sparkline(values: Sequence[int]) -> str:
    """Return one glyph per value, scaled to the largest (zero is the lowest, dim)."""
    peak = max(values, default=0)
    glyphs = []
    for value in values:
        if value <= 0 or peak <= 0:
            glyphs.append(f"[dim]{SPARKS[0]}[/]")
        else:
            level = 1 + round((len(SPARKS) - 2) * value / peak)
            glyphs.append(SPARKS[min(level, len(SPARKS) - 1)])
    return "".join(glyphs)


def short_run_id(run_id: str, narrow: bool) -> str:
    """Return the run id, or its random tail on narrow terminals."""
    if not narrow or len(run_id) <= 10:
        return run_id
    return "…" + run_id[-9:]


def status_markup(status: str) -> str:
    """Return a coloured status word."""
    style = _STATUS_STYLE.get(status)
    return f"[{style}]{status}[/]" if style else status
