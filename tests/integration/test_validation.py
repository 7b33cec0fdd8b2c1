"""Bad input is refused at `kubectl apply` by the CRD schema and CEL rules, with a message
naming the field; what only the operator can judge becomes a condition and an Event."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.integration.support import BgJobs, wait_for


def manifest(spec: str, name: str = "bad") -> str:
    return (
        f"apiVersion: bgjobs.dev/v1alpha1\nkind: BackgroundJob\n"
        f"metadata: {{name: {name}}}\nspec: {spec}\n"
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{task: examples.add, bogus: 1}", 'unknown field "spec.bogus"'),
        ("{task: examples.add, args: notalist}", "spec.args"),
        ("{task: examples.add, retry: {maxRetries: -1}}", "spec.retry.maxRetries"),
        (
            "{task: examples.add, timeLimits: {softSeconds: 10, hardSeconds: 5}}",
            "timeLimits.softSeconds must be less than timeLimits.hardSeconds",
        ),
        (
            "{task: examples.add, activeDeadlineSeconds: 5, timeLimits: {hardSeconds: 10}}",
            "timeLimits.hardSeconds must not exceed activeDeadlineSeconds",
        ),
        ("{task: 'not a task name!'}", "spec.task"),
        ("{task: examples.add, args: [" + ",".join(["1"] * 65) + "]}", "spec.args"),
        ("{args: [1]}", "spec.task: Required value"),
        # found by the fuzzed manifests (tests/fuzz): durations beyond an int32, NUL in env
        (
            "{task: examples.add, ttlSecondsAfterFinished: 2147483648}",
            "spec.ttlSecondsAfterFinished",
        ),
        (
            "{task: examples.add, activeDeadlineSeconds: 9223372036854775807}",
            "activeDeadlineSeconds",
        ),
        ("{task: examples.add, resultTTLSeconds: 9223372036854775807}", "spec.resultTTLSeconds"),
        ('{task: examples.add, env: [{name: A, value: "a\\0b"}]}', "spec.env[0].value"),
    ],
)
def test_invalid_manifest_is_refused_by_kubectl_apply(
    kubectl,
    crds,
    namespace: str,  # type: ignore[no-untyped-def]
    spec: str,
    message: str,
) -> None:
    proc = kubectl("apply", "-n", namespace, "-f", "-", input=manifest(spec), check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert "No resources found" in kubectl("get", "backgroundjobs", "-n", namespace).stderr


def test_name_longer_than_a_job_name_is_refused(kubectl, crds, namespace: str) -> None:  # type: ignore[no-untyped-def]
    proc = kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        check=False,
        input=manifest("{task: examples.add}", name="x" * 64),
    )
    assert proc.returncode != 0
    assert "metadata.name must be at most 63 characters" in proc.stderr


def test_task_is_immutable_and_cancel_cannot_be_undone(kubectl, crds, namespace: str) -> None:  # type: ignore[no-untyped-def]
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=manifest("{task: examples.sleep, cancel: true}", name="imm"),
    )
    proc = kubectl(
        "patch",
        "-n",
        namespace,
        "backgroundjob",
        "imm",
        "--type=merge",
        "-p",
        '{"spec": {"task": "examples.add"}}',
        check=False,
    )
    assert "spec.task is immutable" in proc.stderr
    proc = kubectl(
        "patch",
        "-n",
        namespace,
        "backgroundjob",
        "imm",
        "--type=merge",
        "-p",
        '{"spec": {"cancel": false}}',
        check=False,
    )
    assert "a cancelled job cannot be resumed" in proc.stderr


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ('{"spec": {"args": [2]}}', "spec cannot change once created, apart from cancel"),
        ('{"spec": {"kwargs": {"x": 1}}}', "spec.kwargs is immutable"),
        ('{"spec": {"retry": {"maxRetries": 0}}}', "spec.retry is immutable"),
        ('{"spec": {"image": "other:1"}}', "spec.image is immutable"),
        ('{"spec": {"queue": "fast"}}', "spec.queue is immutable"),
        ('{"spec": {"timeLimits": {"hardSeconds": 9}}}', "spec.timeLimits is immutable"),
    ],
)
def test_spec_edits_without_effect_are_refused(  # type: ignore[no-untyped-def]
    kubectl, crds, namespace: str, patch: str, message: str
) -> None:
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=manifest("{task: examples.sleep, args: [1]}", name="frozen"),
    )
    proc = kubectl(
        "patch",
        "-n",
        namespace,
        "backgroundjob",
        "frozen",
        "--type=merge",
        "-p",
        patch,
        check=False,
    )
    assert proc.returncode != 0
    assert message in proc.stderr and "submit a new BackgroundJob" in proc.stderr, proc.stderr


def test_spec_only_the_operator_can_judge_gets_condition_and_event(
    bgjobs: BgJobs, core: client.CoreV1Api
) -> None:
    bgjobs.submit(
        "clash",
        "examples.add",
        args=[1, 2],
        env=[{"name": "BGJOBS_TASK", "value": "examples.noop"}],
    )
    st = bgjobs.wait_phase("clash", timeout=30)
    assert st["phase"] == "Failed"
    invalid = next(c for c in st["conditions"] if c["type"] == "Invalid")
    assert invalid["status"] == "True"
    assert "env BGJOBS_TASK is reserved" in invalid["message"]

    def event() -> list[client.CoreV1Event]:
        return [
            e
            for e in core.list_namespaced_event(bgjobs.namespace).items
            if e.involved_object.name == "clash" and e.type == "Warning"
        ]

    events = wait_for(event, timeout=20, what="a Warning event")
    assert "env BGJOBS_TASK is reserved" in events[0].message
    assert not bgjobs.list("deadletters"), "nothing ran, so nothing is dead-lettered"


def test_nulls_in_args_and_resources_are_accepted_and_run(kubectl, bgjobs: BgJobs) -> None:  # type: ignore[no-untyped-def]
    # Found by the fuzzed manifests: a null item in args made every status write fail the
    # immutability rule (the job stayed Pending), and resource names were unknown fields.
    # (`kubectl create`: client-side `kubectl apply` drops null map values itself.)
    kubectl(
        "create",
        "-n",
        bgjobs.namespace,
        "-f",
        "-",
        input=manifest(
            "{task: examples.echo, args: [null, [null], {x: null}], kwargs: {k: null},"
            " resources: {requests: {cpu: 10m, memory: 32Mi}, limits: {memory: 64Mi}}}",
            name="nulls",
        ),
    )
    status = bgjobs.wait_phase("nulls", timeout=90)
    assert status["phase"] == "Succeeded", status
    assert status["result"] == {"args": [None, [None], {"x": None}], "kwargs": {"k": None}}
