"""Rate limits: an API that takes 10 calls a second, however many could run at once.

Run it with ``python examples/rate_limits.py`` (about 2 seconds). Pool ``api`` has 4
slots and a rate of 10 starts a second: ``rs.PoolLimit(4, rate="10/s")``. The slots
alone would let 4 of the 12 calls below start at once; the rate lets one start
every 0.1 s. With the default ``burst=1`` starts are spaced evenly, so no second
ever holds more than 10 of them (``burst=N`` would let N start at once after a
quiet spell). The rate is a token bucket kept in the storage and taken inside each
claim, so every process sharing the storage shares it; a waiting call is woken
when its token is due, not at the next poll. Afterwards
``rt.storage.get_pool_info("api")`` shows what ``rivers pools info api`` shows: the
rate, where it came from, and the bucket. Storage is a throwaway directory.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
import time
from bisect import bisect_left

import rivers as rs

CALLS = 12
PER_SECOND = 10
STARTED: list[float] = []


def call(index: int) -> rs.Asset[[], object]:
    async def body() -> None:
        STARTED.append(time.time())  # the request leaves now
        await asyncio.sleep(0.02)  # stands in for the HTTP call

    body.__name__ = f"call_{index:02d}"
    return rs.Asset(pool="api")(body)


repo = rs.CodeRepository(
    [call(i) for i in range(CALLS)],
    pool_limits={"api": rs.PoolLimit(4, rate=f"{PER_SECOND}/s")},
)


def most_in_any_second(times: list[float]) -> int:
    """The most of ``times`` that fall in any one-second window [t, t + 1)."""
    return max(bisect_left(times, start + 1.0) - i for i, start in enumerate(times))


async def demo() -> None:
    async with rs.Runtime(repo) as rt:
        result = await rt.materialize()
        info = await rt.storage.get_pool_info("api")  # what `rivers pools info` reads
    print(f"run {result.run_id}: {result.status.value}, {len(STARTED)} calls")
    starts = sorted(STARTED)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    for start, gap in zip(starts, [None, *gaps], strict=True):
        after = "" if gap is None else f"  (gap {gap:.3f} s)"
        print(f"  call started at +{start - starts[0]:.3f} s{after}")
    achieved = len(gaps) / (starts[-1] - starts[0])
    print(f"achieved {achieved:.2f} starts/s at rate {PER_SECOND}/s")
    print(f"smallest gap {min(gaps):.3f} s (one token every {1 / PER_SECOND:g} s)")
    print(
        f"most starts in any 1 s window: {most_in_any_second(starts)} "
        f"<= rate {PER_SECOND}"
    )
    print(
        f"pool api: limit {info.limit} ({info.limit_source}), "
        f"rate {info.rate} ({info.rate_source}), burst {info.burst}: "
        f"{info.tokens:.2f} token(s) now, next token in {info.next_token_in_s:.3f} s"
    )


def main() -> None:
    # A throwaway RIVERS_HOME: the demo starts empty and leaves nothing behind.
    with tempfile.TemporaryDirectory(prefix="rivers-example-") as home:
        os.environ["RIVERS_HOME"] = home
        asyncio.run(demo())


if __name__ == "__main__":
    main()
