"""1-asset materialize() latency: warm runtime and cold ``repo.materialize()``.

Workload: one sync asset returning 1, ``Executor.in_process()``, default SQLite
storage in a temporary ``RIVERS_HOME``. "warm" is ``await rt.materialize()`` on a
runtime that already ran once (median of 50); "cold" is a blocking
``repo.materialize()`` that starts and stops a runtime each time (median of 10).

Run: ``python -m benchmarks.latency``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

import anyio

import rivers as rs
from rivers.materialize import uvloop_available


@rs.Asset
def single() -> int:
    return 1


def measure() -> tuple[list[float], list[float]]:
    """Return (warm seconds, cold seconds)."""
    repo = rs.CodeRepository([single], executor=rs.Executor.in_process())
    warm: list[float] = []

    async def main() -> None:
        async with rs.Runtime(repo) as rt:
            await rt.materialize()
            for _ in range(50):
                began = time.perf_counter()
                await rt.materialize()
                warm.append(time.perf_counter() - began)

    anyio.run(main, backend_options={"use_uvloop": uvloop_available()})
    repo.materialize()
    cold = []
    for _ in range(10):
        began = time.perf_counter()
        repo.materialize()
        cold.append(time.perf_counter() - began)
    return warm, cold


def main() -> None:
    """Print the figures."""
    with tempfile.TemporaryDirectory() as home:
        os.environ["RIVERS_HOME"] = home
        warm, cold = measure()
    print(
        f"1-asset materialize: warm median {statistics.median(warm) * 1000:.2f} ms, "
        f"cold median {statistics.median(cold) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
