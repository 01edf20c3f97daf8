"""Executor.kubernetes against a real API server (the k8s testbed).

Tests marked ``kubernetes`` need ``RIVERS_TEST_KUBECONFIG`` (``.ci/run`` starts the
testbed and sets it) and are skipped with the reason otherwise. Each uses a fresh
namespace; its pipeline lives in a real file so the pod's ``python -m
rivers.worker`` can import it. Faults the real server cannot produce on demand
(410 Gone, 500s, 403) are in ``test_kubernetes_faults.py``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import secrets
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import psutil
import pytest
from anyio.abc import TaskStatus

import rivers as rs
from rivers.storage import open_backend

pytestmark = pytest.mark.kubernetes

MakePipeline = Callable[[str], ModuleType]


@pytest.fixture
async def k8s_api(k8s_kubeconfig: Path) -> AsyncIterator[Any]:
    from kubernetes_asyncio import config

    api = await config.new_client_from_config(
        config_file=str(k8s_kubeconfig), persist_config=False
    )
    async with api:
        yield api


@pytest.fixture
async def namespace(k8s_api: Any) -> AsyncIterator[str]:
    """A fresh namespace, deleted (in the background) after the test."""
    from kubernetes_asyncio import client

    name = f"rivers-t-{secrets.token_hex(4)}"
    core = client.CoreV1Api(k8s_api)
    await core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
    )
    yield name
    await core.delete_namespace(name)


@pytest.fixture
def make_pipeline(
    tmp_path: Path, k8s_kubeconfig: Path, namespace: str
) -> Iterator[MakePipeline]:
    """Write a pipeline module to a file and import it, as a user's code would be."""
    created: list[str] = []

    def make(body: str) -> ModuleType:
        name = f"k8s_pipeline_{secrets.token_hex(4)}"
        path = tmp_path / f"{name}.py"
        header = (
            "from __future__ import annotations\n"
            "import os, sys, time\n"
            "import rivers as rs\n"
            f"KUBECONFIG = {str(k8s_kubeconfig)!r}\n"
            f"NAMESPACE = {namespace!r}\n"
            f"WORK = {str(tmp_path)!r}\n"
            "def kubernetes(max_concurrent_steps=None, **options):\n"
            "    options.setdefault('namespace', NAMESPACE)\n"
            "    options.setdefault('kubeconfig', KUBECONFIG)\n"
            "    return rs.Executor.kubernetes(max_concurrent_steps, image='rivers:test',"
            " **options)\n"
            "def mark(name):\n"
            "    with open(os.path.join(WORK, name + '.pid'), 'w') as f:\n"
            "        f.write(str(os.getpid()))\n"
        )
        path.write_text(header + textwrap.dedent(body))
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        created.append(name)
        spec.loader.exec_module(module)
        return module

    yield make
    for name in created:
        sys.modules.pop(name, None)


class JobRecorder:
    """Watches a namespace's Jobs and counts how many exist at once."""

    def __init__(self) -> None:
        self.live: set[str] = set()
        self.peak = 0
        self.added: dict[str, dict[str, Any]] = {}

    async def run(
        self, api: Any, namespace: str, *, task_status: TaskStatus[None]
    ) -> None:
        from kubernetes_asyncio import client

        batch: Any = client.BatchV1Api(api)  # raw responses: _preload_content=False
        listed = await batch.list_namespaced_job(namespace)
        version = listed.metadata.resource_version
        task_status.started()
        while True:
            response = await batch.list_namespaced_job(
                namespace,
                watch=True,
                resource_version=version,
                timeout_seconds=60,
                _preload_content=False,
            )
            try:
                while line := await response.content.readline():
                    event = json.loads(line)
                    job = event["object"]
                    version = job["metadata"]["resourceVersion"]
                    name = job["metadata"]["name"]
                    if event["type"] == "ADDED":
                        self.added[name] = job
                        self.live.add(name)
                    elif event["type"] == "DELETED":
                        self.live.discard(name)
                    self.peak = max(self.peak, len(self.live))
            finally:
                response.close()


async def _jobs_in(api: Any, namespace: str) -> list[str]:
    from kubernetes_asyncio import client

    listed = await client.BatchV1Api(api).list_namespaced_job(namespace)
    return [job.metadata.name for job in listed.items]


