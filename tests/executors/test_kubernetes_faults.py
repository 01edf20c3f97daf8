"""Executor.kubernetes faults a real API server cannot produce on demand.

A small fake speaks just enough of the Kubernetes REST API (one Job, its pod, its
log) over real HTTP, so the executor's real client code runs; each test scripts a
fault: ``410 Gone`` on a watch, a watch the server ends, 5xx answers, a lost
create answer, 403, an image that cannot be pulled, no server at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web

import rivers as rs
from rivers.executors import _kube_api, kubernetes
from rivers.executors.base import LaunchResult, StepRequest
from rivers.executors.kubernetes import KubernetesLauncher
from rivers.executors.kubernetes_config import KubernetesExecutor
from rivers.messages import EventBody, StepLogged

NAMESPACE = "faults"
LOG = '::rivers::{"level": "INFO", "message": "hello"}\nplain\n'


@rs.Asset
def faulty() -> int:
    return 1


REPOSITORY = rs.CodeRepository([faulty], executor=rs.Executor.in_process())

Events = list[dict[str, Any]]


@dataclass
class FakeCluster:
    """The fake's state and its scripted faults."""

    job: dict[str, Any] | None = None
    version: int = 100
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    create_statuses: list[int] = field(default_factory=list)
    """Statuses answered to successive creates before one succeeds."""
    lose_create_answers: int = 0
    """Creates that store the Job but answer 500, as if the answer were lost."""
    list_statuses: list[int] = field(default_factory=list)
    job_watches: list[Callable[[FakeCluster], Events]] = field(default_factory=list)
    """Scripts of successive Job watches: events to send before the stream ends."""
    complete_on_list: int | None = None
    """Mark the Job Complete when the n-th Job list is answered."""
    pod_waiting: str | None = None
    lists_answered: int = 0
    deleted_with: list[str] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)
    """Every Job manifest POSTed, as the server received it."""

    def bump(self) -> str:
        self.version += 1
        assert self.job is not None
        self.job["metadata"]["resourceVersion"] = str(self.version)
        return str(self.version)

    def complete(self) -> dict[str, Any]:
        assert self.job is not None
        self.job["status"] = {
            "succeeded": 1,
            "conditions": [{"type": "Complete", "status": "True"}],
        }
        self.bump()
        return self.job

    def event(self, kind: str) -> dict[str, Any]:
        return {"type": kind, "object": json.loads(json.dumps(self.job))}

    def pod(self) -> dict[str, Any]:
        assert self.job is not None
        name = self.job["metadata"]["name"]
        state: dict[str, Any] = {"terminated": {"exitCode": 0, "reason": "Completed"}}
        if self.pod_waiting is not None:
            state = {
                "waiting": {"reason": self.pod_waiting, "message": "no such image"}
            }
        return {
            "metadata": {
                "name": f"{name}-abcde",
                "creationTimestamp": "2024-01-01T00:00:00Z",
            },
            "status": {"containerStatuses": [{"name": "step", "state": state}]},
        }


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "status": "Failure", "code": code, "reason": reason}
    return web.json_response({**body, "message": message}, status=code)


