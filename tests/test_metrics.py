"""Prometheus metrics: scraped over loopback from a live runtime and a live daemon."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

import rivers as rs


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET ``url``; return every sample as (name, sorted labels) -> value."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def _scrape_async(
    url: str,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return await anyio.to_thread.run_sync(_scrape, url)


def _pool(name: str) -> tuple[tuple[str, str], ...]:
    return (("pool", name),)


async def test_a_runtime_serves_pool_queue_and_run_metrics_during_a_run(
    tmp_path: Path,
) -> None:
    holding = anyio.Event()
    release = anyio.Event()

    @rs.Asset(pool="db")
    async def load() -> int:
        holding.set()
        await release.wait()
        return 1

    @rs.Asset(pool="db")
    async def report(load: int) -> int:
        return load + 1

    repo = rs.CodeRepository(
        [load, report],
        pool_limits={"db": 1},
        backend=rs.RunBackendConfig(storage=str(tmp_path / "rivers.db")),
    )
    async with (
        rs.Runtime(repo, metrics_addr="127.0.0.1:0") as rt,
        anyio.create_task_group() as tg,
    ):
        url = rt.metrics_url
        assert url is not None
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/metrics")

        async def run() -> None:
            result = await rt.materialize()
            assert result.success

        tg.start_soon(run)
        with anyio.fail_after(10):
            await holding.wait()
        during = await _scrape_async(url)
        assert during[("rivers_pool_limit_slots", _pool("db"))] == 1
        assert during[("rivers_pool_claimed_slots", _pool("db"))] == 1
        assert during[("rivers_pool_pending_steps", _pool("db"))] == 0
        assert during[("rivers_queue_in_flight_runs", ())] == 1
        assert ("rivers_runs_finished_total", (("status", "SUCCESS"),)) not in during
        release.set()


async def test_counters_and_histograms_follow_the_runtimes_events(
    tmp_path: Path,
) -> None:
    @rs.Asset(pool="db")
    async def ok() -> int:
        return 1

    @rs.Asset
    async def bad(ok: int) -> int:
        raise ValueError("no")

    repo = rs.CodeRepository(
        [ok, bad],
        pool_limits={"db": 2},
        backend=rs.RunBackendConfig(storage=str(tmp_path / "rivers.db")),
    )
    async with rs.Runtime(repo, metrics_addr="127.0.0.1:0") as rt:
        url = rt.metrics_url
        assert url is not None
        before = await _scrape_async(url)
        for _ in range(3):
            result = await rt.materialize()
            assert not result.success
        with anyio.fail_after(10):
            while True:
                after = await _scrape_async(url)
                if (
                    after.get(("rivers_runs_finished_total", (("status", "FAILURE"),)))
                    == 3
                ):
                    break
                await anyio.sleep(0.02)
    assert ("rivers_runs_finished_total", (("status", "FAILURE"),)) not in before
    assert after[("rivers_steps_finished_total", (("status", "SUCCESS"),))] == 3
    assert after[("rivers_steps_finished_total", (("status", "FAILURE"),))] == 3
    assert after[("rivers_step_duration_seconds_count", (("status", "SUCCESS"),))] == 3
    assert after[("rivers_step_duration_seconds_count", (("status", "FAILURE"),))] == 3
    assert after[("rivers_pool_wait_seconds_count", _pool("db"))] == 3
    assert after[("rivers_pool_claimed_slots", _pool("db"))] == 0
    assert after[("rivers_storage_event_write_seconds_count", ())] >= 1
    assert after[("rivers_storage_event_write_seconds_sum", ())] > 0


@pytest.mark.parametrize(
    "addr", ["nope", "127.0.0.1", "127.0.0.1:99999", ":80", "a b:1"]
)
def test_a_malformed_metrics_addr_is_a_config_error(addr: str) -> None:
    with pytest.raises(rs.ConfigError, match="metrics_addr must be HOST:PORT"):
        rs.Runtime(rs.CodeRepository([]), metrics_addr=addr)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


PIPELINE = """
import pathlib
import anyio
import rivers as rs

@rs.Asset(pool="warehouse")
async def job() -> int:
    marker = pathlib.Path({marker!r})
    pathlib.Path({started!r}).touch()
    while not marker.exists():
        await anyio.sleep(0.02)
    return 1

