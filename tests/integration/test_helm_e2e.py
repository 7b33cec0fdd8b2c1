"""The user's install path: `helm install` the chart with the built images on a devcluster
whose node runs images, then BackgroundJobs through it, in worker-image pods.

Nothing of the repository's virtualenv runs here: the operator is the chart's Deployment in
the operator image, with only the chart's ServiceAccount and its in-cluster configuration;
the jobs run in the worker image with the example tasks added by the user's recipe.
Marked ``e2e``: ``make e2e`` (CI) runs it, ``make test`` does not.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from devcluster import bins
from devcluster.cluster import ClusterInfo
from tests.integration.support import RedisServer, wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
RELEASE, RELEASE_NS = "bgjobs", "bgjobs"
# Example manifest -> the phase it ends in.
EXAMPLES = {
    "backgroundjob-progress.yaml": "Succeeded",
    "backgroundjob-flaky.yaml": "Succeeded",
    "backgroundjob-deadletter.yaml": "Failed",
    "backgroundjob-batch.yaml": "Succeeded",
}

Run = Callable[..., subprocess.CompletedProcess[str]]


def runner(exe: Path, kubeconfig: str, env: dict[str, str] | None = None) -> Run:
    def run(*args: str, check: bool = True, timeout: float = 300) -> Any:
        proc = subprocess.run(
            [str(exe), f"--kubeconfig={kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{exe.name} {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run


@pytest.fixture(scope="module")
def kubectl(image_cluster: ClusterInfo) -> Run:
    return runner(bins.binary("kubectl"), image_cluster.kubeconfig)


@pytest.fixture(scope="module")
def helm(image_cluster: ClusterInfo) -> Run:
    home = Path(tempfile.mkdtemp(prefix="bgjobs-helm-"))
    env = {f"HELM_{d.upper()}_HOME": str(home / d) for d in ("config", "cache", "data")}
    return runner(bins.binary("helm"), image_cluster.kubeconfig, env)


@pytest.fixture(scope="module")
def release(
    built_images: dict[str, str],
    image_cluster: ClusterInfo,
    redis_server: RedisServer,
    helm: Run,
    kubectl: Run,
) -> Iterator[dict[str, Any]]:
    """The chart installed with the built images; yields the operator pod."""
    tag = built_images["tag"]
    # The node's pods share the machine's loopback: the chart's ports must be free.
    for port in (8080, 8081):
        with socket.socket() as probe:
            busy = probe.connect_ex(("127.0.0.1", port)) == 0
        assert not busy, f"port {port} is taken on this machine: the operator pod needs it"
    values = {
        "image": {"repository": "bgjobs/operator", "tag": tag, "pullPolicy": "Never"},
        "worker": {"image": built_images["examples"], "taskModules": ["examples.tasks"]},
        "redis": {"url": redis_server.url},
    }
    values_file = Path(tempfile.mkdtemp(prefix="bgjobs-values-")) / "values.json"
    values_file.write_text(json.dumps(values))
    helm(
        "install",
        RELEASE,
        str(ROOT / "charts" / "bgjobs"),
        "--namespace",
        RELEASE_NS,
        "--create-namespace",
        "-f",
        str(values_file),
        "--wait",
        "--timeout",
        "3m",
    )
    pods = kubectl(
        "get", "pods", "-n", RELEASE_NS, "-l", "app.kubernetes.io/component=operator", "-o", "json"
    )
    (pod,) = json.loads(pods.stdout)["items"]
    try:
        yield pod
    finally:
        helm("uninstall", RELEASE, "--namespace", RELEASE_NS, "--wait", check=False)


def test_the_chart_runs_the_operator_from_its_image_and_jobs_in_worker_images(
    release: dict[str, Any], image_cluster: ClusterInfo, kubectl: Run, helm: Run
) -> None:
    assert release["spec"]["containers"][0]["image"].startswith("bgjobs/operator:")
    assert release["status"]["phase"] == "Running"
    # Ready through its readiness probe (helm --wait waited for it).
    assert {c["type"]: c["status"] for c in release["status"]["conditions"]}["Ready"] == "True"
    state = Path(image_cluster.state_dir) / "pods" / RELEASE_NS / release["metadata"]["name"]
    box = json.loads((state / "operator.sandbox.json").read_text())
    assert box["uid"] == 10001 and box["readonly_root"], box  # the chart's securityContext

    custom = client.CustomObjectsApi(
        config.new_client_from_config(config_file=image_cluster.kubeconfig)
    )
    for manifest in EXAMPLES:
        kubectl("apply", "-n", "default", "-f", str(ROOT / "examples" / manifest))

    def phases() -> dict[str, str] | None:
        items = custom.list_namespaced_custom_object(
            "bgjobs.dev", "v1alpha1", "default", "backgroundjobs"
        )["items"]
        got = {i["metadata"]["name"]: (i.get("status") or {}).get("phase", "") for i in items}
        done = {"Succeeded", "Failed"}
        return got if len(got) == len(EXAMPLES) and set(got.values()) <= done else None

    try:
        ended = wait_for(phases, timeout=240, what="the examples to end", interval=1)
    except Exception:
        log = state / "operator.log"
        print(log.read_text()[-4000:] if log.exists() else "no operator log")
        raise
    want = {}
    for manifest, phase in EXAMPLES.items():
        text = (ROOT / "examples" / manifest).read_text()
        name = next(
            line.split(":", 1)[1].strip()
            for line in text.splitlines()
            if line.startswith("  name:")
        )
        want[name] = phase
    assert ended == want
    batch = custom.get_namespaced_custom_object(
        "bgjobs.dev", "v1alpha1", "default", "backgroundjobs", "monthly-invoices"
    )["status"]["batch"]
    assert batch["succeeded"] == batch["total"] > 0

    # A schedule's run, the seed workflow, and the queue example in its own namespace (its
    # route takes every examples.* task there), applied as a user would.
    kubectl("apply", "-n", "default", "-f", str(ROOT / "examples" / "jobschedule.yaml"))
    kubectl("apply", "-n", "default", "-f", str(ROOT / "examples" / "jobworkflow-seed.yaml"))
    kubectl("create", "namespace", "e2e-queue")
    kubectl("apply", "-n", "e2e-queue", "-f", str(ROOT / "examples" / "jobqueue.yaml"))
    wait_for(
        lambda: kubectl("get", "cronjob", "cleanup", "-n", "default", check=False).returncode == 0,
        timeout=60,
        what="the schedule's CronJob",
    )
    kubectl("create", "job", "cleanup-now", "--from=cronjob/cleanup", "-n", "default")

    def status_of(ns: str, plural: str, name: str) -> dict[str, Any]:
        try:
            obj = custom.get_namespaced_custom_object("bgjobs.dev", "v1alpha1", ns, plural, name)
        except client.ApiException:
            return {}
        return dict(obj.get("status") or {})

    def all_done() -> bool:
        return (
            status_of("default", "backgroundjobs", "cleanup-now").get("phase") == "Succeeded"
            and status_of("default", "jobworkflows", "analyze-file-42").get("phase") == "Succeeded"
            and status_of("e2e-queue", "backgroundjobs", "add-later").get("phase") == "Succeeded"
        )

    wait_for(all_done, timeout=300, what="the schedule's run, the workflow and the queued job")
    assert status_of("default", "backgroundjobs", "cleanup-now")["result"] == 42
    queued = status_of("e2e-queue", "backgroundjobs", "add-later")
    assert (queued["result"], queued["queue"]) == (42, "examples")

    # helm test: its pod (the operator image, no token) reads the metrics Service.
    helm("test", RELEASE, "--namespace", RELEASE_NS, "--timeout", "2m")

    # The worker pods ran in the worker image, as its non-root user.
    worker_pods = [
        p
        for p in json.loads(kubectl("get", "pods", "-n", "default", "-o", "json").stdout)["items"]
        if p["spec"]["containers"][0]["image"] == release_worker_image(release)
    ]
    assert worker_pods
    for p in worker_pods:
        pod_dir = Path(image_cluster.state_dir) / "pods" / "default" / p["metadata"]["name"]
        sandbox = json.loads(next(pod_dir.glob("*.sandbox.json")).read_text())
        assert sandbox["uid"] == 10001


def release_worker_image(pod: dict[str, Any]) -> str:
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    return str(env["BGJOBS_DEFAULT_IMAGE"])


def test_helm_upgrade_to_a_new_tag_replaces_the_operator_and_loses_no_job(
    release: dict[str, Any],
    built_images: dict[str, str],
    image_cluster: ClusterInfo,
    helm: Run,
    kubectl: Run,
) -> None:
    new_tag = f"{built_images['tag']}-next"
    subprocess.run(
        ["podman", "tag", built_images["operator"], f"bgjobs/operator:{new_tag}"], check=True
    )
    kubectl("create", "namespace", "upgrade")
    job = {
        "apiVersion": "bgjobs.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {"name": "survivor", "namespace": "upgrade"},
        "spec": {"task": "examples.sleep", "kwargs": {"seconds": 12}},
    }
    manifest = Path(tempfile.mkdtemp(prefix="bgjobs-upgrade-")) / "job.json"
    manifest.write_text(json.dumps(job))
    kubectl("apply", "-f", str(manifest))

    def phase() -> str:
        out = kubectl("get", "backgroundjob", "survivor", "-n", "upgrade", "-o", "json").stdout
        return str(json.loads(out).get("status", {}).get("phase", ""))

    wait_for(lambda: phase() == "Running", timeout=60, what="survivor Running")
    helm(
        "upgrade",
        RELEASE,
        str(ROOT / "charts" / "bgjobs"),
        "--namespace",
        RELEASE_NS,
        "--reuse-values",
        "--set",
        f"image.tag={new_tag}",
        "--wait",
        "--timeout",
        "3m",
    )
    pods = json.loads(
        kubectl(
            "get",
            "pods",
            "-n",
            RELEASE_NS,
            "-l",
            "app.kubernetes.io/component=operator",
            "-o",
            "json",
        ).stdout
    )["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert [p["spec"]["containers"][0]["image"] for p in live] == [f"bgjobs/operator:{new_tag}"]
    assert live[0]["metadata"]["name"] != release["metadata"]["name"]

    wait_for(lambda: phase() == "Succeeded", timeout=120, what="survivor Succeeded", interval=1)
    jobs = json.loads(kubectl("get", "jobs", "-n", "upgrade", "-o", "json").stdout)["items"]
    assert len(jobs) == 1, [j["metadata"]["name"] for j in jobs]  # not lost, not duplicated
    assert jobs[0]["status"].get("succeeded") == 1


def test_helm_uninstall_leaves_nothing_of_the_release_but_its_crds(
    release: dict[str, Any], helm: Run, kubectl: Run
) -> None:
    helm("uninstall", RELEASE, "--namespace", RELEASE_NS, "--wait", "--timeout", "2m")
    selector = f"app.kubernetes.io/instance={RELEASE}"
    kinds = "deployments,replicasets,pods,services,serviceaccounts,roles,rolebindings,configmaps"
    left = kubectl("get", kinds, "-A", "-l", selector, "-o", "name").stdout.split()
    wait_for(
        lambda: not kubectl("get", kinds, "-A", "-l", selector, "-o", "name").stdout.split(),
        timeout=60,
        what=f"the release's objects to go (left: {left})",
    )
    cluster_kinds = "clusterroles,clusterrolebindings"
    assert not kubectl("get", cluster_kinds, "-l", selector, "-o", "name").stdout.split()
    # CRDs stay (helm never deletes crds/), so the users' BackgroundJobs survive (docs/helm.md).
    crds = kubectl("get", "crds", "-o", "name").stdout
    assert "backgroundjobs.bgjobs.dev" in crds
