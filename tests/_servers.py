"""Servers the tests talk to: an S3 API (moto's server mode) on loopback.

`.ci/run` starts one and exports RIVERS_TEST_S3_ENDPOINT; when that is not set (a
developer's `make test`), the suite starts its own for the session, so the S3 tests
run everywhere the dev tools are installed. In CI a missing server fails the suite
instead of skipping its tests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

S3_START_TIMEOUT_S = 30.0


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
