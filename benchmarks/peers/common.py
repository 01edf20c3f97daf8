"""What every peer shares: its sizes, its subprocesses and the figures it reports.

A peer module (``dagster_peer``, ``prefect_peer``) measures each workload in its own
interpreter, ``python -m benchmarks.peers.NAME WORKLOAD --size N --repeat R``,
which prints one JSON line per figure (``workload_main``); the suite starts those
interpreters with a timeout and reads the lines back (``run_workloads``). The
figure builders name each figure exactly as rivers' twin is named, so the table
puts them side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import inprocess_dag, parallel_steps, pools, run_queue
from benchmarks.figures import Figure, figure_from_json, percentile

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.2
DEFAULT_QUEUE_RUNS = 20
"""Runs a peer's queue workload submits by default (1,000 would take minutes)."""
IMPORT_INTERPRETERS = 5
"""Fresh interpreters timed for a peer's ``import`` (not scaled by --peer-scale)."""

FULL = {
    "dag": inprocess_dag.LEVELS,
    "parallel": parallel_steps.SMALL,
    "pools": pools.STEPS,
    "queue": run_queue.RUNS,
    "import": IMPORT_INTERPRETERS,
}
"""Each peer workload at the size rivers runs it (the DAG's size is its levels)."""
QUICK = {"dag": 2, "parallel": 4, "pools": 8, "queue": 3, "import": 1}
SUITE_WORKLOADS = {
    "dag": "inprocess_dag",
    "parallel": "parallel_steps",
    "pools": "pools",
    "queue": "run_queue",
    "import": "footprint",
}
"""The rivers workload each peer workload is the twin of."""


def sizes(
    names: list[str], scale: float, quick: bool, queue_runs: int
) -> dict[str, int]:
    """Return the size of each named workload.

    The full size times ``scale`` (at least 2), the queue's capped at
    ``queue_runs``; the import's is a number of interpreters and is not scaled.
    """
    if quick:
        return {name: QUICK[name] for name in names}
    chosen = {name: max(2, round(FULL[name] * scale)) for name in names}
    if "queue" in chosen:
        chosen["queue"] = min(chosen["queue"], queue_runs)
    if "import" in chosen:
        chosen["import"] = IMPORT_INTERPRETERS
    return chosen


# ------------------------------------------------------------- suite side


def run_workloads(
    module: str, workloads: dict[str, int], repeat: int, timeout_s: float
) -> tuple[list[Figure], list[str]]:
    """Run each workload of peer ``module`` in its own interpreter.

    Returns:
        The figures the interpreters printed, and one line per workload that
        timed out or failed (with the last line it wrote to stderr).
    """
    system = module.rsplit(".", 1)[-1].removesuffix("_peer")
    found: list[Figure] = []
    problems: list[str] = []
    env = {**os.environ, "PYTHONPATH": python_path()}
    for name, size in workloads.items():
        command = [sys.executable, "-m", module, name, "--size", str(size)]
        command += ["--repeat", str(repeat)]
        print(f"  {system} {name} (size {size}) ...", file=sys.stderr, flush=True)
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                cwd=ROOT,
                env=env,
            )
        except subprocess.TimeoutExpired:
            problems.append(f"{system} {name}: no result within {timeout_s:g}s")
            continue
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        found.extend(figure_from_json(json.loads(line)) for line in lines)
        if done.returncode != 0:
            tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
            problems.append(f"{system} {name} failed: {tail[0]}")
    return found, problems


def python_path() -> str:
    """Return ``PYTHONPATH`` with the checkout first (so peers import ``benchmarks``)."""
    extra = os.environ.get("PYTHONPATH")
    return str(ROOT) if not extra else f"{ROOT}{os.pathsep}{extra}"


# -------------------------------------------------------- workload side


def workload_main(title: str, module: ModuleType) -> None:
    """Measure the workload named on the command line; print its figures as JSON.

    Args:
        title: The peer's name, for the help text.
        module: The peer module; its ``measure_NAME(size, repeat)`` measures
            workload NAME of ``SUITE_WORKLOADS``, except ``import``, measured here
            for the module's ``SYSTEM``.
    """
    system: str = module.SYSTEM
    measures: dict[str, Callable[[int, int], list[Figure]]] = {
        name: getattr(module, f"measure_{name}")
        for name in SUITE_WORKLOADS
        if name != "import"
    }
    measures["import"] = lambda interpreters, _: _import_figure(system, interpreters)
    parser = argparse.ArgumentParser(description=f"one {title} peer workload")
    parser.add_argument("workload", choices=sorted(measures))
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    for figure in measures[args.workload](args.size, max(1, args.repeat)):
        print(json.dumps(figure.as_json()), flush=True)


def stop_session(process: subprocess.Popen[Any]) -> None:
    """Stop a process started in its own session, and everything it started."""
    for sig, wait_s in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait_s)
            return


