"""Concurrency and backend configuration: retries, tag limits, the run queue, storage.

Each is a frozen msgspec Struct validated on construction: a bad value raises
``ConfigError`` naming the field, never later. The executor configurations are in
``rivers.definitions.executor_configs`` and ``rivers.executors.kubernetes_config``;
``rs.Executor`` builds them (``rivers.executors.configs``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, final

import msgspec
from msgspec.structs import force_setattr

from rivers._durations import (
    MAX_DEQUEUE_INTERVAL_S,
    MAX_LEASE_S,
    MAX_RETENTION_S,
    MAX_RETRY_DELAY_S,
    MIN_INTERVAL_S,
    MIN_LEASE_S,
    MIN_RETENTION_S,
    Duration,
    parse_duration,
)
from rivers._repr import short_repr
from rivers._validate import (
    MAX_LIMIT,
    check_int,
    check_tags,
)
from rivers.core.triggers import check_timezone
from rivers.definitions.pool_limit import check_windows
from rivers.errors import ConfigError

if TYPE_CHECKING:
    # Loaded by the methods that build them: the queue's and windows' cores (and
    # cronsim) stay out of `import rivers`.
    from rivers.core.limit_windows import LimitSchedule
    from rivers.core.queue import LimitRule

__all__ = (
    "RetryPolicy",
    "RunBackendConfig",
    "RunQueueConfig",
    "TagConcurrencyLimit",
    "check_tag_limits",
)


@final
class RetryPolicy(msgspec.Struct, frozen=True):
    """How often a failed step is tried again.

    Args:
        max_retries: retries after the first attempt; pool slots are released
            between attempts. Accepts: an int in 0..1000.
        delay: wait before the first retry. Accepts: a duration from 0s to 7d.
        backoff: factor applied to the delay after each retry (a grown delay is
            capped at 7 days). Accepts: a number in 1..100.
    """

    max_retries: int = 0
    delay: Duration = 0.0
    backoff: float = 1.0

    def __post_init__(self) -> None:
        check_int(self.max_retries, "RetryPolicy.max_retries", minimum=0, maximum=1000)
        force_setattr(
            self,
            "delay",
            parse_duration(self.delay, "RetryPolicy.delay", maximum=MAX_RETRY_DELAY_S),
        )
        if isinstance(self.backoff, bool) or not isinstance(self.backoff, int | float):
            raise ConfigError(
                f"RetryPolicy.backoff must be a number, got {short_repr(self.backoff)}"
            )
        if not 1.0 <= self.backoff <= 100.0:
            raise ConfigError(
                f"RetryPolicy.backoff must be in 1..100, got {short_repr(self.backoff)}"
            )

    def delay_before(self, attempt: int) -> float:
        """Return the seconds to wait before ``attempt`` (2 is the first retry)."""
        assert isinstance(self.delay, float)
        if self.delay == 0:
            return 0.0
        # Grown in logarithms: 100 ** 999 overflows a float.
        growth = max(0, attempt - 2) * math.log(self.backoff)
        if growth >= math.log(MAX_RETRY_DELAY_S / self.delay):
            return MAX_RETRY_DELAY_S
        return self.delay * self.backoff ** max(0, attempt - 2)


@final
class TagConcurrencyLimit(msgspec.Struct, frozen=True):
    """At most ``limit`` in-flight runs per tag key, key and value, or distinct value.

    Args:
        key: the tag key. Accepts: a printable string of 1..256 characters
            without '='.
        value: only runs with ``tags[key] == value`` count (None: any value).
            Accepts: None or a printable string of at most 1024 characters; not
            together with ``per_unique_value=True``.
        limit: the most in-flight runs the limit allows (required). Accepts: an
            int in 0..10,000; 0 holds every matching run.
        per_unique_value: the ceiling applies to each distinct value separately.
            Accepts: True or False; not together with ``value``.
    """

    key: str
    value: str | None = None
    limit: int | None = None
    per_unique_value: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not (
            self.value is None or isinstance(self.value, str)
        ):
            raise ConfigError(
                "TagConcurrencyLimit key and value must be strings, got "
                f"key={short_repr(self.key)}, value={short_repr(self.value)}"
            )
        check_tags(
            {self.key: "" if self.value is None else self.value}, "TagConcurrencyLimit"
        )
        if self.limit is None:
            raise ConfigError(
                f"TagConcurrencyLimit(key={short_repr(self.key)}) needs limit=N (an integer >= 0)"
            )
        check_int(self.limit, "TagConcurrencyLimit.limit", minimum=0, maximum=MAX_LIMIT)
        if not isinstance(self.per_unique_value, bool):
            raise ConfigError(
                "TagConcurrencyLimit.per_unique_value must be True or False"
            )
        if self.value is not None and self.per_unique_value:
            raise ConfigError(
                f"TagConcurrencyLimit(key={short_repr(self.key)}) sets both value= and "
                "per_unique_value=True; use one: a value caps that value, "
                "per_unique_value caps each value"
            )

    def rule(self) -> LimitRule:
        """The limit as the pure cores count it (``rivers.core.queue.LimitRule``)."""
        from rivers.core.queue import LimitRule

        assert self.limit is not None
        return LimitRule(self.key, self.value, self.limit, self.per_unique_value)

    def describe(self) -> str:
        """Return a short label such as ``env=prod`` or ``team=*``."""
        if self.value is not None:
            return f"{self.key}={self.value}"
        return f"{self.key}=*" if self.per_unique_value else self.key


@final
class RunQueueConfig(msgspec.Struct, frozen=True):
    """The run queue: how many runs may be in flight, and how often to admit.

    Args:
        max_concurrent_runs: in-flight runs (STARTING, STARTED, CANCELING, in the
            whole storage, ``materialize()`` runs included) at most. Accepts: an
            int in 0..10,000; 0 pauses admission.
        dequeue_interval: how often the coordinator admits queued runs (a local
            submit wakes it sooner). Accepts: a duration from 10ms to 1h.
        tag_concurrency_limits: finer ceilings per tag; a run is admitted only if
            it fits all of them. Accepts: a list or tuple of TagConcurrencyLimit.
        block_pool_limited_runs: keep a run QUEUED while its first steps (those
            with no upstream step in the run) all wait on full pools, so it takes
            no run slot; runs behind it that can start are admitted. Accepts: True
            or False.
        pool_slot_buffer: with ``block_pool_limited_runs``, a pool counts as full
            for admission when its claimed slots + the steps already waiting in its
            line + this buffer reach its limit, so that many slots stay for the
            later steps of runs already admitted. Accepts: an int in 0..10,000.
        windows: other ``max_concurrent_runs`` in force during time windows, as
            for ``rs.PoolLimit``: ``{"0 8-18 * * 1-5": 2}`` admits 2 runs at once
            08:00-18:59 on weekdays. Read per whole hour; overlaps take the lowest.
            Accepts: None or a dict of 5-field cron expressions (minute field 0
            or *) to ints in 0..10,000.
        timezone: the IANA timezone ``windows`` are read in. Accepts: a known
            IANA name such as ``"UTC"`` or ``"Europe/Paris"``.
    """

    max_concurrent_runs: int = 10
    dequeue_interval: Duration = 1.0
    tag_concurrency_limits: Sequence[TagConcurrencyLimit] = ()
    block_pool_limited_runs: bool = False
    pool_slot_buffer: int = 0
    windows: Mapping[str, int] | None = None
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        check_int(
            self.max_concurrent_runs,
            "RunQueueConfig.max_concurrent_runs",
            minimum=0,
            maximum=MAX_LIMIT,
        )
        force_setattr(
            self,
            "dequeue_interval",
            parse_duration(
                self.dequeue_interval,
                "RunQueueConfig.dequeue_interval",
                minimum=MIN_INTERVAL_S,
                maximum=MAX_DEQUEUE_INTERVAL_S,
            ),
        )
        force_setattr(
            self,
            "tag_concurrency_limits",
            check_tag_limits(
                self.tag_concurrency_limits, "RunQueueConfig.tag_concurrency_limits"
            ),
        )
        if not isinstance(self.block_pool_limited_runs, bool):
            raise ConfigError(
                "RunQueueConfig.block_pool_limited_runs must be True or False, got "
                f"{short_repr(self.block_pool_limited_runs)}"
            )
        check_int(
            self.pool_slot_buffer,
            "RunQueueConfig.pool_slot_buffer",
            minimum=0,
            maximum=MAX_LIMIT,
        )
        force_setattr(
            self, "windows", check_windows(self.windows, "RunQueueConfig.windows")
        )
        check_timezone(self.timezone, "RunQueueConfig.timezone")

    def schedule(self) -> LimitSchedule:
        """The ``max_concurrent_runs`` in force at each hour (windows included)."""
        from rivers.core.limit_windows import LimitSchedule

        return LimitSchedule.of(self.max_concurrent_runs, self.windows, self.timezone)

    @property
    def dequeue_interval_s(self) -> float:
        """The dequeue interval in seconds."""
        assert isinstance(self.dequeue_interval, float)
        return self.dequeue_interval


@final
class RunBackendConfig(msgspec.Struct, frozen=True):
    """Where runs, events and claims are stored, and how long a lease lasts.

    Args:
        storage: the storage (default ``$RIVERS_STORAGE``, else
            ``$RIVERS_HOME/rivers.db``). Accepts: None, a SQLite file's path, a
            ``sqlite:///relative`` / ``sqlite:////absolute`` URL, or a
            ``postgresql://user:password@host:5432/database`` URL
            (``pip install 'rivers[postgres]'``).
        lease_duration: an unrenewed pool claim is reclaimed after this long;
            live holders renew every third of it. Accepts: a duration from 100ms
            to 1d.
        lease_gc_interval: how often expired claims are looked for (default: a
            quarter of ``lease_duration``, at most 5 s). Accepts: None or a
            duration from 10ms to ``lease_duration``.
        retention: how long finished runs are kept: a long-lived runtime (a
            daemon) deletes the finished runs older than this, with their events
            and steps, at start and every hour (``rivers runs prune`` does it by
            hand). None keeps every run. Accepts: None or a duration from 1m to
            36500d.
    """

    storage: str | None = None
    lease_duration: Duration = 60.0
    lease_gc_interval: Duration | None = None
    retention: Duration | None = None

    def __post_init__(self) -> None:
        if self.storage is not None and (
            not isinstance(self.storage, str | os.PathLike) or not str(self.storage)
        ):
            raise ConfigError(
                "RunBackendConfig.storage must be a path, sqlite:/// or "
                f"postgresql:// URL, "
                f"got {short_repr(self.storage)}"
            )
        if self.storage is not None:
            force_setattr(self, "storage", os.fspath(self.storage))
        lease = parse_duration(
            self.lease_duration,
            "RunBackendConfig.lease_duration",
            minimum=MIN_LEASE_S,
            maximum=MAX_LEASE_S,
        )
        force_setattr(self, "lease_duration", lease)
        if self.lease_gc_interval is None:
            force_setattr(self, "lease_gc_interval", min(5.0, lease / 4))
        else:
            force_setattr(
                self,
                "lease_gc_interval",
                parse_duration(
                    self.lease_gc_interval,
                    "RunBackendConfig.lease_gc_interval",
                    minimum=MIN_INTERVAL_S,
                    maximum=lease,
                    maximum_name="lease_duration",
                ),
            )
        if self.retention is not None:
            retention = parse_duration(
                self.retention,
                "RunBackendConfig.retention",
                minimum=MIN_RETENTION_S,
                maximum=MAX_RETENTION_S,
            )
            force_setattr(self, "retention", retention)

    @property
    def retention_s(self) -> float | None:
        """The retention in seconds (None: keep every run)."""
        assert self.retention is None or isinstance(self.retention, float)
        return self.retention

    @property
    def lease_s(self) -> float:
        """The lease duration in seconds."""
        assert isinstance(self.lease_duration, float)
        return self.lease_duration

    @property
    def lease_gc_interval_s(self) -> float:
        """The lease GC interval in seconds."""
        assert isinstance(self.lease_gc_interval, float)
        return self.lease_gc_interval


def check_tag_limits(
    limits: object, field: str, *, minimum: int = 0
) -> tuple[TagConcurrencyLimit, ...]:
    """Return ``limits`` as a tuple of ``TagConcurrencyLimit`` (each ``limit`` at least
    ``minimum``).

    Raises:
        ConfigError: not a list of TagConcurrencyLimit, or a limit below ``minimum``.
    """
    if isinstance(limits, TagConcurrencyLimit) or not isinstance(limits, list | tuple):
        raise ConfigError(f"{field} must be a list of TagConcurrencyLimit")
    for limit in limits:
        if not isinstance(limit, TagConcurrencyLimit):
            raise ConfigError(
                f"{field} must hold TagConcurrencyLimit objects, got {short_repr(limit)}"
            )
        if limit.limit is not None and limit.limit < minimum:
            raise ConfigError(
                f"{field}: a limit of {limit.limit} on {limit.key!r} would never run the "
                f"steps it covers; use limit >= {minimum}"
            )
    return tuple(limits)
