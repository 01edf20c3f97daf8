"""The run-queue settings a queue's leader has in force, as it publishes them.

The leader of a repository definition's run queue (``actors/queue.py``) stores its
settings under ``queue_config_key(repository, fingerprint)`` whenever they change
(a ``rivers queue`` control, a limit window); ``rivers runs why``, ``rivers queue
status`` and ``rivers top`` read them. ``QueueConfig`` is that record, and
``encode_queue_config`` / ``decode_queue_config`` the one way it is written and
read, so no reader parses the stored JSON by hand.

A malformed stored value (another version of rivers, a hand edit) is an error
naming the key, not a silently wrong answer: the leader rewrites the record when
it starts or its settings change.

Pure: nothing here reads storage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import msgspec

from rivers.core.queue import LimitRule
from rivers.errors import StorageError

if TYPE_CHECKING:
    from rivers.core.queue_controls import InForce

__all__ = ("QueueConfig", "decode_queue_config", "encode_queue_config")

OverridableField = Literal["max_concurrent_runs", "tag_concurrency_limits"]


class QueueConfig(msgspec.Struct, frozen=True, kw_only=True):
    """One definition's run-queue settings in force, with where each comes from."""

    max_concurrent_runs: int | None
    """None: the repository has no run queue (its runs start as they are seen)."""
    dequeue_interval_s: float
    tag_concurrency_limits: tuple[LimitRule, ...] = ()
    max_concurrent_runs_source: str = "repository"
    """``"repository"``, ``"override"`` (``rivers queue set``) or a time window."""
    tag_concurrency_limits_source: str = "repository"
    paused: bool = False

    @classmethod
    def no_queue(cls, poll_s: float) -> QueueConfig:
        """The settings of a repository without a run queue (polled every
        ``poll_s``)."""
        return cls(max_concurrent_runs=None, dequeue_interval_s=poll_s)

    @classmethod
    def of(cls, force: InForce, dequeue_interval_s: float) -> QueueConfig:
        """The settings of a run queue with the limits ``force`` puts in force."""
        return cls(
            max_concurrent_runs=force.max_concurrent_runs,
            max_concurrent_runs_source=force.max_concurrent_runs_source,
            dequeue_interval_s=dequeue_interval_s,
            tag_concurrency_limits=force.rules,
            tag_concurrency_limits_source=force.rules_source,
            paused=force.paused,
        )

    @property
    def has_queue(self) -> bool:
        """Whether the repository has a run queue (a ``max_concurrent_runs``)."""
        return self.max_concurrent_runs is not None

    def is_overridden(self, field: OverridableField) -> bool:
        """Whether ``field``'s value comes from ``rivers queue set``."""
        source = (
            self.max_concurrent_runs_source
            if field == "max_concurrent_runs"
            else self.tag_concurrency_limits_source
        )
        return source == "override"

    def controls_note(self) -> str:
        """Say what ``rivers queue`` or a window changed
        (``"paused, max_concurrent_runs override"``); empty when nothing."""
        notes = ["paused"] if self.paused else []
        if self.max_concurrent_runs_source.startswith("window"):
            notes.append(f"max_concurrent_runs of {self.max_concurrent_runs_source}")
        fields: tuple[OverridableField, ...] = (
            "max_concurrent_runs",
            "tag_concurrency_limits",
        )
        notes += [f"{f} override" for f in fields if self.is_overridden(f)]
        return ", ".join(notes)


def encode_queue_config(config: QueueConfig) -> dict[str, object]:
    """Return the JSON-ready form of ``config`` that storage keeps."""
    stored: dict[str, object] = msgspec.to_builtins(config)
    return stored


def decode_queue_config(stored: object, key: str) -> QueueConfig | None:
    """Return the settings stored under ``key`` (None: nothing published yet).

    Raises:
        StorageError: the stored value is not a ``QueueConfig`` (one line, naming
            the key and what is wrong).
    """
    if stored is None:
        return None
    try:
        return msgspec.convert(stored, QueueConfig)
    except msgspec.ValidationError as exc:
        raise StorageError(
            f"the run-queue settings stored under {key!r} are malformed ({exc}); "
            "the daemon serving that repository rewrites them when it starts"
        ) from None
