"""Schedules, sensors and automation conditions are validated when defined."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

import rivers as rs


@rs.Asset
def orders() -> int:
    return 1


@rs.Asset(automation_condition=rs.AutomationCondition.eager())
def report(orders: int) -> int:
    return orders


def test_schedule_decorator_builds_a_schedule_named_after_the_function() -> None:
    @rs.schedule(cron="0 3 * * *", selection=[orders], tags={"team": "core"})
    def nightly() -> None:
        """Rebuild the orders."""

    assert isinstance(nightly, rs.Schedule)
    assert nightly.name == "nightly"
    assert nightly.selection == ("orders",)
    assert nightly.tags == {"team": "core"}
    assert nightly.description == "Rebuild the orders."
    assert not nightly.takes_context
    after = datetime(2024, 1, 1, 4, 0, tzinfo=UTC)
    assert nightly.next_tick(after) == datetime(2024, 1, 2, 3, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cron": "not a cron"}, "schedule cron 'not a cron' is not a cron expression"),
        ({"cron": "99 * * * *"}, "invalid: Bad minute"),
        ({"cron": "* * * * *", "timezone": "Moon/Base"}, "'Moon/Base' is not a known"),
        ({"cron": "* * * * *", "tags": {"k": 1}}, "tags"),
    ],
)
def test_bad_schedule_options_are_config_errors(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(rs.ConfigError, match=message):

        @rs.schedule(**options)
        def every_minute() -> None: ...


def test_a_schedule_function_may_take_the_context_but_nothing_more() -> None:
    @rs.schedule(cron="@hourly")
    def hourly(context: rs.ScheduleContext) -> None: ...

    assert hourly.takes_context
    assert hourly.cron == "0 * * * *"
    with pytest.raises(rs.ConfigError, match="takes 2 arguments"):

        @rs.schedule(cron="@hourly")
        def bad(a: int, b: int) -> None: ...


def test_sensor_decorator_bare_and_with_options() -> None:
    @rs.sensor
    def plain(context: rs.SensorContext) -> None: ...

    @rs.sensor(interval="5m", name="files", selection=["orders"])
    def new_files(context: rs.SensorContext) -> None: ...

    assert (plain.name, plain.interval_s) == ("plain", 30.0)
    assert (new_files.name, new_files.interval_s) == ("files", 300.0)
    assert new_files.selection == ("orders",)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"interval": "0s"}, "interval must be a duration from 10ms to 365d"),
        ({"interval": "soon"}, "interval must be a duration"),
        ({"name": "has space"}, "not a valid asset name"),
        ({"selection": [3]}, "selection entry 3"),
    ],
)
def test_bad_sensor_options_are_config_errors(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(rs.ConfigError, match=message):

        @rs.sensor(**options)
        def watch(context: rs.SensorContext) -> None: ...


def test_sensor_context_is_usable_without_storage() -> None:
    context = rs.SensorContext(cursor="41")
    assert context.cursor == "41"
    context.update_cursor("42")
    assert context.cursor == "42"
    assert context.cursor_updated
    with pytest.raises(TypeError, match="must be a string or None"):
        context.update_cursor(43)  # type: ignore[arg-type]


def test_automation_conditions_validate_their_cron() -> None:
    condition = rs.AutomationCondition.on_cron("@daily", timezone="Europe/Paris")
    assert condition.cron == "0 0 * * *"
    assert condition.describe() == "on_cron(0 0 * * *, Europe/Paris)"
    assert rs.AutomationCondition.eager().describe() == "eager"
    with pytest.raises(rs.ConfigError, match="on_cron cron"):
        rs.AutomationCondition.on_cron("every hour")
    with pytest.raises(rs.ConfigError, match="timezone"):
        rs.AutomationCondition.on_cron("@daily", timezone="Nowhere")
    with pytest.raises(rs.ConfigError, match="kind 'sometimes' is unknown"):
        rs.AutomationCondition(kind="sometimes")  # type: ignore[arg-type]


# ------------------------------------------------------------------ repositories


def test_a_trigger_selecting_an_unknown_asset_is_rejected() -> None:
    @rs.schedule(cron="@daily", selection=["missing"])
    def daily() -> None: ...

    with pytest.raises(
        rs.ConfigError, match="schedule 'daily' selects 'missing', which is not in"
    ):
        rs.CodeRepository([orders], schedules=[daily])


def test_two_triggers_with_one_name_are_rejected() -> None:
    @rs.schedule(cron="@daily", name="sync")
    def daily() -> None: ...

    @rs.sensor(name="sync")
    def watch(context: rs.SensorContext) -> None: ...

    with pytest.raises(rs.ConfigError, match="two triggers are named 'sync'"):
        rs.CodeRepository([orders], schedules=[daily], sensors=[watch])


def test_triggers_must_come_from_the_decorators() -> None:
    def undecorated() -> None: ...

    with pytest.raises(rs.ConfigError, match=r"must be made with @rs.schedule"):
        rs.CodeRepository([orders], schedules=[undecorated])  # type: ignore[list-item]
    with pytest.raises(rs.ConfigError, match=r"sensors=...\) must be a list"):
        rs.CodeRepository([orders], sensors="watch")  # type: ignore[arg-type]


def test_an_automation_condition_must_be_an_automation_condition() -> None:
    @rs.Asset(automation_condition="eager")
    def thing() -> int:
        return 1

    with pytest.raises(rs.ConfigError, match="asset 'thing': automation_condition"):
        rs.CodeRepository([thing])


def test_repository_reports_its_automation_conditions() -> None:
    repo = rs.CodeRepository([orders, report])
    assert repo.automation_conditions == {"report": rs.AutomationCondition.eager()}
    assert repo.has_triggers
    assert not rs.CodeRepository([orders]).has_triggers
