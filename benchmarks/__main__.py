"""The benchmark suite: ``python -m benchmarks`` (or ``make bench``).

Runs every workload (each module's docstring defines it exactly), repeats the
event-loop-bound ones (1, 4 and 5) with uvloop turned off (``RIVERS_UVLOOP=0``),
and the peers' versions of workloads 1, 3, 4, 5 and 6's import: Dagster's when
``import dagster`` works, Prefect's when ``import prefect`` does. Prints one table
(median of ``--repeat`` runs, min and max, each peer and rivers' ratio to it beside
each figure it has) and writes one JSON line per figure.

    python -m benchmarks [--repeat 5] [--quick] [--only NAME[,NAME]]
                         [--json PATH] [--no-peers] [--peer NAME[,NAME]]
                         [--peer-timeout S] [--peer-scale F] [--peer-repeat N]
                         [--peer-queue-runs N]
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
from benchmarks.peers.common import (
    DEFAULT_QUEUE_RUNS,
    SUITE_WORKLOADS,
    run_workloads,
    sizes as peer_sizes,
)

PEERS = {"dagster": "Dagster", "prefect": "Prefect"}
"""The peers (``benchmarks/peers/NAME_peer.py``, importable as NAME), and their names."""
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
    parser.add_argument("--no-peers", action="store_true", help="skip every peer")
    parser.add_argument(
        "--peer",
        metavar="NAME[,NAME]",
        default=",".join(PEERS),
        help=f"the peers to compare with (default: {', '.join(PEERS)})",
    )
    parser.add_argument(
        "--peer-timeout",
        type=float,
        default=900.0,
        metavar="S",
        help="seconds allowed for each peer workload",
    )
    parser.add_argument(
        "--peer-scale",
        type=float,
        default=1.0,
        metavar="F",
        help="run the peers' workloads at this fraction of their size "
        "(figures are then normalised per step and marked)",
    )
    parser.add_argument("--peer-repeat", type=int, default=1, metavar="N")
    parser.add_argument(
        "--peer-queue-runs",
        type=int,
        default=DEFAULT_QUEUE_RUNS,
        metavar="N",
        help="runs a peer's queue workload submits at most (1,000 take minutes)",
    )
    args = parser.parse_args(argv)
    selected = set(NAMES) if not args.only else set(args.only.split(","))
    unknown = selected - set(NAMES)
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(sorted(unknown))}")
    peers = [name for name in args.peer.split(",") if name]
    unknown_peers = set(peers) - set(PEERS)
    if unknown_peers:
        parser.error(f"unknown peer(s) {', '.join(sorted(unknown_peers))}")
    if args.no_peers:
        selected.discard("peers")
    args.selected = selected
    args.peers = peers
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


def peer_missing(name: str) -> str | None:
    """Return why peer ``name`` cannot run here, or None when it can."""
    if importlib.util.find_spec(name) is None:
        return (
            f"{name} is not installed in this interpreter (it is no dependency of "
            "rivers; see docs/performance.md to run the peers)"
        )
    return None


def run_peers(args: argparse.Namespace) -> tuple[list[Figure], list[str]]:
    """Run each chosen peer's twins of the selected workloads; say why any is skipped.

    Returns:
        The peers' figures, and one message per peer skipped or workload failed.
    """
    figures: list[Figure] = []
    messages: list[str] = []
    # The twins of the selected workloads; all of them for `--only peers`.
    wanted = [
        peer for peer, ours in SUITE_WORKLOADS.items() if ours in args.selected
    ] or list(SUITE_WORKLOADS)
    sizes = peer_sizes(wanted, args.peer_scale, args.quick, args.peer_queue_runs)
    for name in args.peers:
        missing = peer_missing(name)
        if missing is not None:
            messages.append(f"{PEERS[name]} peers skipped: {missing}")
            continue
        found, problems = run_workloads(
            f"benchmarks.peers.{name}_peer",
            sizes,
            max(1, args.peer_repeat),
            args.peer_timeout,
        )
        figures += mark_quick(found) if args.quick else found
        messages += problems
    return figures, messages


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
        found, problems = run_peers(args)
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
