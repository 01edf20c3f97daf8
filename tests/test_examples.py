"""Every example runs with its one command and shows what it says it shows.

Each ``examples/*.py`` runs in a subprocess (this interpreter, so the dev virtualenv)
from an empty working directory, with ``TMPDIR`` and ``RIVERS_HOME`` pointing at
empty directories. The test checks the exit code, parses what the example printed
(the demonstrated property, such as a peak against its limit), and checks that it
left nothing behind. A new example without a check here fails
``test_every_example_is_checked``; the README must give each one's command.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TIMEOUT_S = 60


class Ran:
    """An example's output, and the directories it was given."""

    def __init__(self, stdout: str, home: Path) -> None:
        self.stdout = stdout
        self.home = home

    def find(self, pattern: str) -> list[tuple[str, ...]]:
        """Every match of ``pattern`` in the output (its groups)."""
        found = re.findall(pattern, self.stdout)
        assert found, f"no {pattern!r} in the output:\n{self.stdout}"
        return [match if isinstance(match, tuple) else (match,) for match in found]


def run_example(name: str, tmp_path: Path, env: dict[str, str] | None = None) -> Ran:
    """Run ``python examples/NAME`` as a user would; return what it printed."""
    cwd, tmp, home = (tmp_path / d for d in ("cwd", "tmp", "home"))
    for directory in (cwd, tmp, home):
        directory.mkdir()
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("KUBECONFIG", "EXAMPLE_IMAGE")
    }
    environment |= {"TMPDIR": str(tmp), "RIVERS_HOME": str(home)}
    environment |= {"RIVERS_NO_PROGRESS": "1", **(env or {})}
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    output = f"stdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
    assert completed.returncode == 0, output
    assert "Traceback" not in completed.stderr, output
    assert _files(cwd) == [], f"{name} left files in the working directory"
    assert _files(tmp) == [], f"{name} left files in TMPDIR"
    return Ran(completed.stdout, home)


def _files(directory: Path) -> list[str]:
    # Coverage (patch = subprocess) writes its data files where it is told; ignore them.
    return sorted(
        str(p.relative_to(directory))
        for p in directory.rglob("*")
        if not p.name.startswith(".coverage")
    )


def check_quickstart(ran: Ran) -> None:
    ((status,),) = ran.find(r"run \w+: (\w+)")
    assert status == "SUCCESS"
    assert "Top customers by revenue:" in ran.stdout
    assert len(ran.find(r"(?m)^\s+\w+\s+SUCCESS\s")) == 5
    assert (ran.home / "rivers.db").exists(), "quickstart keeps its run in RIVERS_HOME"


def _leaves_rivers_home_alone(ran: Ran) -> None:
    assert _files(ran.home) == [], "the example should use a throwaway RIVERS_HOME"


def check_run_queue(ran: Ran) -> None:
    ((peak, limit),) = ran.find(
        r"peak (\d+) runs in flight <= max_concurrent_runs (\d+)"
    )
    assert 1 <= int(peak) <= int(limit) == 2
    assert ran.find(r"QUEUED, \d+\w\w in the queue: max_concurrent_runs 2/2 in flight")
    ((position,),) = ran.find(r"urgent run \(priority 10\) admitted (\d+) of 8")
    assert int(position) <= 3, "a priority-10 run submitted last must jump the queue"
    assert ran.find(r"all runs: (\w+)") == [("SUCCESS",)]
    _leaves_rivers_home_alone(ran)


def check_tag_limits(ran: Ran) -> None:
    peaks = ran.find(r"team (\w): (\d) run\(s\), peak (\d+) in flight <= limit (\d+)")
    assert {team: (int(runs), int(limit)) for team, runs, _, limit in peaks} == {
        "a": (4, 2),
        "b": (4, 1),
        "c": (1, 2),
    }
    assert all(1 <= int(peak) <= int(limit) for _, _, peak, limit in peaks), peaks
    assert ran.find(r"tag limit team=a 2/2")
    assert ran.find(r"tag limit team=b 1/1")
    ((waited,),) = ran.find(r"team c waited ([\d.]+) s")
    assert float(waited) < 1.0, "a run of another team is not held back"
    assert ran.find(r"all runs: (\w+)") == [("SUCCESS",)]
    _leaves_rivers_home_alone(ran)