def timed(call: Callable[[], object]) -> float:
    """Return the seconds ``call()`` took."""
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def _import_figure(system: str, interpreters: int) -> list[Figure]:
    """Return workload 6's import time of ``system`` over fresh interpreters."""
    from benchmarks.footprint import compiled_bytecode, import_ms

    with compiled_bytecode() as env:  # as rivers' own figure: bytecode cached
        import_ms(env, system)  # compiles the peer's modules, unmeasured
        times = [import_ms(env, system) for _ in range(interpreters)]
    return [peer_figure(system, "footprint", f"import {system}", "ms", times)]


def peer_figure(
    system: str, workload: str, metric: str, unit: str, values: list[float], **kw: Any
) -> Figure:
    """Return one figure of ``system`` (peers never run on uvloop)."""
    return Figure(workload, metric, unit, values, system=system, uvloop=False, **kw)


def dag_figures(
    system: str, levels: int, walls: list[float], note: str
) -> list[Figure]:
    """Return workload 1's figures: the wall of the DAG and its wall per step.

    ``note`` says how the peer ran it; a DAG of fewer levels than rivers' is said
    too, and its figures are normalised per step.
    """
    steps = levels * inprocess_dag.WIDTH
    suffix, scaled = dag_scaled(levels)
    note = "; ".join(filter(None, [note, scaled and f"{scaled}, normalised per step"]))
    return [
        peer_figure(
            system,
            "inprocess_dag",
            "materialize, fresh runtime" + suffix,
            "s",
            walls,
            note=note,
        ),
        peer_figure(
            system,
            "inprocess_dag",
            "per step, fresh runtime",
            "us",
            [wall / steps * 1e6 for wall in walls],
            note=note,
        ),
    ]


def dag_scaled(levels: int) -> tuple[str, str]:
    """Return (metric suffix, note) for a peer's extra row of a DAG of ``levels``."""
    if levels == inprocess_dag.LEVELS:
        return "", ""
    steps = levels * inprocess_dag.WIDTH
    return f" ({steps} steps)", f"{steps} of 200 steps ({levels} levels x 10)"


def parallel_figures(
    system: str, steps: int, cold: list[float], warm: list[float], note: str
) -> list[Figure]:
    """Return workload 3's figures; steps/s is ``steps`` / the warm run's wall."""
    full = steps == parallel_steps.SMALL
    note = "; ".join(filter(None, [note, "" if full else f"{steps} of 64 steps"]))
    suffix = "" if full else f" ({steps} steps)"
    metric = "64 sync steps, 2 workers, "
    return [
        peer_figure(
            system, "parallel_steps", metric + "cold" + suffix, "s", cold, note=note
        ),
        peer_figure(
            system, "parallel_steps", metric + "warm" + suffix, "s", warm, note=note
        ),
        peer_figure(
            system,
            "parallel_steps",
            "1,000 sync steps, 2 workers",
            "steps/s",
            [steps / w for w in warm],
            better="higher",
            note=f"{steps} steps / wall of the {steps}-step run",
        ),
    ]


def pool_figures(
    system: str, steps: int, walls: list[float], rates: list[float], round_trip: str
) -> list[Figure]:
    """Return workload 4's figures: the pooled run's wall, / ideal, round trips."""
    ideal = pools.ideal_s(steps)
    full = steps == pools.STEPS
    scaled = "" if full else f"{steps} of 40 steps"
    metric = "40 x 50 ms in a pool of 4, wall"
    return [
        peer_figure(
            system,
            "pools",
            metric + ("" if full else f" ({steps} steps)"),
            "s",
            walls,
            note=scaled,
        ),
        peer_figure(
            system,
            "pools",
            metric + " / ideal",
            "x",
            [wall / ideal for wall in walls],
            note=scaled,
        ),
        peer_figure(
            system,
            "pools",
            "claim+release round trips (durable)",
            "/s",
            rates,
            better="higher",
            note=round_trip,
        ),
    ]


def queue_figures(
    system: str, rates: list[float], waits: list[list[float]], note: str
) -> list[Figure]:
    """Return workload 5's figures: runs/s, and admission latency p50 and p99.

    ``waits`` holds each repeat's admission latencies in seconds.
    """
    p50s = [percentile(waited, 0.5) * 1000 for waited in waits]
    p99s = [percentile(waited, 0.99) * 1000 for waited in waits]
    return [
        peer_figure(
            system,
            "run_queue",
            "1,000 one-step runs through the queue",
            "runs/s",
            rates,
            better="higher",
            note=note,
        ),
        peer_figure(
            system, "run_queue", "admission latency p50", "ms", p50s, note=note
        ),
        peer_figure(
            system, "run_queue", "admission latency p99", "ms", p99s, note=note
        ),
    ]
