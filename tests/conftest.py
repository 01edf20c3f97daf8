"""Shared fixtures: every test gets its own RIVERS_HOME and real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import rivers as rs
from rivers.storage.sqlite import SqliteStorage


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def rivers_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point RIVERS_HOME at a fresh directory so no test touches ~/.rivers."""
    home = tmp_path / "rivers-home"
    monkeypatch.setenv("RIVERS_HOME", str(home))
    return home


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    async with rs.open_storage(tmp_path / "storage.db") as opened:
        yield opened
