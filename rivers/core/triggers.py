"""When triggers fire: cron ticks, missed ticks, sensor intervals, automation, decided.

Everything here is pure: times are epoch seconds passed in (from the runtime's
injected clock), nothing reads the clock or awaits. The trigger actor persists the
``TriggerState`` these functions read and return.

- A schedule's ticks are the cron times in its timezone (DST handled by cronsim, with
  Debian cron's rules for fixed-time jobs). Ticks up to the first evaluation are not
  due: a new schedule starts counting from when it was first seen.
- A tick is *on time* when it is evaluated within ``ON_TIME_GRACE_S`` of it. Older
  ticks were missed (the daemon was down): skipped by default; with ``catch_up`` the
  most recent missed tick is submitted, once. A tick is never submitted twice: the
  last handled tick is stored, and its run key is unique in storage.
- Automation: an *eager* asset needs a run when an upstream was materialized after
  it (and after the upstream state it was last requested for), or when an upstream
  is requested in the same evaluation. An *on_cron* asset needs a run when a cron
  tick passed after its latest materialization and after the tick it was last
  requested for. An asset in a queued or in-flight run is never requested again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from cronsim import CronSim, CronSimError

from rivers._repr import short_repr
from rivers.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = (
    "CRON_ALIASES",
    "ON_TIME_GRACE_S",
    "AutomationDecision",
    "AutomationRule",
    "ScheduleDecision",
    "TriggerKind",
    "TriggerState",
    "check_cron",
    "check_timezone",
    "decide_automation",
    "decide_schedule",
    "describe_tick",
    "latest_tick",
    "next_tick",
    "schedule_due_at",
    "schedule_run_key",
    "sensor_due_at",
    "state_key",
    "tick_iso",
)

ON_TIME_GRACE_S = 60.0
"""A tick evaluated at most this long after its time is on time, not missed."""

CRON_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_PROBE = datetime(2024, 1, 1, tzinfo=UTC)


class TriggerState(msgspec.Struct, kw_only=True):
    """What a trigger remembers between evaluations (stored as JSON in storage).

    Times are epoch seconds. ``requested`` (automation only) maps an asset to the
    watermark it was last requested for: the newest upstream materialization time
    (eager) or the cron tick (on_cron).
    """

    last_tick_at: float | None = None
    cursor: str | None = None
    last_evaluation_at: float | None = None
    last_run_at: float | None = None
    last_result: str | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    last_run_ids: list[str] = msgspec.field(default_factory=list)
    since: float | None = None
    requested: dict[str, float] = msgspec.field(default_factory=dict)
    requested_at: dict[str, float] = msgspec.field(default_factory=dict)

    @classmethod
    def from_stored(cls, value: object) -> TriggerState:
        """Return the state stored as ``value``; a fresh one if absent or unreadable."""
        if value is None:
            return cls()
        try:
            return msgspec.convert(value, cls)
        except msgspec.ValidationError:
            return cls()


TriggerKind = Literal["schedule", "sensor", "automation"]


def state_key(kind: TriggerKind, name: str) -> str:
    """Return the storage key of a trigger's state (``trigger.sensor.<name>``).

    Automation state is kept per repository: ``name`` is the repository's name.
    """
    return f"trigger.{kind}.{name}"


# --------------------------------------------------------------------------- cron


def check_cron(expression: object, field: str = "cron") -> str:
    """Return ``expression`` as a 5-field cron expression (aliases expanded).

    Raises:
        ConfigError: not a string, not 5 fields, or a field out of range.
    """
    if not isinstance(expression, str):
        raise ConfigError(
            f"{field} must be a cron expression string such as '*/5 * * * *', "
            f"got {short_repr(expression)}"
        )
    text = " ".join(expression.split())
    text = CRON_ALIASES.get(text.lower(), text)
    if len(text.split()) != 5:
        raise ConfigError(
            f"{field} {short_repr(expression)} is not a cron expression; use 5 fields "
            "'minute hour day-of-month month day-of-week' such as '0 3 * * *'"
        )
    try:
        next(CronSim(text, _PROBE))
    except CronSimError as exc:
        raise ConfigError(
            f"{field} {short_repr(expression)} is invalid: {exc}"
        ) from exc
    except StopIteration:
        raise ConfigError(f"{field} {short_repr(expression)} never fires") from None
    return text


def check_timezone(name: object, field: str = "timezone") -> str:
    """Return ``name`` if it is a known IANA timezone (``"UTC"``, ``"Europe/Paris"``).

    Raises:
        ConfigError: not a string, or no such timezone.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(
            f"{field} must be an IANA timezone name, got {short_repr(name)}"
        )
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long
        raise ConfigError(
            f"{field} {short_repr(name)} is not a known timezone; use an IANA name such as "
            "'UTC' or 'Europe/Paris'"
        ) from None
    return name


def next_tick(cron: str, timezone: str, after: float) -> float | None:
    """Return the first tick strictly after ``after`` (epoch s), or None if none."""
    start = datetime.fromtimestamp(after, ZoneInfo(timezone))
    try:
        return next(CronSim(cron, start)).timestamp()
    except StopIteration:
        return None


def latest_tick(cron: str, timezone: str, at: float) -> float | None:
    """Return the last tick at or before ``at`` (epoch s), or None if none."""
    # Reverse iteration yields ticks strictly before its start; ticks are whole
    # seconds, so starting one second past floor(at) includes a tick at ``at``.
    start = datetime.fromtimestamp(math.floor(at) + 1, ZoneInfo(timezone))
    try:
        return next(CronSim(cron, start, reverse=True)).timestamp()
    except StopIteration:
        return None


