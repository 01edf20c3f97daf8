"""The triggers a runtime evaluates, and the run requests their functions ask for.

Pure functions, no I/O. ``collect_triggers`` gathers the schedules, sensors and
automation conditions of a runtime's repositories. ``schedule_requests`` and
``sensor_requests`` turn what a schedule or sensor function returned into the
requests to submit: tagged with the trigger's name, with its selection when they
name none, and keyed (``schedule:<name>:...``, ``sensor:<name>:...``) so that a
tick or a sensor's run key is submitted once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rivers.core.triggers import TriggerKind, schedule_run_key, state_key
from rivers.definitions.requests import RunRequest
from rivers.definitions.triggers import SCHEDULE_TAG, SENSOR_TAG
from rivers.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rivers.definitions.repository import CodeRepository
    from rivers.definitions.triggers import Schedule, Sensor

__all__ = (
    "Trigger",
    "as_requests",
    "collect_triggers",
    "schedule_requests",
    "sensor_requests",
)


@dataclass(frozen=True, slots=True)
class Trigger:
    """One schedule, one sensor, or the automation conditions of one repository."""

    kind: TriggerKind
    name: str
    repository: CodeRepository
    schedule: Schedule | None = None
    sensor: Sensor | None = None

    @property
    def key(self) -> str:
        """The key its state is stored under."""
        return state_key(self.kind, self.name)

    @property
    def label(self) -> str:
        """How reports and logs name it: ``schedule 'nightly'``."""
        return f"{self.kind} {self.name!r}"


def collect_triggers(repositories: Sequence[CodeRepository]) -> list[Trigger]:
    """Return the triggers of ``repositories``, in the order they are evaluated.

    Raises:
        ConfigError: two repositories define triggers with the same name.
    """
    triggers: list[Trigger] = []
    owners: dict[str, str] = {}
    for repository in repositories:
        for schedule in repository.schedules:
            triggers.append(
                Trigger("schedule", schedule.name, repository, schedule=schedule)
            )
        for sensor in repository.sensors:
            triggers.append(Trigger("sensor", sensor.name, repository, sensor=sensor))
        if repository.automation_conditions:
            triggers.append(Trigger("automation", repository.name, repository))
    for trigger in triggers:
        if trigger.kind == "automation":
            continue
        other = owners.setdefault(trigger.name, trigger.repository.name)
        if other != trigger.repository.name:
            raise ConfigError(
                f"repositories {other!r} and {trigger.repository.name!r} both define "
                f"a trigger named {trigger.name!r}; trigger names share one storage, "
                "so rename one"
            )
    return triggers


def schedule_requests(
    schedule: Schedule, tick: float, result: object
) -> list[RunRequest]:
    """Return the runs to submit for ``tick``, given what ``schedule.fn`` returned.

    None (or no function) is the schedule's default run.

    Raises:
        TypeError: ``result`` is not a RunRequest, a list of them, or None.
    """
    where = f"schedule {schedule.name!r}"
    given = [RunRequest()] if result is None else as_requests(result, where)
    return [
        RunRequest(
            selection=schedule.selection if r.selection is None else r.selection,
            tags={**schedule.tags, **(r.tags or {}), SCHEDULE_TAG: schedule.name},
            priority=r.priority,
            run_key=(
                schedule_run_key(schedule.name, tick, index)
                if r.run_key is None
                else f"schedule:{schedule.name}:{r.run_key}"
            ),
        )
        for index, r in enumerate(given)
    ]


def sensor_requests(sensor: Sensor, result: object) -> list[RunRequest]:
    """Return the runs to submit, given what ``sensor.fn`` returned (None: none).

    Raises:
        TypeError: ``result`` is not a RunRequest, a list of them, or None.
    """
    where = f"sensor {sensor.name!r}"
    return [
        RunRequest(
            selection=sensor.selection if r.selection is None else r.selection,
            tags={**sensor.tags, **(r.tags or {}), SENSOR_TAG: sensor.name},
            priority=r.priority,
            run_key=None if r.run_key is None else f"sensor:{sensor.name}:{r.run_key}",
        )
        for r in ([] if result is None else as_requests(result, where))
    ]


def as_requests(result: object, where: str) -> list[RunRequest]:
    """Return ``result`` (a RunRequest or a list of them) as a list.

    Raises:
        TypeError: ``result`` is anything else; the message names ``where``.
    """
    if isinstance(result, RunRequest):
        return [result]
    if isinstance(result, list | tuple) and all(
        isinstance(r, RunRequest) for r in result
    ):
        return list(result)
    raise TypeError(
        f"{where} returned {result!r}; return a rs.RunRequest, a list of them, or None"
    )