def check_parallel_executor(ran: Ran) -> None:
    assert ran.find(r"run \w+: (\w+), 16 steps") == [("SUCCESS",)]
    ((sync, workers),) = ran.find(
        r"sync steps.*: 9 steps, peak (\d+) <= max_workers (\d)"
    )
    assert 1 <= int(sync) <= int(workers) == 3
    ((asyncs, cap),) = ran.find(
        r"async steps.*: 6 steps, peak (\d+) <= max_async_concurrent (\d)"
    )
    assert 1 <= int(asyncs) <= int(cap) == 2
    pids = ran.find(r"ran on: (pid \d+(?:, pid \d+)*)")[0][0].split(", ")
    assert 1 <= len(pids) <= 3, "sync steps run in at most max_workers processes"
    _leaves_rivers_home_alone(ran)


def check_database_pool(ran: Ran) -> None:
    ((limit, claimed),) = ran.find(
        r"pool database: limit (\d+) \(from the repository\), (\d+) slots claimed"
    )
    assert int(claimed) <= int(limit) == 2
    ((peak, pool_limit),) = ran.find(r"peak (\d+) open connections <= pool limit (\d+)")
    assert 1 <= int(peak) <= int(pool_limit) == 2
    assert ran.find(r"3 runs, 9 steps on the database: (\w+)") == [("SUCCESS",)]
    _leaves_rivers_home_alone(ran)


def check_sensor(ran: Ran) -> None:
    runs = ran.find(r"(orders-\d{3}\.csv)  (\w+)  queued [\d.]+ s  ingested (\d+) rows")
    assert [(name, status) for name, status, _ in runs] == [
        (f"orders-{n:03}.csv", "SUCCESS") for n in range(1, 6)
    ]
    assert [int(rows) for _, _, rows in runs] == [10, 20, 30, 40, 50]
    assert "5 files, 5 runs: none twice" in ran.stdout
    _leaves_rivers_home_alone(ran)


def check_kubernetes_dry_run(ran: Ran) -> None:
    assert "KUBECONFIG is not set: nothing runs" in ran.stdout
    assert "max_concurrent_steps=2" in ran.stdout
    manifest = json.loads(
        ran.stdout[ran.stdout.index("\n{") : ran.stdout.rindex("}") + 1]
    )
    assert manifest["kind"] == "Job"
    assert manifest["spec"]["backoffLimit"] == 0
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "rivers.worker"]
    assert container["args"][container["args"].index("--asset") + 1] == "train_large"
    # What the user's image runs: its own copy of the file, not this checkout's.
    assert container["args"][container["args"].index("--file") + 1] == (
        "/app/kubernetes_executor.py"
    )
    assert str(EXAMPLES) not in ran.stdout
    assert container["resources"]["limits"] == {"memory": "8Gi"}
    assert manifest["metadata"]["labels"]["team"] == "ml"
    _leaves_rivers_home_alone(ran)


def check_pool_aware_admission(ran: Ran) -> None:
    assert ran.find(r"report: (SUCCESS) while the load still runs")
    assert ran.find(
        r"QUEUED, 1st in the queue: its first steps all wait on full pools: "
        r"warehouse 1/1"
    )
    assert ran.find(r"queries: (\w+)\n") == [("SUCCESS",)]
    assert ran.find(r"queries started one at a time: (True)")
    _leaves_rivers_home_alone(ran)


def check_observability(ran: Ran) -> None:
    ((limit, window),) = ran.find(
        r"warehouse limit now: (\d) \((no window|window '[^']+')"
    )
    assert (limit, window) in {("1", "window '0 8-18 * * 1-5'"), ("4", "no window")}
    assert ran.find(
        r"step query_\d waits for pool warehouse \(\d/\d slots\): expected in ~"
    )
    found = ran.find(r'scraped: (rivers_pool_\w+)\{pool="warehouse"\} (\S+)')
    scraped = {pair[0]: pair[1] for pair in found}
    assert scraped["rivers_pool_limit_slots"] == f"{limit}.0"
    assert float(scraped["rivers_pool_claimed_slots"]) >= 1
    assert ran.find(r"raising warehouse \d -> \d would have cut p95 wait from")
    _leaves_rivers_home_alone(ran)


