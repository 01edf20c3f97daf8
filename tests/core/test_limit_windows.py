"""The pure schedule of time-windowed pool limits: which limit is in force, when it
changes, overlaps, DST, and the stored form."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from rivers.core.limit_windows import (
    LimitSchedule,
    LimitWindow,
    hour_cron,
    schedules_from_state,
)

WORK_HOURS = LimitWindow("0 8-18 * * 1-5", 2)  # 08:00-18:59 Monday to Friday


def _utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


def test_the_window_is_in_force_for_every_matching_whole_hour() -> None:
    schedule = LimitSchedule(10, (WORK_HOURS,))
    # 2024-01-01 is a Monday.
    assert schedule.limit_at(_utc(2024, 1, 1, 7, 59, 59)) == 10
    assert schedule.limit_at(_utc(2024, 1, 1, 8, 0)) == 2
    assert schedule.limit_at(_utc(2024, 1, 1, 18, 59, 59)) == 2
    assert schedule.limit_at(_utc(2024, 1, 1, 19, 0)) == 10
    assert schedule.limit_at(_utc(2024, 1, 6, 12, 0)) == 10  # Saturday
    assert schedule.window_at(_utc(2024, 1, 1, 9, 30)) == WORK_HOURS
    assert schedule.window_at(_utc(2024, 1, 1, 20, 0)) is None


def test_next_change_is_the_next_edge_and_skips_the_weekend() -> None:
    schedule = LimitSchedule(10, (WORK_HOURS,))
    change = schedule.next_change(_utc(2024, 1, 1, 7, 10))
    assert change is not None
    assert (change.at, change.limit, change.window) == (
        _utc(2024, 1, 1, 8, 0),
        2,
        WORK_HOURS,
    )
    change = schedule.next_change(_utc(2024, 1, 1, 9, 0))
    assert change is not None
    assert (change.at, change.limit, change.window) == (_utc(2024, 1, 1, 19), 10, None)
    friday_evening = _utc(2024, 1, 5, 20, 0)
    change = schedule.next_change(friday_evening)
    assert change is not None
    assert change.at == _utc(2024, 1, 8, 8, 0)  # Monday morning


def test_overlapping_windows_take_the_lowest_limit() -> None:
    nights = LimitWindow("0 0-5 * * *", 6)
    backups = LimitWindow("* 2-3 * * *", 0)  # minute field * means the whole hour too
    schedule = LimitSchedule(4, (nights, backups))
    assert schedule.limit_at(_utc(2024, 1, 1, 1, 0)) == 6
    assert schedule.limit_at(_utc(2024, 1, 1, 2, 30)) == 0
    assert schedule.window_at(_utc(2024, 1, 1, 3, 59)) == backups
    assert schedule.limit_at(_utc(2024, 1, 1, 4, 0)) == 6
    assert schedule.limit_at(_utc(2024, 1, 1, 6, 0)) == 4


def test_windows_are_read_in_their_timezone_across_a_dst_change() -> None:
    paris = ZoneInfo("Europe/Paris")
    schedule = LimitSchedule(10, (LimitWindow("0 8 * * *", 1),), "Europe/Paris")
    for day in (30, 31):  # 2024-03-31: Paris moves from UTC+1 to UTC+2 at 02:00
        eight = datetime(2024, 3, day, 8, 0, tzinfo=paris).timestamp()
        assert schedule.limit_at(eight) == 1
        assert schedule.limit_at(eight - 1) == 10
        assert schedule.limit_at(eight + 3600) == 10
    change = schedule.next_change(
        datetime(2024, 3, 31, 0, 30, tzinfo=paris).timestamp()
    )
    assert change is not None
    assert change.at == datetime(2024, 3, 31, 8, 0, tzinfo=paris).timestamp()
    assert change.at - _utc(2024, 3, 31, 6, 0) == 0  # 08:00 summer time is 06:00 UTC


def test_a_limit_that_never_changes_has_no_next_change() -> None:
    assert LimitSchedule(3, ()).next_change(_utc(2024, 1, 1)) is None
    same = LimitSchedule(3, (LimitWindow("0 * * * *", 3),))
    assert same.next_change(_utc(2024, 1, 1)) is None


@pytest.mark.parametrize(
    ("expression", "hourly"),
    [
        ("0 8-18 * * 1-5", "0 8-18 * * 1-5"),
        ("* 2 * * *", "0 2 * * *"),
        ("30 8 * * *", None),  # a window is whole hours
        ("0 25 * * *", None),
        ("0 8 * *", None),
        ("every day", None),
    ],
)
def test_hour_cron_accepts_only_whole_hour_windows(
    expression: str, hourly: str | None
) -> None:
    assert hour_cron(expression) == hourly


def test_stored_schedules_round_trip_and_malformed_entries_are_left_out() -> None:
    stored = {
        "api": {"slots": 4, "windows": {"0 8 * * *": 1}, "timezone": "UTC"},
        "bad_zone": {"slots": 4, "windows": {}, "timezone": "Mars/Base"},
        "bad_shape": ["not", "a", "dict"],
        "bad_limit": {"slots": "4", "windows": {}, "timezone": "UTC"},
    }
    schedules = schedules_from_state(stored)
    assert schedules == {"api": LimitSchedule(4, (LimitWindow("0 8 * * *", 1),), "UTC")}
    assert schedules_from_state(None) == {}
    assert schedules_from_state("garbage") == {}
