"""PoolManager's inbox: ``LeasesReclaimed`` (what LeaseGC sends) stops the local
holder of each reclaimed claim and wakes the waiters, with no call into the manager.

A real SQLite storage; the claim's lease is ended by the storage itself
(``reclaim_expired_leases`` on a clock moved past it), as LeaseGC does.
"""

from __future__ import annotations

from pathlib import Path

import anyio

from rivers._clock import ManualClock
from rivers.actors.events import EventWriter
from rivers.actors.pool_claim import Claim
from rivers.actors.pools import PoolManager
from rivers.commands import LeasesReclaimed
from rivers.storage import open_backend


def _lost(claim: Claim) -> bool:
    return claim.lost


async def test_a_reclaimed_lease_sent_to_the_inbox_stops_its_holder_and_serves_the_next(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    async with open_backend(tmp_path / "rivers.db", clock=clock) as storage:
        await storage.pools.declare_pools({"db": 1}, declared_by="test")
        pools = PoolManager(
            storage=storage.pools,
            events=EventWriter(storage.events, clock),
            owner="me",
            clock=clock,
            lease_s=10,
        )
        async with anyio.create_task_group() as tg:
            await tg.start(pools.run)
            held = await pools.acquire(
                run_id="r1", step_key="a", pools=("db",), slots=1, priority=0, wait=True
            )
            assert held is not None
            stopped = anyio.CancelScope()
            held.cancel_on_loss(stopped)
            next_claim: list[object] = []

            async def wait_for_the_slot() -> None:
                next_claim.append(
                    await pools.acquire(
                        run_id="r2",
                        step_key="b",
                        pools=("db",),
                        slots=1,
                        priority=0,
                        wait=True,
                    )
                )

            tg.start_soon(wait_for_the_slot)
            await anyio.wait_all_tasks_blocked()
            clock.advance(11)  # past the lease, never renewed on this clock
            reclaimed = await storage.pools.reclaim_expired_leases()
            assert [(row[1], row[2]) for row in reclaimed] == [("r1", "a")]
            assert not _lost(held)  # nothing told the manager yet
            pools.inbox.send_nowait(LeasesReclaimed(claims=tuple(reclaimed)))
            with anyio.fail_after(5):
                while not next_claim:
                    await anyio.sleep(0.01)
            assert _lost(held)
            assert stopped.cancel_called
            # The message's reason, not the next renewal's ("reclaimed or freed
            # before it was renewed"), which would find the claim gone later.
            assert "expired" in (held.lost_reason or "")
            tg.cancel_scope.cancel()
