"""Rate limits of pools: the rate's spelling and the token bucket that enforces it.

A pool's ``rate`` limits how many steps may *start* per period, beside its slots
(how many may run at once). ``"100/min"`` is 100 starts a minute; ``"5/s"``,
``"1/30s"``, ``"1000/hour"`` and ``"10/day"`` read the same way.

It is a token bucket: the bucket holds at most ``burst`` tokens, gains
``count / period`` tokens a second, and each start takes one. With the default
``burst=1`` starts are spaced evenly (``"100/min"``: one every 0.6 s), so no window
of one period ever holds more than ``count`` starts. A larger burst lets up to
``burst`` steps start at once after a quiet spell; then at most
``burst - 1 + count`` starts fall in any one period, and over long spans never more
than ``count`` per period.

Pure: times are epoch seconds passed in; nothing here reads a clock. The storage
keeps each pool's bucket (tokens and when they were counted) and applies
``available``/``take`` inside the claim's transaction, so processes sharing it
share one bucket.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from decimal import Decimal

from rivers._repr import short_repr
from rivers.errors import ConfigError

__all__ = (
    "MAX_BURST",
    "NO_RATE",
    "Rate",
    "available",
    "check_rate_override",
    "parse_rate",
    "start_in_s",
    "wait_s",
)

NO_RATE = "none"
"""An override's rate that lifts a declared rate (``rivers pools set --rate none``)."""

MAX_COUNT = 1_000_000
MAX_BURST = 10_000
_MIN_PERIOD_S = 0.001
_MAX_PERIOD_S = 366 * 86_400.0
_UNITS = {
    "ms": ("ms", 0.001),
    "s": ("s", 1.0),
    "sec": ("s", 1.0),
    "second": ("s", 1.0),
    "seconds": ("s", 1.0),
    "m": ("min", 60.0),
    "min": ("min", 60.0),
    "minute": ("min", 60.0),
    "minutes": ("min", 60.0),
    "h": ("h", 3600.0),
    "hour": ("h", 3600.0),
    "hours": ("h", 3600.0),
    "d": ("day", 86_400.0),
    "day": ("day", 86_400.0),
    "days": ("day", 86_400.0),
}
_SPELLING = re.compile(
    r" *(?P<count>[0-9]{1,9}) */ *(?P<amount>[0-9]{1,12}(?:\.[0-9]{1,12})?)?"
    r" *(?P<unit>[a-z]+) *"
)
_ACCEPTS = (
    "use COUNT/PERIOD such as '100/min', '5/s', '1/30s', '1000/hour' or '10/day' "
    f"(COUNT 1..{MAX_COUNT:,}; units ms, s, min, h, day)"
)


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` starts per ``period_s`` seconds (``text``: its canonical spelling)."""

    count: int
    period_s: float
    text: str

    @property
    def per_second(self) -> float:
        """Tokens the bucket gains per second."""
        return self.count / self.period_s


@functools.lru_cache(maxsize=256)
def parse_rate(text: str, field: str = "rate") -> Rate:
    """Return the rate ``text`` spells (cached: claims read it on every attempt).

    Raises:
        ConfigError: not a rate, a count of 0 or above 1,000,000, or a period under
            a millisecond or over a year; the message names ``field`` and the fix.
    """
    match = _SPELLING.fullmatch(text.lower()) if isinstance(text, str) else None
    if match is None or match["unit"] not in _UNITS:
        raise ConfigError(f"{field} {short_repr(text)} is not a rate; {_ACCEPTS}")
    count = int(match["count"])
    amount_text = match["amount"] or "1"
    amount = float(amount_text)
    unit, unit_s = _UNITS[match["unit"]]
    period_s = amount * unit_s
    if not 1 <= count <= MAX_COUNT:
        raise ConfigError(
            f"{field} {short_repr(text)} has a count of {count}; {_ACCEPTS}"
        )
    if not _MIN_PERIOD_S <= period_s <= _MAX_PERIOD_S:
        raise ConfigError(
            f"{field} {short_repr(text)} has a period outside 1 ms..366 days; "
            f"{_ACCEPTS}"
        )
    # Plain decimals, never an exponent, so the canonical text reads back.
    amount_part = "" if amount == 1 else format(Decimal(amount_text).normalize(), "f")
    return Rate(count, period_s, f"{count}/{amount_part}{unit}")


def available(
    tokens: float | None, counted_at: float | None, now: float, rate: Rate, burst: int
) -> float:
    """Return the tokens in the bucket at ``now``.

    A bucket never counted (``tokens`` None) is full. Time that seems to run
    backwards (another host's clock behind) adds nothing.
    """
    if tokens is None or counted_at is None:
        return float(burst)
    elapsed = max(0.0, now - counted_at)
    return min(float(burst), tokens + elapsed * rate.per_second)


def start_in_s(tokens: float, rate: Rate, place: int) -> float:
    """Seconds until the bucket (holding ``tokens`` now) allows the ``place``-th
    start from now (1: the next), if nobody else takes a token first."""
    return max(0.0, (place - tokens) / rate.per_second)


def wait_s(tokens: float, rate: Rate) -> float:
    """Seconds until the bucket holds a whole token (0 when it does)."""
    if tokens >= 1.0:
        return 0.0
    return (1.0 - tokens) / rate.per_second


def check_rate_override(
    rate: str | None, burst: int | None, field: str
) -> tuple[str | None, int | None]:
    """Return the stored form of an override's rate and burst (canonical text).

    Raises:
        ConfigError: not a rate (nor ``"none"``), or a bad burst, or a burst
            without a rate.
    """
    if rate is None:
        if burst is not None:
            raise ConfigError(f"a burst needs a rate; pass {field} too")
        return None, None
    if rate.strip().lower() == NO_RATE:
        if burst is not None:
            raise ConfigError(f"{field} 'none' takes no burst; drop the burst")
        return NO_RATE, None
    text = parse_rate(rate, field).text
    if burst is None:
        return text, 1
    return text, _check_burst(burst)


def _check_burst(burst: object) -> int:
    if isinstance(burst, bool) or not isinstance(burst, int):
        raise ConfigError(
            f"burst must be an int in 1..{MAX_BURST}, got {short_repr(burst)}"
        )
    if not 1 <= burst <= MAX_BURST:
        raise ConfigError(
            f"burst {burst} is out of range; use 1..{MAX_BURST} (1: starts evenly "
            "spaced)"
        )
    return burst
