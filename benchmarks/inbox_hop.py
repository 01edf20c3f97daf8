"""What an inbox round trip would cost a pool claim+release cycle (not in the suite).

The PoolManager takes claims and releases as calls (``PoolClaims``), not through its
inbox; docs/architecture.md says why, with this module's figures. Both figures are
2,000 claim+release cycles on the default SQLite storage, alternating, in one
runtime:
- direct: ``acquire`` then ``release``, called from the caller's task, as a run's
  steps call them;
- inbox: the same two calls each sent as a message to one manager task that reads
  an anyio memory object stream and applies it, the caller waiting for its reply
  (an ``anyio.Event``): the shape of a PoolManager that applies every claim and
  release in its own task.
``--quick``: 100 cycles.

Run: ``python -m benchmarks.inbox_hop [--repeat 5] [--quick]``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

import rivers as rs
from benchmarks.figures import Figure, module_main
from benchmarks.pools import pooled_assets
from rivers.materialize import run_sync

ROUND_TRIPS = 2000
QUICK_TRIPS = 100

Call = tuple[Callable[..., Awaitable[Any]], dict[str, Any], list[Any], anyio.Event]


def collect(repeat: int, quick: bool) -> list[Figure]:
    """Return the claim+release rates, called directly and through an inbox."""
    trips = QUICK_TRIPS if quick else ROUND_TRIPS
    repo = rs.CodeRepository(pooled_assets(1, 0.0), pool_limits={"db": 4})

    async def rates() -> tuple[list[float], list[float]]:
        direct: list[float] = []
        inboxed: list[float] = []
        send, inbox = anyio.create_memory_object_stream[Call](math.inf)

        async def manager() -> None:
            async for fn, kwargs, reply, done in inbox:
                reply.append(await fn(**kwargs))
                done.set()

        async def ask(fn: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
            reply: list[Any] = []
            done = anyio.Event()
            send.send_nowait((fn, kwargs, reply, done))
            await done.wait()
            return reply[0]

        async with rs.Runtime(repo) as rt, send, inbox:
            pools = rt._pool_manager
            async with anyio.create_task_group() as tg:
                tg.start_soon(manager)
                for round_ in range(repeat):
                    began = time.perf_counter()
                    for index in range(trips):
                        claim = await pools.acquire(
                            run_id=f"d{round_}",
                            step_key=f"s{index}",
                            pools=("db",),
                            slots=1,
                            priority=0,
                            wait=True,
                        )
                        assert claim is not None
                        await pools.release(claim)
                    direct.append(trips / (time.perf_counter() - began))
                    began = time.perf_counter()
                    for index in range(trips):
                        claim = await ask(
                            pools.acquire,
                            run_id=f"i{round_}",
                            step_key=f"s{index}",
                            pools=("db",),
                            slots=1,
                            priority=0,
                            wait=True,
                        )
                        await ask(pools.release, claim=claim)
                    inboxed.append(trips / (time.perf_counter() - began))
                tg.cancel_scope.cancel()
        return direct, inboxed

    direct, inboxed = run_sync(rates)
    return [
        Figure("inbox_hop", "claim+release, direct calls", "/s", direct, "higher"),
        Figure("inbox_hop", "claim+release, through an inbox", "/s", inboxed, "higher"),
    ]


if __name__ == "__main__":
    module_main(collect, __doc__)
