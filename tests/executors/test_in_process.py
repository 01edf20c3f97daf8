"""Async steps store their values on the loop only when that is cheaper than a hop."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import rivers as rs
from rivers.executors.in_process import INLINE_STORE_MAX_BYTES, stores_quickly

LARGE = "x" * (INLINE_STORE_MAX_BYTES + 1)


class RecordingIOManager:
    """A user IO manager (it could talk to S3): records the thread of each store."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        self.threads: dict[str, int] = {}

    def store(self, asset_key: str, value: object) -> None:
        self.threads[asset_key] = threading.get_ident()
        self.values[asset_key] = value

    def load(self, asset_key: str) -> object:
        return self.values[asset_key]


@pytest.mark.parametrize(
    ("value", "inline"),
    [
        (None, True),
        (True, True),
        (2.5, True),
        (12345, True),
        ("short", True),
        (b"short", True),
        pytest.param(LARGE, False, id="str-over-4KiB"),
        pytest.param(2 ** (8 * INLINE_STORE_MAX_BYTES) - 1, True, id="int-4KiB"),
        pytest.param(2 ** (8 * INLINE_STORE_MAX_BYTES), False, id="int-over-4KiB"),
        ([1, 2, 3], False),
        ({"a": 1}, False),
    ],
)
def test_only_small_scalars_go_to_the_filesystem_manager_on_the_loop(
    tmp_path: Path, value: object, inline: bool
) -> None:
    assert stores_quickly(rs.FilesystemIOManager(tmp_path), value) is inline
    assert stores_quickly(RecordingIOManager(), value) is False


async def test_values_stored_on_the_loop_or_in_a_thread_load_back(
    tmp_path: Path,
) -> None:
    @rs.Asset
    async def small() -> int:
        return 7

    @rs.Asset
    async def large() -> str:
        return LARGE

    io = rs.FilesystemIOManager(tmp_path / "values")
    repo = rs.CodeRepository(
        [small, large],
        io_manager=io,
        backend=rs.RunBackendConfig(storage=str(tmp_path / "db.sqlite")),
    )
    result = await repo.materialize()
    assert result.success
    assert io.load("small") == 7
    assert io.load("large") == LARGE


async def test_a_user_io_manager_never_stores_on_the_event_loop(
    tmp_path: Path,
) -> None:
    @rs.Asset
    async def nothing() -> None:
        return None

    io = RecordingIOManager()
    repo = rs.CodeRepository(
        [nothing],
        io_manager=io,
        backend=rs.RunBackendConfig(storage=str(tmp_path / "db.sqlite")),
    )
    loop_thread = threading.get_ident()
    result = await repo.materialize()
    assert result.success
    assert io.values == {"nothing": None}
    assert io.threads["nothing"] != loop_thread
