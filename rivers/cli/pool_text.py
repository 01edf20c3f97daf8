"""How ``rivers pools`` words a pool: its limit and rate with their sources, its
bucket, and its time windows (the text of ``pools list`` and ``pools info``)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from rivers._text import format_seconds, safe

if TYPE_CHECKING:
    from rivers.core.limit_windows import LimitSchedule
    from rivers.storage.records import PoolInfo

__all__ = ("limit_text", "rate_text", "window_text", "windows_document")


def limit_text(info: PoolInfo) -> str:
    limit = "unlimited" if info.limit is None else f"{info.limit} ({info.limit_source})"
    if info.rate is None:
        return limit
    return f"{limit}, {info.rate} ({info.rate_source})"


def rate_text(info: PoolInfo) -> str | None:
    """Say a pool's rate, its bucket and when the next start is allowed (None:
    the pool has no rate)."""
    if info.rate is None or info.tokens is None or info.next_token_in_s is None:
        return None
    ready = (
        f"{info.tokens:.2f} of {info.burst} start(s) allowed now"
        if info.tokens >= 1
        else f"next start allowed in {format_seconds(info.next_token_in_s)}"
    )
    return f"rate {info.rate} ({info.rate_source}), burst {info.burst}: {ready}"


def window_text(schedule: LimitSchedule, info: PoolInfo, now: float) -> str:
    """Say which time window of a pool is in force and when its limit next changes."""
    window = schedule.window_at(now)
    in_force = (
        f"base limit {schedule.base} (no window in force)"
        if window is None
        else f"window {safe(repr(window.cron))} in force ({window.limit} slots)"
    )
    if info.limit_source == "override":
        return f"{in_force}; the override {info.limit} wins (rivers pools reset)"
    change = schedule.next_change(now)
    if change is None:
        return in_force
    at = datetime.fromtimestamp(change.at, ZoneInfo(schedule.timezone))
    return (
        f"{in_force}; {change.limit} from {at:%a %Y-%m-%d %H:%M} {schedule.timezone} "
        f"(in {format_seconds(change.at - now)})"
    )


def windows_document(schedule: LimitSchedule, now: float) -> dict[str, Any]:
    window = schedule.window_at(now)
    change = schedule.next_change(now)
    return {
        "base": schedule.base,
        "timezone": schedule.timezone,
        "windows": {w.cron: w.limit for w in schedule.windows},
        "in_force": None if window is None else window.cron,
        "limit_in_force": schedule.limit_at(now),
        "next_change_at": None if change is None else change.at,
        "next_limit": None if change is None else change.limit,
    }
