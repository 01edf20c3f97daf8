"""Triggers: ``@rs.schedule``, ``@rs.sensor`` and ``rs.AutomationCondition``.

They only describe *when* runs are wanted; the runtime's trigger actor evaluates them
and submits their runs through the run queue, tagged ``rivers/schedule=<name>``,
``rivers/sensor=<name>`` or ``rivers/automation=true``. Everything is validated
here, at definition time (selections against the repository in ``CodeRepository``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Literal, final, overload
from zoneinfo import ZoneInfo

import msgspec
from msgspec.structs import force_setattr

from rivers._durations import MIN_INTERVAL_S, Duration, parse_duration
from rivers._repr import short_repr
from rivers._validate import check_asset_name, check_tags
from rivers.core.triggers import check_cron, check_timezone, next_tick
from rivers.definitions.asset import Asset
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
MAX_CURSOR_LENGTH = 64 * 1024

Selection = Iterable[Asset[Any, Any] | str] | Asset[Any, Any] | str | None


def _selection(selection: object, where: str) -> tuple[str, ...] | None:
    if selection is None:
        return None
    if isinstance(selection, str | Asset):
        selection = [selection]
    if not isinstance(selection, Iterable):
        raise ConfigError(f"{where}: selection must be a list of assets or names")
    names: list[str] = []
    for item in selection:
        name = item.name if isinstance(item, Asset) else item
        names.append(check_asset_name(name, f"{where}: selection entry"))
    return tuple(dict.fromkeys(names))


def _takes_context(fn: Callable[..., Any], where: str) -> bool:
    """Return whether ``fn`` takes the context (it may take nothing or one argument)."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # a builtin or C callable: pass the context
        return True
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        and p.default is p.empty
    ]
    if len(positional) > 1:
        raise ConfigError(
            f"{where}: the function takes {len(positional)} arguments; it must take "
            "one (the context) or none"
        )
    return bool(positional) or any(p.kind is p.VAR_POSITIONAL for p in parameters)


def _name(name: object, fn: object, where: str) -> str:
    value = name if name is not None else getattr(fn, "__name__", None)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} needs a name; pass name=...")
    return check_asset_name(value, f"{where} name")


# ---------------------------------------------------------------------- schedules


@final
class ScheduleContext:
    """What a schedule function is told: which schedule, and which tick.

    Args:
        schedule_name: the schedule's name.
        scheduled_at: the tick, an aware datetime in the schedule's timezone.
    """

    __slots__ = ("schedule_name", "scheduled_at")

    def __init__(self, *, schedule_name: str, scheduled_at: datetime) -> None:
        self.schedule_name = schedule_name
        self.scheduled_at = scheduled_at

    def __repr__(self) -> str:
        return (
            f"ScheduleContext(schedule_name={self.schedule_name!r}, "
            f"scheduled_at={self.scheduled_at.isoformat()!r})"
        )