def _alive(pid: int) -> bool:
    try:
        status: str = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return False
    return status != "zombie"


async def _wait_for_file(path: Path, timeout_s: float = 30) -> int:
    with anyio.fail_after(timeout_s):
        while not path.exists() or not path.read_text():
            await anyio.sleep(0.05)  # a file written by another process
    return int(path.read_text())


async def _events(home: Path, run_id: str, kind: str) -> list[rs.Event]:
    async with open_backend(home / "rivers.db") as storage:
        return [
            e for e in await storage.events.get_events(run_id=run_id) if e.kind == kind
        ]


async def test_three_step_dag_produces_the_right_values(
    make_pipeline: MakePipeline,
) -> None:
    module = make_pipeline(
        """
        @rs.Asset
        def numbers() -> list[int]:
            return [1, 2, 3]

        @rs.Asset
        def total(numbers: list[int]) -> int:
            return sum(numbers)

        @rs.Asset
        async def report(numbers: list[int], total: int) -> str:
            return f"{len(numbers)} numbers, total {total}"

        repo = rs.CodeRepository([numbers, total, report], executor=kubernetes())
        """
    )
    result = await module.repo.materialize()
    assert result.success, result.error
    assert result.output_for("total") == 6
    assert result.output_for("report") == "3 numbers, total 6"
    workers = [record.worker or "" for record in result.step_records]
    assert all(worker.startswith("job rivers-t-") for worker in workers)


