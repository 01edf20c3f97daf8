"""Workload 6 — cold start (``import rivers``, ``rivers --help``), and peak memory
holding 10,000 queued runs.

Import: ``python -X importtime -c "import rivers"`` in a fresh interpreter, the
cumulative microseconds of the ``rivers`` line (``--repeat`` interpreters).
Help: the wall time of ``python -m rivers --help`` in a fresh interpreter, start to
exit, interpreter start-up included (``--repeat`` interpreters).
Both read compiled bytecode, as an installed rivers does (pip compiles it): their
children write and read it under a temporary ``PYTHONPYCACHEPREFIX``, warmed by one
unmeasured run each, whatever ``PYTHONDONTWRITEBYTECODE`` says here (without
bytecode every module would be compiled from source on every start).
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
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

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
        assert rt._desk is not None
        coordinator = rt._desk.queues.get(repo.name)
        while coordinator._last_rowid < count:
            await coordinator.tick()
        print(peak_kib())

anyio.run(main)
"""


IMPORT_COMMAND = ("-X", "importtime", "-c", "import rivers")
HELP_COMMAND = ("-m", "rivers", "--help")


@contextmanager
def compiled_bytecode() -> Iterator[dict[str, str]]:
    """Yield the environment of a child that keeps its bytecode in a temporary cache."""
    with tempfile.TemporaryDirectory(prefix="rivers-pycache-") as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        # Measure rivers, not a coverage tracer a test run starts in each child.
        env.pop("COVERAGE_PROCESS_START", None)
        env.pop("COVERAGE_PROCESS_CONFIG", None)
        env["PYTHONPYCACHEPREFIX"] = cache
        for command in (IMPORT_COMMAND, HELP_COMMAND):  # compile, unmeasured
            subprocess.run(
                [sys.executable, *command], capture_output=True, check=True, env=env
            )
        yield env


def import_ms(env: dict[str, str], module: str = "rivers") -> float:
    """Return the cumulative import time of ``module`` in a fresh interpreter, in ms."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    line = [
        ln for ln in done.stderr.splitlines() if ln.rstrip().endswith(f"| {module}")
    ]
    return int(line[-1].split("|")[1]) / 1000


def help_ms(env: dict[str, str]) -> float:
    """Return the wall time of ``rivers --help`` in a fresh interpreter, in ms."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, *HELP_COMMAND], capture_output=True, check=True, env=env
    )
    return (time.perf_counter() - started) * 1000


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
    """Return cold-start times and peak RSS figures."""
    queued = QUICK_QUEUED if quick else QUEUED
    with compiled_bytecode() as env:
        imports = [import_ms(env) for _ in range(repeat)]
        helps = [help_ms(env) for _ in range(repeat)]
    memory_runs = min(repeat, MEMORY_RUNS)
    idle = [peak_rss_mib(0) for _ in range(memory_runs)]
    loaded = [peak_rss_mib(queued) for _ in range(memory_runs)]
    return [
        Figure("footprint", "import rivers", "ms", imports),
        Figure("footprint", "rivers --help, wall", "ms", helps),
        Figure("footprint", "peak RSS, idle runtime", "MiB", idle),
        Figure("footprint", "peak RSS, 10,000 queued runs", "MiB", loaded),
    ]


if __name__ == "__main__":
    module_main(collect, __doc__)
