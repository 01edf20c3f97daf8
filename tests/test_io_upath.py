"""UPathIOManager against a real S3 API on loopback (moto's server mode) and local paths."""

from __future__ import annotations

import pickle
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import rivers as rs

S3_CREDENTIALS = {"key": "testing", "secret": "testing"}


def s3_io(endpoint: str, bucket: str, prefix: str = "values") -> rs.UPathIOManager:
    return rs.UPathIOManager(
        f"s3://{bucket}/{prefix}", endpoint_url=endpoint, **S3_CREDENTIALS
    )


def test_values_round_trip_through_s3_and_land_as_objects(
    s3_endpoint: str, s3_client: Any, bucket: str
) -> None:
    io = s3_io(s3_endpoint, bucket)
    io.store("orders", [{"id": 1}, {"id": 2}])
    io.store("revenue", 19.5)
    assert io.load("orders") == [{"id": 1}, {"id": 2}]
    assert io.load("revenue") == 19.5
    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix="values/")
    assert sorted(o["Key"] for o in listed["Contents"]) == [
        "values/orders.pickle",
        "values/revenue.pickle",
    ]


def test_a_value_never_stored_is_value_not_found(s3_endpoint: str, bucket: str) -> None:
    io = s3_io(s3_endpoint, bucket)
    with pytest.raises(rs.ValueNotFound, match="'ghost' has never been materialized"):
        io.load("ghost")


def test_keys_that_are_not_plain_names_are_refused(
    s3_endpoint: str, bucket: str
) -> None:
    io = s3_io(s3_endpoint, bucket)
    for key in ("../escape", "a/b", ".hidden", "x\n", ""):
        with pytest.raises(ValueError, match="does not name a file"):
            io.store(key, 1)


def test_a_large_value_round_trips(s3_endpoint: str, bucket: str) -> None:
    # 24 MiB: above s3fs's default block size, so it must not be cut anywhere.
    io = s3_io(s3_endpoint, bucket)
    value = bytes(range(256)) * (24 * 4096)
    io.store("big", value)
    assert io.load("big") == value


def _hammer(args: tuple[str, str, int]) -> int:
    endpoint, bucket, k = args
    io = s3_io(endpoint, bucket)
    torn = 0
    for i in range(25):
        io.store("shared", [k] * (i % 50 + 1))
        value = io.load("shared")
        if not isinstance(value, list) or len(set(value)) != 1:
            torn += 1
    return torn


def test_concurrent_writers_in_processes_and_threads_never_expose_a_torn_value(
    s3_endpoint: str, bucket: str
) -> None:
    with ProcessPoolExecutor(2) as pool:
        remote = pool.map(_hammer, [(s3_endpoint, bucket, k) for k in (1, 2)])
        torn: list[int] = []
        threads = [
            threading.Thread(
                target=lambda k=k: torn.append(_hammer((s3_endpoint, bucket, k)))
            )
            for k in (3, 4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(remote) + sum(torn) == 0
    last = s3_io(s3_endpoint, bucket).load("shared")
    assert isinstance(last, list)
    assert len(set(last)) == 1


def test_a_run_on_worker_processes_passes_values_through_s3(
    s3_endpoint: str, bucket: str
) -> None:
    @rs.Asset
    def numbers() -> list[int]:
        return list(range(10))

    @rs.Asset
    def total(numbers: list[int]) -> int:  # a sync step: it runs in a worker process
        return sum(numbers)

    @rs.Asset
    async def report(total: int) -> str:
        return f"total={total}"

    io = s3_io(s3_endpoint, bucket)
    repo = rs.CodeRepository(
        [numbers, total, report], io_manager=io, executor=rs.Executor.parallel(2)
    )
    result = repo.materialize()
    assert result.success, result.error
    assert result.output_for("report") == "total=45"
    # A second process reading the bucket sees what the workers wrote.
    fresh = s3_io(s3_endpoint, bucket)
    assert fresh.load("total") == 45
    # Selecting only the last step loads its input from S3.
    again = repo.materialize(["report"])
    assert again.success
    assert again.output_for("report") == "total=45"


def test_it_pickles_without_its_filesystem(s3_endpoint: str, bucket: str) -> None:
    io = s3_io(s3_endpoint, bucket)
    io.store("x", 1)  # makes the filesystem object
    copy: Any = pickle.loads(pickle.dumps(io))
    assert copy.load("x") == 1
    assert repr(copy) == f"UPathIOManager('s3://{bucket}/values')"


def test_local_urls_and_paths_write_whole_files(tmp_path: Path) -> None:
    for base in (f"file://{tmp_path}/a", str(tmp_path / "b")):
        io = rs.UPathIOManager(base)
        io.store("v", "x" * 100_000)
        io.store("v", "short")
        assert io.load("v") == "short"
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["v.pickle"]


def test_a_filesystem_package_that_is_missing_is_named_with_the_fix() -> None:
    io = rs.UPathIOManager("gs://bucket/prefix")
    with pytest.raises(rs.ConfigError, match=r"gcsfs"):
        io.store("x", 1)


@pytest.mark.parametrize("base", ["", "   ", "s3://b\n", 3])
def test_a_base_that_is_not_a_url_is_a_config_error(base: Any) -> None:
    with pytest.raises(rs.ConfigError, match="UPathIOManager base"):
        rs.UPathIOManager(base)
