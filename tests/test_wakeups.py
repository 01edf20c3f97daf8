"""Wake-up sockets: in a folder of this user's own, gone when the last runtime leaves."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import anyio
import pytest

from rivers._wakeups import WakeSender, listen, wake_path


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


async def test_a_wake_up_reaches_the_listener_and_the_folder_goes_with_it(
    private_tmp: Path,
) -> None:
    storage = private_tmp.parent / "rivers.db"
    woken = anyio.Event()
    async with anyio.create_task_group() as tg:
        await tg.start(listen, storage, "host:1:2", woken.set)
        path = wake_path(storage, "host:1:2")
        assert path is not None
        assert os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o700
        sender = WakeSender(storage)
        sender.wake(["host:1:2", "host:9:9"])  # the second listens nowhere: no error
        with anyio.fail_after(5):
            await woken.wait()
        sender.close()
        tg.cancel_scope.cancel()
    assert list(private_tmp.iterdir()) == []


async def test_a_folder_others_may_write_is_never_listened_in(
    private_tmp: Path,
) -> None:
    storage = private_tmp.parent / "rivers.db"
    path = wake_path(storage, "host:1:2")
    assert path is not None
    os.mkdir(os.path.dirname(path))
    os.chmod(os.path.dirname(path), 0o777)  # as if another user had made it
    async with anyio.create_task_group() as tg:
        await tg.start(listen, storage, "host:1:2", lambda: None)
        assert not os.path.exists(path)
        tg.cancel_scope.cancel()