def _app(cluster: FakeCluster) -> web.Application:
    jobs = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"
    pods = f"/api/v1/namespaces/{NAMESPACE}/pods"

    async def create(request: web.Request) -> web.Response:
        cluster.requests.append(("POST", "jobs", dict(request.query)))
        if cluster.create_statuses:
            code = cluster.create_statuses.pop(0)
            return _status(
                code, "Forbidden" if code == 403 else "InternalError", "nope"
            )
        if cluster.job is not None:
            return _status(409, "AlreadyExists", "jobs.batch already exists")
        cluster.job = await request.json()
        cluster.created.append(json.loads(json.dumps(cluster.job)))
        cluster.job["metadata"]["uid"] = "uid-1"
        cluster.bump()
        if cluster.lose_create_answers:
            cluster.lose_create_answers -= 1
            return _status(500, "InternalError", "the answer was lost")
        return web.json_response(cluster.job, status=201)

    async def list_or_watch(request: web.Request) -> web.StreamResponse:
        watching = request.query.get("watch", "").lower() == "true"
        cluster.requests.append(
            ("WATCH" if watching else "GET", "jobs", dict(request.query))
        )
        if not watching:
            if cluster.list_statuses:
                return _status(cluster.list_statuses.pop(0), "InternalError", "busy")
            cluster.lists_answered += 1
            if cluster.complete_on_list == cluster.lists_answered:
                cluster.complete()
            items = [cluster.job] if cluster.job is not None else []
            meta = {"resourceVersion": str(cluster.version)}
            return web.json_response({"metadata": meta, "items": items})
        script = cluster.job_watches.pop(0) if cluster.job_watches else None
        return await _stream(request, script(cluster) if script else None)

    async def pod_list_or_watch(request: web.Request) -> web.StreamResponse:
        watching = request.query.get("watch", "").lower() == "true"
        cluster.requests.append(
            ("WATCH" if watching else "GET", "pods", dict(request.query))
        )
        items = [cluster.pod()] if cluster.job is not None else []
        if not watching:
            return web.json_response(
                {"metadata": {"resourceVersion": "1"}, "items": items}
            )
        return await _stream(request, None)

    async def log(request: web.Request) -> web.Response:
        cluster.requests.append(("GET", "log", dict(request.query)))
        return web.Response(text=LOG)

    async def delete(request: web.Request) -> web.Response:
        cluster.requests.append(("DELETE", "jobs", dict(request.query)))
        cluster.deleted_with.append(request.query.get("propagationPolicy", ""))
        cluster.job = None
        return web.json_response({"kind": "Status", "status": "Success"})

    app = web.Application()
    app.router.add_post(jobs, create)
    app.router.add_get(jobs, list_or_watch)
    app.router.add_delete(jobs + "/{name}", delete)
    app.router.add_get(jobs + "/{name}", list_or_watch)
    app.router.add_get(pods, pod_list_or_watch)
    app.router.add_get(pods + "/{name}/log", log)
    return app


async def _stream(request: web.Request, events: Events | None) -> web.StreamResponse:
    response = web.StreamResponse()
    response.content_type = "application/json"
    await response.prepare(request)
    if events is None:  # nothing to say: hold the watch open, like a quiet server
        await asyncio.sleep(float(request.query.get("timeoutSeconds", "30")))
    else:
        for event in events:
            await response.write(json.dumps(event).encode() + b"\n")
    await response.write_eof()
    return response


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[tuple[FakeCluster, Path]]:
    cluster = FakeCluster()
    runner = web.AppRunner(_app(cluster), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(_kubeconfig(f"http://127.0.0.1:{port}"))
    yield cluster, kubeconfig
    await runner.cleanup()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_kube_api, "RETRY_FIRST_DELAY_S", 0.01)
    monkeypatch.setattr(_kube_api, "RETRY_MAX_DELAY_S", 0.05)
    monkeypatch.setattr(_kube_api, "RETRY_BUDGET_S", 1.0)
    monkeypatch.setattr(kubernetes, "DELETE_TIMEOUT_S", 2.0)


def _kubeconfig(server: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": server}}],
            "users": [{"name": "me", "user": {"token": "t"}}],
            "contexts": [
                {"name": "fake", "context": {"cluster": "fake", "user": "me"}}
            ],
            "current-context": "fake",
        }
    )


def _request(emitted: list[EventBody]) -> StepRequest:
    return StepRequest(
        run_id="0123456789abcdef012345",
        asset=faulty,
        attempt=1,
        run_tags={},
        known_values={},
        io_manager=REPOSITORY.io_manager,
        emit=emitted.append,
        on_start=lambda worker, startup_s=0.0: None,
    )


def _launcher(kubeconfig: Path) -> KubernetesLauncher:
    return KubernetesLauncher(
        rs.Executor.kubernetes(
            image="x", namespace=NAMESPACE, kubeconfig=str(kubeconfig)
        )
    )


