"""Figures: what a workload measured, and how the suite reports it.

Every workload module returns a list of ``Figure`` (one per number it measures,
holding every repeat's value); this module turns them into the printed table and
the JSON lines, and gives each module the same small command line
(``--repeat N``, ``--quick``, ``--json PATH``). It also holds the two things every
workload sets up the same way: a temporary ``RIVERS_HOME`` and an event loop that
uses uvloop exactly when rivers would.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from pathlib import Path

__all__ = (
    "FIELDS",
    "Figure",
    "environment",
    "figure_from_json",
    "format_comparison",
    "format_table",
    "make_sync_assets",
    "mark_quick",
    "module_main",
    "percentile",
    "temporary_home",
    "write_json_lines",
)

FIELDS = (
    "workload",
    "metric",
    "unit",
    "median",
    "min",
    "max",
    "runs",
    "uvloop",
    "python",
    "machine",
    "system",
    "better",
    "note",
    "values",
)
"""The keys of every JSON line, in this order (``values``: every repeat's value)."""

Better = Literal["lower", "higher"]


@dataclass(slots=True)
class Figure:
    """One measured number of one workload, with the value of every repeat.

    ``better`` says which direction is an improvement (seconds: lower; rates:
    higher), so a comparison can say "N x faster" either way. ``note`` says how
    the workload differed from its definition (for example a peer run at a
    reduced size).
    """

    workload: str
    metric: str
    unit: str
    values: list[float]
    better: Better = "lower"
    system: str = "rivers"
    uvloop: bool = field(default_factory=lambda: _uvloop_in_use())
    note: str = ""

    @property
    def median(self) -> float:
        """The median of the values."""
        return statistics.median(self.values)

    def as_json(self) -> dict[str, Any]:
        """Return the JSON line's object (see ``FIELDS``)."""
        python, machine = environment()
        return {
            "workload": self.workload,
            "metric": self.metric,
            "unit": self.unit,
            "median": self.median,
            "min": min(self.values),
            "max": max(self.values),
            "runs": len(self.values),
            "uvloop": self.uvloop,
            "python": python,
            "machine": machine,
            "system": self.system,
            "better": self.better,
            "note": self.note,
            "values": list(self.values),
        }


def figure_from_json(data: dict[str, Any]) -> Figure:
    """Rebuild a figure from its JSON object (a peer's subprocess prints them)."""
    return Figure(
        workload=data["workload"],
        metric=data["metric"],
        unit=data["unit"],
        values=[float(v) for v in data["values"]],
        better=data["better"],
        system=data["system"],
        uvloop=bool(data["uvloop"]),
        note=data.get("note", ""),
    )


def _uvloop_in_use() -> bool:
    from rivers.materialize import uvloop_available

    return uvloop_available()


def environment() -> tuple[str, str]:
    """Return (python version, a short description of this machine)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    machine = f"{platform.system()} {platform.machine()}, {cpus or os.cpu_count()} CPUs"
    model = _cpu_model()
    if model:
        machine += f", {model}"
    return platform.python_version(), machine


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile (``fraction`` in 0..1) of ``values``."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


# --------------------------------------------------------------------- setup


@contextlib.contextmanager
def temporary_home() -> Iterator[str]:
    """Point ``RIVERS_HOME`` at a fresh directory (and hide progress displays).

    The progress line only shows on a terminal; hiding it keeps a figure the same
    whether the suite prints to a terminal or a file.
    """
    saved = {key: os.environ.get(key) for key in ("RIVERS_HOME", "RIVERS_NO_PROGRESS")}
    with tempfile.TemporaryDirectory(prefix="rivers-bench-") as home:
        os.environ["RIVERS_HOME"] = home
        os.environ["RIVERS_NO_PROGRESS"] = "1"
        try:
            yield home
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def make_sync_assets(
    names: Iterable[str],
    params: Callable[[str], Sequence[str]],
    body: Callable[[str], str],
    decorate: Callable[[Any], Any] | None = None,
) -> list[Any]:
    """Return one asset per name: ``decorate(def name(*params): body(name))``.

    The functions are compiled from source so each has its own name and real
    parameters (a parameter names an upstream asset). ``decorate`` defaults to
    ``rs.Asset``; a peer passes its own decorator, so both build the same graph.
    """
    if decorate is None:
        import rivers as rs

        decorate = rs.Asset
    assets = []
    for name in names:
        namespace: dict[str, Any] = {"__name__": __name__}
        source = f"def {name}({', '.join(params(name))}):\n    {body(name)}\n"
        exec(source, namespace)
        assets.append(decorate(namespace[name]))
    return assets


# ------------------------------------------------------------------ reporting


def _number(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _spread(figure: Figure) -> str:
    if len(figure.values) == 1:
        return f"{_number(figure.median)} (1 run)"
    return (
        f"{_number(figure.median)} ({_number(min(figure.values))} .. "
        f"{_number(max(figure.values))}, {len(figure.values)} runs)"
    )


def _ratio(ours: Figure, theirs: Figure) -> str:
    """Say how many times better ``ours`` is than ``theirs``."""
    if ours.median <= 0 or theirs.median <= 0:
        return "-"
    times = (
        theirs.median / ours.median
        if ours.better == "lower"
        else ours.median / theirs.median
    )
    return f"{times:,.0f}x" if times >= 10 else f"{times:.2f}x"


def _render(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        )
    return "\n".join(line.rstrip() for line in lines)


def format_table(figures: Sequence[Figure]) -> str:
    """Return the rivers figures (uvloop as configured) with any peer side by side.

    A peer figure is matched by workload and metric (a peer's "import NAME"
    matches "import rivers"); the "vs NAME" column says how many times better
    rivers is than that peer (faster, or higher throughput). Peer figures with no
    rivers twin (another size, another instance kind) get rows of their own.
    Notes are numbered under the table.
    """
    ours = [f for f in figures if f.system == "rivers" and f.uvloop == _uvloop_in_use()]
    peers = [f for f in figures if f.system != "rivers"]
    peer_names = sorted({f.system for f in peers})
    header = ["workload", "metric", "unit", "rivers median (min .. max)"]
    for name in peer_names:
        header += [name, f"vs {name}"]
    notes: list[str] = []

    def cell(figure: Figure | None) -> str:
        if figure is None:
            return "-"
        text = _spread(figure)
        if figure.note:
            if figure.note not in notes:
                notes.append(figure.note)
            text += f" [{notes.index(figure.note) + 1}]"
        return text

    rows = []
    matched: set[int] = set()
    for figure in ours:
        row = [figure.workload, figure.metric, figure.unit, cell(figure)]
        for name in peer_names:
            match = next(
                (
                    p
                    for p in peers
                    if p.system == name
                    and p.workload == figure.workload
                    and _twin_metric(p) == figure.metric
                ),
                None,
            )
            if match is not None:
                matched.add(id(match))
            row += [cell(match), "" if match is None else _ratio(figure, match)]
        rows.append(row)
    for peer in peers:
        if id(peer) not in matched:
            row = [peer.workload, peer.metric, peer.unit, "-"]
            for name in peer_names:
                row += [cell(peer) if name == peer.system else "-", ""]
            rows.append(row)
    text = _render(header, rows)
    if notes:
        text += "\n" + "\n".join(f"[{i}] {note}" for i, note in enumerate(notes, 1))
    return text


def _twin_metric(peer: Figure) -> str:
    """Return the metric of rivers' twin of a peer figure."""
    if peer.metric == f"import {peer.system}":
        return "import rivers"
    return peer.metric


def format_comparison(figures: Sequence[Figure]) -> str:
    """Return the figures measured both with and without uvloop, side by side."""
    ours = [f for f in figures if f.system == "rivers"]
    rows = []
    for on in (f for f in ours if f.uvloop):
        off = next(
            (
                f
                for f in ours
                if not f.uvloop and f.workload == on.workload and f.metric == on.metric
            ),
            None,
        )
        if off is not None:
            rows.append(
                [
                    on.workload,
                    on.metric,
                    on.unit,
                    _number(on.median),
                    _number(off.median),
                    _ratio(on, off),
                ]
            )
    if not rows:
        return ""
    header = ["workload", "metric", "unit", "uvloop on", "uvloop off", "on vs off"]
    return _render(header, rows)


def mark_quick(figures: list[Figure]) -> list[Figure]:
    """Note on each figure that it was measured at ``--quick`` sizes."""
    for figure in figures:
        figure.note = "; ".join(filter(None, ["quick sizes", figure.note]))
    return figures


def write_json_lines(path: str | Path, figures: Iterable[Figure]) -> None:
    """Write one JSON object per figure (``FIELDS``), replacing the file."""
    with open(path, "w", encoding="utf-8") as out:
        for figure in figures:
            out.write(json.dumps(figure.as_json()) + "\n")


def module_main(
    collect: Callable[[int, bool], list[Figure]], description: str | None
) -> None:
    """Run one workload module from its own command line and print its figures."""
    parser = argparse.ArgumentParser(
        description=(description or "").strip().splitlines()[0]
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure")
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    parser.add_argument("--json", metavar="PATH", help="also write JSON lines here")
    args = parser.parse_args()
    with temporary_home():
        figures = collect(max(1, args.repeat), args.quick)
    print(format_table(mark_quick(figures) if args.quick else figures))
    if args.json:
        write_json_lines(args.json, figures)
