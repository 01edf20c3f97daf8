"""Sensors: ``@rs.sensor`` and ``rs.Sensor``, functions evaluated on an interval.

The trigger actor (``rivers.actors.triggers``) evaluates them and submits the runs
they ask for, tagged ``rivers/sensor=<name>``; everything is validated here, at
definition time. ``rs.SensorContext`` carries the cursor between evaluations.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, final, overload

from rivers._durations import MIN_INTERVAL_S, Duration, parse_duration
from rivers._repr import short_repr
from rivers._validate import check_tags
from rivers.definitions.trigger_checks import (
    Selection,
    check_selection,
    takes_context,
    trigger_name,
)
from rivers.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime

__all__ = ("Sensor", "SensorContext", "sensor")

MAX_CURSOR_LENGTH = 64 * 1024


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
        self.name = trigger_name(name, fn, "sensor")
        where = f"sensor {self.name!r}"
        self.fn = fn
        self.takes_context = takes_context(fn, where)
        self.interval_s = parse_duration(
            interval, f"{where}: interval", minimum=MIN_INTERVAL_S
        )
        self.selection = check_selection(selection, where)
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
