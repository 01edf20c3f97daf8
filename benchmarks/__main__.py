"""The benchmark suite: ``python -m benchmarks`` (or ``make bench``).

Runs every workload (each module's docstring defines it exactly), repeats the
event-loop-bound ones (1, 4 and 5) with uvloop turned off (``RIVERS_UVLOOP=0``),
and, when ``import dagster`` works, the Dagster peers of workloads 1, 3, 4 and 5.
Prints one table (median of ``--repeat`` runs, min and max, Dagster and the ratio
beside each figure it has) and writes one JSON line per figure.

    python -m benchmarks [--repeat 5] [--quick] [--only NAME[,NAME]]
                         [--json PATH] [--no-peers] [--peer-timeout S]
                         [--peer-scale F] [--peer-repeat N] [--peer-queue-runs N]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import time
from pathlib import Path

from benchmarks import UVLOOP_WORKLOADS, WORKLOADS
from benchmarks.figures import (
    Figure,
    format_comparison,
    format_table,
    mark_quick,
    temporary_home,
    write_json_lines,
)

PEER_WORKLOADS = {
    "dag": "inprocess_dag",
    "parallel": "parallel_steps",
    "pools": "pools",
    "queue": "run_queue",
}
NAMES = (*WORKLOADS, "uvloop", "peers")
DEFAULT_JSON = Path(__file__).with_name("results.jsonl")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the suite's options."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="run the rivers benchmark suite"
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, to check the suite runs"
    )
    parser.add_argument(
        "--only",
        metavar="NAME[,NAME]",
        help=f"run only these: {', '.join(NAMES)}",
    )
    parser.add_argument(
        "--json", metavar="PATH", default=str(DEFAULT_JSON), help="JSON lines output"
    )
    parser.add_argument("--no-peers", action="store_true", help="skip Dagster")
    parser.add_argument(
        "--peer-timeout",
        type=float,
        default=900.0,
        metavar="S",
        help="seconds allowed for each Dagster workload",
    )
    parser.add_argument(
        "--peer-scale",
        type=float,
        default=1.0,
        metavar="F",
        help="run Dagster's workloads at this fraction of their size "
        "(figures are then normalised per step and marked)",
    )
    parser.add_argument("--peer-repeat", type=int, default=1, metavar="N")
    parser.add_argument(
        "--peer-queue-runs",
        type=int,
        default=20,
        metavar="N",
        help="runs Dagster's queue workload submits at most (1,000 take ~15 min)",
    )
    args = parser.parse_args(argv)
    selected = set(NAMES) if not args.only else set(args.only.split(","))
    unknown = selected - set(NAMES)
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(sorted(unknown))}")
    if args.no_peers:
        selected.discard("peers")
    args.selected = selected
    return args


def run_workload(name: str, repeat: int, quick: bool) -> list[Figure]:
    """Run one workload module's ``collect`` in a fresh ``RIVERS_HOME``."""
    module = importlib.import_module(f"benchmarks.{name}")
    print(f"  {name} ...", file=sys.stderr, flush=True)
    with temporary_home():
        figures: list[Figure] = module.collect(repeat, quick)
    return mark_quick(figures) if quick else figures


def uvloop_off(repeat: int, quick: bool) -> list[Figure]:
    """Run workloads 1, 4 and 5 again with ``RIVERS_UVLOOP=0``."""
    saved = os.environ.get("RIVERS_UVLOOP")
    os.environ["RIVERS_UVLOOP"] = "0"
    try:
        return [
            figure
            for name in UVLOOP_WORKLOADS
            for figure in run_workload(name, repeat, quick)
        ]
    finally:
        if saved is None:
            os.environ.pop("RIVERS_UVLOOP", None)
        else:
            os.environ["RIVERS_UVLOOP"] = saved


def dagster_missing() -> str | None:
    """Return why the Dagster peers cannot run here, or None when they can."""
    if importlib.util.find_spec("dagster") is None:
        return (
            "dagster is not installed in this interpreter (it is no dependency of "
            "rivers; see docs/performance.md to run the peers)"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the suite; return the exit status."""
    args = parse_args(argv)
    repeat = max(1, args.repeat)
    began = time.perf_counter()
    figures: list[Figure] = []
    messages: list[str] = []
    for name in WORKLOADS:
        if name in args.selected or (
            "uvloop" in args.selected and name in UVLOOP_WORKLOADS
        ):
            figures += run_workload(name, repeat, args.quick)
    if "uvloop" in args.selected:
        if importlib.util.find_spec("uvloop") is None:
            messages.append("uvloop comparison skipped: uvloop is not installed")
        else:
            figures += uvloop_off(repeat, args.quick)
    if "peers" in args.selected:
        missing = dagster_missing()
        if missing is not None:
            messages.append(f"Dagster peers skipped: {missing}")
        else:
            from benchmarks.peers import dagster_peer

            sizes = dagster_peer.sizes(
                args.peer_scale, args.quick, args.peer_queue_runs
            )
            # The peers of the selected workloads; all of them for `--only peers`.
            wanted = {
                peer: size
                for peer, size in sizes.items()
                if PEER_WORKLOADS[peer] in args.selected
            } or sizes
            found, problems = dagster_peer.figures(
                wanted, max(1, args.peer_repeat), args.peer_timeout
            )
            figures += found
            messages += problems
    print()
    print(format_table(figures))
    comparison = format_comparison(figures)
    if comparison:
        print("\nuvloop on vs off (workloads 1, 4 and 5)\n")
        print(comparison)
    for message in messages:
        print(f"\n{message}")
    if args.json:
        write_json_lines(args.json, figures)
        print(f"\n{len(figures)} figures written to {args.json}", end="")
    print(f" in {time.perf_counter() - began:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
