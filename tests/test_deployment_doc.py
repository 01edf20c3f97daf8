"""docs/deployment.md cannot drift: its manifests are Kubernetes objects that grant
exactly what the Kubernetes executor calls, its example configures the executor the
manifests are for, and every constant it quotes is the code's."""

from __future__ import annotations

import ast
import copy
import importlib
import inspect
import json
import re
import secrets
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer
import yaml

import rivers as rs
from rivers._liveness import STALE_AFTER_S
from rivers.actors import events, pools, queue, triggers
from rivers.actors.liveness import HEARTBEAT_INTERVAL_S
from rivers.cli.app import app, daemon
from rivers.executors import _kube_api, _kube_jobs, kubernetes
from rivers.executors.kubernetes_config import KubernetesExecutor
from rivers.storage import (
    _pg_connection,
    _pg_wakes,
    _sqlite_connection,
    resolve_storage,
)

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "deployment.md"
TEXT = PAGE.read_text()
PROSE = " ".join(TEXT.split("## Constants quoted on this page", 1)[0].split())
"""The page before its constants table, with every run of whitespace one space."""

# What Executor.kubernetes calls: the kubernetes_asyncio client methods that
# rivers/executors/_kube_api.py's KubeApi wraps (create_job, read_job, delete_job,
# list, watch, read_pod_log), each with the (API group, resource, verb) RBAC needs
# for it. KubeApi.watch calls the two list methods with watch=True.
CLIENT_CALLS: dict[str, set[tuple[str, str, str]]] = {
    "create_namespaced_job": {("batch", "jobs", "create")},
    "read_namespaced_job": {("batch", "jobs", "get")},
    "delete_namespaced_job": {("batch", "jobs", "delete")},
    "list_namespaced_job": {("batch", "jobs", "list"), ("batch", "jobs", "watch")},
    "list_namespaced_pod": {("", "pods", "list"), ("", "pods", "watch")},
    "read_namespaced_pod_log": {("", "pods/log", "get")},
}
EXECUTOR_GRANTS = frozenset(
    grant for grants in CLIENT_CALLS.values() for grant in grants
)


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", TEXT, re.S | re.M)


def _documents() -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for block in _blocks("yaml"):
        documents.extend(d for d in yaml.safe_load_all(block) if d is not None)
    return documents


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in _documents() if d["kind"] == kind]


def _one(kind: str) -> dict[str, Any]:
    found = _of_kind(kind)
    assert len(found) == 1, f"docs/deployment.md has {len(found)} {kind}s"
    return found[0]


def _daemon_container() -> dict[str, Any]:
    containers = _one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _daemon_options() -> dict[str, Any]:
    """The options the Deployment passes to ``rivers daemon``, as the CLI parses them."""
    argv = _daemon_container()["command"]
    assert argv[:2] == ["rivers", "daemon"], argv
    command = typer.main.get_group(app)
    context = command.make_context("rivers", list(argv[1:]))
    name, sub, rest = command.resolve_command(context, list(argv[1:]))
    assert name == "daemon"
    assert sub is not None
    return dict(sub.make_context("daemon", rest, parent=context).params)


# ------------------------------------------------------------------- manifests


def test_every_yaml_document_is_a_named_kubernetes_object() -> None:
    assert len(_blocks("yaml")) >= 3
    documents = _documents()
    kinds = {d["kind"] for d in documents}
    assert {"ServiceAccount", "Role", "RoleBinding", "Secret", "Deployment"} <= kinds
    for document in documents:
        assert isinstance(document, dict), document
        assert isinstance(document.get("apiVersion"), str), document
        assert isinstance(document.get("kind"), str), document
        assert isinstance(document.get("metadata", {}).get("name"), str), document
    namespaces = {d["metadata"].get("namespace") for d in documents}
    assert len(namespaces) == 1, f"the manifests use several namespaces: {namespaces}"


def test_the_client_calls_listed_are_every_call_the_executor_makes() -> None:
    source = Path(_kube_api.__file__).read_text()
    called = {
        node.attr
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "self"
        and node.value.attr in ("_batch", "_core")
    }
    assert called == set(CLIENT_CALLS), (
        "the Kubernetes executor's API calls changed: update CLIENT_CALLS, the Role "
        "and the table of calls in docs/deployment.md"
    )
    watch = next(
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.AsyncFunctionDef) and node.name == "watch"
    )
    assert any(
        kw.arg == "watch" and isinstance(kw.value, ast.Constant) and kw.value.value
        for node in ast.walk(watch)
        if isinstance(node, ast.Call)
        for kw in node.keywords
    )
    # No other module of the executor talks to the API itself.
    for module in Path(_kube_api.__file__).parent.glob("*.py"):
        if module.name != "_kube_api.py":
            assert "V1Api(" not in module.read_text(), module.name