def tick_iso(tick: float) -> str:
    """Return a tick as an ISO 8601 UTC string (``2024-01-01T03:00:00+00:00``)."""
    return datetime.fromtimestamp(tick, UTC).isoformat()


def schedule_run_key(name: str, tick: float, index: int = 0) -> str:
    """Return the run key of a schedule's tick (one per request of that tick)."""
    key = f"schedule:{name}:{tick_iso(tick)}"
    return key if index == 0 else f"{key}:{index}"


# ---------------------------------------------------------------------- schedules


@dataclass(frozen=True, slots=True)
class ScheduleDecision:
    """What to do with a schedule now.

    ``tick`` is the tick to submit (or None); ``last_tick_at`` is what to store;
    ``missed`` is the most recent tick skipped because it was missed; ``late`` says
    the submitted tick is a catch-up of a missed one.
    """

    tick: float | None
    last_tick_at: float
    missed: float | None = None
    late: bool = False

    @property
    def changed(self) -> bool:
        """Whether anything must be stored."""
        return self.tick is not None or self.missed is not None


def decide_schedule(
    cron: str,
    timezone: str,
    last_tick_at: float | None,
    now: float,
    *,
    catch_up: bool = False,
    grace_s: float = ON_TIME_GRACE_S,
) -> ScheduleDecision:
    """Decide which tick of a schedule is due at ``now``.

    Args:
        cron: a checked cron expression.
        timezone: a checked timezone name.
        last_tick_at: the last tick handled (submitted or skipped); None the first
            time, when counting starts at ``now``.
        now: the current time (epoch s).
        catch_up: submit the most recent missed tick instead of skipping it.
        grace_s: how late a tick may be evaluated and still count as on time.

    Returns:
        At most one tick to submit: ticks before the latest due one are never
        submitted (they are superseded by it).
    """
    if last_tick_at is None:
        return ScheduleDecision(tick=None, last_tick_at=now, missed=None)
    latest = latest_tick(cron, timezone, now)
    if latest is None or latest <= last_tick_at:
        return ScheduleDecision(tick=None, last_tick_at=last_tick_at)
    if now - latest <= grace_s:
        return ScheduleDecision(tick=latest, last_tick_at=latest)
    if catch_up:
        return ScheduleDecision(tick=latest, last_tick_at=latest, late=True)
    return ScheduleDecision(tick=None, last_tick_at=latest, missed=latest)


def schedule_due_at(cron: str, timezone: str, state: TriggerState) -> float | None:
    """Return when the schedule next needs an evaluation (None: right away)."""
    if state.last_tick_at is None:
        return None
    return next_tick(cron, timezone, state.last_tick_at)


# ------------------------------------------------------------------------ sensors


def sensor_due_at(interval_s: float, state: TriggerState) -> float | None:
    """Return when a sensor is next due (None: never evaluated, due right away)."""
    if state.last_evaluation_at is None:
        return None
    return state.last_evaluation_at + interval_s


# --------------------------------------------------------------------- automation


@dataclass(frozen=True, slots=True)
class AutomationRule:
    """An asset's automation condition as the core sees it."""

    kind: Literal["eager", "on_cron"]
    cron: str | None = None
    timezone: str = "UTC"


@dataclass(slots=True)
class AutomationDecision:
    """The assets to request now (dependency order) and the watermarks to store."""

    selection: list[str] = field(default_factory=list)
    watermarks: dict[str, float] = field(default_factory=dict)
    held: list[str] = field(default_factory=list)
    """Assets that needed a run but have one queued or in flight."""


def decide_automation(
    rules: Mapping[str, AutomationRule],
    order: Sequence[str],
    upstream: Mapping[str, Sequence[str]],
    materialized: Mapping[str, float],
    active: Iterable[str],
    requested: Mapping[str, float],
    since: float,
    now: float,
) -> AutomationDecision:
    """Decide which assets with an automation condition need a run now.

    Args:
        rules: the condition of each asset that has one.
        order: every asset in dependency order.
        upstream: each asset's upstream assets.
        materialized: each asset's latest materialization time.
        active: assets in a queued or in-flight run (never requested again).
        requested: each asset's watermark when it was last requested.
        since: when automation was first evaluated (cron ticks before it are
            not due).
        now: the current time.
    """
    busy = frozenset(active)
    decision = AutomationDecision()
    chosen: set[str] = set()
    for name in order:
        rule = rules.get(name)
        if rule is None:
            continue
        own = max(materialized.get(name, -math.inf), requested.get(name, -math.inf))
        if rule.kind == "eager":
            parents = upstream.get(name, ())
            newest = max(
                (materialized.get(p, -math.inf) for p in parents), default=-math.inf
            )
            needs = newest > own or any(p in chosen for p in parents)
            watermark = newest
        else:
            assert rule.cron is not None
            tick = latest_tick(rule.cron, rule.timezone, now)
            needs = tick is not None and tick > since and tick > own
            watermark = -math.inf if tick is None else tick
        if not needs:
            continue
        if name in busy:
            decision.held.append(name)
            continue
        chosen.add(name)
        decision.selection.append(name)
        if math.isfinite(watermark):
            decision.watermarks[name] = watermark
    return decision


def describe_tick(tick: float, timezone: str) -> str:
    """Return a tick in its schedule's timezone, for people (``2024-01-01 03:00 CET``)."""
    local = datetime.fromtimestamp(tick, ZoneInfo(timezone))
    return local.strftime("%Y-%m-%d %H:%M:%S %Z")