async def test_max_concurrent_steps_two_never_has_more_than_two_jobs(
    make_pipeline: MakePipeline, k8s_api: Any, namespace: str
) -> None:
    module = make_pipeline(
        """
        def make(i):
            def body() -> int:
                time.sleep(1)
                return i
            body.__name__ = f"s{i}"
            return rs.Asset(body)

        repo = rs.CodeRepository(
            [make(i) for i in range(6)],
            executor=kubernetes(2, labels={"team": "core"}, ttl_seconds_after_finished=60),
        )
        """
    )
    recorder = JobRecorder()
    async with anyio.create_task_group() as tg:
        await tg.start(recorder.run, k8s_api, namespace)
        result = await module.repo.materialize()
        tg.cancel_scope.cancel()
    assert result.success, result.error
    assert [result.output_for(f"s{i}") for i in range(6)] == list(range(6))
    assert len(recorder.added) == 6
    assert recorder.peak == 2
    assert not recorder.live  # every finished Job was deleted
    job = next(iter(recorder.added.values()))
    labels = job["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "rivers"
    assert labels["rivers/run-id"] == result.run_id
    assert labels["rivers/step-key"] in {f"s{i}" for i in range(6)}
    assert labels["team"] == "core"
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["ttlSecondsAfterFinished"] == 60
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["containers"][0]["command"] == ["python", "-m", "rivers.worker"]
    assert all(len(name) <= 63 for name in recorder.added)


async def test_pool_limit_holds_across_jobs(
    make_pipeline: MakePipeline, k8s_api: Any, namespace: str
) -> None:
    module = make_pipeline(
        """
        def make(i):
            def body() -> int:
                time.sleep(0.5)
                return i
            body.__name__ = f"q{i}"
            return rs.Asset(body, pool="warehouse")

        repo = rs.CodeRepository(
            [make(i) for i in range(3)],
            pool_limits={"warehouse": 1},
            executor=kubernetes(),
        )
        """
    )
    recorder = JobRecorder()
    async with anyio.create_task_group() as tg:
        await tg.start(recorder.run, k8s_api, namespace)
        result = await module.repo.materialize()
        tg.cancel_scope.cancel()
    assert result.success, result.error
    assert len(recorder.added) == 3
    assert recorder.peak == 1


async def test_failing_step_reports_its_exit_code(
    make_pipeline: MakePipeline, namespace: str
) -> None:
    module = make_pipeline(
        """
        @rs.Asset
        def broken() -> int:
            sys.exit(3)

        repo = rs.CodeRepository([broken], executor=kubernetes())
        """
    )
    result = await module.repo.materialize()
    assert not result.success
    (record,) = result.step_records
    assert record.status is rs.StepStatus.FAILURE
    assert record.error is not None
    assert "exited with code 3" in record.error
    assert f"namespace {namespace!r}" in record.error
    assert "Kubernetes Job 'rivers-" in record.error
    assert "cluster 'testbed" in record.error or "cluster '" in record.error
    assert isinstance(result.error, rs.JobFailed)
    assert result.error.exit_code == 3


async def test_step_exception_comes_back_as_the_cause(
    make_pipeline: MakePipeline,
) -> None:
    module = make_pipeline(
        """
        @rs.Asset
        def broken() -> int:
            raise ValueError("no rows today")

        repo = rs.CodeRepository([broken], executor=kubernetes())
        """
    )
    result = await module.repo.materialize()
    assert not result.success
    assert isinstance(result.error, rs.JobFailed)
    assert result.error.exit_code == 1
    assert "ValueError: no rows today" in str(result.error)
    assert isinstance(result.error.__cause__, ValueError)


async def test_timeout_deletes_the_job_and_its_process_dies(
    make_pipeline: MakePipeline, k8s_api: Any, namespace: str, tmp_path: Path
) -> None:
    module = make_pipeline(
        """
        @rs.Asset(timeout="4s")
        def slow() -> None:
            mark("slow")
            time.sleep(120)

        repo = rs.CodeRepository([slow], executor=kubernetes())
        """
    )
    with anyio.fail_after(60):
        result = await module.repo.materialize()
    assert not result.success
    assert isinstance(result.error, rs.StepTimeout)
    pid = int((tmp_path / "slow.pid").read_text())
    assert not _alive(pid)
    assert await _jobs_in(k8s_api, namespace) == []


async def test_cancel_deletes_the_jobs_and_their_processes_die(
    make_pipeline: MakePipeline, k8s_api: Any, namespace: str, tmp_path: Path
) -> None:
    module = make_pipeline(
        """
        def make(name):
            def body() -> None:
                mark(name)
                time.sleep(120)
            body.__name__ = name
            return rs.Asset(body)

        repo = rs.CodeRepository([make("left"), make("right")], executor=kubernetes())
        """
    )
    async with rs.Runtime(module.repo) as rt:
        handle = await rt.submit(rs.RunRequest())
        pids = [
            await _wait_for_file(tmp_path / "left.pid"),
            await _wait_for_file(tmp_path / "right.pid"),
        ]
        await rt.cancel(handle.run_id)
        with anyio.fail_after(60):
            record = await handle.wait()
    assert record.status is rs.RunStatus.CANCELED
    assert not any(_alive(pid) for pid in pids)
    assert await _jobs_in(k8s_api, namespace) == []


async def test_step_logs_become_run_events(
    make_pipeline: MakePipeline, rivers_home: Path
) -> None:
    module = make_pipeline(
        """
        @rs.Asset
        def chatty(context: rs.StepContext) -> int:
            print("a plain line")
            context.log.warning("careful: %d rows", 42)
            return 1

        repo = rs.CodeRepository([chatty], executor=kubernetes())
        """
    )
    result = await module.repo.materialize()
    assert result.success, result.error
    logs = await _events(rivers_home, result.run_id, "STEP_LOG")
    lines = [(e.step_key, e.data["level"], e.data["message"]) for e in logs]
    assert ("chatty", "INFO", "a plain line") in lines
    assert ("chatty", "WARNING", "careful: 42 rows") in lines


async def test_a_watch_that_ends_mid_run_is_resumed_without_loss_or_repeat(
    make_pipeline: MakePipeline,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    rivers_home: Path,
) -> None:
    from rivers.executors import _kube_api

    monkeypatch.setattr(_kube_api, "WATCH_TIMEOUT_S", 1)
    caplog.set_level(logging.DEBUG, logger=_kube_api.__name__)
    module = make_pipeline(
        """
        @rs.Asset
        def first(context: rs.StepContext) -> int:
            time.sleep(2.5)
            context.log.info("first ran")
            return 1

        @rs.Asset
        def second(first: int, context: rs.StepContext) -> int:
            time.sleep(2.5)
            context.log.info("second ran")
            return first + 1

        @rs.Asset
        def side(context: rs.StepContext) -> str:
            time.sleep(3)
            context.log.info("side ran")
            return "side"

        repo = rs.CodeRepository([first, second, side], executor=kubernetes())
        """
    )
    result = await module.repo.materialize()
    assert result.success, result.error
    assert result.output_for("second") == 2
    assert result.output_for("side") == "side"
    assert "resuming from resourceVersion" in caplog.text
    successes = await _events(rivers_home, result.run_id, "STEP_SUCCESS")
    assert sorted(e.step_key or "" for e in successes) == ["first", "second", "side"]
    logs = await _events(rivers_home, result.run_id, "STEP_LOG")
    assert sorted(e.data["message"] for e in logs) == [
        "first ran",
        "second ran",
        "side ran",
    ]


async def test_missing_namespace_is_a_clear_error(
    make_pipeline: MakePipeline,
) -> None:
    module = make_pipeline(
        """
        @rs.Asset
        def lonely() -> int:
            return 1

        repo = rs.CodeRepository(
            [lonely], executor=kubernetes(namespace="no-such-namespace")
        )
        """
    )
    result = await module.repo.materialize()
    assert not result.success
    assert isinstance(result.error, rs.KubernetesApiError)
    assert result.error.status == 404
    message = str(result.error)
    assert "namespace 'no-such-namespace' does not exist" in message
    assert "could not create Kubernetes Job 'rivers-" in message


async def test_rejected_credentials_are_a_clear_error(
    make_pipeline: MakePipeline, k8s_kubeconfig: Path, tmp_path: Path
) -> None:
    import yaml

    kubeconfig = yaml.safe_load(k8s_kubeconfig.read_text())
    for user in kubeconfig["users"]:
        user["user"] = {"token": "not-the-token"}
    bad = tmp_path / "bad-kubeconfig"
    bad.write_text(yaml.safe_dump(kubeconfig))
    module = make_pipeline(
        f"""
        @rs.Asset
        def locked() -> int:
            return 1

        repo = rs.CodeRepository(
            [locked], executor=kubernetes(kubeconfig={str(bad)!r})
        )
        """
    )
    result = await module.repo.materialize()
    assert not result.success
    assert isinstance(result.error, rs.KubernetesApiError)
    assert result.error.status == 401
    assert "rejected the credentials" in str(result.error)


async def test_secrets_reach_the_pod_env_but_no_name_label_event_or_log(
    make_pipeline: MakePipeline,
    k8s_api: Any,
    namespace: str,
    rivers_home: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = f"s3cr3t-{secrets.token_hex(8)}"
    module = make_pipeline(
        f"""
        @rs.Asset
        def uses_secret(context: rs.StepContext) -> int:
            context.log.info("connecting with a password of %d characters",
                             len(os.environ["DB_PASSWORD"]))
            return len(os.environ["DB_PASSWORD"])

        repo = rs.CodeRepository(
            [uses_secret],
            executor=kubernetes(env={{"DB_PASSWORD": {secret!r}}}, labels={{"team": "core"}}),
        )
        """
    )
    caplog.set_level(logging.DEBUG)
    recorder = JobRecorder()
    async with anyio.create_task_group() as tg:
        await tg.start(recorder.run, k8s_api, namespace)
        result = await module.repo.materialize(tags={"api_key": secret})
        tg.cancel_scope.cancel()
    assert result.success, result.error
    assert result.output_for("uses_secret") == len(secret)  # the pod had it
    ((name, job),) = recorder.added.items()
    template = job["spec"]["template"]
    (container,) = template["spec"]["containers"]
    visible = json.dumps(
        [
            name,
            job["metadata"].get("labels"),
            job["metadata"].get("annotations"),
            template["metadata"].get("labels"),
            template["metadata"].get("annotations"),
            container["command"],
            container["args"],
        ]
    )
    assert secret not in visible
    async with open_backend(rivers_home / "rivers.db") as storage:
        events = await storage.events.get_events(run_id=result.run_id)
    assert "connecting with a password of" in json.dumps([e.data for e in events])
    assert secret not in json.dumps([(e.kind, e.step_key, e.data) for e in events])
    assert secret not in caplog.text


async def test_env_secrets_and_config_maps_reach_the_pod_by_reference(
    make_pipeline: MakePipeline, k8s_api: Any, namespace: str
) -> None:
    from kubernetes_asyncio import client

    secret = f"s3cr3t-{secrets.token_hex(8)}"
    core = client.CoreV1Api(k8s_api)
    await core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="db-credentials"),
            string_data={"DB_PASSWORD": secret, "REGION": "from-secret"},
        ),
    )
    await core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="settings"),
            data={"REGION": "eu-west", "BATCH": "500"},
        ),
    )
    module = make_pipeline(
        """
        @rs.Asset
        def reads_env() -> dict:
            return {k: os.environ.get(k) for k in ("DB_PASSWORD", "REGION", "BATCH")}

        repo = rs.CodeRepository(
            [reads_env],
            executor=kubernetes(
                env_secrets=["db-credentials"], env_config_maps=["settings"]
            ),
        )
        """
    )
    recorder = JobRecorder()
    async with anyio.create_task_group() as tg:
        await tg.start(recorder.run, k8s_api, namespace)
        result = await module.repo.materialize()
        tg.cancel_scope.cancel()
    assert result.success, result.error
    # The Secret wins over the ConfigMap for REGION (it comes later in envFrom).
    assert result.output_for("reads_env") == {
        "DB_PASSWORD": secret,
        "REGION": "from-secret",
        "BATCH": "500",
    }
    ((_, job),) = recorder.added.items()
    assert secret not in json.dumps(job)