def test_the_role_grants_exactly_what_the_kubernetes_executor_calls() -> None:
    role = _one("Role")
    assert role["apiVersion"] == "rbac.authorization.k8s.io/v1"
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted >= EXECUTOR_GRANTS, f"missing: {sorted(EXECUTOR_GRANTS - granted)}"
    assert granted <= EXECUTOR_GRANTS, (
        f"not needed: {sorted(granted - EXECUTOR_GRANTS)}"
    )
    # The table of calls on the page names each client method.
    for method in CLIENT_CALLS:
        assert f"`{method}`" in TEXT, method


def test_the_role_is_bound_to_the_daemons_service_account() -> None:
    binding = _one("RoleBinding")
    deployment = _one("Deployment")
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    assert account in {a["metadata"]["name"] for a in _of_kind("ServiceAccount")}
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": _one("Role")["metadata"]["name"],
    }
    assert {
        "kind": "ServiceAccount",
        "name": account,
        "namespace": deployment["metadata"]["namespace"],
    } in binding["subjects"]


def test_the_deployment_runs_the_daemon_with_rivers_storage_from_the_secret() -> None:
    deployment = _one("Deployment")
    spec = deployment["spec"]
    assert 1 <= spec["replicas"] <= 2
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    env = {e["name"]: e for e in _daemon_container()["env"]}
    reference = env["RIVERS_STORAGE"]["valueFrom"]["secretKeyRef"]
    secret = next(
        s for s in _of_kind("Secret") if s["metadata"]["name"] == reference["name"]
    )
    url = secret["stringData"][reference["key"]]
    assert isinstance(resolve_storage(url), str), "not a PostgreSQL URL"
    assert url.startswith("postgresql://")
    options = _daemon_options()
    assert options["module"] == "pipelines"
    grace = options["grace"]
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] > grace
    assert f'"--grace", "{grace:g}"' in TEXT


# ------------------------------------------------------------- the example


@pytest.fixture
def pipelines() -> Iterator[ModuleType]:
    """The page's Python example, loaded as a module (as the image would hold it)."""
    (block,) = [b for b in _blocks("python") if "rs.Executor.kubernetes(" in b]
    module = ModuleType("docs_deployment_pipelines")
    sys.modules[module.__name__] = module
    try:
        exec(compile(block, "docs/deployment.md", "exec"), module.__dict__)
        yield module
    finally:
        del sys.modules[module.__name__]


def test_the_example_configures_the_executor_the_manifests_are_for(
    pipelines: ModuleType,
) -> None:
    repo = pipelines.repo
    assert isinstance(repo, rs.CodeRepository)
    assert repo.backend is None, "the storage comes from RIVERS_STORAGE"
    assert isinstance(repo.io_manager, rs.UPathIOManager)
    assert repo.io_manager.base.startswith("s3://")
    executor = repo.executor
    assert isinstance(executor, KubernetesExecutor)
    assert executor.namespace == _one("Role")["metadata"]["namespace"]
    assert executor.image == _daemon_container()["image"]
    steps = next(
        a
        for a in _of_kind("ServiceAccount")
        if a["metadata"]["name"] == executor.service_account
    )
    assert steps["automountServiceAccountToken"] is False
    assert set(executor.env_secrets or ()) <= {
        s["metadata"]["name"] for s in _of_kind("Secret")
    }
    job = executor.job_manifest(pipelines.orders)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert job["metadata"]["namespace"] == executor.namespace
    assert pod["serviceAccountName"] == executor.service_account
    assert {"secretRef": {"name": "rivers-s3"}} in container["envFrom"]
    assert container["name"] == "step"
    assert " ".join(container["command"]) == "python -m rivers.worker"
    assert "`python -m rivers.worker --module M --attribute A" in TEXT
    assert f"Its container `{container['name']}` runs" in PROSE


# ---------------------------------------------------------------- constants


def _g(value: float) -> str:
    return f"{value:g}"


