"""Hostile input: every bad value is a clear ConfigError or exit 2, never a crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Hashable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import rivers as rs
from rivers._durations import parse_duration
from rivers.cli.app import run as cli_run
from rivers.storage import open_backend

SCALE = 20 if os.environ.get("RIVERS_HYPOTHESIS_PROFILE") == "long" else 1
"""The long profile (tests/conftest.py) tries 20x more inputs here too."""

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=10),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
)


@given(anything)
def test_durations_parse_or_raise_config_error(value: Any) -> None:
    try:
        seconds = parse_duration(value, "field")
    except rs.ConfigError as exc:
        assert "field" in str(exc)
    else:
        assert seconds >= 0


@given(st.text(max_size=30))
def test_duration_strings_parse_or_raise_config_error(value: str) -> None:
    try:
        assert parse_duration(value, "d") >= 0
    except rs.ConfigError as exc:
        assert str(exc).startswith("d ")


@given(max_runs=anything, interval=anything)
def test_run_queue_config_rejects_garbage_clearly(max_runs: Any, interval: Any) -> None:
    try:
        rs.RunQueueConfig(max_concurrent_runs=max_runs, dequeue_interval=interval)
    except rs.ConfigError as exc:
        assert "RunQueueConfig" in str(exc)


@given(key=anything, value=anything, limit=anything, per_unique=anything)
def test_tag_limit_rejects_garbage_clearly(
    key: Any, value: Any, limit: Any, per_unique: Any
) -> None:
    try:
        rs.TagConcurrencyLimit(
            key=key, value=value, limit=limit, per_unique_value=per_unique
        )
    except rs.ConfigError as exc:
        assert "TagConcurrencyLimit" in str(exc)


@given(
    tags=st.dictionaries(st.text(max_size=300), st.text(max_size=1100), max_size=5),
    priority=anything,
    run_key=anything,
)
def test_run_requests_accept_safe_tags_and_reject_the_rest(
    tags: dict[str, str], priority: Any, run_key: Any
) -> None:
    try:
        request = rs.RunRequest(tags=tags, priority=priority, run_key=run_key)
    except rs.ConfigError:
        return
    for key, value in (request.tags or {}).items():
        # Nothing that reaches storage or a terminal can carry control characters.
        assert key.isprintable()
        assert value.isprintable()
        assert "\x1b" not in key + value


@given(pool=anything, slots=anything, limit=anything)
def test_asset_and_repository_pool_settings_reject_garbage(
    pool: Any, slots: Any, limit: Any
) -> None:
    def body() -> int:
        return 1

    try:
        asset = rs.Asset(body, pool=pool, pool_slots=slots)
        rs.CodeRepository([asset], pool_limits={"p": limit})
    except rs.ConfigError:
        pass


def test_escape_sequences_in_tags_are_refused() -> None:
    with pytest.raises(rs.ConfigError, match="printable"):
        rs.RunRequest(tags={"team": "\x1b[2J\x1b[31mowned"})


CLI_WORDS = st.sampled_from(
    [
        "materialize",
        "submit",
        "daemon",
        "runs",
        "pools",
        "list",
        "show",
        "why",
        "cancel",
        "info",
        "set",
        "reset",
        "free",
        "--json",
        "--limit",
        "-1",
        "x",
        "--tag",
        "a=b",
        "novalue",
        "--status",
        "BOGUS",
        "--select",
        "-f",
        "nofile.py",
        "--storage",
        "--priority",
        "1e9",
        "9999999999",
        "--help",
        "",
    ]
)


@settings(
    max_examples=60 * SCALE,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(argv=st.lists(CLI_WORDS, max_size=6))
def test_cli_never_shows_a_traceback(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if "daemon" in argv and "--help" not in argv:
        argv = [*argv, "--help"]  # never block serving
    with pytest.raises(SystemExit) as exit_info:
        cli_run(["--storage", str(tmp_path / "fuzz.db"), *argv])
    captured = capsys.readouterr()
    assert exit_info.value.code in (0, 1, 2, None)
    assert "Traceback" not in captured.err + captured.out
    if exit_info.value.code == 2:
        lines = [line for line in captured.err.splitlines() if line.strip()]
        assert len(lines) == 1, captured.err
        assert lines[0].startswith("rivers: error:")


# ------------------------------------------------- stored text shown on a terminal

HOSTILE = (
    "\x1b[2J\x1b[H"  # clear the screen, home the cursor
    "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\"  # an OSC 8 hyperlink
    "\x1b]0;pwned\x07"  # set the window title
    "\x9b31m"  # a one-byte CSI
    "\u202eevil"  # right-to-left override
    "[blink]markup[/blink]"
)
INJECTED = ("\x1b[2J", "\x1b[H", "\x1b]", "\x07", "\x9b", "\u202e", "\x1b\\")


async def _hostile_storage(path: Path) -> str:
    """Write hostile text into every stored field the CLI shows; return a run id.

    Validation refuses such text at the API, so it is written the way another
    program sharing the file could: straight into storage.
    """
    from rivers.messages import StepFailed, StepLogged, StepStarted
    from rivers.storage.records import NewRun

    run_id = f"run{HOSTILE}"
    async with open_backend(path) as storage:
        await storage.runs.create_run(
            NewRun(
                run_id=run_id,
                status=rs.RunStatus.QUEUED,
                repository="default",
                tags={f"team{HOSTILE}": HOSTILE},
                selection=None,
            )
        )
        await storage.queue.set_run_reasons({run_id: f"waiting {HOSTILE}"})
        await storage.runs.create_run(
            NewRun(
                run_id="plain",
                status=rs.RunStatus.STARTING,
                repository="default",
                tags={"env": HOSTILE},
                selection=None,
            )
        )
        await storage.runs.transition_run(
            "plain",
            rs.RunStatus.FAILURE,
            expected=[rs.RunStatus.STARTING],
            reason=f"failed {HOSTILE}",
        )
        step = f"step{HOSTILE}"
        await storage.events.append_events(
            [
                (
                    StepStarted(
                        run_id="plain", step_key=step, attempt=1, worker=HOSTILE
                    ),
                    1.0,
                ),
                (
                    StepLogged(
                        run_id="plain", step_key=step, level="INFO", message=HOSTILE
                    ),
                    2.0,
                ),
                (
                    StepFailed(
                        run_id="plain",
                        step_key=step,
                        attempt=1,
                        error=f"boom {HOSTILE}",
                        error_type=HOSTILE,
                    ),
                    3.0,
                ),
            ]
        )
        await storage.pools.declare_pools({f"pool{HOSTILE}": 2}, declared_by=HOSTILE)
    return run_id


def test_hostile_stored_text_never_reaches_the_terminal_raw(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import anyio

    path = tmp_path / "hostile.db"
    run_id = anyio.run(_hostile_storage, path)
    # As on a real terminal: rich emits its own styles, never the stored ones.
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "160")
    monkeypatch.delenv("NO_COLOR", raising=False)
    commands = [
        ["runs", "list"],
        ["runs", "list", "--json"],
        ["runs", "show", "plain"],
        ["runs", "show", run_id],
        ["runs", "why", run_id],
        ["runs", "why", "plain"],
        ["pools", "list"],
        ["pools", "info", f"pool{HOSTILE}"],
        ["top", "--once"],
    ]
    for argv in commands:
        with pytest.raises(SystemExit) as exit_info:
            cli_run(["--storage", str(path), *argv])
        captured = capsys.readouterr()
        shown = captured.out + captured.err
        for sequence in INJECTED:
            assert sequence not in shown, (argv, sequence, shown)
        assert exit_info.value.code in (0, 2), (argv, shown)
        if argv[-1] == "--json":  # escaped, yet the same text once parsed
            tags = [run["tags"] for run in json.loads(captured.out)]
            assert {"env": HOSTILE} in tags
            assert {f"team{HOSTILE}": HOSTILE} in tags
        elif exit_info.value.code == 0:
            assert "evil" in shown, (argv, shown)


def test_one_line_errors_escape_what_they_quote(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from rivers.cli._common import fail

    with pytest.raises(SystemExit):
        fail(f"bad value {HOSTILE}")
    err = capsys.readouterr().err
    assert err.startswith("rivers: error: bad value ")
    assert len(err.splitlines()) == 1
    for sequence in INJECTED:
        assert sequence not in err


@settings(max_examples=40 * SCALE, deadline=None)
@given(
    tags=st.dictionaries(
        st.text(min_size=1, max_size=40).filter(lambda k: "=" not in k),
        st.text(max_size=200),
        max_size=4,
    )
)
def test_accepted_tags_are_stored_and_read_back_exactly(tags: dict[str, str]) -> None:
    import tempfile

    import anyio

    from rivers.storage.records import NewRun

    try:
        request = rs.RunRequest(tags=tags)
    except rs.ConfigError:
        assert any(not (k + v).isprintable() for k, v in tags.items())
        return

    async def round_trip(path: Path) -> None:
        async with open_backend(path) as storage:
            await storage.runs.create_run(
                NewRun(
                    run_id="r",
                    status=rs.RunStatus.QUEUED,
                    repository="default",
                    tags=dict(request.tags or {}),
                    selection=None,
                )
            )
            (stored,) = await storage.runs.get_runs(tags=request.tags)
            assert stored.tags == tags

    with tempfile.TemporaryDirectory() as folder:
        anyio.run(round_trip, Path(folder) / "tags.db")


def test_huge_and_empty_tags_are_refused_with_the_reason() -> None:
    with pytest.raises(rs.ConfigError, match="at most 1024"):
        rs.RunRequest(tags={"k": "v" * 1_000_000})
    with pytest.raises(rs.ConfigError, match="at most 256"):
        rs.RunRequest(tags={"k" * 100_000: "v"})
    with pytest.raises(rs.ConfigError, match="non-empty"):
        rs.RunRequest(tags={"": "v"})
    with pytest.raises(rs.ConfigError, match="at most 64 are allowed"):
        rs.RunRequest(tags={f"k{i}": "v" for i in range(65)})
    assert rs.RunRequest(tags={"k": ""}).tags == {"k": ""}  # an empty value is a value


@settings(max_examples=200 * SCALE)
@given(name=st.one_of(st.text(max_size=140), st.from_regex(r"[A-Za-z0-9_.:/-]{1,140}")))
def test_pool_names_are_checked_the_same_everywhere(name: str) -> None:
    import anyio

    def body() -> int:
        return 1

    try:
        rs.Asset(body, pool=name)
    except rs.ConfigError as exc:
        accepted = False
        assert "pool" in str(exc)
    else:
        accepted = True
        assert name.isprintable()
        assert 1 <= len(name) <= 128
        assert not any(ch.isspace() for ch in name)

    async def set_limit() -> bool:
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            async with open_backend(Path(folder) / "p.db") as storage:
                try:
                    await storage.pools.set_pool_limit(name, 1)
                except rs.ConfigError:
                    return False
                return (await storage.pools.get_pool_info(name)).limit == 1

    assert anyio.run(set_limit) is accepted


@settings(
    max_examples=40 * SCALE,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    name=st.text(max_size=30),
    limit=st.one_of(st.text(max_size=8), st.integers().map(str)),
)
def test_cli_pools_set_with_any_name_and_limit_is_one_clean_line(
    name: str, limit: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if name.startswith("-") or (limit.startswith("-") and not limit[1:].isdigit()):
        return  # an option, not a value: covered by the argv fuzz above
    with pytest.raises(SystemExit) as exit_info:
        cli_run(
            [
                *("--storage", str(tmp_path / "pools.db"), "pools", "set"),
                *(name, limit, "--create"),
            ]
        )
    captured = capsys.readouterr()
    shown = captured.out + captured.err
    assert exit_info.value.code in (0, 2), shown
    assert "Traceback" not in shown
    for sequence in INJECTED:
        assert sequence not in shown
    if exit_info.value.code == 2:
        lines = [line for line in captured.err.splitlines() if line.strip()]
        assert len(lines) == 1, captured.err
        assert lines[0].startswith("rivers: error:")


# ------------------------------------- every validated name, matched in full


def _body() -> int:
    return 1


async def _set_limit(name: str, folder: Path) -> None:
    async with open_backend(folder / "names.db") as storage:
        await storage.pools.set_pool_limit(name, 3)


NAMES: dict[str, tuple[Callable[[str], object], str]] = {
    "asset name": (lambda n: rs.Asset(_body, name=n), "Asset name="),
    "deps entry": (lambda n: rs.Asset(_body, deps=[n]), "deps entry"),
    "asset pool": (lambda n: rs.Asset(_body, pool=n), "pool"),
    "pool_limits key": (
        lambda n: rs.CodeRepository([], pool_limits={n: 1}),
        "pool_limits key",
    ),
    "repository name": (lambda n: rs.CodeRepository([], name=n), "CodeRepository name"),
    "schedule name": (
        lambda n: rs.schedule(cron="0 * * * *", name=n)(_body),
        "schedule name",
    ),
    "sensor name": (lambda n: rs.sensor(name=n)(_body), "sensor name"),
    "selection entry": (
        lambda n: rs.RunRequest(selection=[n]),
        "RunRequest.selection entry",
    ),
    "step_overrides key": (
        lambda n: rs.Executor.kubernetes(image="i", step_overrides={n: {}}),
        "step_overrides key",
    ),
    "namespace": (
        lambda n: rs.Executor.kubernetes(image="i", namespace=n.lower()),
        "namespace",
    ),
    "service_account": (
        lambda n: rs.Executor.kubernetes(image="i", service_account=n.lower()),
        "service_account",
    ),
    "env_secrets": (
        lambda n: rs.Executor.kubernetes(image="i", env_secrets=[n.lower()]),
        "env_secrets",
    ),
    "run_key": (lambda n: rs.RunRequest(run_key=n), "RunRequest.run_key"),
    "tag limit key": (
        lambda n: rs.TagConcurrencyLimit(key=n, limit=1),
        "TagConcurrencyLimit key",
    ),
    "tag limit value": (
        lambda n: rs.TagConcurrencyLimit(key="k", value=n, limit=1),
        "TagConcurrencyLimit['k']",
    ),
    "env_config_maps": (
        lambda n: rs.Executor.kubernetes(image="i", env_config_maps=[n.lower()]),
        "env_config_maps",
    ),
    "Kubernetes label key": (
        lambda n: rs.Executor.kubernetes(image="i", labels={n: "v"}),
        "labels key",
    ),
    "metrics_addr": (lambda n: _metrics_addr(n + ":9464"), "metrics_addr"),
    "tag key": (lambda n: rs.RunRequest(tags={n: "v"}), "RunRequest.tags key"),
    "tag value": (lambda n: rs.RunRequest(tags={"k": n}), "RunRequest.tags['k']"),
    "set_pool_limit": (
        lambda n: _in_temporary_folder(_set_limit, n),
        "pool",
    ),
}


def _in_temporary_folder(fn: Callable[[str, Path], Awaitable[None]], name: str) -> None:
    import tempfile

    import anyio

    with tempfile.TemporaryDirectory() as folder:
        anyio.run(fn, name, Path(folder))


@pytest.mark.parametrize("where", sorted(NAMES))
@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\x00", "\x85", "\u2028"])
def test_every_validated_name_refuses_a_trailing_line_break(
    where: str, suffix: str
) -> None:
    make, field = NAMES[where]
    make("orders")  # the name itself is fine...
    with pytest.raises(rs.ConfigError) as error:
        make("orders" + suffix)  # ...a line break or NUL after it is not
    message = str(error.value)
    assert field in message, message
    assert "\n" not in message
    assert "\x00" not in message


def test_a_value_file_is_never_named_after_a_key_with_a_newline(tmp_path: Path) -> None:
    manager = rs.FilesystemIOManager(tmp_path)
    assert manager.path_for("orders") == tmp_path / "orders.pickle"
    with pytest.raises(ValueError, match="does not name a file"):
        manager.path_for("orders\n")


def test_kubernetes_label_values_with_a_newline_are_replaced() -> None:
    from rivers.executors._kube_jobs import label_value

    assert label_value("run1") == "run1"
    fixed = label_value("run1\n")
    assert "\n" not in fixed
    assert fixed.startswith("run1-")


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """Run the real ``rivers`` command in a child process."""
    env = {**os.environ, "RIVERS_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "rivers", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("rivers: error:")
    return lines[0]


def test_cli_pool_commands_refuse_a_name_with_a_trailing_newline(
    tmp_path: Path,
) -> None:
    import anyio

    path = tmp_path / "cli.db"

    async def pools() -> list[str]:
        async with open_backend(path) as storage:
            return [info.name for info in await storage.pools.get_all_pool_infos()]

    for args in (["set", "db\n", "3"], ["info", "db\n"], ["reset", "db\n"]):
        line = _one_error_line(
            _cli("--storage", str(path), "pools", *args, home=tmp_path)
        )
        assert "'db\\n' is not a valid pool name" in line, line
    assert "db\n" not in anyio.run(pools)


# -------------------------------------------- durations: one parser, bounded

FAR_FUTURE = 1e12
"""31,700 years: beyond ``datetime``'s year 9999."""


