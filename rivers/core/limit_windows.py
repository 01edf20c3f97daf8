"""Time-windowed limits: which limit is in force at a time, and when it next changes.

A window is a cron expression read per whole hour in a timezone: the window is in
force during every hour whose hour, day-of-month, month and day-of-week fields match
(``"0 8-18 * * 1-5"`` is 08:00-18:59 Monday to Friday). Its minute field must be
``0`` or ``*``; both mean the whole hour. Outside every window the base limit is in
force; where windows overlap, the lowest of their limits is (the safe choice).

Pure: times are epoch seconds passed in; nothing here reads a clock.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = (
    "HORIZON_HOURS",
    "WINDOWS_KEY",
    "LimitSchedule",
    "LimitWindow",
    "WindowChange",
    "hour_cron",
    "schedules_from_state",
    "stored_window",
)

WINDOWS_KEY = "pools.windows"
"""The state key of every windowed pool's limits: ``{pool: {slots, windows, timezone,
declared_by}}`` (written by the LimitWindows actor, read by ``schedules_from_state``)."""

HORIZON_HOURS = 8 * 24
"""How far ahead ``next_change`` looks: a week and a day covers every weekly window."""


@functools.lru_cache(maxsize=256)
def hour_cron(expression: str) -> str | None:
    """Return ``expression`` with its minute field as ``0``, or None if it is not a
    window (not five fields, or a minute field other than ``0``/``*``)."""
    fields = expression.split()
    if len(fields) != 5 or fields[0] not in ("0", "*"):
        return None
    hourly = " ".join(["0", *fields[1:]])
    try:
        next(CronSim(hourly, datetime(2000, 1, 1)))
    except (CronSimError, StopIteration):
        return None
    return hourly


@dataclass(frozen=True, slots=True)
class LimitWindow:
    """The limit in force while ``cron`` matches (``cron`` as the user wrote it)."""

    cron: str
    limit: int


@dataclass(frozen=True, slots=True)
class WindowChange:
    """The next time the limit in force changes, and what it becomes."""

    at: float
    limit: int
    window: LimitWindow | None


@dataclass(frozen=True, slots=True)
class LimitSchedule:
    """A base limit and the windows that replace it, in one timezone."""

    base: int
    windows: tuple[LimitWindow, ...]
    timezone: str = "UTC"

    @classmethod
    def of(
        cls, base: int, windows: Mapping[str, int] | None, timezone: str
    ) -> LimitSchedule:
        """The schedule of a base limit and ``{cron: limit}`` windows."""
        return cls(
            base, tuple(LimitWindow(c, n) for c, n in (windows or {}).items()), timezone
        )

    def window_at(self, at: float) -> LimitWindow | None:
        """Return the window in force at ``at`` (the lowest limit of those matching)."""
        start = self._hour_start(at)
        matching = [w for w in self.windows if self._matches(w, start)]
        return min(matching, key=lambda w: w.limit, default=None)

    def limit_at(self, at: float) -> int:
        """Return the limit in force at ``at``."""
        window = self.window_at(at)
        return self.base if window is None else window.limit

    def next_change(self, after: float) -> WindowChange | None:
        """Return the first hour edge after ``after`` where the limit in force
        changes, within ``HORIZON_HOURS``; None when it never does."""
        current = self.limit_at(after)
        hour = self._hour_start(after)
        for _ in range(HORIZON_HOURS):
            hour = self._next_hour(hour)
            window = self.window_at(hour.timestamp())
            limit = self.base if window is None else window.limit
            if limit != current:
                return WindowChange(at=hour.timestamp(), limit=limit, window=window)
        return None

    def describe_next_change(self, now: float) -> str:
        """``"10 at Fri 19:00 Europe/Paris"``; empty when the limit never changes."""
        change = self.next_change(now)
        if change is None:
            return ""
        at = datetime.fromtimestamp(change.at, ZoneInfo(self.timezone))
        return f"{change.limit} at {at:%a %H:%M} {self.timezone}"

    def _hour_start(self, at: float) -> datetime:
        local = datetime.fromtimestamp(at, ZoneInfo(self.timezone))
        return local.replace(minute=0, second=0, microsecond=0)

    def _next_hour(self, hour: datetime) -> datetime:
        # Through UTC, so an hour repeated or skipped by a DST change is one step.
        later = hour.astimezone(ZoneInfo("UTC")) + timedelta(hours=1)
        return later.astimezone(ZoneInfo(self.timezone))

    @staticmethod
    def _matches(window: LimitWindow, hour: datetime) -> bool:
        hourly = hour_cron(window.cron)
        if hourly is None:
            return False
        before = hour - timedelta(minutes=1)
        try:
            tick = next(CronSim(hourly, before))
        except StopIteration:
            return False
        return tick == hour


def stored_window(schedule: LimitSchedule, declared_by: str) -> dict[str, object]:
    """The stored form of one pool's schedule (``schedules_from_state`` reads it)."""
    return {
        "slots": schedule.base,
        "windows": {window.cron: window.limit for window in schedule.windows},
        "timezone": schedule.timezone,
        "declared_by": declared_by,
    }


def schedules_from_state(value: object) -> dict[str, LimitSchedule]:
    """Return the schedules stored under ``pools.windows`` (pool -> its windows);
    malformed entries (written by another version) are left out."""
    if not isinstance(value, dict):
        return {}
    schedules: dict[str, LimitSchedule] = {}
    for pool, entry in value.items():
        if not isinstance(entry, dict):
            continue
        base, windows, timezone = (
            entry.get(k) for k in ("slots", "windows", "timezone")
        )
        if not (
            isinstance(base, int)
            and isinstance(windows, dict)
            and isinstance(timezone, str)
            and all(
                isinstance(c, str) and isinstance(n, int) for c, n in windows.items()
            )
        ):
            continue
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            continue
        schedules[str(pool)] = LimitSchedule.of(base, windows, timezone)
    return schedules
