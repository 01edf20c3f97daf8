"""Parse durations: seconds, ``timedelta`` or strings such as ``"250ms"``."""

from __future__ import annotations

import math
import re
from datetime import timedelta

from rivers.errors import ConfigError

__all__ = ("Duration", "parse_duration")

Duration = float | int | str | timedelta

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(value: object, field: str, *, allow_zero: bool = True) -> float:
    """Return ``value`` as float seconds.

    Args:
        value: a number of seconds, a ``timedelta``, or a string such as ``"250ms"``,
            ``"2s"``, ``"5m"``, ``"1h"`` (a bare number string means seconds).
        field: the name reported in the error.
        allow_zero: whether 0 is accepted.

    Raises:
        ConfigError: the value is not a duration, is negative, or is not finite.
    """
    seconds: float
    if isinstance(value, bool):
        raise ConfigError(_message(field, value))
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            seconds = math.inf
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        if match is None:
            raise ConfigError(_message(field, value))
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    else:
        raise ConfigError(_message(field, value))
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{field} must be a finite duration {bound}, got {value!r}")
    return seconds


def _message(field: str, value: object) -> str:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return (
        f"{field} must be a duration (seconds, a timedelta, or a string such as "
        f"'250ms', '2s', '5m', '1h'), got {shown}"
    )