LEASE_ROW = "| `RunBackendConfig.lease_duration` | 100ms to 1d |"
GC_ROW = "| `RunBackendConfig.lease_gc_interval` | 10ms to `lease_duration` |"
DEQUEUE_ROW = "| `RunQueueConfig.dequeue_interval` | 10ms to 1h |"


@pytest.mark.parametrize(
    ("make", "message", "documented"),
    [
        (
            lambda: rs.RunBackendConfig(lease_duration=FAR_FUTURE),
            "RunBackendConfig.lease_duration must be a duration from 100ms to 1d, "
            "got 1000000000000.0",
            LEASE_ROW,
        ),
        (
            lambda: rs.RunBackendConfig(lease_duration="99999999999d"),
            "RunBackendConfig.lease_duration must be a duration from 100ms to 1d, "
            "got '99999999999d'",
            LEASE_ROW,
        ),
        (
            lambda: rs.RunBackendConfig(lease_duration="1ms"),
            "RunBackendConfig.lease_duration must be a duration from 100ms to 1d",
            LEASE_ROW,
        ),
        (
            lambda: rs.RunBackendConfig(lease_gc_interval=1e-9),
            "RunBackendConfig.lease_gc_interval must be a duration from 10ms to 1m "
            "(its lease_duration), got 1e-09",
            GC_ROW,
        ),
        (
            lambda: rs.RunBackendConfig(lease_duration="2s", lease_gc_interval="3s"),
            "RunBackendConfig.lease_gc_interval must be a duration from 10ms to 2s",
            GC_ROW,
        ),
        (
            lambda: rs.RunQueueConfig(dequeue_interval=1e-9),
            "RunQueueConfig.dequeue_interval must be a duration from 10ms to 1h",
            DEQUEUE_ROW,
        ),
        (
            lambda: rs.RunQueueConfig(dequeue_interval="2h"),
            "RunQueueConfig.dequeue_interval must be a duration from 10ms to 1h",
            DEQUEUE_ROW,
        ),
        (
            lambda: rs.sensor(interval=1e-9)(_body),
            "sensor interval must be a duration from 10ms to 365d",
            "| sensor `interval` | 10ms to 365d |",
        ),
        (
            lambda: rs.Asset(_body, timeout=FAR_FUTURE),
            "asset '_body': timeout must be a duration above 0 and at most 365d",
            "| asset `timeout` | above 0, at most 365d |",
        ),
        (
            lambda: rs.RetryPolicy(delay="8d"),
            "RetryPolicy.delay must be a duration from 0s to 7d",
            "| `RetryPolicy.delay` | 0 to 7d;",
        ),
    ],
)
def test_every_duration_has_a_documented_range(
    make: Callable[[], object], message: str, documented: str
) -> None:
    with pytest.raises(rs.ConfigError) as error:
        make()
    assert str(error.value).startswith(message), str(error.value)
    docs = (Path(__file__).parent.parent / "docs" / "reliability.md").read_text()
    assert documented in docs


