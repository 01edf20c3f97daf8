"""What a step Job looks like and how its pod's output is read (no cluster needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, strategies as st

import rivers as rs
from rivers.executors._kube_jobs import (
    CodeLocation,
    JobSpec,
    job_manifest,
    job_name,
    label_value,
    parse_worker_output,
)
from rivers.executors.kubernetes_config import (
    KubernetesExecutor,
    KubernetesStepOverride,
)
from rivers.executors.pod_log import marked_record, read_marked_record

DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
asset_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,120}", fullmatch=True)


@given(
    run_id=st.from_regex(r"[0-9a-f]{22}", fullmatch=True),
    step=asset_names,
    attempt=st.integers(1, 1000),
)
def test_job_names_are_dns_labels_of_at_most_63_characters(
    run_id: str, step: str, attempt: int
) -> None:
    name = job_name(run_id, step, attempt)
    assert len(name) <= 63
    assert DNS_1123_LABEL.match(name), name


def test_job_names_differ_by_run_step_and_attempt() -> None:
    names = {
        job_name(run, step, attempt)
        for run in ("0123456789abcdef012345", "0123456789abcdef012346")
        for step in ("a_b", "a-b", "A_b")
        for attempt in (1, 2)
    }
    assert len(names) == 12


@given(st.text(max_size=200))
@example("run1\n")  # a $-anchored match let it through as it was
def test_label_values_are_always_valid(value: str) -> None:
    fixed = label_value(value)
    assert len(fixed) <= 63
    assert LABEL_VALUE.fullmatch(fixed), fixed


def test_step_overrides_replace_image_and_merge_env_labels_and_resources() -> None:
    config = rs.Executor.kubernetes(
        image="base:1",
        env={"A": "1", "B": "1"},
        labels={"team": "core"},
        resources={"requests": {"cpu": "100m"}},
        service_account="runner",
        step_overrides={
            "heavy": {
                "image": "heavy:2",
                "env": {"B": "2"},
                "labels": {"size": "xl"},
                "resources": {"limits": {"memory": "8Gi"}},
            }
        },
    )
    spec = JobSpec(
        name="rivers-x",
        namespace="ns",
        run_id="0123456789abcdef012345",
        step_key="heavy",
        attempt=2,
        location=CodeLocation(module="pipe", file="/code/pipe.py", attribute="repo"),
        env={"RIVERS_HOME": "/data"},
        timeout_s=2.5,
    )
    job = job_manifest(spec, config)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "heavy:2"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"A": "1", "B": "2", "RIVERS_HOME": "/data"}
    # Merged section by section: the override's limits keep the executor's requests.
    assert container["resources"] == {
        "requests": {"cpu": "100m"},
        "limits": {"memory": "8Gi"},
    }
    assert pod["serviceAccountName"] == "runner"
    labels = job["metadata"]["labels"]
    assert labels["team"] == "core"
    assert labels["size"] == "xl"
    assert labels["rivers/attempt"] == "2"
    assert job["spec"]["activeDeadlineSeconds"] == 13
    assert container["args"][:6] == [
        "--module",
        "pipe",
        "--attribute",
        "repo",
        "--file",
        "/code/pipe.py",
    ]


def _containers(step_key: str, config: KubernetesExecutor) -> list[Any]:
    """The containers of ``step_key``'s Job under ``config``."""
    spec = JobSpec(
        name=f"rivers-{step_key}",
        namespace="ns",
        run_id="0123456789abcdef012345",
        step_key=step_key,
        attempt=1,
        location=CodeLocation(module="pipe", file=None, attribute="repo"),
        env={},
        timeout_s=None,
    )
    containers: list[Any] = job_manifest(spec, config)["spec"]["template"]["spec"][
        "containers"
    ]
    return containers


