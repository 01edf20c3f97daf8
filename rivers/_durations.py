"""Parse durations: seconds, ``timedelta`` or strings such as ``"250ms"``.

Every duration rivers accepts goes through ``parse_duration`` with the bounds of its
field, so no setting can be NaN, infinite, negative, so small it turns a loop into a
busy loop, or so large that a time computed from it leaves ``datetime``'s range.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

from rivers._repr import short_repr
from rivers.errors import ConfigError

__all__ = (
    "MAX_DEQUEUE_INTERVAL_S",
    "MAX_DURATION_S",
    "MAX_LEASE_S",
    "MAX_RETENTION_S",
    "MAX_RETRY_DELAY_S",
    "MIN_INTERVAL_S",
    "MIN_LEASE_S",
    "MIN_RETENTION_S",
    "Duration",
    "describe_range",
    "format_duration",
    "parse_duration",
)

Duration = float | int | str | timedelta

MAX_DURATION_S = 365 * 86400.0
"""The longest duration of any field (timeouts, sensor intervals): 365 days."""
MIN_INTERVAL_S = 0.01
"""The shortest interval of a loop (dequeue, lease GC, sensor): 10 ms."""
MIN_LEASE_S = 0.1
"""The shortest pool lease: 100 ms (holders renew every third of it)."""
MAX_LEASE_S = 86400.0
"""The longest pool lease: 1 day (a dead holder's slots come back within it)."""
MAX_DEQUEUE_INTERVAL_S = 3600.0
"""The longest dequeue interval: 1 hour."""
MAX_RETENTION_S = 36500 * 86400.0
"""The longest retention of finished runs: 100 years."""
MIN_RETENTION_S = 60.0
"""The shortest retention a daemon applies on its own: 1 minute."""
MAX_RETRY_DELAY_S = 7 * 86400.0
"""The longest retry delay, and the cap of a delay grown by backoff: 7 days."""

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*", re.ASCII)


def parse_duration(
    value: object,
    field: str,
    *,
    allow_zero: bool = True,
    minimum: float = 0.0,
    maximum: float = MAX_DURATION_S,
    maximum_name: str | None = None,
) -> float:
    """Return ``value`` as float seconds within ``[minimum, maximum]``.

    Args:
        value: a number of seconds, a ``timedelta``, or a string such as ``"250ms"``,
            ``"2s"``, ``"5m"``, ``"1h"``, ``"1d"`` (a bare number string means
            seconds).
        field: the name reported in the error.
        allow_zero: whether 0 is accepted (when ``minimum`` is 0).
        minimum: the shortest accepted duration.
        maximum: the longest accepted duration.
        maximum_name: what ``maximum`` is, when it comes from another field.

    Raises:
        ConfigError: the value is not a duration, or is NaN, infinite or out of
            range; the one-line message names ``field`` and the range.
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
        match = _PATTERN.fullmatch(value)
        if match is None:
            raise ConfigError(_message(field, value))
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    else:
        raise ConfigError(_message(field, value))
    if (
        not math.isfinite(seconds)
        or seconds < minimum
        or seconds > maximum
        or (seconds == 0 and not allow_zero)
    ):
        shown = describe_range(minimum, maximum, allow_zero)
        if maximum_name is not None:
            shown += f" (its {maximum_name})"
        raise ConfigError(
            f"{field} must be a duration {shown}, got {short_repr(value)}"
        )
    return seconds + 0.0  # -0.0 becomes 0.0


def describe_range(minimum: float, maximum: float, allow_zero: bool = True) -> str:
    """Return a range as the docs and errors state it: ``from 10ms to 1h``."""
    if minimum > 0 or allow_zero:
        return f"from {format_duration(minimum)} to {format_duration(maximum)}"
    return f"above 0 and at most {format_duration(maximum)}"


def format_duration(seconds: float) -> str:
    """Return ``seconds`` in the largest unit that shows it whole: ``10ms``, ``7d``."""
    for unit, size in sorted(_UNITS.items(), key=lambda item: -item[1]):
        count = seconds / size
        if count >= 1 and math.isclose(count, round(count), abs_tol=1e-9):
            return f"{round(count)}{unit}"
    return f"{seconds:g}s"


def _message(field: str, value: object) -> str:
    return (
        f"{field} must be a duration (seconds, a timedelta, or a string such as "
        f"'250ms', '2s', '5m', '1h'), got {short_repr(value)}"
    )
