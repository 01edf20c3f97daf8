"""Triggers: ``@rs.schedule``, ``@rs.sensor`` and ``rs.AutomationCondition``.

They only describe *when* runs are wanted; the runtime's trigger actor evaluates them
and submits their runs through the run queue, tagged ``rivers/schedule=<name>``,
``rivers/sensor=<name>`` or ``rivers/automation=true``. Everything is validated
at definition time (selections against the repository in ``CodeRepository``).
Schedules are defined in ``definitions/schedules.py``, sensors in
``definitions/sensors.py`` (both importable from here), automation conditions here.
"""

from __future__ import annotations

from typing import Literal, final

import msgspec
from msgspec.structs import force_setattr

from rivers.core.triggers import check_cron, check_timezone
from rivers.definitions.schedules import Schedule, ScheduleContext, schedule
from rivers.definitions.sensors import Sensor, SensorContext, sensor
from rivers.errors import ConfigError

__all__ = (
    "AUTOMATION_TAG",
    "SCHEDULE_TAG",
    "SENSOR_TAG",
    "AutomationCondition",
    "Schedule",
    "ScheduleContext",
    "Sensor",
    "SensorContext",
    "schedule",
    "sensor",
)

SCHEDULE_TAG = "rivers/schedule"
SENSOR_TAG = "rivers/sensor"
AUTOMATION_TAG = "rivers/automation"


@final
class AutomationCondition(msgspec.Struct, frozen=True, kw_only=True):
    """When the runtime materializes an asset on its own.

    Make one with ``AutomationCondition.eager()`` or ``.on_cron(cron)`` and pass it
    as ``@rs.Asset(automation_condition=...)``. Runs are tagged
    ``rivers/automation=true`` and go through the run queue; an asset already in a
    queued or in-flight run is not requested again.
    """

    kind: Literal["eager", "on_cron"]
    cron: str | None = None
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if self.kind not in ("eager", "on_cron"):
            raise ConfigError(
                f"AutomationCondition kind {self.kind!r} is unknown; use "
                "AutomationCondition.eager() or .on_cron(cron)"
            )
        if self.kind == "on_cron":
            force_setattr(self, "cron", check_cron(self.cron, "on_cron cron"))
        elif self.cron is not None:
            raise ConfigError("AutomationCondition.eager() takes no cron expression")
        check_timezone(self.timezone, "on_cron timezone")

    @classmethod
    def eager(cls) -> AutomationCondition:
        """Materialize the asset whenever an upstream asset was materialized after it.

        An upstream requested in the same evaluation counts too, so a chain of eager
        assets runs in one run.
        """
        return cls(kind="eager")

    @classmethod
    def on_cron(cls, cron: str, timezone: str = "UTC") -> AutomationCondition:
        """Materialize the asset once after each cron tick (unless it already was).

        Raises:
            ConfigError: a bad cron expression or timezone.
        """
        return cls(kind="on_cron", cron=cron, timezone=timezone)

    def describe(self) -> str:
        """Return ``eager`` or ``on_cron(0 * * * *)`` (with a non-UTC timezone)."""
        if self.kind == "eager":
            return "eager"
        zone = "" if self.timezone == "UTC" else f", {self.timezone}"
        return f"on_cron({self.cron}{zone})"
