"""Did-you-mean hints: the known name closest to a mistyped one."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ("closest_name", "did_you_mean")

CUTOFF = 0.75
"""How alike two names must be (difflib's ratio) to suggest one for the other."""


def closest_name(name: str, known: Iterable[str]) -> str | None:
    """Return the known name most like ``name`` (None: none is close enough)."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=CUTOFF)
    return close[0] if close else None


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` naming the closest known name, or ``""``."""
    close = closest_name(name, known)
    return "" if close is None else f" (did you mean {close!r}?)"