async def _launch(kubeconfig: Path, emitted: list[EventBody]) -> LaunchResult:
    with anyio.fail_after(20):
        return await _launcher(kubeconfig).launch(_request(emitted))


def _count(cluster: FakeCluster, method: str, what: str) -> int:
    return sum(1 for m, w, _ in cluster.requests if (m, w) == (method, what))


async def test_410_gone_on_the_watch_relists_and_sees_the_job_complete_once(
    fake: tuple[FakeCluster, Path],
) -> None:
    cluster, kubeconfig = fake
    gone = {
        "type": "ERROR",
        "object": {"code": 410, "reason": "Expired", "message": "too old"},
    }
    cluster.job_watches = [lambda c: [gone]]
    cluster.complete_on_list = 2
    emitted: list[EventBody] = []
    result = await _launch(kubeconfig, emitted)
    assert not result.has_value
    assert _count(cluster, "GET", "jobs") == 2  # listed again after 410
    assert _count(cluster, "WATCH", "jobs") == 1
    messages = [e.message for e in emitted if isinstance(e, StepLogged)]
    assert messages == ["hello", "plain"]
    assert cluster.deleted_with == ["Background"]


async def test_a_watch_the_server_ends_resumes_from_the_last_version(
    fake: tuple[FakeCluster, Path],
) -> None:
    cluster, kubeconfig = fake

    def progress(c: FakeCluster) -> Events:
        c.bump()
        return [c.event("MODIFIED")]

    def finish(c: FakeCluster) -> Events:
        return [c.event("MODIFIED") for _ in [c.complete()]]

    cluster.job_watches = [progress, finish]
    await _launch(kubeconfig, [])
    watches = [q for m, w, q in cluster.requests if (m, w) == ("WATCH", "jobs")]
    assert len(watches) == 2
    assert watches[1]["resourceVersion"] == str(cluster.version - 1)
    assert _count(cluster, "GET", "jobs") == 1


async def test_server_errors_are_retried_until_the_job_runs(
    fake: tuple[FakeCluster, Path],
) -> None:
    cluster, kubeconfig = fake
    cluster.create_statuses = [500, 503]
    cluster.list_statuses = [500]
    cluster.complete_on_list = 1
    await _launch(kubeconfig, [])
    assert _count(cluster, "POST", "jobs") == 3


async def test_a_lost_create_answer_does_not_create_the_job_twice(
    fake: tuple[FakeCluster, Path],
) -> None:
    cluster, kubeconfig = fake
    cluster.lose_create_answers = 1
    cluster.complete_on_list = 1
    await _launch(kubeconfig, [])
    assert _count(cluster, "POST", "jobs") == 2  # the second got 409, then read it


async def test_persistent_server_errors_fail_the_step_naming_the_job(
    fake: tuple[FakeCluster, Path],
) -> None:
    cluster, kubeconfig = fake
    cluster.create_statuses = [500] * 1000
    with pytest.raises(rs.KubernetesApiError) as caught:
        await _launch(kubeconfig, [])
    assert caught.value.status == 500
    message = str(caught.value)
    assert f"namespace {NAMESPACE!r}" in message
    assert "cluster 'fake (http://127.0.0.1:" in message
    assert "could not create Kubernetes Job 'rivers-" in message


async def test_forbidden_is_a_clear_error(fake: tuple[FakeCluster, Path]) -> None:
    cluster, kubeconfig = fake
    cluster.create_statuses = [403]
    with pytest.raises(rs.KubernetesApiError, match="RBAC") as caught:
        await _launch(kubeconfig, [])
    assert caught.value.status == 403
    assert _count(cluster, "POST", "jobs") == 1  # not retried


async def test_an_image_that_cannot_be_pulled_fails_the_step_and_deletes_the_job(
    fake: tuple[FakeCluster, Path],
) -> None:
    cluster, kubeconfig = fake
    cluster.pod_waiting = "ImagePullBackOff"
    with pytest.raises(rs.JobFailed, match="ImagePullBackOff") as caught:
        await _launch(kubeconfig, [])
    assert caught.value.reason == "ImagePullBackOff"
    assert cluster.deleted_with == ["Foreground"]


