"""Import time of ``import rivers`` and peak memory holding 10,000 queued runs.

Import: ``python -X importtime -c "import rivers"`` in a fresh interpreter, the
cumulative microseconds of the ``rivers`` line (median of 5).
Memory: a fresh interpreter writes 10,000 QUEUED runs (each with two tags) and
starts a runtime whose queue coordinator indexes them all; its peak RSS
(``ru_maxrss``) is reported, alongside the RSS of an idle runtime for reference.

Run: ``python -m benchmarks.footprint``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile

IMPORT_RUNS = 5

_MEMORY_SCRIPT = r"""
import resource, sys, anyio
import rivers as rs
from rivers._ids import new_run_id
from rivers.storage.sqlite import NewRun

@rs.Asset
async def one() -> int:
    return 1

repo = rs.CodeRepository([one], run_queue=rs.RunQueueConfig(max_concurrent_runs=0))
count = int(sys.argv[1])

async def main() -> None:
    async with rs.open_storage() as storage:
        for i in range(count):
            await storage.create_run(NewRun(
                run_id=new_run_id(), status=rs.RunStatus.QUEUED, repository="default",
                tags={"team": f"t{i % 20}", "env": "prod"}, selection=None))
    async with rs.Runtime(repo) as rt:
        while rt._coordinator._last_rowid < count:
            await rt._coordinator.tick()
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)

anyio.run(main)
"""


def import_seconds() -> list[float]:
    """Return the cumulative import time of rivers, in seconds, per fresh run."""
    times = []
    for _ in range(IMPORT_RUNS):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import rivers"],
            capture_output=True,
            text=True,
            check=True,
        )
        line = [
            ln for ln in done.stderr.splitlines() if ln.rstrip().endswith("| rivers")
        ][-1]
        times.append(int(line.split("|")[1]) / 1e6)
    return times


def peak_rss_mib(queued: int) -> float:
    """Return the peak RSS in MiB of a runtime that indexed ``queued`` runs."""
    with tempfile.TemporaryDirectory() as home:
        done = subprocess.run(
            [sys.executable, "-c", _MEMORY_SCRIPT, str(queued)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "RIVERS_HOME": home},
        )
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    """Print the figures."""
    imports = import_seconds()
    print(
        f"import rivers: median {statistics.median(imports) * 1000:.0f} ms "
        f"(min {min(imports) * 1000:.0f}, max {max(imports) * 1000:.0f})"
    )
    base = peak_rss_mib(0)
    loaded = peak_rss_mib(10_000)
    print(
        f"peak RSS: idle runtime {base:.0f} MiB, with 10,000 queued runs {loaded:.0f} MiB"
    )


if __name__ == "__main__":
    main()
