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
from devcluster.processnode import expand

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


def pod_env(job: dict[str, Any]) -> dict[str, str]:
    """The literal env values as the process in the pod sees them, after the kubelet's
    $(VAR) expansion (the process node's port of it), defined in order."""
    container = job["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for e in container["env"]:
        if "value" in e:
            env[e["name"]] = expand(e["value"], env)
    return env


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
    env = pod_env(job_for(args=args, kwargs=kwargs))
    assert json.loads(env["BGJOBS_ARGS"]) == args
    assert json.loads(env["BGJOBS_KWARGS"]) == kwargs


HOSTILE = ["$(BGJOBS_TASK)", "price: $$5", "$", "$$(X)", "$(BGJOBS_ARGS", "$($$)", "a$b"]


@given(
    args=st.lists(st.text(alphabet="$()ab_BGJOS", max_size=12), max_size=6),
    kwargs=st.dictionaries(st.text(alphabet="$()k", min_size=1, max_size=6), st.text(max_size=6)),
)
def test_dollar_signs_survive_the_kubelet_expansion(
    args: list[str], kwargs: dict[str, str]
) -> None:
    env = pod_env(job_for(args=[*HOSTILE, *args], kwargs={**kwargs, "k$(BGJOBS_TASK)": "$$"}))
    assert json.loads(env["BGJOBS_ARGS"]) == [*HOSTILE, *args]
    assert json.loads(env["BGJOBS_KWARGS"]) == {**kwargs, "k$(BGJOBS_TASK)": "$$"}


def test_every_value_the_operator_writes_is_escaped() -> None:
    """Not only args: the task name, exception names and operator settings are literal too
    (the schema keeps $ out of names today; the escape does not rely on it)."""
    config = OperatorConfig(
        redis_url="redis://r:6379/0?client_name=a$(BGJOBS_TASK)",
        task_modules=["m$(BGJOBS_ARGS)", "$$x"],
    )
    body = bj(args=["$(BGJOBS_TASK)"], retry={"maxRetries": 1})
    spec = BackgroundJobSpec.model_validate(body["spec"])
    spec = spec.model_copy(
        update={
            "task": "t$(BGJOBS_ARGS)",
            "retry": spec.retry.model_copy(
                update={"retryOn": ["E$(BGJOBS_TASK)"], "permanentOn": ["$$P"]}
            ),
        }
    )
    job = build_job(body, spec, config)
    env = pod_env(job)
    assert env["BGJOBS_TASK"] == "t$(BGJOBS_ARGS)"
    assert json.loads(env["BGJOBS_ARGS"]) == ["$(BGJOBS_TASK)"]
    assert env["BGJOBS_RETRY_ON"] == "E$(BGJOBS_TASK)"
    assert env["BGJOBS_PERMANENT_ON"] == "$$P"
    assert env["BGJOBS_TASK_MODULES"] == "m$(BGJOBS_ARGS),$$x"
    assert env["BGJOBS_REDIS_URL"] == "redis://r:6379/0?client_name=a$(BGJOBS_TASK)"


def test_user_env_may_still_reference_the_worker_variables() -> None:
    """User variables are not escaped: $(VAR) there is the documented Kubernetes feature,
    and it sees our values as the task does."""
    env = pod_env(
        job_for(
            args=["$$"],
            env=[
                {"name": "WHAT", "value": "$(BGJOBS_TASK):$(BGJOBS_ARGS)"},
                {"name": "PRICE", "value": "$$5"},
            ],
        )
    )
    assert env["WHAT"] == 'reports.export:["$$"]'
    assert env["PRICE"] == "$5"


def test_oversized_inputs_and_reserved_env_are_invalid() -> None:
    with pytest.raises(InvalidSpec, match="over the 32768-byte limit"):
        job_for(args=["x" * 40000])
    with pytest.raises(InvalidSpec, match="env BGJOBS_TASK is reserved"):
        job_for(env=[{"name": "BGJOBS_TASK", "value": "other"}])


def test_image_defaults_to_the_operator_setting() -> None:
    assert job_for()["spec"]["template"]["spec"]["containers"][0]["image"] == "example/worker:1"
    assert job_for(image="mine:2")["spec"]["template"]["spec"]["containers"][0]["image"] == "mine:2"


def test_the_redis_password_never_appears_in_the_job() -> None:
    config = OperatorConfig(
        redis_url="redis://bgjobs:s3cr%40t@redis.infra:6379/0",
        redis_secret=("redis-auth", "password"),
    )
    body = bj()
    job = build_job(body, BackgroundJobSpec.model_validate(body["spec"]), config)
    assert "s3cr" not in json.dumps(job)
    env = env_of(job)
    assert env["BGJOBS_REDIS_URL"] == "redis://bgjobs@redis.infra:6379/0"
    assert env["BGJOBS_REDIS_PASSWORD"] == {
        "secretKeyRef": {"name": "redis-auth", "key": "password", "optional": True}
    }
    # Without a Secret to name, the password is still left out (config.parse refuses
    # such a configuration; this is the last line of defence).
    bare = build_job(
        body,
        BackgroundJobSpec.model_validate(body["spec"]),
        OperatorConfig(redis_url="redis://:s3cret@r:6379/0"),
    )
    assert "s3cret" not in json.dumps(bare)
    assert "BGJOBS_REDIS_PASSWORD" not in env_of(bare)
    assert "s3cret" not in repr(config) + repr(OperatorConfig(redis_url="redis://:s3cret@r/0"))
    with pytest.raises(InvalidSpec, match="reserved"):
        build_job(
            bj(env=[{"name": "BGJOBS_REDIS_PASSWORD", "value": "x"}]),
            BackgroundJobSpec.model_validate(
                bj(env=[{"name": "BGJOBS_REDIS_PASSWORD", "value": "x"}])["spec"]
            ),
            config,
        )
