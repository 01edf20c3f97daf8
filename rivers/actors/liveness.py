"""ProcessMonitor: this process's heartbeat, recovery of dead owners' runs, and
cancel requests that other processes wrote to storage for runs this one owns (each
sent to the RunSupervisor's inbox as ``CancelRun``).

After an outage of the storage (a heartbeat failed), another host's stale heartbeat
proves nothing: its beats failed too. So until this process's own heartbeats have
succeeded for ``STALE_AFTER_S`` again, owners on other hosts are taken as alive
(the process table still judges this host's); a host that really died meanwhile is
recovered once that window has passed."""

from __future__ import annotations

import logging
import math
import os
import socket
from typing import TYPE_CHECKING, final

import anyio

from rivers._liveness import RUNS_HERE, STALE_AFTER_S, owner_is_alive
from rivers.commands import CancelRun
from rivers.errors import StorageUnavailable
from rivers.messages import RunFailed

if TYPE_CHECKING:
    from anyio.abc import TaskStatus
    from anyio.streams.memory import MemoryObjectSendStream

    from rivers._clock import Clock
    from rivers.actors.ports import EventLog
    from rivers.commands import SupervisorCommand
    from rivers.storage.base import ProcessStore

__all__ = ("HEARTBEAT_INTERVAL_S", "STALE_AFTER_S", "ProcessMonitor")

logger = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 1.0


@final
class ProcessMonitor:
    """Keeps this process visibly alive and cleans up after dead ones."""

    def __init__(
        self,
        *,
        storage: ProcessStore,
        events: EventLog,
        owner: str,
        clock: Clock,
        supervisor: MemoryObjectSendStream[SupervisorCommand],
    ) -> None:
        self._storage = storage
        self._events = events
        self._owner = owner
        self._clock = clock
        self._supervisor = supervisor
        self._reachable_since: float | None = -math.inf  # None: in an outage

    async def run(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Register, recover dead owners' runs, then beat until cancelled."""
        await self._storage.register_process(
            self._owner, os.getpid(), socket.gethostname()
        )
        await self.recover()
        task_status.started()
        while True:
            await anyio.sleep(HEARTBEAT_INTERVAL_S)
            await self.beat()

    async def beat(self) -> None:
        """Heartbeat once; then recover dead owners' runs and take cancel requests."""
        try:
            await self._storage.heartbeat(self._owner)
        except StorageUnavailable as exc:
            self._reachable_since = None
            logger.warning("heartbeat of %s failed: %s", self._owner, exc)
            return
        if self._reachable_since is None:
            self._reachable_since = self._clock.time()
        try:
            await self.recover()
            for run_id in await self._storage.get_cancel_requests(self._owner):
                self._supervisor.send_nowait(
                    CancelRun(run_id=run_id, reason="canceled by request")
                )
        except StorageUnavailable as exc:
            logger.warning("recovery by %s failed: %s", self._owner, exc)

    async def _recover_abandoned(self) -> list[str]:
        """Fail this process's STARTED runs that no runtime of it drives any more
        (a runtime stopped without recording their ends: ``RUNS_HERE``)."""
        left = [
            run_id
            for run_id in await self._storage.get_started_runs(self._owner)
            if run_id not in RUNS_HERE
        ]
        if not left:
            return []
        reason = "the runtime that ran it stopped without recording its end; marked "
        reason += "FAILURE on recovery"
        failed = await self._storage.fail_started_runs(self._owner, left, reason)
        for run_id in failed:
            logger.warning("run %s: %s", run_id, reason)
            self._events.emit(RunFailed(run_id=run_id, reason=reason))
        return failed

    async def recover(self) -> list[str]:
        """Mark the in-flight runs of dead processes FAILURE; return their ids.

        Runs a dead process was admitted to launch but never began go back to the
        queue; what it served is forgotten.
        """
        recovered: list[str] = []
        now = self._clock.time()
        since = self._reachable_since
        trusted = since is not None and now - since >= STALE_AFTER_S
        in_flight, serving = await self._storage.get_owners_to_check()
        for owner, heartbeat_at in in_flight.items():
            if owner == self._owner or owner_is_alive(
                owner, heartbeat_at if trusted else now, now, STALE_AFTER_S
            ):
                continue
            reason = (
                f"the process that ran it ({owner}) died; marked FAILURE on recovery"
            )
            # This also forgets what the dead process served.
            run_ids = await self._storage.fail_runs_of_owner(owner, reason)
            for run_id in run_ids:
                logger.warning("run %s: %s", run_id, reason)
                self._events.emit(RunFailed(run_id=run_id, reason=reason))
            recovered.extend(run_ids)
        recovered.extend(await self._recover_abandoned())
        # Drop what dead runtimes without runs in flight served.
        for owner, heartbeat_at in serving.items():
            if (
                owner != self._owner
                and owner not in in_flight
                and not owner_is_alive(
                    owner, heartbeat_at if trusted else now, now, STALE_AFTER_S
                )
            ):
                await self._storage.unregister_process(owner)
        return recovered
