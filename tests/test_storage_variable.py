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


async def test_every_entry_point_defaults_to_rivers_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    shared = tmp_path / "shared" / "runs.db"
    shared.parent.mkdir()
    monkeypatch.setenv("RIVERS_HOME", str(home))
    monkeypatch.setenv("RIVERS_STORAGE", f"sqlite:///{shared}")
    repo = rs.CodeRepository([raw])
    assert (await repo.materialize()).success
    async with rs.Runtime(repo) as rt:
        assert (await rt.materialize()).success
    async with rs.open_storage() as storage:
        seen = await storage.get_runs(limit=None)
    assert len(seen) == 2
    assert _runs(shared) == 2
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


def test_a_postgresql_url_is_one_line_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "postgresql://rivers@db.internal:5432/rivers"
    monkeypatch.setenv("RIVERS_STORAGE", url)
    with pytest.raises(rs.ConfigError, match=r"RIVERS_STORAGE=.*PostgreSQL") as raised:
        rs.CodeRepository([raw]).materialize()
    assert "\n" not in str(raised.value)
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
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("rivers: error: RIVERS_STORAGE='postgresql://")
    assert "use a path or sqlite:///path" in line
