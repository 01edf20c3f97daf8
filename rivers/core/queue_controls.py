"""Queue controls at run time: a stored pause and overrides of a repository's run
queue limits, and what is in force once they apply.

``rivers queue pause|resume|set`` store a ``QueueControls`` per repository name (the
state key ``controls_key(name)``), like a pool's override: it survives restarts and
code changes, and the leader of that repository's queue picks it up within
``CONTROLS_CHECK_S`` without a restart. An override wins over the repository's
``RunQueueConfig``; clearing it gives the repository's settings back.

Pure: the stored form is parsed and combined here; nothing reads storage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rivers.core.queue import LimitRule, stored_rules

__all__ = (
    "CONTROLS_CHECK_S",
    "InForce",
    "QueueControls",
    "controls_key",
    "in_force",
    "paused_reason",
    "rule_to_stored",
)

CONTROLS_CHECK_S = 1.0
"""How often the leader of a queue reads its stored controls."""


def controls_key(repository: str) -> str:
    """Return the state key of ``repository``'s stored queue controls."""
    return f"queue.controls:{repository}"


def paused_reason(repository: str) -> str:
    """Why a queued run of a paused queue waits (the fix included)."""
    return (
        f"the run queue of repository {repository!r} is paused; "
        f"rivers queue resume --repository {repository}"
    )


@dataclass(frozen=True, slots=True)
class QueueControls:
    """What ``rivers queue`` stored for one repository (None: not overridden)."""

    paused: bool = False
    max_concurrent_runs: int | None = None
    tag_concurrency_limits: tuple[LimitRule, ...] | None = None

    @classmethod
    def from_stored(cls, value: object) -> QueueControls:
        """Parse a stored record; anything malformed reads as no control."""
        if not isinstance(value, Mapping):
            return cls()
        limit = value.get("max_concurrent_runs")
        rules = value.get("tag_concurrency_limits")
        return cls(
            paused=value.get("paused") is True,
            max_concurrent_runs=limit
            if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0
            else None,
            tag_concurrency_limits=None
            if not isinstance(rules, list)
            else stored_rules({"tag_concurrency_limits": rules}),
        )

    def to_stored(self) -> dict[str, object]:
        """Return the JSON form ``from_stored`` reads."""
        return {
            "paused": self.paused,
            "max_concurrent_runs": self.max_concurrent_runs,
            "tag_concurrency_limits": None
            if self.tag_concurrency_limits is None
            else [rule_to_stored(r) for r in self.tag_concurrency_limits],
        }


def rule_to_stored(rule: LimitRule) -> dict[str, object]:
    """The stored form of one tag limit (as ``stored_rules`` reads it)."""
    return {
        "key": rule.key,
        "value": rule.value,
        "limit": rule.limit,
        "per_unique_value": rule.per_unique_value,
    }


@dataclass(frozen=True, slots=True)
class InForce:
    """A queue's limits once the stored controls apply, and where each comes from."""

    paused: bool
    max_concurrent_runs: int
    max_concurrent_runs_source: str
    """``"override"`` or ``"repository"``."""
    rules: tuple[LimitRule, ...]
    rules_source: str


def in_force(
    max_concurrent_runs: int,
    rules: Iterable[LimitRule],
    controls: QueueControls,
    max_source: str = "repository",
) -> InForce:
    """Return the limits in force: each override wins over the repository's own
    (``max_source`` says where the repository's ``max_concurrent_runs`` comes from:
    ``"repository"``, or a time window)."""
    return InForce(
        paused=controls.paused,
        max_concurrent_runs=max_concurrent_runs
        if controls.max_concurrent_runs is None
        else controls.max_concurrent_runs,
        max_concurrent_runs_source=max_source
        if controls.max_concurrent_runs is None
        else "override",
        rules=tuple(rules)
        if controls.tag_concurrency_limits is None
        else controls.tag_concurrency_limits,
        rules_source="repository"
        if controls.tag_concurrency_limits is None
        else "override",
    )
