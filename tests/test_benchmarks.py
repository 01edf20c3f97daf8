"""The benchmark suite runs end to end at tiny sizes and reports every workload."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import UVLOOP_WORKLOADS, WORKLOADS
from benchmarks.__main__ import parse_args
from benchmarks.figures import FIELDS, Figure, format_table
from benchmarks.peers.common import (
    SUITE_WORKLOADS,
    peer_figure,
    run_workloads,
    sizes as peer_sizes,
)
from benchmarks.postgres import POSTGRES, ROWS, SERVER_VARIABLE, SQLITE

ROOT = Path(__file__).resolve().parents[1]


def run_suite(*args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_quick_suite_writes_every_workload_as_json_lines(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    done = run_suite("--repeat", "2", "--no-peers", "--json", str(out), timeout_s=100)
    figures = [json.loads(line) for line in out.read_text().splitlines()]
    assert {f["workload"] for f in figures} == set(WORKLOADS)
    for figure in figures:
        assert tuple(figure) == FIELDS
        assert figure["system"] == "rivers"
        assert figure["runs"] == len(figure["values"]) >= 1
        assert figure["min"] <= figure["median"] <= figure["max"]
        assert figure["min"] > 0, figure
        assert "quick sizes" in figure["note"]
    # Workload 7: 1, 4 and 5 again with uvloop off (uvloop is a dependency).
    assert {f["workload"] for f in figures if not f["uvloop"]} == set(UVLOOP_WORKLOADS)
    # The table names every workload, then the uvloop comparison.
    for name in WORKLOADS:
        assert name in done.stdout
    assert "uvloop on vs off" in done.stdout
    if not os.environ.get(SERVER_VARIABLE):  # the postgres workload says why not
        assert (
            f"PostgreSQL figures skipped: {SERVER_VARIABLE} is not set" in done.stdout
        )


@pytest.mark.postgres
def test_postgres_workload_measures_each_figure_on_both_storages(
    postgres_admin_url: str,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.postgres", "--quick", "--repeat", "1"],
        cwd=ROOT,
        env={**os.environ, SERVER_VARIABLE: postgres_admin_url},
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "failed" not in done.stdout, done.stdout + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    header = re.split(r"\s{2,}", lines[0])
    assert header[2:] == [f"{SQLITE} median", f"{POSTGRES} median", "target"]
    for row in ROWS:
        line = next(line for line in lines if line.startswith(row.metric))
        _, unit, sqlite, postgres, target = re.split(r"\s{2,}", line)
        assert (unit, target) == (row.unit, row.target)
        assert sqlite.endswith("(1 run)"), line
        assert postgres.endswith("(1 run)"), line


def test_inbox_hop_measures_claims_called_directly_and_through_an_inbox() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.inbox_hop", "--quick", "--repeat", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for metric in ("claim+release, direct calls", "claim+release, through an inbox"):
        line = next(line for line in done.stdout.splitlines() if metric in line)
        rate = re.split(r"\s{2,}", line)[3].split()[0]
        assert float(rate.replace(",", "")) > 0, line


@pytest.mark.parametrize(
    ("peer", "title"), [("dagster", "Dagster"), ("prefect", "Prefect")]
)
def test_suite_says_why_a_missing_peer_is_skipped(
    tmp_path: Path, peer: str, title: str
) -> None:
    if importlib.util.find_spec(peer) is not None:
        pytest.skip(f"{peer} is installed here: its peers would run")
    out = tmp_path / "results.jsonl"
    done = run_suite(
        "--repeat",
        "1",
        "--only",
        "peers",
        "--peer",
        peer,
        "--json",
        str(out),
        timeout_s=60,
    )
    assert f"{title} peers skipped: {peer} is not installed" in done.stdout
    assert out.read_text() == ""


def test_peer_flags_choose_the_peers() -> None:
    assert parse_args([]).peers == ["dagster", "prefect"]
    assert parse_args(["--peer", "prefect"]).peers == ["prefect"]
    assert "peers" not in parse_args(["--no-peers"]).selected
    with pytest.raises(SystemExit):
        parse_args(["--peer", "airflow"])


def test_peer_sizes_scale_the_workloads_but_not_the_import() -> None:
    names = list(SUITE_WORKLOADS)
    assert peer_sizes(names, 0.1, False, 20) == {
        "dag": 2,
        "parallel": 6,
        "pools": 4,
        "queue": 20,
        "import": 5,
    }
    assert peer_sizes(["dag"], 1.0, True, 20) == {"dag": 2}


def cells(table: str, first: str) -> list[str]:
    """Return the cells of the table's row whose metric starts ``first``."""
    lines = table.splitlines()
    spans = [m.span() for m in re.finditer(r"-+", lines[1])]
    rows = [lines[0], *lines[2:]]
    row = next(line for line in rows if line[spans[1][0] :].startswith(first))
    return [row[start : end + 2].strip() for start, end in spans]


def test_table_puts_each_peer_beside_rivers_with_rivers_ratio_to_it() -> None:
    wall = "40 x 50 ms in a pool of 4, wall"
    rate = "1,000 one-step runs through the queue"
    figures = [
        Figure("pools", wall, "s", [0.5]),
        Figure("run_queue", rate, "runs/s", [1000.0], better="higher"),
        Figure("footprint", "import rivers", "ms", [100.0]),
        peer_figure("dagster", "pools", wall, "s", [50.0]),
        peer_figure("prefect", "pools", wall, "s", [2.0]),
        peer_figure("prefect", "run_queue", rate, "runs/s", [0.5], better="higher"),
        peer_figure("prefect", "footprint", "import prefect", "ms", [900.0]),
        peer_figure("prefect", "inprocess_dag", "first flow run", "s", [12.0]),
    ]
    table = format_table(figures)
    assert cells(table, "metric")[3:] == [
        "rivers median (min .. max)",
        "dagster",
        "vs dagster",
        "prefect",
        "vs prefect",
    ]
    assert cells(table, wall)[4:] == ["50.0 (1 run)", "100x", "2.00 (1 run)", "4.00x"]
    assert cells(table, rate)[4:] == ["-", "", "0.5 (1 run)", "2,000x"]
    # A peer's own import is the twin of rivers' import.
    assert cells(table, "import rivers")[4:] == ["-", "", "900 (1 run)", "9.00x"]
    # A peer figure without a rivers twin gets a row of its own.
    assert cells(table, "first flow run")[3:] == ["-", "-", "", "12.0 (1 run)", ""]


def test_a_failing_peer_workload_is_reported_not_raised() -> None:
    figures, problems = run_workloads(
        "benchmarks.peers.nowhere_peer", {"dag": 2}, repeat=1, timeout_s=60
    )
    assert figures == []
    assert len(problems) == 1
    assert problems[0].startswith("nowhere dag failed: ")
    assert "No module named benchmarks.peers.nowhere_peer" in problems[0]
