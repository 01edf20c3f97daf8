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
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio

import rivers as rs
from benchmarks.figures import Figure, module_main
from benchmarks.pools import claim_release_rate, pooled_assets
from rivers.materialize import run_sync

ROUND_TRIPS = 2000
QUICK_TRIPS = 100

Call = tuple[
    Callable[..., Awaitable[Any]],
    tuple[Any, ...],
    dict[str, Any],
    list[Any],
    anyio.Event,
]


def collect(repeat: int, quick: bool) -> list[Figure]:
    """Return the claim+release rates, called directly and through an inbox."""
    trips = QUICK_TRIPS if quick else ROUND_TRIPS
    repo = rs.CodeRepository(pooled_assets(1, 0.0), pool_limits={"db": 4})

    async def rates() -> tuple[list[float], list[float]]:
        direct: list[float] = []
        inboxed: list[float] = []
        send, inbox = anyio.create_memory_object_stream[Call](math.inf)

        async def manager() -> None:
            async for fn, args, kwargs, reply, done in inbox:
                reply.append(await fn(*args, **kwargs))
                done.set()

        async def ask(
            fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
        ) -> Any:
            reply: list[Any] = []
            done = anyio.Event()
            send.send_nowait((fn, args, kwargs, reply, done))
            await done.wait()
            return reply[0]

        async with rs.Runtime(repo) as rt, send, inbox:
            pools = rt._pool_manager
            async with anyio.create_task_group() as tg:
                tg.start_soon(manager)
                for round_ in range(repeat):
                    direct.append(
                        await claim_release_rate(
                            pools.acquire, pools.release, trips, f"d{round_}"
                        )
                    )
                    inboxed.append(
                        await claim_release_rate(
                            partial(ask, pools.acquire),
                            partial(ask, pools.release),
                            trips,
                            f"i{round_}",
                        )
                    )
                tg.cancel_scope.cancel()
        return direct, inboxed

    direct, inboxed = run_sync(rates)
    return [
        Figure("inbox_hop", "claim+release, direct calls", "/s", direct, "higher"),
        Figure("inbox_hop", "claim+release, through an inbox", "/s", inboxed, "higher"),
    ]


if __name__ == "__main__":
    module_main(collect, __doc__)