repo = rs.CodeRepository(
    [job],
    pool_limits={{"warehouse": 3}},
    run_queue=rs.RunQueueConfig(
        max_concurrent_runs=2,
        dequeue_interval="50ms",
        tag_concurrency_limits=[rs.TagConcurrencyLimit(key="team", limit=1)],
    ),
)
"""


async def test_a_live_daemon_is_scraped_over_loopback_during_a_run(
    tmp_path: Path,
) -> None:
    pipeline = tmp_path / "pipeline.py"
    pipeline.write_text(
        textwrap.dedent(
            PIPELINE.format(
                marker=str(tmp_path / "finish"), started=str(tmp_path / "started")
            )
        )
    )
    env = {**os.environ, "RIVERS_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rivers", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    for _ in range(2):
        assert cli("submit", "-f", str(pipeline), "--tag", "team=a").returncode == 0
    port = _free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    log = tmp_path / "daemon.log"
    with open(log, "wb") as out:
        daemon = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rivers",
                "daemon",
                "-f",
                str(pipeline),
                "--grace",
                "5",
                "--metrics-addr",
                f"127.0.0.1:{port}",
            ],
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        with anyio.fail_after(30):
            while not (tmp_path / "started").exists():
                assert daemon.poll() is None, log.read_text()
                await anyio.sleep(0.05)
        # The counters follow the event stream, a few ms behind the step.
        with anyio.fail_after(10):
            while True:
                during = await _scrape_async(url)
                if during.get(("rivers_run_admission_wait_seconds_count", ())) == 1:
                    break
                await anyio.sleep(0.02)
        assert during[("rivers_queue_in_flight_runs", ())] == 1
        assert during[("rivers_queue_queued_runs", ())] == 1  # held by team=a 1/1
        assert during[("rivers_queue_max_concurrent_runs", ())] == 2
        assert during[("rivers_queue_tag_limit_runs", (("limit", "team"),))] == 1
        assert (
            during[
                (
                    "rivers_queue_tag_bucket_runs",
                    (("bucket", "team"), ("limit", "team")),
                )
            ]
            == 1
        )
        assert during[("rivers_pool_claimed_slots", _pool("warehouse"))] == 1
        assert during[("rivers_pool_limit_slots", _pool("warehouse"))] == 3
        assert during[("rivers_run_admission_wait_seconds_count", ())] == 1
        (tmp_path / "finish").touch()
        with anyio.fail_after(30):
            while True:
                after = await _scrape_async(url)
                if (
                    after.get(("rivers_runs_finished_total", (("status", "SUCCESS"),)))
                    == 2
                ):
                    break
                await anyio.sleep(0.05)
        # A scrape reads the storage gauges before it renders the counters, so the
        # one that saw the second success may hold gauges from before it: scrape
        # again, now that both runs have ended.
        after = await _scrape_async(url)
        assert after[("rivers_queue_in_flight_runs", ())] == 0
        assert after[("rivers_queue_queued_runs", ())] == 0
        assert after[("rivers_run_admission_wait_seconds_count", ())] == 2
        # Anything but GET /metrics is refused, and the daemon keeps serving.
        with pytest.raises(urllib.error.HTTPError) as refused:
            await _scrape_async(f"http://127.0.0.1:{port}/other")
        assert refused.value.code == 404
        refused.value.close()
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 143, log.read_text()  # 128 + SIGTERM
    assert f"metrics at http://127.0.0.1:{port}/metrics" in log.read_text()


def test_a_metrics_port_in_use_is_one_line_from_the_daemon(tmp_path: Path) -> None:
    pipeline = tmp_path / "pipeline.py"
    pipeline.write_text("import rivers as rs\nrepo = rs.CodeRepository([])\n")
    env = {**os.environ, "RIVERS_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "rivers",
                "daemon",
                "-f",
                str(pipeline),
                "--metrics-addr",
                f"127.0.0.1:{port}",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("rivers: error: cannot serve metrics on 127.0.0.1:")
    assert "--metrics-addr" in line


def test_the_docs_and_the_grafana_dashboard_name_only_served_metrics() -> None:
    import json
    import re

    root = Path(__file__).resolve().parent.parent
    documented = set(
        re.findall(
            r"^\| `(rivers_\w+)`",
            (root / "docs" / "observability.md").read_text(),
            re.M,
        )
    )
    source = (root / "rivers" / "metrics.py").read_text()
    for name in documented:
        base = name.removesuffix("_total")
        assert f'"{base}"' in source, f"{name} is documented but not served"
    served = set(re.findall(r'"(rivers_[a-z_]+)"', source))
    assert served <= {n.removesuffix("_total") for n in documented}, served
    dashboard = json.loads((root / "docs" / "grafana-dashboard.json").read_text())
    used = {
        re.sub(r"_(bucket|sum|count)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"rivers_\w+", target["expr"])
    }
    assert used <= documented, used - documented
