"""200-asset DAG, in process: per-step overhead including durable events.

Workload: 20 levels x 10 assets; each asset of level L > 0 depends on all 10 assets
of level L-1 and returns the sum of its inputs plus one (level 0 returns 1).
Materialized with ``Executor.in_process()`` on a fresh SQLite storage (the default
backend, under a temporary ``RIVERS_HOME``), one short-lived runtime per run, as
``repo.materialize()`` does. Prints the median of ``--repeat`` runs, the minimum and
maximum, and microseconds of overhead per step (every step's body is trivial).

Run: ``python -m benchmarks.inprocess_dag [--repeat 5] [--warm]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any

import rivers as rs
from rivers.materialize import uvloop_available

LEVELS = 20
WIDTH = 10


def build_repository(executor: Any = None) -> rs.CodeRepository:
    """Return the 20 x 10 all-to-all DAG."""
    assets: list[rs.Asset[Any, Any]] = []
    previous: list[str] = []
    for level in range(LEVELS):
        current = []
        for index in range(WIDTH):
            name = f"a_{level}_{index}"
            params = ", ".join(previous)
            body = f"return sum(({params},)) + 1" if previous else "return 1"
            namespace: dict[str, Any] = {"__name__": __name__}
            exec(f"def {name}({params}):\n    {body}\n", namespace)
            assets.append(rs.Asset(namespace[name]))
            current.append(name)
        previous = current
    return rs.CodeRepository(assets, executor=executor or rs.Executor.in_process())


def measure(repeat: int, warm: bool) -> list[float]:
    """Return the wall seconds of each materialization."""
    repo = build_repository()
    times: list[float] = []
    if warm:
        import anyio

        async def main() -> None:
            async with rs.Runtime(repo) as rt:
                await rt.materialize()
                for _ in range(repeat):
                    began = time.perf_counter()
                    result = await rt.materialize()
                    times.append(time.perf_counter() - began)
                    assert result.success

        anyio.run(main, backend_options={"use_uvloop": uvloop_available()})
        return times
    for _ in range(repeat):
        began = time.perf_counter()
        result = repo.materialize()
        times.append(time.perf_counter() - began)
        assert result.success, result.error
    return times


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--warm", action="store_true", help="reuse one runtime")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["RIVERS_HOME"] = home
        times = measure(args.repeat, args.warm)
    steps = LEVELS * WIDTH
    median = statistics.median(times)
    print(
        f"inprocess_dag ({steps} steps, {'warm runtime' if args.warm else 'cold'}): "
        f"median {median:.3f}s  min {min(times):.3f}s  max {max(times):.3f}s  "
        f"= {median / steps * 1e6:.0f} us/step"
    )


if __name__ == "__main__":
    main()
