"""``RIVERS_STORAGE`` (API.md §7): the default storage of every entry point — Runtime,
``repo.materialize()``, ``rs.open_storage()`` and the CLI — winning over
``$RIVERS_HOME/rivers.db``, and losing to a storage named explicitly."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import rivers as rs


@rs.Asset
def raw() -> int:
    return 1


def _runs(path: Path) -> int:
    import sqlite3

    with sqlite3.connect(path) as conn:
        found: int = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        return found


@pytest.fixture(params=["sqlite", "postgres"])
def shared_storage(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A storage URL for RIVERS_STORAGE: a SQLite file, or a PostgreSQL database."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    shared = tmp_path / "shared" / "runs.db"
    shared.parent.mkdir()
    return f"sqlite:///{shared}"


def _stored_runs(url: str) -> int:
    if url.startswith("sqlite:///"):
        return _runs(Path(url.removeprefix("sqlite:///")))
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT COUNT(*) FROM runs").fetchone()
        assert row is not None
        return int(row[0])


async def test_every_entry_point_defaults_to_rivers_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_storage: str
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("RIVERS_HOME", str(home))
    monkeypatch.setenv("RIVERS_STORAGE", shared_storage)
    repo = rs.CodeRepository([raw])
    assert (await repo.materialize()).success
    async with rs.Runtime(repo) as rt:
        assert (await rt.materialize()).success
    async with rs.open_storage() as storage:
        seen = await storage.get_runs(limit=None)
    assert len(seen) == 2
    assert _stored_runs(shared_storage) == 2
    assert not (home / "rivers.db").exists()
    listed = subprocess.run(
        [sys.executable, "-m", "rivers", "runs", "list", "--json"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count('"run_id"') == 2


async def test_a_storage_named_explicitly_wins_over_rivers_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RIVERS_STORAGE", str(tmp_path / "env.db"))
    explicit = tmp_path / "explicit.db"
    repo = rs.CodeRepository([raw], backend=rs.RunBackendConfig(storage=str(explicit)))
    assert (await repo.materialize()).success
    assert _runs(explicit) == 1
    assert not (tmp_path / "env.db").exists()


def test_an_unreachable_postgresql_server_is_one_line_naming_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "postgresql://rivers:secret@127.0.0.1:1/rivers"  # nothing listens on port 1
    monkeypatch.setenv("RIVERS_STORAGE", url)
    with pytest.raises(rs.StorageUnavailable) as raised:
        rs.CodeRepository([raw]).materialize()
    message = str(raised.value)
    assert "\n" not in message
    assert "postgresql://rivers:***@127.0.0.1:1/rivers" in message
    assert "secret" not in message
    pipeline = tmp_path / "pipeline.py"
    pipeline.write_text(
        textwrap.dedent(
            """
            import rivers as rs

            @rs.Asset
            def raw() -> int:
                return 1

            repo = rs.CodeRepository([raw])
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "rivers", "materialize", "-f", str(pipeline)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("rivers: error: cannot connect to PostgreSQL storage")
    assert "check the URL and that the server is running" in line
    assert "secret" not in line


def test_another_scheme_in_rivers_storage_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RIVERS_STORAGE", "mysql://rivers@db/rivers")
    with pytest.raises(rs.ConfigError, match=r"RIVERS_STORAGE=.*scheme 'mysql'"):
        rs.CodeRepository([raw]).materialize()