@final
class Schedule:
    """Runs submitted at each tick of a cron expression.

    Usually made with ``@rs.schedule(cron=...)``. At each tick the trigger actor
    submits one run (tagged ``rivers/schedule=<name>``, run key
    ``schedule:<name>:<tick>``), so a tick is never submitted twice, even across a
    restart. Ticks missed while no runtime ran are skipped, unless ``catch_up`` is
    set: then the most recent missed tick is submitted once.

    Args:
        name: the schedule's name, unique among the repository's triggers.
        cron: a 5-field cron expression (or ``@hourly``, ``@daily``...).
        fn: optional ``fn()`` or ``fn(context: rs.ScheduleContext)`` returning None
            (submit the default run), a ``rs.RunRequest`` or a list of them (an
            empty list skips the tick). Requests without a selection get the
            schedule's.
        selection: the assets to run (default: all).
        tags: tags of every run (``rivers/schedule`` is added).
        timezone: the IANA timezone the cron expression is read in.
        catch_up: submit the most recent missed tick after a downtime.
        description: free text (default: the function's docstring).

    Raises:
        ConfigError: a bad cron expression, timezone, name, selection or tags.
    """

    __slots__ = (
        "catch_up",
        "cron",
        "description",
        "fn",
        "name",
        "selection",
        "tags",
        "takes_context",
        "timezone",
    )

    def __init__(
        self,
        *,
        name: str,
        cron: str,
        fn: Callable[..., Any] | None = None,
        selection: Selection = None,
        tags: Mapping[str, str] | None = None,
        timezone: str = "UTC",
        catch_up: bool = False,
        description: str | None = None,
    ) -> None:
        self.name = _name(name, fn, "schedule")
        where = f"schedule {self.name!r}"
        if fn is not None and not callable(fn):
            raise ConfigError(f"{where}: fn must be a function, got {short_repr(fn)}")
        self.fn = fn
        self.takes_context = fn is not None and _takes_context(fn, where)
        self.cron = check_cron(cron, f"{where}: cron")
        self.timezone = check_timezone(timezone, f"{where}: timezone")
        self.selection = _selection(selection, where)
        self.tags = check_tags(tags, f"{where}: tags")
        if not isinstance(catch_up, bool):
            raise ConfigError(f"{where}: catch_up must be True or False")
        self.catch_up = catch_up
        if description is not None and not isinstance(description, str):
            raise ConfigError(f"{where}: description must be a string")
        self.description = (
            description if description is not None or fn is None else inspect.getdoc(fn)
        )

    def next_tick(self, after: datetime) -> datetime | None:
        """Return the first tick strictly after ``after`` (aware), in its timezone."""
        tick = next_tick(self.cron, self.timezone, after.timestamp())
        return None if tick is None else datetime.fromtimestamp(tick, self.zone)

    @property
    def zone(self) -> ZoneInfo:
        """The schedule's timezone."""
        return ZoneInfo(self.timezone)

    def __repr__(self) -> str:
        return (
            f"Schedule({self.name!r}, cron={self.cron!r}, timezone={self.timezone!r})"
        )


def schedule(
    *,
    cron: str,
    selection: Selection = None,
    tags: Mapping[str, str] | None = None,
    timezone: str = "UTC",
    name: str | None = None,
    catch_up: bool = False,
) -> Callable[[Callable[..., Any]], Schedule]:
    """Make a function a ``rs.Schedule`` (the function's name is its name).

    Example::

        @rs.schedule(cron="0 3 * * *", selection=["report"], timezone="Europe/Paris")
        def nightly() -> None: ...

    Raises:
        ConfigError: a bad cron expression, timezone, name, selection or tags.
    """

    def decorate(fn: Callable[..., Any]) -> Schedule:
        return Schedule(
            name=name if name is not None else getattr(fn, "__name__", ""),
            cron=cron,
            fn=fn,
            selection=selection,
            tags=tags,
            timezone=timezone,
            catch_up=catch_up,
        )

    # Fail at the decorator line for a bad cron or timezone, not only at the def.
    check_cron(cron, "schedule cron")
    check_timezone(timezone, "schedule timezone")
    return decorate


# ------------------------------------------------------------------------ sensors


@final
class SensorContext:
    """What a sensor function is told, and where it keeps its cursor.

    The context holds plain values, so a sensor can be unit-tested with
    ``fn(rs.SensorContext(cursor="41"))``.

    Args:
        cursor: the cursor stored by the previous evaluation (None at first).
        sensor_name: the sensor's name.
        last_evaluation_at: when the sensor was last evaluated (aware UTC).
        last_run_at: when the sensor last submitted a run (aware UTC).
        evaluated_at: the time of this evaluation (aware UTC).
    """

    __slots__ = (
        "_cursor",
        "cursor_updated",
        "evaluated_at",
        "last_evaluation_at",
        "last_run_at",
        "sensor_name",
    )

    def __init__(
        self,
        *,
        cursor: str | None = None,
        sensor_name: str = "sensor",
        last_evaluation_at: datetime | None = None,
        last_run_at: datetime | None = None,
        evaluated_at: datetime | None = None,
    ) -> None:
        self._cursor = cursor
        self.cursor_updated = False
        self.sensor_name = sensor_name
        self.last_evaluation_at = last_evaluation_at
        self.last_run_at = last_run_at
        self.evaluated_at = evaluated_at

    @property
    def cursor(self) -> str | None:
        """The cursor: the previous evaluation's, or the one set by update_cursor."""
        return self._cursor

    def update_cursor(self, value: str | None) -> None:
        """Set the cursor; it is stored when this evaluation succeeds.

        Raises:
            TypeError: ``value`` is not a string or None.
            ValueError: ``value`` is longer than 64 KiB.
        """
        if value is not None and not isinstance(value, str):
            raise TypeError(
                f"a sensor cursor must be a string or None, got {short_repr(value)}; "
                "encode it, e.g. with str() or json.dumps()"
            )
        if value is not None and len(value) > MAX_CURSOR_LENGTH:
            raise ValueError(
                f"a sensor cursor must be at most {MAX_CURSOR_LENGTH} characters"
            )
        self._cursor = value
        self.cursor_updated = True

    def __repr__(self) -> str:
        return (
            f"SensorContext(sensor_name={self.sensor_name!r}, cursor={self.cursor!r})"
        )