def test_env_secrets_and_config_maps_are_references_never_values() -> None:
    config = rs.Executor.kubernetes(
        image="base:1",
        env={"MODE": "plain"},
        env_secrets=["db-credentials"],
        env_config_maps=["settings"],
        step_overrides={"loader": {"env_secrets": ["s3-keys", "db-credentials"]}},
    )
    (container,) = _containers("loader", config)
    # ConfigMaps first, Secrets after (a later source wins), each name once; the
    # step's Secret is added to the executor's.
    assert container["envFrom"] == [
        {"configMapRef": {"name": "settings"}},
        {"secretRef": {"name": "db-credentials"}},
        {"secretRef": {"name": "s3-keys"}},
    ]
    assert {e["name"]: e["value"] for e in container["env"]} == {"MODE": "plain"}
    (plain,) = _containers("other", config)
    assert [ref.get("secretRef") for ref in plain["envFrom"]] == [
        None,
        {"name": "db-credentials"},
    ]
    bare = rs.Executor.kubernetes(image="base:1")
    (none,) = _containers("other", bare)
    assert "envFrom" not in none


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ("db-credentials", "must be a list of names"),
        (["Bad_Name"], "'Bad_Name' is not a Kubernetes object name"),
        ([""], "'' is not a Kubernetes object name"),
        (["x" * 254], "is not a Kubernetes object name"),
        ([3], "3 is not a Kubernetes object name"),
    ],
)
def test_bad_secret_or_config_map_names_are_a_config_error(
    names: object, message: str
) -> None:
    with pytest.raises(rs.ConfigError, match=r"^Executor\.kubernetes env_secrets"):
        rs.Executor.kubernetes(image="i", env_secrets=names)  # type: ignore[arg-type]
    with pytest.raises(rs.ConfigError, match=re.escape(message)):
        rs.Executor.kubernetes(image="i", env_config_maps=names)  # type: ignore[arg-type]
    with pytest.raises(rs.ConfigError, match=r"KubernetesStepOverride\.env_secrets"):
        KubernetesStepOverride(env_secrets=names)  # type: ignore[arg-type]


def test_worker_output_splits_log_records_plain_lines_and_the_error() -> None:
    traceback = "Traceback (most recent call last):\nValueError: x\n"
    text = (
        '::rivers::{"level": "WARNING", "message": "careful"}\n'
        "plain output\n"
        + traceback
        + '::rivers::{"error": {"type": "ValueError", "message": "x", "traceback": '
        + '"Traceback (most recent call last):\\nValueError: x\\n"}}\n'
    )
    output = parse_worker_output(text)
    assert output.lines == [("WARNING", "careful"), ("INFO", "plain output")]
    assert output.error is not None
    assert output.error["type"] == "ValueError"


@given(st.dictionaries(st.text(), st.text() | st.integers() | st.none()))
def test_a_marked_record_reads_back_as_written(record: dict[str, Any]) -> None:
    line = marked_record(record)
    assert "\n" not in line
    assert read_marked_record(line) == record


def test_unmarked_or_malformed_lines_are_plain_output() -> None:
    assert read_marked_record("::rivers::not json") is None
    assert read_marked_record("::rivers::[1, 2]") is None
    assert read_marked_record('{"message": "unmarked"}') is None
    output = parse_worker_output("::rivers::not json\n")
    assert output.lines == [("INFO", "::rivers::not json")]
    assert output.error is None


@rs.Asset(timeout="1m")
def preview_step() -> int:
    return 1


PREVIEW_EXECUTOR = rs.Executor.kubernetes(
    2, image="pipe:1", namespace="data", env={"A": "1"}
)
preview_repo = rs.CodeRepository([preview_step], executor=PREVIEW_EXECUTOR)


def test_job_manifest_previews_a_steps_job_without_a_cluster(rivers_home: Path) -> None:
    run_id = "0123456789abcdef012345"
    job = PREVIEW_EXECUTOR.job_manifest(
        preview_step, run_id=run_id, attempt=2, tags={"team": "a"}
    )
    assert job["metadata"]["name"] == job_name(run_id, "preview_step", 2)
    assert job["metadata"]["namespace"] == "data"
    assert job["spec"]["activeDeadlineSeconds"] == 70
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "pipe:1"
    args = container["args"]
    assert args[args.index("--attribute") + 1] == "preview_repo"
    assert args[args.index("--asset") + 1] == "preview_step"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["A"] == "1"
    assert env["RIVERS_HOME"] == str(rivers_home)
    assert json.loads(env["RIVERS_RUN_TAGS"]) == {"team": "a"}


def test_job_manifest_needs_a_module_level_repository() -> None:
    loose = rs.Asset(lambda: 1, name="loose")
    with pytest.raises(rs.LaunchFailed, match="at module level"):
        PREVIEW_EXECUTOR.job_manifest(loose)


def test_a_steps_job_carries_its_pool_lease(rivers_home: Path) -> None:
    from datetime import UTC, datetime

    from rivers.context import PoolLease
    from rivers.executors.kubernetes import code_location, step_job_manifest

    lease = PoolLease(
        token=7, pool="db", slots=2, expires_at=datetime.fromtimestamp(1e9, UTC)
    )
    job = step_job_manifest(
        PREVIEW_EXECUTOR,
        preview_step,
        run_id="r1",
        attempt=1,
        run_tags={},
        location=code_location(preview_step, None),
        pool_lease=lease,
    )
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert PoolLease.from_wire(json.loads(env["RIVERS_POOL_LEASE"])) == lease