def test_the_prose_quotes_the_codes_values() -> None:
    lease = rs.RunBackendConfig().lease_s
    waits = _sqlite_connection.WRITE_RETRY_DELAYS_S
    reconnects = _pg_connection.RETRY_DELAYS_S
    listens = _pg_wakes.RECONNECT_DELAYS_S
    batches = events.RETRY_DELAYS_S
    grace = inspect.signature(daemon).parameters["grace"].default
    ttl = (
        inspect.signature(rs.Executor.kubernetes)
        .parameters["ttl_seconds_after_finished"]
        .default
    )
    phrases = [
        f"`--grace` seconds (default {_g(grace)} s)",
        f"waiting steps re-read their pools every {_g(pools.POLL_INTERVAL_S)} s",
        f"(default {_g(rs.RunQueueConfig().dequeue_interval_s)} s), or every "
        f"{_g(queue.NO_QUEUE_POLL_S)} s for a repository without a run queue",
        f"checks for dead processes every {_g(HEARTBEAT_INTERVAL_S)} s",
        f"pauses growing from {_g(listens[0])} s to {_g(listens[-1])} s, and the "
        "runtime re-reads",
        f"heartbeat (written every {_g(HEARTBEAT_INTERVAL_S)} s)",
        f"A host whose clock runs {_g(STALE_AFTER_S)} s behind looks dead",
        f"once its heartbeat is {_g(STALE_AFTER_S)} s old",
        f"`ttlSecondsAfterFinished` (default {ttl} s, a backstop)",
        f"the timeout plus {_kube_jobs.ACTIVE_DEADLINE_SLACK_S} s",
        f"reads up to {kubernetes.LOG_LIMIT_BYTES // 2**20} MiB of the pod's log",
        f"waits up to {_g(kubernetes.DELETE_TIMEOUT_S)} s for its pods to go",
        f"retried for up to {_g(_kube_api.RETRY_BUDGET_S)} s",
        f"valid for {_g(queue.LEADER_LEASE_S)} s, or for three `dequeue_interval`s",
        f"The other replica checks every {_g(queue.MAX_LEADER_CHECK_S)} s",
        f"within {_g(queue.LEADER_LEASE_S)} s of the leader's death",
        f"a leader lease of their own, {_g(triggers.LEADER_LEASE_S)} s",
        f"waits up to {_g(kubernetes.DELETE_TIMEOUT_S)} s for their pods",
        f"once the dead one's heartbeat is {_g(STALE_AFTER_S)} s old",
        f"A write waits up to {_g(_sqlite_connection.BUSY_TIMEOUT_S)} s inside SQLite",
        f"pauses growing from {_g(waits[0])} s to {_g(waits[-1])} s, for up to "
        f"{_g(_sqlite_connection.WRITE_PATIENCE_S)} s in all",
        f"Each attempt waits up to {_pg_connection.CONNECT_TIMEOUT_S} s for the server",
        f"pauses growing from {_g(reconnects[0])} s to {_g(reconnects[-1])} s between "
        "attempts",
        f"keeps trying for up to {_g(_pg_connection.WRITE_PATIENCE_S)} s",
        f"The heartbeat (every {_g(HEARTBEAT_INTERVAL_S)} s)",
        f"pauses of {_g(batches[0])} s growing to {_g(batches[-1])} s "
        f"({len(batches)} pauses in all, about {round(sum(batches))} s)",
        f"each try itself waits up to {_g(_pg_connection.WRITE_PATIENCE_S)} s",
        f"With the default of {_g(lease)} s, renewed every third of it, that is "
        f"{_g(lease * 2 / 3)} to {_g(lease)} s into the outage",
        f"leadership lapses** after {_g(queue.LEADER_LEASE_S)} s",
        f"Once its heartbeat is {_g(STALE_AFTER_S)} s old",
        f"longer than {_g(STALE_AFTER_S)} s.** When the database comes back",
        f"every other host's heartbeat is older than {_g(STALE_AFTER_S)} s",
        f"until its own have succeeded for {_g(STALE_AFTER_S)} s again",
    ]
    missing = [phrase for phrase in phrases if phrase not in PROSE]
    assert not missing, f"docs/deployment.md no longer says: {missing}"


_VALUE = re.compile(
    r"(?P<first>[\d.]+) (?P<unit>ms|s|MiB)"
    r"(?: → (?P<last>[\d.]+) (?P=unit))?(?:, (?P<count>\d+) pauses)?"
)
_UNITS = {"ms": 0.001, "s": 1.0, "MiB": float(2**20)}


