"""Small helpers the dashboard panels' tables share: ages, lists cut to the rows a
frame has (with their "+N more" row), and the first line of a text."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from rivers._text import format_seconds

if TYPE_CHECKING:
    from datetime import datetime

    from rich.table import Table

__all__ = ("age", "cut", "first_line", "more")

T = TypeVar("T")


def age(since: datetime | None, now: datetime) -> str:
    """Return how long ago ``since`` was (``-`` for None), never negative."""
    if since is None:
        return "-"
    return format_seconds(max(0.0, (now - since).total_seconds()))


def cut(items: tuple[T, ...], rows: int) -> tuple[T, ...]:
    """Return what fits ``rows`` table rows, keeping the last for "+N more"."""
    return items if len(items) <= rows else items[: max(0, rows - 1)]


def more(table: Table, total: int, rows: int) -> None:
    """Add the "+N more" row when ``total`` items do not fit ``rows``."""
    if total > rows:
        shown = max(0, rows - 1)
        cells = [""] * len(table.columns)
        cells[0] = f"[dim]+{total - shown} more[/]"
        table.add_row(*cells)


def first_line(text: object) -> str:
    """Return the first line of ``str(text)`` ("" for None or empty)."""
    lines = str(text or "").splitlines()
    return lines[0] if lines else ""
