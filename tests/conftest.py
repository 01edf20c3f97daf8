"""Shared fixtures: every test gets its own RIVERS_HOME and real SQLite file; the
servers some tests need (S3, PostgreSQL) are shared by the session (tests/_servers.py)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from rivers.storage import open_backend
from rivers.storage.base import StorageBackend

# RIVERS_HYPOTHESIS_PROFILE=long tries 20x more inputs in every property test that
# does not set its own max_examples (the hostile-input fuzzers among them).
settings.register_profile("long", max_examples=2000)
settings.load_profile(os.environ.get("RIVERS_HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def rivers_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point RIVERS_HOME at a fresh directory so no test touches ~/.rivers (nor a
    storage the environment names in RIVERS_STORAGE)."""
    home = tmp_path / "rivers-home"
    monkeypatch.setenv("RIVERS_HOME", str(home))
    monkeypatch.delenv("RIVERS_STORAGE", raising=False)
    return home


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[StorageBackend]:
    """A fresh storage file, opened as its role objects (``storage.runs``, ...)."""
    async with open_backend(tmp_path / "storage.db") as opened:
        yield opened


_FIGURES: list[str] = []


@pytest.fixture
def record_figure() -> Callable[[str], None]:
    """Return a function that adds a line to the suite's "figures" summary.

    The reliability suites (chaos, load, stateful) record what they measured:
    the lines are printed at the end of the run, for docs/reliability.md.
    """
    return _FIGURES.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        terminalreporter.section("figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The endpoint of a live S3 API server on loopback (see tests/_servers.py)."""
    from tests._servers import s3_server

    with s3_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """The admin URL of a live PostgreSQL server on loopback (see tests/_servers.py)."""
    from tests._servers import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """The URL of a fresh, empty database on that server, dropped after the test."""
    from tests._postgres import drop_database, fresh_database

    url = fresh_database(postgres_admin_url)
    yield url
    drop_database(postgres_admin_url, url)


@pytest.fixture
def s3_client(s3_endpoint: str) -> Any:
    """A boto3 S3 client of the test server (its credentials are moto's any)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


@pytest.fixture
def bucket(s3_client: Any) -> str:
    """A fresh bucket on the S3 server; returns its name."""
    name = f"rivers-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def k8s_kubeconfig() -> Path:
    """The kubeconfig of the cluster to test against (``RIVERS_TEST_KUBECONFIG``)."""
    path = os.environ.get("RIVERS_TEST_KUBECONFIG")
    if not path:
        pytest.skip(
            "RIVERS_TEST_KUBECONFIG is not set, so there is no Kubernetes API server "
            "to test against; .ci/run starts ../shared/k8s-testbed and sets it"
        )
    return Path(path)