def test_the_bounds_themselves_are_accepted() -> None:
    backend = rs.RunBackendConfig(lease_duration="1d", lease_gc_interval="1d")
    assert (backend.lease_s, backend.lease_gc_interval_s) == (86400.0, 86400.0)
    backend = rs.RunBackendConfig(lease_duration="100ms", lease_gc_interval="10ms")
    assert (backend.lease_s, backend.lease_gc_interval_s) == (0.1, 0.01)
    assert backend.lease_gc_interval_s == 0.01
    assert rs.RunBackendConfig(lease_duration="100ms").lease_gc_interval_s == 0.025
    assert rs.RunQueueConfig(dequeue_interval="1h").dequeue_interval_s == 3600.0
    assert rs.Asset(_body, timeout="365d").timeout_s == 365 * 86400.0
    assert rs.RetryPolicy(delay=-0.0).delay == 0.0  # negative zero is zero
    assert str(rs.RetryPolicy(delay=-0.0).delay) == "0.0"


def test_a_retry_delay_grown_by_backoff_is_capped_not_overflowing() -> None:
    policy = rs.RetryPolicy(max_retries=1000, delay=1, backoff=100)
    assert policy.delay_before(2) == 1.0
    assert policy.delay_before(3) == 100.0
    # 100 ** 998 is an int too large for a float: it raised OverflowError.
    assert policy.delay_before(1000) == 7 * 86400.0
    assert rs.RetryPolicy(delay="7d", backoff=2).delay_before(3) == 7 * 86400.0