async def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(_kubeconfig(f"http://127.0.0.1:{port}"))
    with pytest.raises(rs.KubernetesApiError, match="did not answer") as caught:
        await _launch(kubeconfig, [])
    assert caught.value.status is None


async def test_a_missing_kubeconfig_fails_the_launch(tmp_path: Path) -> None:
    with pytest.raises(rs.LaunchFailed, match="cannot load the kubeconfig"):
        await _launch(tmp_path / "nope", [])


# ------------------------------------------------------------------- secrets

SECRET = "hunter2-s3cr3t-value"
TOKEN = "kube-token-5f4dcc3b5aa765d61d8327deb882cf99"


def _with_token(kubeconfig: Path) -> None:
    config = json.loads(kubeconfig.read_text())
    config["users"][0]["user"]["token"] = TOKEN
    kubeconfig.write_text(json.dumps(config))


def _secret_executor(kubeconfig: Path) -> KubernetesExecutor:
    return rs.Executor.kubernetes(
        image="x",
        namespace=NAMESPACE,
        kubeconfig=str(kubeconfig),
        env={"DB_PASSWORD": SECRET},
        labels={"team": "core"},
    )


def _assert_secret_only_in_container_env(job: dict[str, Any]) -> None:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["DB_PASSWORD"] == SECRET
    assert SECRET in env["RIVERS_RUN_TAGS"]  # tags reach the pod as env, not labels
    template = job["spec"]["template"]["metadata"]
    visible = json.dumps(
        [
            job["metadata"]["name"],
            job["metadata"]["labels"],
            job["metadata"]["annotations"],
            template["labels"],
            template["annotations"],
            container["command"],
            container["args"],
            container["image"],
        ]
    )
    assert SECRET not in visible
    assert TOKEN not in json.dumps(job)


async def test_secrets_stay_out_of_job_names_labels_logs_and_events(
    fake: tuple[FakeCluster, Path], caplog: pytest.LogCaptureFixture
) -> None:
    cluster, kubeconfig = fake
    _with_token(kubeconfig)
    caplog.set_level(logging.DEBUG)
    cluster.create_statuses = [500]  # a retry is logged
    cluster.complete_on_list = 1
    async with rs.Runtime(REPOSITORY) as rt:
        with anyio.fail_after(20):
            result = await rt.materialize(
                executor=_secret_executor(kubeconfig), tags={"api_key": SECRET}
            )
        events = await rt.storage.get_events(run_id=result.run_id)
        run = await rt.storage.get_run(result.run_id)
    assert result.success, result.error
    (job,) = cluster.created
    _assert_secret_only_in_container_env(job)
    # The tags are the run's own, so the run record keeps them; nothing else does.
    assert run is not None
    assert run.tags == {"api_key": SECRET}
    stored = json.dumps([(e.kind, e.step_key, e.data) for e in events])
    assert SECRET not in stored
    assert TOKEN not in stored
    asked = json.dumps(cluster.requests)  # paths, selectors, query strings
    assert SECRET not in asked
    assert TOKEN not in asked
    assert "retrying" in caplog.text
    assert SECRET not in caplog.text
    assert TOKEN not in caplog.text


async def test_api_errors_never_carry_the_token_or_the_env(
    fake: tuple[FakeCluster, Path], caplog: pytest.LogCaptureFixture
) -> None:
    cluster, kubeconfig = fake
    _with_token(kubeconfig)
    caplog.set_level(logging.DEBUG)
    launcher = KubernetesLauncher(_secret_executor(kubeconfig))
    for statuses in ([403], [500] * 1000):
        cluster.create_statuses = list(statuses)
        with pytest.raises(rs.KubernetesApiError) as caught:
            with anyio.fail_after(20):
                await launcher.launch(_request([]))
        assert SECRET not in str(caught.value)
        assert TOKEN not in str(caught.value)
    assert SECRET not in caplog.text
    assert TOKEN not in caplog.text
