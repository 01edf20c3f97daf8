"""A storage file damaged before or while rivers uses it: noticed, never written on.

Real files, damaged for real: truncated to 0 bytes under a running ``rivers
materialize`` / ``rivers daemon`` (CLI subprocesses), a page of the ``run_tags``
table overwritten before a run and while a runtime holds the file open. Each
gives one clear error (one line, exit 2 from the CLI; one ``rs.StorageError``,
never an exception group, from the API) and rivers stops writing to the file.
``rivers doctor`` finds the damage and its recovery recipe works.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest

import rivers as rs
from rivers.storage import open_backend
from rivers.storage.records import NewRun

# -------------------------------------------------------------------- helpers


def _new_run(run_id: str, **tags: str) -> NewRun:
    return NewRun(
        run_id=run_id,
        status=rs.RunStatus.SUCCESS,
        repository="default",
        tags=tags,
        selection=None,
    )


async def _fill(path: Path, count: int) -> None:
    """Write ``count`` finished runs with two tags each; closing folds the WAL in."""
    async with open_backend(path) as storage:
        for index in range(count):
            await storage.runs.create_run(
                _new_run(f"r{index:05d}", team=f"t{index % 5}", note="n" * 40)
            )


def _leaf_pages(path: Path, table: str) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' "
            "ORDER BY pageno",
            (table,),
        ).fetchall()
    finally:
        conn.close()
    return [row[0] for row in rows]


def _overwrite_page(path: Path, page: int) -> None:
    """Overwrite one page of the file in place with noise (the file stays open)."""
    with path.open("r+b") as file:
        size = int.from_bytes(file.read(18)[16:18], "big")
        file.seek((page - 1) * size)
        file.write(bytes((i * 37 + 11) % 256 for i in range(size)))


def _files(path: Path) -> dict[str, bytes]:
    """The database file and its WAL, as bytes (to show nothing was written)."""
    return {
        p.name: p.read_bytes()
        for p in sorted(path.parent.glob(path.name + "*"))
        if not p.name.endswith("-shm")
    }


def _cli_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RIVERS_HOME": str(tmp_path / "home"),
        "RIVERS_NO_PROGRESS": "1",
    }


def _rivers(*argv: str) -> list[str]:
    return [sys.executable, "-m", "rivers", *argv]


def _wait_for(path: Path, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.01)


def _assert_one_line(code: int, err: str, *needles: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("rivers: error: "), err
    for needle in needles:
        assert needle in lines[0], err
    return lines[0]


# ------------------------------------------ truncated under the running CLI

_PIPELINE = textwrap.dedent(
    """
    import os
    from pathlib import Path

    import anyio
    import rivers as rs

    MARK = Path(os.environ["TEST_MARK"])
    GO = Path(os.environ["TEST_GO"])

    @rs.Asset(pool="db")
    async def first() -> int:
        MARK.touch()  # the test truncates the storage now, then creates GO
        while not GO.exists():
            await anyio.sleep(0.01)
        return 1

    @rs.Asset(pool="db")
    async def second(first: int) -> int:
        return first + 1

    repo = rs.CodeRepository(
        [first, second], pool_limits={"db": 1}, executor=rs.Executor.in_process()
    )
    """
)


def test_storage_truncated_under_a_running_materialize_is_one_line_exit_2(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rivers.db"
    anyio.run(_fill, path, 200)
    pipeline = tmp_path / "pipeline.py"
    pipeline.write_text(_PIPELINE)
    mark, go, log = tmp_path / "mark", tmp_path / "go", tmp_path / "err.log"
    env = {**_cli_env(tmp_path), "TEST_MARK": str(mark), "TEST_GO": str(go)}
    with log.open("w") as err:
        process = subprocess.Popen(
            _rivers("--storage", str(path), "materialize", "-f", str(pipeline)),
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
        try:
            _wait_for(mark, process, log)
            os.truncate(path, 0)  # `: > rivers.db` while the step runs
            go.touch()
            code = process.wait(60)
        finally:
            if process.poll() is None:
                process.kill()
    line = _assert_one_line(code, log.read_text(), str(path), "corrupted")
    # Whichever notices first: the check before each write, or SQLite itself.
    details = ("truncated to 0 bytes", "malformed", "file is not a database")
    assert any(detail in line for detail in details), line
    assert "doctor" in line


def test_storage_truncated_under_an_idle_daemon_stops_it_with_one_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rivers.db"
    anyio.run(_fill, path, 50)
    pipeline = tmp_path / "pipeline.py"
    pipeline.write_text(_PIPELINE)
    log = tmp_path / "err.log"
    env = {**_cli_env(tmp_path), "TEST_MARK": "unused", "TEST_GO": "unused"}
    with log.open("w") as err:
        process = subprocess.Popen(
            _rivers("--storage", str(path), "daemon", "-f", str(pipeline)),
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
        try:
            deadline = time.monotonic() + 30
            while "serving repository" not in log.read_text():
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.02)
            os.truncate(path, 0)
            # Its next heartbeat (every second) finds the file gone hollow.
            code = process.wait(30)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(10)
    text = log.read_text()
    assert text.startswith("rivers daemon: serving repository"), text
    # The banner (which a narrow terminal may wrap), then the one error line.
    banner, _, rest = text.partition("to stop)\n")
    assert "\n\n" not in banner, text
    _assert_one_line(code, rest, str(path), "truncated to 0 bytes")


@pytest.mark.parametrize(
    "path_taken", ["inline claim", "inline release", "thread write", "thread read"]
)
async def test_every_path_into_sqlite_raises_a_rivers_error_on_a_truncated_file(
    tmp_path: Path, path_taken: str
) -> None:
    """The loop's inline writes, the SQLite thread's writes and reads: each path
    turns what SQLite raises into ``StorageCorrupted``, never a ``sqlite3`` error."""
    path = tmp_path / "rivers.db"
    await _fill(path, 200)
    async with open_backend(path) as storage:

        async def use() -> object:
            if path_taken == "inline claim":
                return await storage.pools.claim_pool_slots(
                    run_id="r",
                    step_key="s",
                    pools=("db",),
                    slots=1,
                    owner="o",
                    lease_s=5,
                )
            if path_taken == "inline release":
                return storage.pools.release_and_claim_now(
                    run_id="r", step_key="s", claims=[], owner="o", lease_s=5
                )
            if path_taken == "thread write":
                return await storage.runs.create_run(_new_run("new"))
            return await storage.runs.get_runs(tags={"team": "t1"}, limit=None)

        await storage.runs.get_runs(limit=None)
        os.truncate(path, 0)
        with pytest.raises(rs.StorageCorrupted):
            await use()
        assert storage.corrupted is not None  # and it writes no more


# ----------------------------------------- one StorageError from materialize


@rs.Asset
async def left() -> int:
    await anyio.sleep(0.05)
    return 1


@rs.Asset
async def right() -> int:
    await anyio.sleep(0.05)
    return 2


def test_repo_materialize_raises_one_storage_error_promptly_on_a_damaged_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rivers.db"

    @rs.Asset
    async def breaks() -> int:
        os.truncate(path, 0)
        return 0

    @rs.Asset
    async def after(breaks: int, left: int, right: int) -> int:
        return breaks + left + right

    repo = rs.CodeRepository(
        [breaks, left, right, after],
        executor=rs.Executor.in_process(),
        backend=rs.RunBackendConfig(storage=str(path)),
    )
    began = time.monotonic()
    with pytest.raises(rs.StorageError) as raised:
        repo.materialize()
    took = time.monotonic() - began
    assert not isinstance(raised.value, BaseExceptionGroup)
    assert isinstance(raised.value, rs.StorageCorrupted), raised.value
    assert str(path) in str(raised.value)
    assert took < 5, took  # not after the event log's ~19 s of retries


# ----------------------------------------------------- damaged run_tags page


def test_a_damaged_page_is_found_at_open_and_the_file_is_not_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rivers.db"
    anyio.run(_fill, path, 300)
    pages = _leaf_pages(path, "run_tags")
    assert len(pages) >= 3
    _overwrite_page(path, pages[len(pages) // 2])  # a middle page of run_tags
    before = _files(path)
    repo = rs.CodeRepository([left], backend=rs.RunBackendConfig(storage=str(path)))
    with pytest.raises(rs.StorageCorrupted, match="quick_check") as raised:
        repo.materialize()
    assert str(path) in str(raised.value)
    assert "doctor" in str(raised.value)
    assert _files(path) == before


async def test_damage_found_mid_run_stops_every_write_and_the_runtime(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rivers.db"
    await _fill(path, 300)
    pages = _leaf_pages(path, "run_tags_by_tag_created")  # what a search by tag reads
    repo = rs.CodeRepository(
        [left],
        executor=rs.Executor.in_process(),
        backend=rs.RunBackendConfig(storage=str(path)),
    )
    found: list[rs.StorageCorrupted] = []

    async def run_until_stopped() -> None:
        async with rs.Runtime(repo) as rt:
            assert (await rt.materialize()).success
            # Damage the file under the open runtime, then let another program
            # write, so the runtime's page cache is dropped and it reads the file.
            for page in pages:
                _overwrite_page(path, page)
            other = sqlite3.connect(path, isolation_level=None)
            other.execute(
                "INSERT INTO kv (key, value, updated_at) VALUES ('test', 'x', 0)"
            )
            other.close()
            with pytest.raises(rs.StorageCorrupted, match="malformed") as raised:
                await rt.storage.get_runs(tags={"team": "t1"}, limit=None)
            found.append(raised.value)
            assert "doctor" in str(raised.value)
            assert rt._roles.corrupted is raised.value
            before = _files(path)
            began = time.monotonic()
            with pytest.raises(rs.StorageCorrupted):
                await rt.materialize()  # refused at once: nothing written
            assert time.monotonic() - began < 1
            assert _files(path) == before
            await anyio.sleep(30)  # the runtime stops itself before this ends

    with pytest.raises(rs.StorageCorrupted) as stopped:
        await run_until_stopped()
    assert stopped.value is found[0]


# ------------------------------------------------------------------- doctor


def test_doctor_finds_the_damage_and_its_recipe_recovers_the_runs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rivers.db"
    anyio.run(_fill, path, 300)
    env = _cli_env(tmp_path)
    whole = subprocess.run(
        _rivers("--storage", str(path), "doctor"), capture_output=True, env=env
    )
    assert whole.returncode == 0, whole.stderr
    assert b": ok (PRAGMA integrity_check" in whole.stdout
    pages = _leaf_pages(path, "run_tags")
    _overwrite_page(path, pages[len(pages) // 2])
    before = _files(path)
    damaged = subprocess.run(
        _rivers("--storage", str(path), "doctor"), capture_output=True, env=env
    )
    assert damaged.returncode == 1, damaged.stderr
    out = damaged.stdout.decode()
    assert "is damaged" in out
    assert "table run_tags" in out
    after = _files(path)  # doctor reads only (opening WAL mode leaves an empty -wal)
    assert after.pop(path.name + "-wal", b"") == b""
    assert after == before
    steps = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    steps = steps[1:]  # the first is the problem found
    assert steps[0].startswith("sqlite3 "), out
    if shutil.which("sqlite3") is None:
        pytest.skip("no sqlite3 shell to run the recipe with")
    for step in steps:
        if step.startswith("rivers "):
            step = step.replace("rivers ", f"{sys.executable} -m rivers ", 1)
        done = subprocess.run(step, shell=True, capture_output=True, env=env)
        assert done.returncode == 0, (step, done.stdout, done.stderr)
    recovered = Path(f"{path}.recovered")

    async def read_back() -> list[rs.RunRecord]:
        async with open_backend(recovered) as storage:
            return await storage.runs.get_runs(limit=None)

    assert len(anyio.run(read_back)) == 300


def test_doctor_on_a_missing_file_is_one_line_and_creates_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "missing.db"
    done = subprocess.run(
        _rivers("--storage", str(path), "doctor"),
        capture_output=True,
        env=_cli_env(tmp_path),
    )
    _assert_one_line(done.returncode, done.stderr.decode(), "no storage file")
    assert not path.exists()


def test_a_step_changing_directory_is_not_taken_for_a_deleted_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The storage named relative to where the run started; the step moves away.
    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    @rs.Asset
    async def wanders() -> int:
        os.chdir(elsewhere)
        return 1

    @rs.Asset
    async def then(wanders: int) -> int:
        return wanders + 1

    repo = rs.CodeRepository(
        [wanders, then],
        executor=rs.Executor.in_process(),
        backend=rs.RunBackendConfig(storage="rivers.db"),
    )
    assert repo.materialize().success
    assert (tmp_path / "rivers.db").is_file()
