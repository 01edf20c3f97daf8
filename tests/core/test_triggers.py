"""The pure trigger decisions: cron ticks, missed ticks, catch-up, automation."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

import rivers as rs
from rivers.core.triggers import (
    ON_TIME_GRACE_S,
    AutomationRule,
    TriggerState,
    check_cron,
    check_timezone,
    decide_automation,
    decide_schedule,
    latest_tick,
    next_tick,
    schedule_run_key,
    sensor_due_at,
)


def _t(
    year: int,
    month: int,
    day: int,
    hour: int,
    minute: int,
    second: int = 0,
    *,
    tz: str = "UTC",
) -> float:
    zone = ZoneInfo(tz)
    return datetime(year, month, day, hour, minute, second, tzinfo=zone).timestamp()


def _utc(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


# -------------------------------------------------------------------------- cron


def test_next_tick_is_strictly_after_and_latest_tick_is_at_or_before() -> None:
    at = _t(2024, 1, 1, 10, 0)
    assert _utc(next_tick("0 * * * *", "UTC", at)) == "2024-01-01T11:00:00+00:00"
    assert _utc(latest_tick("0 * * * *", "UTC", at)) == "2024-01-01T10:00:00+00:00"
    assert _utc(latest_tick("0 * * * *", "UTC", at - 0.5)) == (
        "2024-01-01T09:00:00+00:00"
    )
    assert _utc(next_tick("0 * * * *", "UTC", at + 0.25)) == (
        "2024-01-01T11:00:00+00:00"
    )


def test_cron_is_read_in_the_schedules_timezone() -> None:
    at = _t(2024, 1, 15, 0, 0)
    # 09:00 in Paris in winter is 08:00 UTC.
    assert _utc(next_tick("0 9 * * *", "Europe/Paris", at)) == (
        "2024-01-15T08:00:00+00:00"
    )


def test_a_fixed_time_in_the_spring_forward_gap_runs_once_after_the_gap() -> None:
    # 02:30 does not exist in New York on 2024-03-10; Debian cron runs it at 03:00.
    start = _t(2024, 3, 9, 12, 0, tz="America/New_York")
    first = next_tick("30 2 * * *", "America/New_York", start)
    assert first is not None
    second = next_tick("30 2 * * *", "America/New_York", first)
    local = ZoneInfo("America/New_York")
    assert datetime.fromtimestamp(first, local).isoformat() == (
        "2024-03-10T03:00:00-04:00"
    )
    assert datetime.fromtimestamp(second or 0, local).isoformat() == (
        "2024-03-11T02:30:00-04:00"
    )


@pytest.mark.parametrize(
    ("alias", "expanded"),
    [("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"), ("@weekly", "0 0 * * 0")],
)
def test_cron_aliases_expand(alias: str, expanded: str) -> None:
    assert check_cron(alias) == expanded


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "invalid: Bad minute"),
        ("* * *", "use 5 fields"),
        ("0 0 * * * *", "use 5 fields"),
        ("0 0 31 4 *", "invalid: Bad day-of-month"),
        (5, "must be a cron expression string"),
    ],
)
def test_bad_cron_expressions_are_config_errors(
    expression: object, message: str
) -> None:
    with pytest.raises(rs.ConfigError, match=message):
        check_cron(expression)


def test_unknown_timezones_are_config_errors() -> None:
    assert check_timezone("Europe/Paris") == "Europe/Paris"
    for name in ("Mars/Olympus", "", "../etc/passwd", None):
        with pytest.raises(rs.ConfigError, match="timezone"):
            check_timezone(name)


def test_run_keys_are_deterministic_per_tick() -> None:
    tick = _t(2024, 1, 1, 3, 0)
    assert schedule_run_key("nightly", tick) == (
        "schedule:nightly:2024-01-01T03:00:00+00:00"
    )
    assert schedule_run_key("nightly", tick, 2).endswith("+00:00:2")


# ---------------------------------------------------------------------- schedules


def test_the_first_evaluation_starts_counting_and_submits_nothing() -> None:
    now = _t(2024, 1, 1, 10, 0, 30)
    decision = decide_schedule("0 * * * *", "UTC", None, now)
    assert decision.tick is None
    assert decision.last_tick_at == now


def test_a_tick_evaluated_on_time_is_submitted_once() -> None:
    last = _t(2024, 1, 1, 10, 30)
    now = _t(2024, 1, 1, 11, 0, 2)
    decision = decide_schedule("0 * * * *", "UTC", last, now)
    assert decision.tick == _t(2024, 1, 1, 11, 0)
    again = decide_schedule("0 * * * *", "UTC", decision.last_tick_at, now + 5)
    assert again.tick is None
    assert not again.changed


def test_missed_ticks_are_skipped_by_default() -> None:
    last = _t(2024, 1, 1, 10, 0)
    now = _t(2024, 1, 1, 13, 30)
    decision = decide_schedule("0 * * * *", "UTC", last, now)
    assert decision.tick is None
    assert decision.missed == _t(2024, 1, 1, 13, 0)
    assert decision.last_tick_at == _t(2024, 1, 1, 13, 0)


def test_catch_up_submits_only_the_most_recent_missed_tick() -> None:
    last = _t(2024, 1, 1, 10, 0)
    now = _t(2024, 1, 1, 13, 30)
    decision = decide_schedule("0 * * * *", "UTC", last, now, catch_up=True)
    assert decision.tick == _t(2024, 1, 1, 13, 0)
    assert decision.late
    again = decide_schedule(
        "0 * * * *", "UTC", decision.last_tick_at, now, catch_up=True
    )
    assert again.tick is None


def test_a_tick_within_the_grace_after_a_restart_is_still_on_time() -> None:
    last = _t(2024, 1, 1, 10, 30)
    now = _t(2024, 1, 1, 11, 0) + ON_TIME_GRACE_S - 1
    assert decide_schedule("0 * * * *", "UTC", last, now).tick == _t(2024, 1, 1, 11, 0)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.floats(min_value=1, max_value=4000), min_size=1, max_size=40),
    catch_up=st.booleans(),
)
def test_no_tick_is_ever_submitted_twice_or_out_of_order(
    steps: list[float], catch_up: bool
) -> None:
    now = _t(2024, 1, 1, 0, 0)
    last: float | None = None
    submitted: list[float] = []
    for step in steps:
        now += step
        decision = decide_schedule("*/15 * * * *", "UTC", last, now, catch_up=catch_up)
        if decision.tick is not None:
            assert decision.tick <= now
            submitted.append(decision.tick)
        last = decision.last_tick_at
    assert submitted == sorted(set(submitted))
    for tick in submitted:
        assert datetime.fromtimestamp(tick, UTC).minute % 15 == 0


def test_a_sensor_is_due_at_once_then_every_interval() -> None:
    state = TriggerState()
    assert sensor_due_at(30, state) is None
    state.last_evaluation_at = 100.0
    assert sensor_due_at(30, state) == 130.0


def test_stored_state_that_cannot_be_read_starts_fresh() -> None:
    assert TriggerState.from_stored({"cursor": 5}) == TriggerState()
    assert TriggerState.from_stored({"cursor": "5"}).cursor == "5"
    assert TriggerState.from_stored(None) == TriggerState()


# --------------------------------------------------------------------- automation

EAGER = AutomationRule(kind="eager")
ORDER = ["raw", "clean", "report"]
UPSTREAM = {"raw": (), "clean": ("raw",), "report": ("clean",)}


def _decide(
    materialized: dict[str, float],
    *,
    rules: dict[str, AutomationRule] | None = None,
    active: tuple[str, ...] = (),
    requested: dict[str, float] | None = None,
    since: float = 0.0,
    now: float = 1000.0,
) -> list[str]:
    decision = decide_automation(
        rules if rules is not None else {"clean": EAGER, "report": EAGER},
        ORDER,
        UPSTREAM,
        materialized,
        active,
        requested or {},
        since,
        now,
    )
    return decision.selection


def test_eager_requests_an_asset_whose_upstream_is_newer() -> None:
    assert _decide({"raw": 10.0, "clean": 5.0, "report": 6.0}) == ["clean", "report"]
    assert _decide({"raw": 10.0, "clean": 11.0, "report": 12.0}) == []


def test_eager_requests_a_never_materialized_asset_once_upstream_exists() -> None:
    assert _decide({}) == []
    assert _decide({"raw": 10.0}) == ["clean", "report"]


def test_eager_does_not_request_an_asset_already_queued_or_running() -> None:
    decision = decide_automation(
        {"clean": EAGER},
        ORDER,
        UPSTREAM,
        {"raw": 10.0},
        ["clean"],
        {},
        0.0,
        1000.0,
    )
    assert decision.selection == []
    assert decision.held == ["clean"]


def test_a_failed_request_is_not_repeated_until_upstream_changes_again() -> None:
    requested = {"clean": 10.0, "report": 10.0}
    assert _decide({"raw": 10.0}, requested=requested) == []
    assert _decide({"raw": 11.0}, requested=requested) == ["clean", "report"]


def test_on_cron_requests_once_per_tick_after_the_start() -> None:
    rules = {"raw": AutomationRule(kind="on_cron", cron="0 * * * *")}
    since = _t(2024, 1, 1, 10, 30)
    assert _decide({}, rules=rules, since=since, now=since + 60) == []
    eleven = _t(2024, 1, 1, 11, 0)
    decision = decide_automation(rules, ORDER, UPSTREAM, {}, (), {}, since, eleven + 5)
    assert decision.selection == ["raw"]
    assert decision.watermarks == {"raw": eleven}
    assert (
        _decide(
            {}, rules=rules, requested=decision.watermarks, since=since, now=eleven + 60
        )
        == []
    )
    # Materialized after the tick by someone else: no request for that tick.
    assert _decide({"raw": eleven + 1}, rules=rules, since=since, now=eleven + 60) == []