@final
class Sensor:
    """A function evaluated on an interval that decides which runs to submit.

    Usually made with ``@rs.sensor(interval="30s")``. ``fn(context)`` returns a
    ``rs.RunRequest``, a list of them, or None. Runs are tagged
    ``rivers/sensor=<name>``; a request's ``run_key`` already used by this sensor is
    not submitted again. ``context.cursor`` persists between evaluations (stored
    when the evaluation succeeds). An exception is recorded as a TRIGGER_FAILURE
    event and the sensor is evaluated again after the next interval.

    Args:
        fn: ``fn(context: rs.SensorContext)`` (or ``fn()``), sync or async. Sync
            functions run in a worker thread.
        name: unique among the repository's triggers (default: the function name).
        interval: the time between evaluations (a duration from 10ms to 365d).
        selection: the assets of requests that name none (default: all).
        tags: tags of every run (``rivers/sensor`` is added).
        description: free text (default: the function's docstring).

    Raises:
        ConfigError: a bad name, interval, selection, tags or function signature.
    """

    __slots__ = (
        "description",
        "fn",
        "interval_s",
        "name",
        "selection",
        "tags",
        "takes_context",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        interval: Duration = "30s",
        selection: Selection = None,
        tags: Mapping[str, str] | None = None,
        description: str | None = None,
    ) -> None:
        if not callable(fn):
            raise ConfigError(
                f"@rs.sensor must decorate a function, got {short_repr(fn)}"
            )
        self.name = _name(name, fn, "sensor")
        where = f"sensor {self.name!r}"
        self.fn = fn
        self.takes_context = _takes_context(fn, where)
        self.interval_s = parse_duration(
            interval, f"{where}: interval", minimum=MIN_INTERVAL_S
        )
        self.selection = _selection(selection, where)
        self.tags = check_tags(tags, f"{where}: tags")
        if description is not None and not isinstance(description, str):
            raise ConfigError(f"{where}: description must be a string")
        self.description = (
            description if description is not None else inspect.getdoc(fn)
        )

    def __repr__(self) -> str:
        return f"Sensor({self.name!r}, interval_s={self.interval_s:g})"


@overload
def sensor(fn: Callable[..., Any], /) -> Sensor: ...


@overload
def sensor(
    *,
    interval: Duration = "30s",
    name: str | None = None,
    selection: Selection = None,
    tags: Mapping[str, str] | None = None,
) -> Callable[[Callable[..., Any]], Sensor]: ...


def sensor(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    interval: Duration = "30s",
    name: str | None = None,
    selection: Selection = None,
    tags: Mapping[str, str] | None = None,
) -> Sensor | Callable[[Callable[..., Any]], Sensor]:
    """Make ``fn(context: rs.SensorContext)`` a ``rs.Sensor`` (bare or with options).

    Example::

        @rs.sensor(interval="30s", selection=["ingest"])
        def new_files(context: rs.SensorContext) -> list[rs.RunRequest]: ...

    Raises:
        ConfigError: a bad name, interval, selection, tags or function signature.
    """
    if fn is not None:
        return Sensor(fn, name=name, interval=interval, selection=selection, tags=tags)
    parse_duration(interval, "sensor interval", minimum=MIN_INTERVAL_S)

    def decorate(function: Callable[..., Any]) -> Sensor:
        return Sensor(
            function, name=name, interval=interval, selection=selection, tags=tags
        )

    return decorate


# --------------------------------------------------------------------- automation


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
