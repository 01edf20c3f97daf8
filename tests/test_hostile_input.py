"""Hostile input: every bad value is a clear ConfigError or exit 2, never a crash."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import rivers as rs
from rivers.cli.app import run as cli_run
from rivers.definitions.durations import parse_duration

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
    from rivers.storage.sqlite import NewRun

    run_id = f"run{HOSTILE}"
    async with rs.open_storage(path) as storage:
        await storage.create_run(
            NewRun(
                run_id=run_id,
                status=rs.RunStatus.QUEUED,
                repository="default",
                tags={f"team{HOSTILE}": HOSTILE},
                selection=None,
            )
        )
        await storage.set_run_reasons({run_id: f"waiting {HOSTILE}"})
        await storage.create_run(
            NewRun(
                run_id="plain",
                status=rs.RunStatus.STARTING,
                repository="default",
                tags={"env": HOSTILE},
                selection=None,
            )
        )
        await storage.transition_run(
            "plain",
            rs.RunStatus.FAILURE,
            expected=[rs.RunStatus.STARTING],
            reason=f"failed {HOSTILE}",
        )
        step = f"step{HOSTILE}"
        await storage.append_events(
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
        await storage.declare_pools({f"pool{HOSTILE}": 2}, declared_by=HOSTILE)
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

    from rivers.storage.sqlite import NewRun

    try:
        request = rs.RunRequest(tags=tags)
    except rs.ConfigError:
        assert any(not (k + v).isprintable() for k, v in tags.items())
        return

    async def round_trip(path: Path) -> None:
        async with rs.open_storage(path) as storage:
            await storage.create_run(
                NewRun(
                    run_id="r",
                    status=rs.RunStatus.QUEUED,
                    repository="default",
                    tags=dict(request.tags or {}),
                    selection=None,
                )
            )
            (stored,) = await storage.get_runs(tags=request.tags)
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
            async with rs.open_storage(Path(folder) / "p.db") as storage:
                try:
                    await storage.set_pool_limit(name, 1)
                except rs.ConfigError:
                    return False
                return (await storage.get_pool_info(name)).limit == 1

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
