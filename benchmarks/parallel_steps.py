"""Executor.parallel: 64 trivial sync steps on 2 workers, and 1,000-step throughput.

Workload 1: 64 independent sync assets, each returning a small int, materialized with
``Executor.parallel(max_workers=2)`` on the default SQLite storage (temporary
``RIVERS_HOME``). "cold" is the first run of a fresh runtime (it starts the worker
processes); "warm" is a later run of the same runtime (workers reused).
Workload 2: 1,000 independent trivial sync assets on the same warm runtime; reported
as steps per second.

Run: ``python -m benchmarks.parallel_steps [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any

import anyio

import rivers as rs
from rivers.materialize import uvloop_available


def trivial_assets(count: int, prefix: str) -> list[rs.Asset[Any, Any]]:
    """Return ``count`` independent assets that each return their index."""
    assets = []
    for index in range(count):
        namespace: dict[str, Any] = {"__name__": __name__}
        exec(f"def {prefix}{index}():\n    return {index}\n", namespace)
        assets.append(rs.Asset(namespace[f"{prefix}{index}"]))
    return assets


async def measure(repeat: int) -> dict[str, list[float]]:
    """Return the timings of each workload."""
    executor = rs.Executor.parallel(max_workers=2)
    small = rs.CodeRepository(trivial_assets(64, "s"), executor=executor, name="small")
    large = rs.CodeRepository(
        trivial_assets(1000, "l"), executor=executor, name="large"
    )
    figures: dict[str, list[float]] = {"cold": [], "warm": [], "throughput": []}
    for _ in range(repeat):
        async with rs.Runtime(small, large) as rt:
            began = time.perf_counter()
            assert (await rt.materialize(repository=small)).success
            figures["cold"].append(time.perf_counter() - began)
            began = time.perf_counter()
            assert (await rt.materialize(repository=small)).success
            figures["warm"].append(time.perf_counter() - began)
            began = time.perf_counter()
            assert (await rt.materialize(repository=large)).success
            figures["throughput"].append(1000 / (time.perf_counter() - began))
    return figures


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["RIVERS_HOME"] = home
        figures = anyio.run(
            measure, args.repeat, backend_options={"use_uvloop": uvloop_available()}
        )
    for name in ("cold", "warm"):
        values = figures[name]
        print(
            f"64 sync steps, 2 workers, {name}: median {statistics.median(values):.3f}s "
            f"min {min(values):.3f}s max {max(values):.3f}s"
        )
    rates = figures["throughput"]
    print(
        f"1,000 trivial sync steps, 2 workers: median {statistics.median(rates):.0f} "
        f"steps/s (min {min(rates):.0f}, max {max(rates):.0f})"
    )


if __name__ == "__main__":
    main()
