"""What serves each queued run's definition, and its queue settings (``rivers top``).

Read once per snapshot and cached per definition, so a frame with forty queued runs
of one repository costs one read of its settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rivers.core.ownership import queue_config_key, serves, unserved_reason
from rivers.core.queue_config import QueueConfig, decode_queue_config
from rivers.explain import run_assets

if TYPE_CHECKING:
    from rivers.core.ownership import Served
    from rivers.storage.base import StorageBackend
    from rivers.storage.records import RunRecord

__all__ = ("QueueGates",)


class QueueGates:
    """What serves each queued run's definition, and its queue settings (cached)."""

    def __init__(self, storage: StorageBackend, live: list[Served]) -> None:
        self._storage = storage
        self._live = live
        self._configs: dict[tuple[str, str], QueueConfig | None] = {}
        # (repository, fingerprint, selection) -> why no runtime serves such runs
        self._unserved: dict[tuple[str, str | None, tuple[str, ...] | None], str | None]
        self._unserved = {}

    async def _config(self, repository: str, fingerprint: str) -> QueueConfig | None:
        if (repository, fingerprint) not in self._configs:
            key = queue_config_key(repository, fingerprint)
            stored = await self._storage.state.get_state(key)
            self._configs[repository, fingerprint] = decode_queue_config(stored, key)
        return self._configs[repository, fingerprint]

    async def shown_config(self) -> QueueConfig | None:
        """The queue settings the queue panel shows: those of a served run queue."""
        configs = [await self._config(s.repository, s.fingerprint) for s in self._live]
        with_queue = [c for c in configs if c is not None and c.has_queue]
        return with_queue[0] if with_queue else None

    async def of(self, run: RunRecord) -> tuple[str | None, QueueConfig | None]:
        """Return (why no runtime serves ``run``, or None; its definition's settings)."""
        key = (
            run.repository,
            run.fingerprint,
            None if run.selection is None else tuple(run.selection),
        )
        if key not in self._unserved:
            served = any(serves(s, run.repository, run.fingerprint) for s in self._live)
            self._unserved[key] = (
                None
                if served
                else unserved_reason(
                    run.repository,
                    run.fingerprint,
                    await run_assets(self._storage, run),
                    self._live,
                )
            )
        unserved = self._unserved[key]
        if unserved is not None:
            return unserved, None
        fingerprint = run.fingerprint or next(
            s.fingerprint for s in self._live if s.repository == run.repository
        )
        return None, await self._config(run.repository, fingerprint)