def _setting(where: str) -> object:
    """The code's value of a row of the constants table."""
    settings: dict[str, object] = {
        "RunQueueConfig.dequeue_interval": rs.RunQueueConfig().dequeue_interval_s,
        "RunBackendConfig.lease_duration": rs.RunBackendConfig().lease_s,
        "rivers daemon --grace": inspect.signature(daemon).parameters["grace"].default,
        "Executor.kubernetes.ttl_seconds_after_finished": inspect.signature(
            rs.Executor.kubernetes
        )
        .parameters["ttl_seconds_after_finished"]
        .default,
    }
    if where in settings:
        return settings[where]
    module, _, name = where.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_every_constant_in_the_table_is_the_codes() -> None:
    table = TEXT.split("## Constants quoted on this page", 1)[1]
    rows = re.findall(r"^\| ([^|]+?) \| `([^`]+)` \| [^|]+ \|$", table, re.M)
    assert len(rows) >= 20
    for value, where in rows:
        match = _VALUE.fullmatch(value)
        assert match is not None, f"cannot read {value!r} ({where})"
        unit = _UNITS[match["unit"]]
        actual = _setting(where)
        if isinstance(actual, tuple):
            assert match["last"] is not None, where
            assert float(match["first"]) * unit == pytest.approx(actual[0]), where
            assert float(match["last"]) * unit == pytest.approx(actual[-1]), where
            if match["count"] is not None:
                assert int(match["count"]) == len(actual), where
        else:
            assert isinstance(actual, int | float), where
            assert match["last"] is None, where
            assert float(match["first"]) * unit == pytest.approx(actual), where
    named = {where for _, where in rows}
    for constant in (
        "rivers.storage._sqlite_connection.WRITE_PATIENCE_S",
        "rivers.storage._pg_connection.WRITE_PATIENCE_S",
        "rivers.actors.queue.LEADER_LEASE_S",
        "rivers._liveness.STALE_AFTER_S",
        "rivers.actors.liveness.HEARTBEAT_INTERVAL_S",
        "RunBackendConfig.lease_duration",
    ):
        assert constant in named, constant


def test_the_patience_the_page_quotes_is_the_same_for_both_backends() -> None:
    # The page gives one figure for both; if they part, it must say which is which.
    assert _sqlite_connection.WRITE_PATIENCE_S == _pg_connection.WRITE_PATIENCE_S


# ------------------------------------------------------------------- README


def test_the_readme_links_the_deployment_page() -> None:
    assert "](docs/deployment.md)" in (ROOT / "README.md").read_text()


# ------------------------------------------------- against a real API server


@pytest.fixture
async def k8s_namespace(k8s_kubeconfig: Path) -> AsyncIterator[tuple[Any, str]]:
    """An API client and a fresh namespace, deleted after the test."""
    from kubernetes_asyncio import client, config

    api = await config.new_client_from_config(
        config_file=str(k8s_kubeconfig), persist_config=False
    )
    async with api:
        name = f"rivers-doc-{secrets.token_hex(4)}"
        core = client.CoreV1Api(api)
        await core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
        )
        try:
            yield api, name
        finally:
            await core.delete_namespace(name)


def _contained(sent: object, stored: object, where: str = "") -> None:
    """Every field sent is stored as sent (the server drops unknown fields)."""
    if isinstance(sent, dict):
        assert isinstance(stored, dict), where
        for key, value in sent.items():
            assert key in stored, f"{where}.{key} was dropped by the server"
            _contained(value, stored[key], f"{where}.{key}")
    elif isinstance(sent, list):
        assert isinstance(stored, list), where
        assert len(sent) == len(stored), where
        for index, (a, b) in enumerate(zip(sent, stored, strict=True)):
            _contained(a, b, f"{where}[{index}]")
    else:
        assert sent == stored, f"{where}: sent {sent!r}, stored {stored!r}"


@pytest.mark.kubernetes
async def test_the_api_server_accepts_every_manifest_as_written(
    k8s_namespace: tuple[Any, str],
) -> None:
    from kubernetes_asyncio import client

    api, namespace = k8s_namespace
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    create: dict[str, Any] = {
        "ServiceAccount": core.create_namespaced_service_account,
        "Secret": core.create_namespaced_secret,
        "Role": rbac.create_namespaced_role,
        "RoleBinding": rbac.create_namespaced_role_binding,
        "Deployment": client.AppsV1Api(api).create_namespaced_deployment,
    }
    for document in _documents():
        body = copy.deepcopy(document)
        body["metadata"]["namespace"] = namespace
        for subject in body.get("subjects", []):
            subject["namespace"] = namespace
        response = await create[body["kind"]](
            namespace, body, dry_run="All", _preload_content=False
        )
        try:
            stored = json.loads(await response.read())
        finally:
            response.release()
        assert response.status == 201, stored
        sent = copy.deepcopy(body)
        if body["kind"] == "Secret":
            assert set(stored["data"]) == set(sent.pop("stringData"))
        _contained(sent, stored, body["kind"])
