"""Workload 6 — import time of ``import rivers``, and peak memory holding 10,000 queued runs.

Import: ``python -X importtime -c "import rivers"`` in a fresh interpreter, the
cumulative microseconds of the ``rivers`` line (``--repeat`` interpreters).
Memory: a fresh interpreter writes 10,000 QUEUED runs (each with two tags) and
starts a runtime whose queue coordinator indexes them all; its peak RSS
(``VmHWM``, else ``ru_maxrss``) is reported, alongside the RSS of an idle runtime for reference
(up to 3 interpreters each). ``--quick``: 200 queued runs.

Run: ``python -m benchmarks.footprint [--repeat 5] [--quick]``.
"""

from __future__ import annotations

import os
import subprocess
import sys

from benchmarks.figures import Figure, module_main, temporary_home

QUEUED = 10_000
QUICK_QUEUED = 200
MEMORY_RUNS = 3

_MEMORY_SCRIPT = r"""
import resource, sys, anyio
import rivers as rs
from rivers._ids import new_run_id
from rivers.storage import open_backend
from rivers.storage.records import NewRun

@rs.Asset
async def one() -> int:
    return 1

repo = rs.CodeRepository([one], run_queue=rs.RunQueueConfig(max_concurrent_runs=0))
count = int(sys.argv[1])

def peak_kib() -> int:
    # VmHWM belongs to this process's own memory map; ru_maxrss would also count
    # the parent's size at fork time (Linux keeps it across exec).
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

async def main() -> None:
    async with open_backend() as storage:
        for i in range(count):
            await storage.runs.create_run(NewRun(
                run_id=new_run_id(), status=rs.RunStatus.QUEUED, repository="default",
                tags={"team": f"t{i % 20}", "env": "prod"}, selection=None))
    async with rs.Runtime(repo) as rt:
        coordinator = rt._coordinators[repo.name]
        while coordinator._last_rowid < count:
            await coordinator.tick()
        print(peak_kib())

anyio.run(main)
"""


def import_ms(module: str = "rivers") -> float:
    """Return the cumulative import time of ``module`` in a fresh interpreter, in ms."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    )
    line = [
        ln for ln in done.stderr.splitlines() if ln.rstrip().endswith(f"| {module}")
    ]
    return int(line[-1].split("|")[1]) / 1000


def peak_rss_mib(queued: int) -> float:
    """Return the peak RSS in MiB of a fresh runtime that indexed ``queued`` runs."""
    with temporary_home():
        done = subprocess.run(
            [sys.executable, "-c", _MEMORY_SCRIPT, str(queued)],
            capture_output=True,
            text=True,
            check=True,
            env=os.environ.copy(),
        )
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def collect(repeat: int, quick: bool) -> list[Figure]:
    """Return import times and peak RSS figures."""
    queued = QUICK_QUEUED if quick else QUEUED
    imports = [import_ms() for _ in range(repeat)]
    memory_runs = min(repeat, MEMORY_RUNS)
    idle = [peak_rss_mib(0) for _ in range(memory_runs)]
    loaded = [peak_rss_mib(queued) for _ in range(memory_runs)]
    return [
        Figure("footprint", "import rivers", "ms", imports),
        Figure("footprint", "peak RSS, idle runtime", "MiB", idle),
        Figure("footprint", "peak RSS, 10,000 queued runs", "MiB", loaded),
    ]


if __name__ == "__main__":
    module_main(collect, __doc__)
