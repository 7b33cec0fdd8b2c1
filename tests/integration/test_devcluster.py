"""devcluster acceptance: the real Job, CronJob, garbage-collector and admission paths
work with the process node standing in for kubelet."""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from devcluster import bins
from tests.integration.support import processes_with, wait_for


def job(name: str, command: list[str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "ignored:latest", "command": command}],
                }
            },
            **spec,
        },
    }


def job_condition(batch: client.BatchV1Api, ns: str, name: str) -> client.V1JobCondition | None:
    conds = batch.read_namespaced_job_status(name, ns).status.conditions or []
    for cond in conds:
        if cond.type in ("Complete", "Failed") and cond.status == "True":
            return cond
    return None


def test_backoff_limit_retries_until_success(batch: client.BatchV1Api, namespace: str) -> None:
    counter = Path(tempfile.mkdtemp()) / "attempts"
    script = (
        f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; "
        f'echo "attempt $n"; [ "$n" -ge 3 ]'
    )
    batch.create_namespaced_job(namespace, job("flaky", ["sh", "-c", script], backoffLimit=3))
    cond = wait_for(
        lambda: job_condition(batch, namespace, "flaky"), timeout=120, what="job to finish"
    )
    status = batch.read_namespaced_job_status("flaky", namespace).status
    assert cond.type == "Complete"
    assert status.failed == 2
    assert status.succeeded == 1
    assert counter.read_text().strip() == "3"


def test_pod_failure_policy_fails_job_on_exit_code(
    batch: client.BatchV1Api, namespace: str
) -> None:
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3]}}]}
    batch.create_namespaced_job(
        namespace, job("permanent", ["sh", "-c", "exit 3"], backoffLimit=5, podFailurePolicy=policy)
    )
    cond = wait_for(
        lambda: job_condition(batch, namespace, "permanent"), timeout=60, what="job to fail"
    )
    assert cond.type == "Failed"
    assert cond.reason == "PodFailurePolicy"
    assert batch.read_namespaced_job_status("permanent", namespace).status.failed == 1


def test_active_deadline_kills_the_process(batch: client.BatchV1Api, namespace: str) -> None:
    marker = str(random.randint(100000, 999999))
    batch.create_namespaced_job(
        namespace, job("sleepy", ["sleep", marker], activeDeadlineSeconds=3)
    )
    wait_for(lambda: processes_with(f"sleep {marker}"), timeout=30, what="process to start")
    cond = wait_for(lambda: job_condition(batch, namespace, "sleepy"), timeout=60, what="deadline")
    assert cond.type == "Failed"
    assert cond.reason == "DeadlineExceeded"
    wait_for(lambda: not processes_with(f"sleep {marker}"), timeout=30, what="process gone")


def test_termination_message_and_exit_code_reported(
    core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    script = 'echo "{\\"ok\\": 1}" > /dev/termination-log; exit 7'
    batch.create_namespaced_job(namespace, job("msg", ["sh", "-c", script], backoffLimit=0))
    wait_for(lambda: job_condition(batch, namespace, "msg"), timeout=60, what="job to fail")
    pods = core.list_namespaced_pod(namespace, label_selector="job-name=msg").items
    assert len(pods) == 1
    terminated = pods[0].status.container_statuses[0].state.terminated
    assert terminated.exit_code == 7
    assert json.loads(terminated.message) == {"ok": 1}
    assert pods[0].status.phase == "Failed"


def test_deleting_a_job_removes_its_pods_and_processes(
    core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    marker = str(random.randint(100000, 999999))
    batch.create_namespaced_job(namespace, job("doomed", ["sleep", marker]))
    wait_for(lambda: processes_with(f"sleep {marker}"), timeout=30, what="process to start")
    batch.delete_namespaced_job("doomed", namespace, propagation_policy="Background")
    wait_for(
        lambda: not core.list_namespaced_pod(namespace).items,
        timeout=60,
        what="pods garbage-collected",
    )
    wait_for(lambda: not processes_with(f"sleep {marker}"), timeout=30, what="process gone")


@pytest.mark.slow
def test_cronjob_fires_a_job_on_a_real_minute_tick(
    batch: client.BatchV1Api, namespace: str
) -> None:
    cron = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "tick"},
        "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": job("x", ["true"])["spec"]}},
    }
    batch.create_namespaced_cron_job(namespace, cron)
    jobs = wait_for(
        lambda: batch.list_namespaced_job(namespace).items,
        timeout=130,
        what="the CronJob controller to create a Job",
    )
    assert jobs[0].metadata.owner_references[0].kind == "CronJob"
    wait_for(
        lambda: job_condition(batch, namespace, jobs[0].metadata.name),
        timeout=60,
        what="the scheduled job to complete",
    )


def test_restricted_namespace_refuses_privileged_pod(
    core: client.CoreV1Api, namespace: str
) -> None:
    core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "x",
                    "command": ["true"],
                    "securityContext": {"privileged": True},
                }
            ]
        },
    }
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod(namespace, pod)
    assert err.value.status == 403
    message = json.loads(err.value.body)["message"]
    assert 'violates PodSecurity "restricted:latest"' in message
    assert "privileged" in message


def test_version_is_the_pinned_release(kubectl) -> None:  # type: ignore[no-untyped-def]
    out = kubectl("get", "--raw", "/version").stdout
    assert json.loads(out)["gitVersion"] == bins.versions()["KUBERNETES_VERSION"]


def test_kubectl_logs_reads_the_nodes_container_output(
    core: client.CoreV1Api, namespace: str, kubectl
) -> None:  # type: ignore[no-untyped-def]
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "talker"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {"name": "main", "image": "ignored", "command": ["sh", "-c", "seq 1 5"]}
                ],
            },
        },
    )
    wait_for(
        lambda: core.read_namespaced_pod("talker", namespace).status.phase == "Succeeded",
        timeout=30,
        what="the pod to succeed",
    )
    # Through the API server: it dials the node at 127.0.0.1 (its InternalIP), never DNS.
    assert core.read_namespaced_pod_log("talker", namespace) == "1\n2\n3\n4\n5\n"
    logs = kubectl("logs", "-n", namespace, "talker", "--tail=2")
    assert logs.stdout == "4\n5\n"