async def _hold_slots_far_into_the_future(path: Path) -> None:
    """Hold slots with leases ending in a day and past the year 9999.

    rivers no longer writes the second (``lease_duration`` is at most a day), but a
    storage file written by an older version or another program may hold one.
    """
    async with open_backend(path) as storage:
        for step, lease_s in (("day", 86400.0), ("far", FAR_FUTURE)):
            claim = await storage.pools.claim_pool_slots(
                run_id="r",
                step_key=step,
                pools=("db",),
                slots=1,
                owner="elsewhere:1:1",
                lease_s=lease_s,
            )
            assert claim.granted


def test_inspection_survives_a_lease_ending_after_the_year_9999(tmp_path: Path) -> None:
    import anyio

    path = tmp_path / "leases.db"
    anyio.run(_hold_slots_far_into_the_future, path)

    async def holders() -> list[rs.SlotHolder]:
        async with open_backend(path) as storage:
            return await storage.pools.get_pool_slot_holders("db")

    day, far = anyio.run(holders)
    assert (day.step_key, far.step_key) == ("day", "far")
    assert far.lease_expires_at.year == 9999  # shown as the last datetime
    for args, shown in ((["pools", "info", "db"], "far"), (["top", "--once"], "db")):
        done = _cli("--storage", str(path), *args, home=tmp_path)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        assert shown in done.stdout, done.stdout
    done = _cli("--storage", str(path), "pools", "info", "db", "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert [h["step_key"] for h in shown["holders"]] == ["day", "far"]


def test_an_idle_runtime_at_the_smallest_gc_interval_is_not_a_busy_loop(
    tmp_path: Path,
) -> None:
    import time

    import anyio

    with pytest.raises(rs.ConfigError, match="lease_gc_interval"):
        rs.RunBackendConfig(lease_duration="100ms", lease_gc_interval=1e-9)

    @rs.Asset(pool="db")
    def step() -> int:
        return 1

    repo = rs.CodeRepository(
        [step],
        pool_limits={"db": 1},
        executor=rs.Executor.in_process(),
        backend=rs.RunBackendConfig(
            storage=str(tmp_path / "gc.db"),
            lease_duration="100ms",
            lease_gc_interval="10ms",
        ),
    )

    async def idle() -> float:
        async with rs.Runtime(repo):
            await anyio.sleep(0.2)
            started, cpu = time.monotonic(), time.process_time()
            await anyio.sleep(1.0)
            return (time.process_time() - cpu) / (time.monotonic() - started)

    # 1e-9 used about 0.4-0.8 of a CPU; the 10 ms floor about 0.06.
    assert anyio.run(idle) < 0.25


# ------------------------------------------------ settings that do nothing


def test_pool_slots_without_a_pool_is_refused_naming_the_asset() -> None:
    with pytest.raises(
        rs.ConfigError,
        match=r"^asset '_body': pool_slots=3 has no pool to claim slots of; add "
        r"pool=\.\.\. or drop pool_slots$",
    ):
        rs.Asset(_body, pool_slots=3)
    assert rs.Asset(_body, pool="db", pool_slots=3).pool_slots == 3
    assert rs.Asset(_body, pool_slots=1).pools == ()  # the default, harmless


@pytest.mark.parametrize("key", ["\x00", "a\nb", "tick\n", "\x1b[2J", "\u202e"])
def test_run_keys_with_control_characters_are_refused(key: str) -> None:
    with pytest.raises(
        rs.ConfigError,
        match=r"^RunRequest\.run_key must be a printable string \(no control "
        r"characters\) of 1 to 512 characters",
    ):
        rs.RunRequest(run_key=key)
    assert rs.RunRequest(run_key="2026-12-03 tick #1").run_key == "2026-12-03 tick #1"


# ----------------------------------------- a pool named like a declared one


def test_a_pool_named_like_a_declared_one_warns_with_did_you_mean() -> None:
    @rs.Asset(pool="warehous")
    def load() -> int:
        return 1

    with pytest.warns(UserWarning, match="did you mean") as warned:
        rs.CodeRepository([load], pool_limits={"warehouse": 2})
    (warning,) = warned
    assert str(warning.message) == (
        "asset 'load' claims pool 'warehous', which pool_limits does not declare, so "
        "it has no limit here; did you mean 'warehouse'?"
    )
    assert warning.filename == __file__  # points at the CodeRepository(...) line


@pytest.mark.parametrize(
    ("pool", "declared"),
    [
        ("warehouse", {"warehouse": 2}),  # declared: nothing to say
        ("shard2", {"shard1": 1}),  # only digits differ: meant
        ("api", {"warehouse": 2}),  # nothing alike
        ("gpu", {}),  # nothing declared
    ],
)
def test_pools_declared_or_unlike_any_declared_one_are_quiet(
    pool: str, declared: dict[str, int]
) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rs.CodeRepository([rs.Asset(_body, pool=pool)], pool_limits=declared)


# ------------------------- every public validator, fed edge values (property)

_LINE_ENDS = ["\n", "\r", "\r\n", "\x00", "\x85", "\u2028", " ", "\t", "\x1b[2J"]
EDGE_TEXT = st.one_of(
    st.builds(
        lambda base, end, front: end + base if front else base + end,
        st.sampled_from(["orders", "db", "warehouse", "default", "1s", "UTC", "a"]),
        st.sampled_from(_LINE_ENDS),
        st.booleans(),
    ),
    st.sampled_from(
        [
            "",
            "\x00",
            "\n",
            "-",
            ".",
            "nan",
            "inf",
            "-0",
            "1e309",
            "99999999999d",
            "0.000000001ms",
            " 5s\n",
            "\u0663s",  # an Arabic-Indic digit
            "\uff13",  # a full-width digit
            "* * * * *\n",
            "../etc",
            "/abs",
        ]
    ),
    st.builds(
        lambda char, count: char * count,
        st.sampled_from(["a", "\u00e9", "\x00", "0", "9", "-"]),
        st.sampled_from([63, 64, 127, 128, 129, 253, 254, 512, 513, 4301, 100_000]),
    ),
    st.text(max_size=20),
)
EDGE_NUMBERS = st.one_of(
    st.sampled_from(
        [
            0,
            -0.0,
            0.0,
            1,
            -1,
            5e-324,
            1e-9,
            0.009999,
            0.01,
            0.1,
            1e12,
            1e308,
            float("inf"),
            float("-inf"),
            float("nan"),
            2**31,
            2**31 - 1,
            -(2**31) - 1,
            2**63,
            10**400,
            True,
            False,
        ]
    ),
    st.floats(),
    st.integers(),
)
EDGE_OTHER = st.sampled_from(
    [
        None,
        timedelta.max,
        timedelta.min,
        timedelta(microseconds=1),
        timedelta(0),
        -timedelta(0),
        [],
        ["orders\n"],
        ("db", "db"),
        {},
        {"k\n": "v"},
        {"k": "v\x00"},
        b"orders",
    ]
)
EDGE = st.one_of(EDGE_TEXT, EDGE_NUMBERS, EDGE_OTHER)


def _keyed(value: object) -> Any:
    return {value: "v"} if isinstance(value, Hashable) else {str(value): "v"}


def _repo_with(**options: Any) -> object:
    return rs.CodeRepository([rs.Asset(_body, pool="db")], **options)


def _kube(**options: Any) -> object:
    return rs.Executor.kubernetes(**{"image": "img:1", **options})


def _metrics_addr(addr: Any) -> object:
    from rivers.metrics import parse_metrics_addr  # what Runtime(metrics_addr=) runs

    return parse_metrics_addr(addr)


def _kube_field(field: str) -> Callable[[Any], object]:
    return lambda value: _kube(**{field: value})


def _override_field(field: str) -> Callable[[Any], object]:
    return lambda value: _kube(step_overrides={"orders": {field: value}})


VALIDATORS: dict[str, tuple[Callable[[Any], object], str]] = {
    "Asset name": (lambda v: rs.Asset(_body, name=v), "name"),
    "Asset deps": (lambda v: rs.Asset(_body, deps=v), "deps"),
    "Asset pool": (lambda v: rs.Asset(_body, pool=v), "pool"),
    "Asset pool_slots": (
        lambda v: rs.Asset(_body, pool="db", pool_slots=v),
        "pool_slots",
    ),
    "Asset pool_slots, no pool": (
        lambda v: rs.Asset(_body, pool_slots=v),
        "pool_slots",
    ),
    "Asset tags": (lambda v: rs.Asset(_body, tags=v), "tags"),
    "Asset tag key": (lambda v: rs.Asset(_body, tags=_keyed(v)), "tags"),
    "Asset tag value": (lambda v: rs.Asset(_body, tags={"k": v}), "tags"),
    "Asset priority": (lambda v: rs.Asset(_body, priority=v), "priority"),
    "Asset timeout": (lambda v: rs.Asset(_body, timeout=v), "timeout"),
    "Asset retry_policy": (lambda v: rs.Asset(_body, retry_policy=v), "retry_policy"),
    "Asset description": (lambda v: rs.Asset(_body, description=v), "description"),
    "Asset automation_condition": (
        lambda v: rs.CodeRepository([rs.Asset(_body, automation_condition=v)]),
        "automation_condition",
    ),
    "CodeRepository assets": (lambda v: rs.CodeRepository(v), "assets"),
    "CodeRepository name": (lambda v: _repo_with(name=v), "name"),
    "CodeRepository pool_limits": (lambda v: _repo_with(pool_limits=v), "pool_limits"),
    "CodeRepository pool_limits key": (
        lambda v: _repo_with(pool_limits={v: 1} if isinstance(v, Hashable) else v),
        "pool_limits",
    ),
    "CodeRepository pool_limits value": (
        lambda v: _repo_with(pool_limits={"db": v}),
        "pool_limits",
    ),
    "CodeRepository default_pool_limit": (
        lambda v: _repo_with(default_pool_limit=v),
        "default_pool_limit",
    ),
    "CodeRepository pool_granularity": (
        lambda v: _repo_with(pool_granularity=v),
        "pool_granularity",
    ),
    "CodeRepository run_queue": (lambda v: _repo_with(run_queue=v), "run_queue"),
    "CodeRepository executor": (lambda v: _repo_with(executor=v), "executor"),
    "CodeRepository backend": (lambda v: _repo_with(backend=v), "backend"),
    "CodeRepository schedules": (lambda v: _repo_with(schedules=v), "schedules"),
    "CodeRepository sensors": (lambda v: _repo_with(sensors=v), "sensors"),
    "CodeRepository io_manager": (lambda v: _repo_with(io_manager=v), "io_manager"),
    "PoolLimit slots": (lambda v: rs.PoolLimit(v), "PoolLimit.slots"),
    "PoolLimit rate": (lambda v: rs.PoolLimit(1, rate=v), "rate"),
    "PoolLimit burst": (lambda v: rs.PoolLimit(1, rate="1/s", burst=v), "burst"),
    "PoolLimit windows": (lambda v: rs.PoolLimit(1, windows=v), "PoolLimit.windows"),
    "PoolLimit windows key": (
        lambda v: rs.PoolLimit(1, windows={v: 1} if isinstance(v, Hashable) else v),  # type: ignore[dict-item]
        "PoolLimit.windows",
    ),
    "PoolLimit windows value": (
        lambda v: rs.PoolLimit(1, windows={"0 8 * * *": v}),
        "PoolLimit.windows",
    ),
    "PoolLimit timezone": (
        lambda v: rs.PoolLimit(1, timezone=v),
        "PoolLimit.timezone",
    ),
    "RunQueueConfig max_concurrent_runs": (
        lambda v: rs.RunQueueConfig(max_concurrent_runs=v),
        "RunQueueConfig.max_concurrent_runs",
    ),
    "RunQueueConfig block_pool_limited_runs": (
        lambda v: rs.RunQueueConfig(block_pool_limited_runs=v),
        "RunQueueConfig.block_pool_limited_runs",
    ),
    "RunQueueConfig pool_slot_buffer": (
        lambda v: rs.RunQueueConfig(pool_slot_buffer=v),
        "RunQueueConfig.pool_slot_buffer",
    ),
    "RunQueueConfig windows": (
        lambda v: rs.RunQueueConfig(windows=v),
        "RunQueueConfig.windows",
    ),
    "RunQueueConfig timezone": (
        lambda v: rs.RunQueueConfig(timezone=v),
        "RunQueueConfig.timezone",
    ),
    "RunQueueConfig dequeue_interval": (
        lambda v: rs.RunQueueConfig(dequeue_interval=v),
        "RunQueueConfig.dequeue_interval",
    ),
    "RunQueueConfig tag_concurrency_limits": (
        lambda v: rs.RunQueueConfig(tag_concurrency_limits=v),
        "RunQueueConfig.tag_concurrency_limits",
    ),
    "TagConcurrencyLimit key": (
        lambda v: rs.TagConcurrencyLimit(key=v, limit=1),
        "TagConcurrencyLimit",
    ),
    "TagConcurrencyLimit value": (
        lambda v: rs.TagConcurrencyLimit(key="k", value=v, limit=1),
        "TagConcurrencyLimit",
    ),
    "TagConcurrencyLimit limit": (
        lambda v: rs.TagConcurrencyLimit(key="k", limit=v),
        "TagConcurrencyLimit",
    ),
    "TagConcurrencyLimit per_unique_value": (
        lambda v: rs.TagConcurrencyLimit(key="k", limit=1, per_unique_value=v),
        "TagConcurrencyLimit",
    ),
    "RunBackendConfig storage": (
        lambda v: rs.RunBackendConfig(storage=v),
        "RunBackendConfig.storage",
    ),
    "RunBackendConfig lease_duration": (
        lambda v: rs.RunBackendConfig(lease_duration=v),
        "RunBackendConfig.lease_duration",
    ),
    "RunBackendConfig lease_gc_interval": (
        lambda v: rs.RunBackendConfig(lease_gc_interval=v),
        "RunBackendConfig.lease_gc_interval",
    ),
    "RetryPolicy max_retries": (
        lambda v: rs.RetryPolicy(max_retries=v),
        "RetryPolicy.max_retries",
    ),
    "RetryPolicy delay": (lambda v: rs.RetryPolicy(delay=v), "RetryPolicy.delay"),
    "RetryPolicy backoff": (lambda v: rs.RetryPolicy(backoff=v), "RetryPolicy.backoff"),
    "Executor.parallel max_workers": (
        lambda v: rs.Executor.parallel(max_workers=v),
        "max_workers",
    ),
    "Executor.parallel max_async_concurrent": (
        lambda v: rs.Executor.parallel(max_async_concurrent=v),
        "max_async_concurrent",
    ),
    "Executor.parallel tag_concurrency_limits": (
        lambda v: rs.Executor.parallel(tag_concurrency_limits=v),
        "tag_concurrency_limits",
    ),
    **{
        f"Executor.kubernetes {field}": (
            _kube_field(field),
            f"Executor.kubernetes {field}",
        )
        for field in (
            "max_concurrent_steps",
            "namespace",
            "kubeconfig",
            "env",
            "env_secrets",
            "env_config_maps",
            "resources",
            "service_account",
            "labels",
            "image_pull_policy",
            "ttl_seconds_after_finished",
            "step_overrides",
            "tag_concurrency_limits",
        )
    },
    "Executor.kubernetes image": (lambda v: _kube(image=v), "image"),
    "Executor.kubernetes step_overrides key": (
        lambda v: _kube(step_overrides={v: {}} if isinstance(v, Hashable) else v),
        "step_overrides",
    ),
    **{
        f"KubernetesStepOverride {field}": (
            _override_field(field),
            "KubernetesStepOverride",
        )
        for field in (
            "image",
            "env",
            "env_secrets",
            "env_config_maps",
            "resources",
            "service_account",
            "labels",
            "image_pull_policy",
        )
    },
    "RunRequest selection": (
        lambda v: rs.RunRequest(selection=v),
        "RunRequest.selection",
    ),
    "RunRequest tags": (lambda v: rs.RunRequest(tags=v), "RunRequest.tags"),
    "RunRequest priority": (lambda v: rs.RunRequest(priority=v), "RunRequest.priority"),
    "RunRequest run_key": (lambda v: rs.RunRequest(run_key=v), "RunRequest.run_key"),
    "schedule cron": (lambda v: rs.schedule(cron=v)(_body), "cron"),
    "schedule timezone": (
        lambda v: rs.schedule(cron="0 * * * *", timezone=v)(_body),
        "timezone",
    ),
    "schedule name": (lambda v: rs.schedule(cron="0 * * * *", name=v)(_body), "name"),
    "schedule selection": (
        lambda v: rs.schedule(cron="0 * * * *", selection=v)(_body),
        "selection",
    ),
    "schedule tags": (lambda v: rs.schedule(cron="0 * * * *", tags=v)(_body), "tags"),
    "schedule catch_up": (
        lambda v: rs.schedule(cron="0 * * * *", catch_up=v)(_body),
        "catch_up",
    ),
    "sensor interval": (lambda v: rs.sensor(interval=v)(_body), "interval"),
    "sensor name": (lambda v: rs.sensor(name=v)(_body), "name"),
    "sensor selection": (lambda v: rs.sensor(selection=v)(_body), "selection"),
    "sensor tags": (lambda v: rs.sensor(tags=v)(_body), "tags"),
    "AutomationCondition.on_cron cron": (
        lambda v: rs.AutomationCondition.on_cron(v),
        "cron",
    ),
    "AutomationCondition.on_cron timezone": (
        lambda v: rs.AutomationCondition.on_cron("0 * * * *", timezone=v),
        "timezone",
    ),
    "FilesystemIOManager base_dir": (
        lambda v: rs.FilesystemIOManager(v),
        "base_dir",
    ),
    "UPathIOManager base": (lambda v: rs.UPathIOManager(v), "base"),
    "Runtime metrics_addr": (_metrics_addr, "metrics_addr"),
}


@pytest.mark.parametrize("where", sorted(VALIDATORS))
@settings(max_examples=40 * SCALE, deadline=None)
@given(value=EDGE)
def test_every_public_validator_accepts_or_names_the_field_in_one_line(
    where: str, value: Any
) -> None:
    make, field = VALIDATORS[where]
    try:
        make(value)
    except rs.ConfigError as error:
        message = str(error)
        assert field in message, message
        assert "\n" not in message, message
        assert len(message) < 400, message  # a huge value is quoted cut short
    else:
        if where in NAMES_AND_KEYS and isinstance(value, str):
            assert value.isprintable(), value  # no line break, NUL or escape


NAMES_AND_KEYS = {
    "Asset name",
    "Asset pool",
    "CodeRepository name",
    "CodeRepository pool_limits key",
    "Executor.kubernetes namespace",
    "Executor.kubernetes service_account",
    "Executor.kubernetes step_overrides key",
    "RunRequest run_key",
    "Runtime metrics_addr",
    "schedule name",
    "schedule timezone",
    "sensor name",
    "AutomationCondition.on_cron timezone",
}


# ------------------------------------ every CLI option, fed edge values (property)

CLI_REPOSITORY = """
import rivers as rs


@rs.Asset
def orders() -> int:
    return 1


repo = rs.CodeRepository(
    [orders], run_queue=rs.RunQueueConfig(), executor=rs.Executor.in_process()
)
"""
CLI_OPTIONS: dict[str, Callable[[str], list[str]]] = {
    "runs list --status": lambda v: ["runs", "list", "--status", v],
    "runs list --tag": lambda v: ["runs", "list", "--tag", v],
    "runs list --limit": lambda v: ["runs", "list", "--limit", v],
    "runs show": lambda v: ["runs", "show", v],
    "runs show --json": lambda v: ["runs", "show", v, "--json"],
    "runs why": lambda v: ["runs", "why", v],
    "runs cancel": lambda v: ["runs", "cancel", v],
    "pools info": lambda v: ["pools", "info", v],
    "pools set NAME": lambda v: ["pools", "set", v, "3"],
    "pools set LIMIT": lambda v: ["pools", "set", "db", v],
    "pools set --rate": lambda v: ["pools", "set", "db", "3", "--rate", v],
    "pools set --burst": lambda v: [
        "pools",
        "set",
        "db",
        "3",
        "--rate",
        "1/s",
        "--burst",
        v,
    ],
    "pools reset": lambda v: ["pools", "reset", v],
    "pools free": lambda v: ["pools", "free", v],
    "pools free STEP": lambda v: ["pools", "free", "run", v],
    "top --interval": lambda v: ["top", "--once", "--interval", v],
    "submit --select": lambda v: ["submit", "-f", "repo.py", "--select", v],
    "submit --tag": lambda v: ["submit", "-f", "repo.py", "--tag", v],
    "submit --priority": lambda v: ["submit", "-f", "repo.py", "--priority", v],
    "submit -a": lambda v: ["submit", "-f", "repo.py", "-a", v],
    "submit -m": lambda v: ["submit", "-m", v],
    "materialize --select": lambda v: ["materialize", "-f", "repo.py", "--select", v],
    "materialize --tag": lambda v: ["materialize", "-f", "repo.py", "--tag", "k=" + v],
    "daemon --grace": lambda v: ["daemon", "-f", "missing.py", "--grace", v],
    "daemon --metrics-addr": lambda v: [
        "daemon",
        "-f",
        "missing.py",
        "--metrics-addr",
        v,
    ],
    "pools advise": lambda v: ["pools", "advise", v],
    "pools advise --since": lambda v: ["pools", "advise", "db", "--since", v],
    "triggers list -a": lambda v: ["triggers", "list", "-f", "repo.py", "-a", v],
}
# What a shell can pass: no NUL (exec refuses it), no leading '-' (an option).
CLI_VALUES = st.one_of(EDGE_TEXT, EDGE_NUMBERS.map(str)).filter(
    lambda v: "\x00" not in v and not v.startswith("-") and len(v) < 5000
)


@pytest.mark.parametrize("option", sorted(CLI_OPTIONS))
@settings(
    max_examples=15 * SCALE,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(value=CLI_VALUES)
def test_every_cli_option_exits_0_or_2_in_one_line(
    option: str,
    value: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "repo.py").write_text(CLI_REPOSITORY)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "cli.db"
    if not path.exists():
        import anyio

        async def create() -> None:
            async with open_backend(path):
                pass

        anyio.run(create)
    with pytest.raises(SystemExit) as exit_info:
        cli_run(["--storage", str(path), *CLI_OPTIONS[option](value)])
    captured = capsys.readouterr()
    shown = captured.out + captured.err
    assert "Traceback" not in shown
    assert exit_info.value.code in (0, 2, None), (exit_info.value.code, shown)
    if exit_info.value.code == 2:
        lines = captured.err.splitlines()
        assert len(lines) == 1, captured.err
        assert lines[0].startswith("rivers: error:")


TRIGGERS_REPOSITORY = """
import rivers as rs


@rs.Asset
def orders() -> int:
    return 1


@rs.sensor(interval="30s")
def watch() -> None:
    return None


repo = rs.CodeRepository([orders], sensors=[watch])
"""


def test_triggers_list_survives_stored_times_after_the_year_9999(
    tmp_path: Path,
) -> None:
    import anyio

    from rivers.core.triggers import state_key

    path = tmp_path / "triggers.db"
    (tmp_path / "repo.py").write_text(TRIGGERS_REPOSITORY)

    async def store() -> None:
        async with open_backend(path) as storage:
            await storage.state.put_state(
                state_key("sensor", "watch"),
                {
                    "last_evaluation_at": FAR_FUTURE,
                    "last_error_at": FAR_FUTURE,
                    "last_error": "boom",
                },
            )

    anyio.run(store)
    done = _cli(
        "--storage",
        str(path),
        "triggers",
        "list",
        "-f",
        str(tmp_path / "repo.py"),
        home=tmp_path,
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "watch" in done.stdout
    assert "boom" in done.stdout


@pytest.mark.parametrize(
    "addr",
    [
        "127.0.0.1:\u0663",  # an Arabic-Indic 3 was port 3
        "x" * 254 + ":9464",  # longer than any host name
        "127.0.0.1:9464\n",
        "h:" + "9" * 5000,  # quoted whole in the error, 5,000 characters
    ],
)
def test_metrics_addresses_are_ascii_host_names_and_ports(addr: str) -> None:
    with pytest.raises(
        rs.ConfigError, match=r"^metrics_addr must be HOST:PORT"
    ) as error:
        _metrics_addr(addr)
    assert len(str(error.value)) < 200
    assert _metrics_addr("x" * 253 + ":0") == ("x" * 253, 0)
