"""Hostile input: every bad value is a clear ConfigError or exit 2, never a crash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import rivers as rs
from rivers.cli.app import run as cli_run
from rivers.definitions.durations import parse_duration

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
    max_examples=60,
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
