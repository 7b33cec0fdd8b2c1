"""The process node as a kubelet for images: pods run in their image's root filesystem.

Marked ``e2e`` (they need the built images): ``make e2e`` runs them, ``make test`` does not.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from devcluster.cluster import free_port
from tests.integration.support import wait_for

pytestmark = pytest.mark.e2e

# Runs in the operator image (it has the Kubernetes client): reports what the container
# sees in its termination message.
PROBE = r"""
import json, os, socket, sys
from kubernetes import client, config
seen = {"uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
        "pid": os.getpid(), "cwd": os.getcwd(), "argv": sys.argv[1:],
        "hostname": socket.gethostname(),
        "env": {k: os.environ.get(k) for k in ("GREETING", "FROM_MAP", "PYTHONUNBUFFERED")}}
try:
    open("/root-write-test", "w")
    seen["root"] = "writable"
except OSError as exc:
    seen["root"] = exc.strerror
with open("/tmp/scratch", "w") as f:
    seen["tmp"] = f.write("ok")
config.load_incluster_config()
review = client.AuthenticationV1Api().create_self_subject_review(
    {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
seen["user"] = review.status.user_info.username
open("/dev/termination-log", "w").write(json.dumps(seen))
"""


def pod(name: str, image: str, **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": image, **container}],
        },
    }


def waiting_reason(core: client.CoreV1Api, ns: str, name: str) -> tuple[str, str] | None:
    statuses = core.read_namespaced_pod(name, ns).status.container_statuses or []
    for status in statuses:
        if status.state and status.state.waiting and status.state.waiting.reason:
            return status.state.waiting.reason, status.state.waiting.message or ""
    return None


def test_a_pod_runs_in_its_image_as_a_kubelet_would_run_it(
    built_images: dict[str, str], image_core: client.CoreV1Api, image_namespace: str
) -> None:
    ns = image_namespace
    image_core.create_namespaced_config_map(
        ns, {"metadata": {"name": "settings"}, "data": {"FROM_MAP": "from-configmap"}}
    )
    body = pod(
        "probe",
        built_images["operator"],
        command=["python", "-c", PROBE],
        args=["$(GREETING)", "$$(GREETING)"],
        env=[{"name": "GREETING", "value": "hello"}],
        envFrom=[{"configMapRef": {"name": "settings"}}],
        workingDir="/tmp",
        securityContext={
            "runAsUser": 10002,
            "runAsGroup": 10003,
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
        },
        volumeMounts=[{"name": "tmp", "mountPath": "/tmp"}],
    )
    body["spec"]["volumes"] = [{"name": "tmp", "emptyDir": {}}]
    body["spec"]["securityContext"] = {"fsGroup": 10004}
    image_core.create_namespaced_pod(ns, body)

    def finished() -> Any:
        p = image_core.read_namespaced_pod("probe", ns)
        return p if p.status.phase in ("Succeeded", "Failed") else None

    done = wait_for(finished, timeout=90, what="probe pod to finish")
    term = done.status.container_statuses[0].state.terminated
    assert done.status.phase == "Succeeded", (term.exit_code, term.message)
    seen = json.loads(term.message)
    assert seen["uid"] == 10002 and seen["gid"] == 10003 and 10004 in seen["groups"]
    assert seen["pid"] == 1  # PID 1 of its own namespace
    assert seen["cwd"] == "/tmp"
    assert seen["argv"] == ["hello", "$(GREETING)"]
    assert seen["hostname"] == "probe"
    assert seen["env"] == {
        "GREETING": "hello",
        "FROM_MAP": "from-configmap",
        "PYTHONUNBUFFERED": "1",  # from the image
    }
    assert seen["root"] == "Read-only file system"
    assert seen["tmp"] == 2
    assert seen["user"] == f"system:serviceaccount:{ns}:default"


def test_run_as_non_root_is_refused_for_a_root_image(
    built_images: dict[str, str], image_core: client.CoreV1Api, image_namespace: str
) -> None:
    body = pod(
        "rooted",
        built_images["base"],  # no USER: root
        command=["true"],
        securityContext={"runAsNonRoot": True},
    )
    image_core.create_namespaced_pod(image_namespace, body)
    reason, message = wait_for(
        lambda: waiting_reason(image_core, image_namespace, "rooted"),
        timeout=60,
        what="a waiting reason",
    )
    assert reason == "CreateContainerConfigError"
    assert "runAsNonRoot and image will run as root" in message
    assert image_core.read_namespaced_pod("rooted", image_namespace).status.phase == "Pending"


def test_an_image_not_in_storage_fails_to_pull(
    image_core: client.CoreV1Api, image_namespace: str
) -> None:
    image_core.create_namespaced_pod(image_namespace, pod("absent", "bgjobs/not-built-anywhere:1"))

    def backing_off() -> tuple[str, str] | None:
        found = waiting_reason(image_core, image_namespace, "absent")
        return found if found and found[0] == "ImagePullBackOff" else None

    _, message = wait_for(backing_off, timeout=60, what="ImagePullBackOff")
    assert "bgjobs/not-built-anywhere:1" in message


def test_a_failing_liveness_probe_restarts_the_container(
    built_images: dict[str, str], image_core: client.CoreV1Api, image_namespace: str
) -> None:
    body = pod(
        "liveness",
        built_images["base"],
        # Alive for two seconds, then the probe's file is gone; sh as PID 1 ignores SIGTERM,
        # so the grace period ends it with SIGKILL.
        command=["sh", "-c", "touch /tmp/alive; sleep 2; rm /tmp/alive; sleep 600"],
        livenessProbe={
            "exec": {"command": ["cat", "/tmp/alive"]},
            "periodSeconds": 1,
            "failureThreshold": 2,
        },
    )
    body["spec"]["restartPolicy"] = "Always"
    body["spec"]["terminationGracePeriodSeconds"] = 1
    image_core.create_namespaced_pod(image_namespace, body)

    def restarted() -> Any:
        statuses = image_core.read_namespaced_pod("liveness", image_namespace).status
        for status in statuses.container_statuses or []:
            if status.restart_count >= 1 and status.state.running:
                return status
        return None

    status = wait_for(restarted, timeout=60, what="a restart after the liveness probe failed")
    assert status.last_state.terminated.exit_code == 137


def test_readiness_follows_an_http_probe(
    built_images: dict[str, str], image_core: client.CoreV1Api, image_namespace: str
) -> None:
    port = free_port()
    body = pod(
        "ready",
        built_images["base"],
        command=["sh", "-c", f"sleep 2; exec python3 -m http.server {port} --bind 127.0.0.1"],
        ports=[{"name": "http", "containerPort": port}],
        readinessProbe={"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
    )
    image_core.create_namespaced_pod(image_namespace, body)

    def condition() -> str | None:
        p = image_core.read_namespaced_pod("ready", image_namespace)
        if p.status.phase != "Running":
            return None
        return next(c.status for c in p.status.conditions if c.type == "Ready")

    assert wait_for(condition, timeout=30, what="Running") == "False"
    wait_for(lambda: condition() == "True", timeout=30, what="Ready through the probe")
    image_core.delete_namespaced_pod("ready", image_namespace, grace_period_seconds=1)
