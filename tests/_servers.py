"""Servers the tests talk to, on loopback: an S3 API (moto's server mode) and
PostgreSQL (scripts/postgres-server).

`.ci/run` starts both and exports RIVERS_TEST_S3_ENDPOINT and RIVERS_TEST_POSTGRES;
when one is not set (a developer's `make test`), the suite starts its own for the
session, so the S3 tests run everywhere the dev tools are installed and the
PostgreSQL ones wherever Debian's postgresql package is. In CI a missing server
fails the suite instead of skipping its tests.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

S3_START_TIMEOUT_S = 30.0
POSTGRES_START_TIMEOUT_S = 30.0
POSTGRES_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "postgres-server"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_up(url: str, process: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + S3_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the S3 server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"no S3 server answered at {url} within {S3_START_TIMEOUT_S}s")


@contextmanager
def s3_server() -> Iterator[str]:
    """Yield the endpoint URL of a live S3 API server on loopback."""
    endpoint = os.environ.get("RIVERS_TEST_S3_ENDPOINT")
    if endpoint:
        _wait_until_up(endpoint, None)
        yield endpoint
        return
    try:
        import moto.server  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            raise RuntimeError(
                "CI must test S3: .ci/run starts moto and sets RIVERS_TEST_S3_ENDPOINT"
            ) from None
        pytest.skip("moto is not installed, so there is no S3 server to test against")
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(endpoint, process)
        yield endpoint
    finally:
        process.terminate()
        process.wait(10)


def _wait_for_postgres(url: str) -> None:
    import psycopg

    deadline = time.monotonic() + POSTGRES_START_TIMEOUT_S
    while True:
        try:
            with psycopg.connect(url, connect_timeout=1):
                return
        except psycopg.OperationalError:
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"no PostgreSQL server answered at {url} "
                    f"within {POSTGRES_START_TIMEOUT_S}s"
                ) from None
            time.sleep(0.05)


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield the admin URL of a live PostgreSQL server on loopback (a superuser,
    trusted: the tests make and drop a database each, see tests/_postgres.py)."""
    url = os.environ.get("RIVERS_TEST_POSTGRES")
    if url:
        _wait_for_postgres(url)
        yield url
        return
    if not (glob.glob("/usr/lib/postgresql/*/bin/initdb") or shutil.which("pg_ctl")):
        if os.environ.get("CI"):
            raise RuntimeError(
                "CI must test PostgreSQL: .ci/run starts it and sets RIVERS_TEST_POSTGRES"
            )
        pytest.skip(
            "no PostgreSQL server: set RIVERS_TEST_POSTGRES "
            "or install Debian's postgresql package"
        )
    parent = Path(tempfile.mkdtemp(prefix="rivers-pg-"))
    parent.chmod(0o755)  # run as root, the server is another user: it must reach pg/
    cluster = parent / "pg"
    try:
        url = subprocess.run(
            [POSTGRES_SCRIPT, "up", cluster],
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        ).stdout.strip()
        _wait_for_postgres(url)
        yield url
    finally:
        subprocess.run([POSTGRES_SCRIPT, "down", cluster], check=False)
        shutil.rmtree(parent, ignore_errors=True)