def check_rate_limits(ran: Ran) -> None:
    assert ran.find(r"run \w+: (\w+), 12 calls") == [("SUCCESS",)]
    offsets = [float(o) for (o,) in ran.find(r"call started at \+([\d.]+) s")]
    gaps = [float(g) for (g,) in ran.find(r"\(gap ([\d.]+) s\)")]
    assert len(offsets) == 12
    assert len(gaps) == 11
    # 4 slots would let 4 start at once; the rate spaces them a token (0.1 s)
    # apart, with a little slack for the time from a claim to the step's first line.
    assert min(gaps) > 0.09, gaps
    ((achieved, rate),) = ran.find(r"achieved ([\d.]+) starts/s at rate (\d+)/s")
    # Woken when each token is due, not at the next poll (0.2 s).
    assert 7.5 < float(achieved) <= int(rate) == 10
    ((peak, limit),) = ran.find(r"most starts in any 1 s window: (\d+) <= rate (\d+)")
    assert 1 <= int(peak) <= int(limit) == 10
    ((tokens, next_in),) = ran.find(
        r"pool api: limit 4 \(repository\), rate 10/s \(repository\), burst 1: "
        r"([\d.]+) token\(s\) now, next token in ([\d.]+) s"
    )
    # The bucket was just drained: under one token, the next one due when it fills.
    assert 0 <= float(tokens) <= 1
    assert abs(float(next_in) - (1 - float(tokens)) / 10) < 0.002
    _leaves_rivers_home_alone(ran)


CHECKS: dict[str, Callable[[Ran], None]] = {
    "observability.py": check_observability,
    "rate_limits.py": check_rate_limits,
    "pool_aware_admission.py": check_pool_aware_admission,
    "quickstart.py": check_quickstart,
    "run_queue.py": check_run_queue,
    "tag_limits.py": check_tag_limits,
    "parallel_executor.py": check_parallel_executor,
    "database_pool.py": check_database_pool,
    "sensor.py": check_sensor,
    "kubernetes_executor.py": check_kubernetes_dry_run,
}


def test_every_example_is_checked() -> None:
    found = sorted(path.name for path in EXAMPLES.glob("*.py"))
    assert found == sorted(CHECKS), (
        "each examples/*.py needs a check in tests/test_examples.py (CHECKS)"
    )


def test_the_readme_gives_each_example_its_command() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in CHECKS if f"python examples/{name}" not in readme]
    assert missing == [], f"README.md does not show how to run {missing}"


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_example_runs_and_shows_its_point(name: str, tmp_path: Path) -> None:
    CHECKS[name](run_example(name, tmp_path))


def test_the_kubernetes_example_runs_on_a_cluster(tmp_path: Path) -> None:
    kubeconfig = os.environ.get("RIVERS_TEST_KUBECONFIG")
    if not kubeconfig:
        pytest.skip(
            "RIVERS_TEST_KUBECONFIG is not set, so examples/kubernetes_executor.py ran "
            "only in its dry mode; .ci/run starts ../shared/k8s-testbed and sets it"
        )
    ran = run_example("kubernetes_executor.py", tmp_path, {"KUBECONFIG": kubeconfig})
    assert ran.find(r"run \w+: (\w+)") == [("SUCCESS",)]
    jobs = ran.find(r"(?m)^  (\w+)\s+SUCCESS\s+job default/rivers-\S+$")
    assert sorted(job for (job,) in jobs) == [
        "features",
        "train_baseline",
        "train_large",
        "train_small",
    ]
    assert len(ran.find(r"(?m)^  \w+ says: .* in pod \S+ \(pid \d+\)$")) == 4
    ((peak, limit),) = ran.find(
        r"peak (\d+) step Jobs at once <= max_concurrent_steps (\d)"
    )
    assert 1 <= int(peak) <= int(limit) == 2
    _leaves_rivers_home_alone(ran)