@pytest.mark.postgres
async def test_step_pods_on_other_hosts_exchange_values_through_s3(
    make_pipeline: MakePipeline,
    s3_endpoint: str,
    s3_client: Any,
    bucket: str,
    postgres_url: str,
    tmp_path: Path,
) -> None:
    # Each pod gets a RIVERS_HOME of its own, as on another host: nothing is shared
    # but the API server and the bucket, so values can only travel through S3. The
    # run's storage is PostgreSQL: the launching runtime alone writes to it (a step
    # pod reads its inputs and writes its value through the IO manager, and reports
    # back through its Job and its log), so no pod is given the storage's URL, and
    # no SQLite file is made anywhere.
    module = make_pipeline(
        f"""
        import pathlib

        @rs.Asset
        def numbers() -> list[int]:
            return list(range(1, 101))

        @rs.Asset
        def total(numbers: list[int]) -> int:
            return sum(numbers)

        @rs.Asset
        def report(numbers: list[int], total: int) -> str:
            return f"{{len(numbers)}} numbers, total {{total}}"

        def pod_home():
            return {{"RIVERS_HOME": str(pathlib.Path(WORK) / "pod-home")}}

        repo = rs.CodeRepository(
            [numbers, total, report],
            executor=kubernetes(env=pod_home()),
            io_manager=rs.UPathIOManager(
                "s3://{bucket}/run",
                endpoint_url={s3_endpoint!r},
                key="testing",
                secret="testing",
            ),
            backend=rs.RunBackendConfig(storage={postgres_url!r}),
        )
        """
    )
    result = await module.repo.materialize()
    assert result.success, result.error
    assert result.output_for("report") == "100 numbers, total 5050"
    workers = [record.worker or "" for record in result.step_records]
    assert all(worker.startswith("job rivers-t-") for worker in workers)
    # The run and its steps (each with the Job that ran it) are in the PostgreSQL
    # database, and no SQLite storage was made: not the default one, not a pod's.
    async with open_backend(postgres_url) as storage:
        stored = await storage.runs.get_run(result.run_id)
        steps = await storage.runs.get_step_records(result.run_id)
        started = await storage.events.get_events(
            run_id=result.run_id, kinds=["STEP_STARTED"]
        )
    assert stored is not None
    assert stored.status is rs.RunStatus.SUCCESS
    assert {s.step_key: s.status for s in steps} == dict.fromkeys(
        ("numbers", "total", "report"), rs.StepStatus.SUCCESS
    )
    assert sorted(s.worker or "" for s in steps) == sorted(workers)
    assert len(started) == 3
    assert not list(tmp_path.glob("**/*.db"))
    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix="run/")
    assert sorted(o["Key"] for o in listed["Contents"]) == [
        "run/numbers.pickle",
        "run/report.pickle",
        "run/total.pickle",
    ]
    # No pod fell back to a local file: the pods' own home holds no values.
    assert not list((tmp_path / "pod-home").glob("**/*.pickle"))
