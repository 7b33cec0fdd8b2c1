"""The Job built for a BackgroundJob: the exit-code contract, limits and pod security."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgjobs.api.v1alpha1 import BackgroundJobSpec
from bgjobs_operator.config import OperatorConfig
from bgjobs_operator.jobspec import InvalidSpec, build_job

CONFIG = OperatorConfig(
    default_image="example/worker:1", redis_url="redis://r:6379/0", task_modules=["app.tasks"]
)


def bj(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "bgjobs.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {"name": "export-1", "namespace": "ns", "uid": "u-1"},
        "spec": {"task": "reports.export", **spec},
    }


def job_for(**spec: Any) -> dict[str, Any]:
    body = bj(**spec)
    return build_job(body, BackgroundJobSpec.model_validate(body["spec"]), CONFIG)


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_one_job_named_and_owned_like_the_backgroundjob() -> None:
    job = job_for()
    assert job["metadata"]["name"] == "export-1"
    owner = job["metadata"]["ownerReferences"][0]
    assert owner["uid"] == "u-1" and owner["controller"] is True
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_retries_and_exit_code_contract() -> None:
    job = job_for(retry={"maxRetries": 5})
    assert job["spec"]["backoffLimit"] == 5
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "worker", "operator": "In", "values": [3]},
    }
    assert rules[1] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    strict = job_for(retry={"retryOnSoftTimeLimit": False})
    assert strict["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [3, 4]


def test_limits_deadline_and_ttl() -> None:
    job = job_for(
        timeLimits={"softSeconds": 10, "hardSeconds": 20},
        activeDeadlineSeconds=600,
        ttlSecondsAfterFinished=60,
    )
    env = env_of(job)
    assert env["BGJOBS_SOFT_TIME_LIMIT"] == "10" and env["BGJOBS_TIME_LIMIT"] == "20"
    assert job["spec"]["activeDeadlineSeconds"] == 600
    assert job["spec"]["ttlSecondsAfterFinished"] == 60
    # The pod deadline backs up the worker's own hard limit.
    assert job["spec"]["template"]["spec"]["activeDeadlineSeconds"] > 20


def test_worker_pod_needs_no_credentials_and_passes_restricted() -> None:
    pod = job_for()["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = pod["containers"][0]["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True


def test_identity_comes_from_the_pod_labels() -> None:
    env = env_of(job_for())
    assert env["BGJOBS_JOB_UID"] == {
        "fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/controller-uid']"}
    }
    assert env["BGJOBS_REDIS_URL"] == "redis://r:6379/0"
    assert env["BGJOBS_TASK_MODULES"] == "app.tasks"


@given(
    args=st.lists(
        st.one_of(st.integers(), st.text(max_size=20), st.booleans(), st.none()), max_size=10
    ),
    kwargs=st.dictionaries(st.text(min_size=1, max_size=10), st.integers(), max_size=5),
)
def test_args_round_trip_through_the_environment(args: list[Any], kwargs: dict[str, int]) -> None:
    env = env_of(job_for(args=args, kwargs=kwargs))
    assert json.loads(env["BGJOBS_ARGS"]) == args
    assert json.loads(env["BGJOBS_KWARGS"]) == kwargs


def test_oversized_inputs_and_reserved_env_are_invalid() -> None:
    with pytest.raises(InvalidSpec, match="over the 32768-byte limit"):
        job_for(args=["x" * 40000])
    with pytest.raises(InvalidSpec, match="env BGJOBS_TASK is reserved"):
        job_for(env=[{"name": "BGJOBS_TASK", "value": "other"}])


def test_image_defaults_to_the_operator_setting() -> None:
    assert job_for()["spec"]["template"]["spec"]["containers"][0]["image"] == "example/worker:1"
    assert job_for(image="mine:2")["spec"]["template"]["spec"]["containers"][0]["image"] == "mine:2"
