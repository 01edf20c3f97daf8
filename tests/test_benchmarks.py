"""The benchmark suite runs end to end at tiny sizes and reports every workload."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import UVLOOP_WORKLOADS, WORKLOADS
from benchmarks.figures import FIELDS

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


@pytest.mark.skipif(
    importlib.util.find_spec("dagster") is not None,
    reason="dagster is installed here: the peers would run",
)
def test_suite_says_why_peers_are_skipped(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    done = run_suite(
        "--repeat", "1", "--only", "peers", "--json", str(out), timeout_s=60
    )
    assert "Dagster peers skipped: dagster is not installed" in done.stdout
    assert out.read_text() == ""
