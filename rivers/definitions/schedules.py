"""Schedules: ``@rs.schedule`` and ``rs.Schedule``, runs at each tick of a cron.

The trigger actor (``rivers.actors.triggers``) submits their runs, tagged
``rivers/schedule=<name>``; everything is validated here, at definition time.
"""

from __future__ import annotations

import inspect
from datetime import datetime
from typing import TYPE_CHECKING, Any, final
from zoneinfo import ZoneInfo

from rivers._repr import short_repr
from rivers._validate import check_tags
from rivers.core.triggers import check_cron, check_timezone, next_tick
from rivers.definitions.trigger_checks import (
    Selection,
    check_selection,
    takes_context,
    trigger_name,
)
from rivers.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ("Schedule", "ScheduleContext", "schedule")


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
        self.name = trigger_name(name, fn, "schedule")
        where = f"schedule {self.name!r}"
        if fn is not None and not callable(fn):
            raise ConfigError(f"{where}: fn must be a function, got {short_repr(fn)}")
        self.fn = fn
        self.takes_context = fn is not None and takes_context(fn, where)
        self.cron = check_cron(cron, f"{where}: cron")
        self.timezone = check_timezone(timezone, f"{where}: timezone")
        self.selection = check_selection(selection, where)
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
