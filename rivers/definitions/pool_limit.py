"""``rs.PoolLimit``: a pool's limit with time windows and a rate, and ``pool_limits``
checked.

``pool_limits`` values are an int (the slots) or a ``PoolLimit`` whose ``windows`` map
cron expressions to the slots in force during them (``rivers.core.limit_windows``
decides which is in force).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, final

import msgspec
from msgspec.structs import force_setattr

from rivers._repr import short_repr
from rivers._validate import MAX_LIMIT, check_int, check_pool_name
from rivers.core.rates import MAX_BURST, parse_rate
from rivers.core.triggers import check_timezone
from rivers.errors import ConfigError

if TYPE_CHECKING:
    # rivers.core.limit_windows (and cronsim) loads with the first window.
    from rivers.core.limit_windows import LimitSchedule

__all__ = ("PoolLimit", "check_pool_limits", "check_windows")


@final
class PoolLimit(msgspec.Struct, frozen=True):
    """A pool's limit, with other limits in force during time windows.

    ``rs.PoolLimit(10, windows={"0 8-18 * * 1-5": 2})``: 2 slots 08:00-18:59 on
    weekdays, 10 otherwise. The limit in force changes at the window edges without a
    restart; steps holding slots above a lowered limit finish, and no new step starts
    until the pool is under it. ``rivers pools list`` shows the limit in force, its
    window and the next change. A ``rivers pools set`` override wins over all of it.

    Args:
        slots: the limit outside every window. Accepts: an int in 0..10,000.
        rate: how many steps may start per period, across every process sharing
            the storage (a token bucket kept in storage), beside how many may run
            at once. Accepts: None (no rate) or COUNT/PERIOD such as ``"100/min"``,
            ``"5/s"``, ``"1/30s"``, ``"1000/hour"``, ``"10/day"`` (COUNT
            1..1,000,000; a period of 1 ms..366 days).
        burst: how many steps may start at once after a quiet spell (the
            bucket's size). With 1, starts are spaced evenly and no period ever
            holds more than COUNT starts; with B, at most B - 1 + COUNT. Accepts:
            an int in 1..10,000, only with a rate.
        windows: cron expression to the slots in force during it. A window is read
            per whole hour: it is in force during every hour whose hour, day and month
            fields match (minute field ``0`` or ``*``). Where windows overlap, the
            lowest limit is in force. Accepts: a dict of 5-field cron expressions
            (minute field 0 or *) to ints in 0..10,000.
        timezone: the IANA timezone the windows are read in. Accepts: a known IANA
            name such as ``"UTC"`` or ``"Europe/Paris"``.
    """

    slots: int
    rate: str | None = None
    windows: Mapping[str, int] | None = None
    timezone: str = "UTC"
    burst: int | None = None

    def __post_init__(self) -> None:
        check_int(self.slots, "PoolLimit.slots", minimum=0, maximum=MAX_LIMIT)
        if self.rate is not None:
            if not isinstance(self.rate, str):
                raise ConfigError(
                    f"PoolLimit.rate must be a string such as '100/min', got "
                    f"{short_repr(self.rate)}"
                )
            force_setattr(self, "rate", parse_rate(self.rate, "PoolLimit.rate").text)
            burst = 1 if self.burst is None else self.burst
            force_setattr(
                self,
                "burst",
                check_int(burst, "PoolLimit.burst", minimum=1, maximum=MAX_BURST),
            )
        elif self.burst is not None:
            raise ConfigError(
                f"PoolLimit(burst={short_repr(self.burst)}) needs a rate; pass "
                "rate='COUNT/PERIOD' too, or drop burst"
            )
        check_timezone(self.timezone, "PoolLimit.timezone")
        force_setattr(self, "windows", check_windows(self.windows, "PoolLimit.windows"))

    @property
    def declared_rate(self) -> tuple[str, int] | None:
        """The rate and burst storage records for this pool (None: no rate)."""
        if self.rate is None:
            return None
        return (self.rate, self.burst or 1)

    def schedule(self) -> LimitSchedule:
        """Return the pure schedule that says which limit is in force when."""
        from rivers.core.limit_windows import LimitSchedule

        return LimitSchedule.of(self.slots, self.windows, self.timezone)


def check_windows(windows: object, field: str) -> dict[str, int] | None:
    """Return ``windows`` checked: cron expressions (whole hours) to limits.

    Raises:
        ConfigError: not a dict, a key that is not a window, or a bad limit.
    """
    if windows is None:
        return None
    if not isinstance(windows, Mapping):
        raise ConfigError(
            f"{field} must be a dict of cron expression to limit, got "
            f"{short_repr(windows)}"
        )
    from rivers.core.limit_windows import hour_cron

    checked: dict[str, int] = {}
    for cron, limit in windows.items():
        if not isinstance(cron, str) or hour_cron(cron) is None:
            raise ConfigError(
                f"{field} key {short_repr(cron)} is not a window; use a "
                "5-field cron expression whose minute field is 0 or *, such as "
                "'0 8-18 * * 1-5'"
            )
        checked[cron] = check_int(
            limit, f"{field}[{cron!r}]", minimum=0, maximum=MAX_LIMIT
        )
    return checked


def check_pool_limits(pool_limits: object) -> dict[str, PoolLimit]:
    """Return ``pool_limits`` validated: pool name to a ``PoolLimit``.

    Raises:
        ConfigError: not a dict, a bad pool name, or a value that is neither an int
            in 0..10,000 nor a ``PoolLimit``.
    """
    if pool_limits is None:
        return {}
    if not isinstance(pool_limits, Mapping):
        raise ConfigError(
            f"pool_limits must be a dict of pool name to limit, got {short_repr(pool_limits)}"
        )
    checked: dict[str, PoolLimit] = {}
    for name, limit in pool_limits.items():
        check_pool_name(name, "pool_limits key")
        if isinstance(limit, PoolLimit):
            checked[name] = limit
            continue
        slots = check_int(limit, f"pool_limits[{name!r}]", minimum=0, maximum=MAX_LIMIT)
        checked[name] = PoolLimit(slots)
    return checked
