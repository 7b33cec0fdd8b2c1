"""The Helm chart (charts/bgjobs) against the real API server of a devcluster: it lints and
renders in every documented variant, the API server accepts every object it renders, its
RBAC grants what the operator needs and nothing more, the operator really runs with only
that RBAC, its pods pass the restricted Pod Security Standard, and values.schema.json
refuses bad values with helm's message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from bgjobs.api.v1alpha1 import BackgroundJobSpec
from bgjobs_operator.config import OperatorConfig
from bgjobs_operator.jobspec import build_job
from devcluster import bins
from devcluster.cluster import ClusterInfo
from tests.integration.support import BgJobs, OperatorProcess, RedisServer, wait_for

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "bgjobs"
# The documented variants (docs/helm.md); `make chart-lint` renders the same files.
VARIANTS: dict[str, Path | None] = {
    "default": None,
    "namespaced": CHART / "ci" / "namespaced-values.yaml",
    "metrics": CHART / "ci" / "metrics-values.yaml",
    "bundled-redis": CHART / "ci" / "bundled-redis-values.yaml",
    "peering": CHART / "ci" / "peering-values.yaml",
    "dashboard": CHART / "ci" / "dashboard-values.yaml",
    "networkpolicy": CHART / "ci" / "networkpolicy-values.yaml",
}
CHART_VALUES = yaml.safe_load((CHART / "values.yaml").read_text())

Helm = Callable[..., subprocess.CompletedProcess[str]]
Kubectl = Callable[..., subprocess.CompletedProcess[str]]
Objects = list[dict[str, Any]]


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm(devcluster: ClusterInfo, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """The pinned helm against the test cluster, with its own config/cache/data dirs."""
    exe = str(bins.binary("helm"))
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        **os.environ,
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [exe, f"--kubeconfig={devcluster.kubeconfig}", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
        return proc

    return run


def values_args(variant: str, *sets: str) -> list[str]:
    path = VARIANTS[variant]
    args = ["-f", str(path)] if path else []
    for item in sets:
        args += ["--set", item]
    return args


def render(helm: Helm, variant: str, namespace: str, *args: str) -> Objects:
    out = helm(
        "template", "bgjobs", str(CHART), "--namespace", namespace, *values_args(variant), *args
    )
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def find(objects: Objects, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def operator_container(objects: Objects) -> dict[str, Any]:
    (deploy,) = [
        d
        for d in find(objects, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    ]
    return dict(deploy["spec"]["template"]["spec"]["containers"][0])


def operator_objects(objects: Objects, kind: str) -> list[dict[str, Any]]:
    """The kind's objects that are not the dashboard's."""
    return [o for o in find(objects, kind) if not is_dashboard(o)]


def is_dashboard(obj: dict[str, Any]) -> bool:
    return bool(obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "dashboard")


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.fixture(scope="module")
def namespaces(core: client.CoreV1Api) -> Iterator[Callable[..., str]]:
    """Make namespaces that live as long as this module's releases."""
    made: list[str] = []

    def make(prefix: str, labels: dict[str, str] | None = None) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
        )
        made.append(name)
        wait_for(
            lambda: core.read_namespaced_service_account("default", name),
            timeout=30,
            what=f"default ServiceAccount in {name}",
        )
        return name

    yield make
    for name in made:
        core.delete_namespace(name)


@dataclass
class Release:
    name: str
    namespace: str
    watched: list[str]
    notes: str  # what `helm install` printed (NOTES.txt)

    @property
    def service_account(self) -> str:
        return f"{self.name}-bgjobs"

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def install(helm: Helm, name: str, namespace: str, variant: str, *sets: str) -> str:
    # No --wait: devcluster runs no Deployment controller, so the operator Deployment stays
    # an inert object here; what matters is the API server accepting the release.
    args = values_args(variant, *sets)
    return helm("install", name, str(CHART), "--namespace", namespace, *args).stdout


@pytest.fixture(scope="module")
def cluster_release(helm: Helm, crds: Path, namespaces: Callable[..., str]) -> Iterator[Release]:
    ns = namespaces("rel-c")
    notes = install(helm, "rel-c", ns, "default")
    yield Release("rel-c", ns, watched=[], notes=notes)
    helm("uninstall", "rel-c", "--namespace", ns)


@pytest.fixture(scope="module")
def namespaced_release(helm: Helm, crds: Path, namespaces: Callable[..., str]) -> Iterator[Release]:
    home, other = namespaces("rel-n"), namespaces("watched")
    notes = install(helm, "rel-n", home, "namespaced", f"watchNamespaces={{{home},{other}}}")
    yield Release("rel-n", home, watched=[home, other], notes=notes)
    helm("uninstall", "rel-n", "--namespace", home)


@pytest.fixture(scope="module")
def peering_release(
    helm: Helm,
    crds: Path,
    kubectl: Kubectl,
    namespaces: Callable[..., str],
) -> Iterator[Release]:
    """A real install of the peering variant: it also brings the kopf.dev CRDs, which the
    server-side dry runs below need (a dry run does not create the CRD a CR needs)."""
    ns = namespaces("rel-p")
    notes = install(helm, "rel-p", ns, "peering")
    yield Release("rel-p", ns, watched=[], notes=notes)
    helm("uninstall", "rel-p", "--namespace", ns)
    # A hook object is not part of the release; the CRDs are kept on purpose (shared).
    kubectl("delete", "clusterkopfpeering", "bgjobs", "--ignore-not-found")


@pytest.fixture(scope="module")
def monitoring_crds(kubectl: Kubectl) -> Iterator[None]:
    """Stand-ins for the Prometheus Operator's ServiceMonitor and PrometheusRule CRDs,
    which devcluster lacks. Chosen over leaving the two kinds out of the dry run: the API
    server still checks their apiVersion, kind, names and namespaces (and the release
    installs with them); their spec is open (preserve-unknown-fields) and is checked by
    test_lint_and_template from the rendered YAML instead."""
    docs = []
    for kind in ("ServiceMonitor", "PrometheusRule"):
        plural = kind.lower() + "s"
        docs.append(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{plural}.monitoring.coreos.com"},
                "spec": {
                    "group": "monitoring.coreos.com",
                    "scope": "Namespaced",
                    "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
                    "versions": [
                        {
                            "name": "v1",
                            "served": True,
                            "storage": True,
                            "schema": {
                                "openAPIV3Schema": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                        }
                    ],
                },
            }
        )
    text = yaml.safe_dump_all(docs)
    kubectl("apply", "-f", "-", input=text)
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", "-", input=text)
    yield
    kubectl("delete", "--ignore-not-found", "-f", "-", input=text)


def can_i(kubectl: Kubectl, user: str, verb: str, resource: str, *flags: str) -> bool:
    out = kubectl("auth", "can-i", verb, resource, f"--as={user}", *flags, check=False)
    answer = out.stdout.strip()
    assert answer in ("yes", "no"), f"can-i {verb} {resource}: {out.stdout}{out.stderr}"
    return answer == "yes"


# What the operator does (kubeapi.py, controllers/, handlers.py), as (verb, resource, flags).
NEEDED = [
    ("create", "jobs.batch"),
    ("delete", "jobs.batch"),
    ("patch", "jobs.batch"),  # resume a queued (suspended) Job
    ("watch", "jobs.batch"),
    ("create", "cronjobs.batch"),
    ("patch", "cronjobs.batch"),
    ("watch", "cronjobs.batch"),
    ("list", "pods"),
    ("get", "pods"),
    ("create", "events"),
    ("create", "events.events.k8s.io"),
    ("watch", "backgroundjobs.bgjobs.dev"),
    ("create", "backgroundjobs.bgjobs.dev"),
    ("delete", "backgroundjobs.bgjobs.dev"),
    ("create", "deadletters.bgjobs.dev"),
    ("watch", "jobschedules.bgjobs.dev"),
    ("patch", "backgroundjobs.bgjobs.dev", "--subresource=status"),
    ("patch", "jobschedules.bgjobs.dev", "--subresource=status"),
    ("patch", "deadletters.bgjobs.dev", "--subresource=status"),
    ("watch", "jobqueues.bgjobs.dev"),
    ("get", "jobqueues.bgjobs.dev"),
    ("patch", "jobqueues.bgjobs.dev", "--subresource=status"),
    ("update", "backgroundjobs.bgjobs.dev", "--subresource=finalizers"),
    ("update", "jobschedules.bgjobs.dev", "--subresource=finalizers"),
    ("watch", "jobworkflows.bgjobs.dev"),
    ("patch", "backgroundjobs.bgjobs.dev"),  # cancel a workflow's running steps
    ("patch", "jobworkflows.bgjobs.dev", "--subresource=status"),
    ("update", "jobworkflows.bgjobs.dev", "--subresource=finalizers"),
]
REFUSED = [
    ("get", "secrets"),
    ("list", "secrets"),
    ("delete", "pods"),
    ("create", "pods"),
    ("get", "deployments.apps"),
    ("patch", "deployments.apps"),
    ("get", "configmaps"),
    ("delete", "cronjobs.batch"),
    ("update", "backgroundjobs.bgjobs.dev"),
    ("patch", "jobqueues.bgjobs.dev"),
    ("patch", "backgroundjobs.bgjobs.dev", "--subresource=finalizers"),
    ("create", "serviceaccounts", "--subresource=token"),
    ("watch", "clusterkopfpeerings.kopf.dev"),  # peering is off
]


# --- rendering ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_lint_and_template(helm: Helm, variant: str) -> None:
    helm("lint", "--strict", str(CHART), *values_args(variant))
    objects = render(helm, variant, "bgjobs")
    kinds = {o["kind"] for o in objects}
    assert "Secret" not in kinds
    container = operator_container(objects)
    env = env_of(container)
    assert container["image"] == "bgjobs/operator:0.1.0"
    assert container["command"] == ["bgjobs-operator"]
    assert env["BGJOBS_DEFAULT_IMAGE"] == "bgjobs/worker:0.1.0"
    assert (env["BGJOBS_METRICS_PORT"], env["BGJOBS_HEALTH_PORT"]) == ("8080", "8081")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    (service,) = find(objects, "Service", "bgjobs-metrics")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]
    rules = [r for o in objects if o["kind"] in ("Role", "ClusterRole") for r in o["rules"]]
    granted = {res for r in rules for res in r["resources"]}
    assert not granted & {"secrets", "configmaps", "deployments", "*"}
    assert all("*" not in r["verbs"] for r in rules)
    deploy = find(objects, "Deployment", "bgjobs")[0]

    if variant == "namespaced":
        assert not find(objects, "ClusterRole") and not find(objects, "ClusterRoleBinding")
        assert {r["metadata"]["namespace"] for r in find(objects, "Role")} == {
            "team-a",
            "team-b",
        }
        for binding in find(objects, "RoleBinding"):
            assert binding["subjects"] == [
                {"kind": "ServiceAccount", "name": "bgjobs", "namespace": "bgjobs"}
            ]
        assert env["BGJOBS_NAMESPACES"] == "team-a,team-b"
    else:
        assert not find(objects, "Role")
        assert len(operator_objects(objects, "ClusterRole")) == 1
        assert "BGJOBS_NAMESPACES" not in env

    if variant == "metrics":
        (monitor,) = find(objects, "ServiceMonitor")
        assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
        labels = service["metadata"]["labels"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
        (rule,) = find(objects, "PrometheusRule")
        alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
        assert set(alerts) == {
            "BgjobsCriticalJobDeadLettered",
            "BgjobsBacklogGrowing",
            "BgjobsOperatorNotReconciling",
            "BgjobsQueueStuck",
        }
        dead = alerts["BgjobsCriticalJobDeadLettered"]
        assert dead["expr"] == 'increase(bgjobs_dead_letters_total{critical="true"}[10m]) > 0'
        backlog = alerts["BgjobsBacklogGrowing"]
        assert backlog["expr"] == 'sum by (queue) (bgjobs_jobs{phase="Pending"}) > 50'
        assert backlog["for"] == "15m"
        stuck = alerts["BgjobsOperatorNotReconciling"]["expr"]
        assert 'absent(up{job="bgjobs-metrics"} == 1)' in stuck
        assert "rate(bgjobs_reconcile_errors_total[10m])) > 0.1" in stuck
        for alert in alerts.values():
            assert alert["labels"]["severity"] in ("warning", "critical")
            assert alert["annotations"]["description"]
        # Every metric the alerts use is one the operator exports (metrics.py).
        exported = (ROOT / "operator" / "bgjobs_operator" / "metrics.py").read_text()
        queue_stuck = alerts["BgjobsQueueStuck"]
        assert "increase(bgjobs_queue_admitted_total[15m])" in queue_stuck["expr"]
        assert queue_stuck["for"] == "15m"
        for name in (
            "bgjobs_dead_letters_total",
            "bgjobs_jobs",
            "bgjobs_reconcile_errors_total",
            "bgjobs_queue_jobs",
            "bgjobs_queue_admitted_total",
            "bgjobs_queue_paused",
        ):
            assert f'"{name}"' in exported
        (dashboard,) = [o for o in find(objects, "ConfigMap") if "bgjobs.json" in o["data"]]
        assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(dashboard["data"]["bgjobs.json"])["uid"] == "bgjobs"
    else:
        assert not kinds & {"ServiceMonitor", "PrometheusRule"}

    if variant == "bundled-redis":
        (redis_deploy,) = find(objects, "Deployment", "bgjobs-redis")
        assert redis_deploy["spec"]["replicas"] == 1
        assert redis_deploy["spec"]["template"]["spec"]["containers"][0]["image"] == (
            "redis:7-alpine"
        )
        assert find(objects, "Service", "bgjobs-redis")
        assert env["BGJOBS_REDIS_URL"] == "redis://bgjobs-redis.bgjobs.svc:6379/0"
        assert env["BGJOBS_TASK_MODULES"] == "examples.tasks"
    else:
        assert not find(objects, "Deployment", "bgjobs-redis")
        assert "BGJOBS_REDIS_URL" not in env

    if variant == "dashboard":
        check_dashboard(objects, actions=True)
    else:
        assert not [o for o in objects if is_dashboard(o)]

    if variant == "peering":
        assert deploy["spec"]["replicas"] == 2
        assert deploy["spec"]["strategy"]["type"] == "RollingUpdate"
        assert env["BGJOBS_PEERING"] == "bgjobs"
        assert env["POD_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        crds = {c["metadata"]["name"]: c for c in find(objects, "CustomResourceDefinition")}
        assert crds["clusterkopfpeerings.kopf.dev"]["spec"]["scope"] == "Cluster"
        assert crds["kopfpeerings.kopf.dev"]["spec"]["scope"] == "Namespaced"
        for crd in crds.values():
            props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
            assert props["spec"]["x-kubernetes-preserve-unknown-fields"] is True
            assert props["status"]["x-kubernetes-preserve-unknown-fields"] is True
        (peering,) = find(objects, "ClusterKopfPeering", "bgjobs")
        assert "post-install" in peering["metadata"]["annotations"]["helm.sh/hook"]
        assert any("clusterkopfpeerings" in r["resources"] for r in rules)
    else:
        assert deploy["spec"]["replicas"] == 1
        assert deploy["spec"]["strategy"]["type"] == "Recreate"
        assert "BGJOBS_PEERING" not in env
        assert not any("kopf.dev" in r["apiGroups"] for r in rules)


@pytest.mark.parametrize("variant", ["default", "bundled-redis"])
def test_the_redis_password_comes_from_an_existing_secret(helm: Helm, variant: str) -> None:
    """The chart names a Secret it does not create; the password is never a value."""
    sets = ["redis.existingSecret=redis-auth"]
    if variant == "default":
        sets.append("redis.url=redis://bgjobs@redis.infra:6379/0")
    helm("lint", "--strict", str(CHART), *values_args(variant, *sets))
    set_args = [arg for item in sets for arg in ("--set", item)]
    objects = render(helm, variant, "bgjobs", *set_args)
    assert "Secret" not in {o["kind"] for o in objects}
    env = env_of(operator_container(objects))
    ref = {"secretKeyRef": {"name": "redis-auth", "key": "redis-password"}}
    assert env["BGJOBS_REDIS_PASSWORD"] == ref
    assert env["BGJOBS_REDIS_SECRET"] == "redis-auth/redis-password"
    rules = [r for o in objects if o["kind"] in ("Role", "ClusterRole") for r in o["rules"]]
    assert not any("secrets" in r["resources"] for r in rules)
    if variant == "bundled-redis":
        (redis_deploy,) = find(objects, "Deployment", "bgjobs-redis")
        container = redis_deploy["spec"]["template"]["spec"]["containers"][0]
        assert container["args"][-2:] == ["--requirepass", "$(REDIS_PASSWORD)"]
        assert env_of(container)["REDIS_PASSWORD"] == ref
    other_key = render(helm, variant, "bgjobs", *set_args, "--set", "redis.existingSecretKey=pw")
    assert env_of(operator_container(other_key))["BGJOBS_REDIS_SECRET"] == "redis-auth/pw"
    refused = helm(
        "template",
        "bgjobs",
        str(CHART),
        "--set",
        "redis.url=redis://:hunter2@r:6379/0",
        check=False,
    )
    assert refused.returncode != 0 and "redis.existingSecret" in refused.stderr


@pytest.mark.parametrize("variant", [*VARIANTS, "namespaced+peering"])
def test_api_server_accepts_every_rendered_object(
    helm: Helm,
    kubectl: Kubectl,
    crds: Path,
    monitoring_crds: None,
    peering_release: Release,
    namespaces: Callable[..., str],
    variant: str,
) -> None:
    ns = namespaces("dry")
    sets = []
    if variant.startswith("namespaced"):
        watched = namespaces("dry-w")
        sets = ["--set", f"watchNamespaces={{{ns},{watched}}}"]
    if variant == "namespaced+peering":  # Roles for kopfpeerings, a KopfPeering per namespace
        variant, sets = "namespaced", [*sets, "--set", "peering.enabled=true"]
        expected = {("KopfPeering", ns), ("KopfPeering", watched)}
        rendered = render(helm, variant, ns, *sets)
        assert expected <= {(o["kind"], o["metadata"].get("namespace")) for o in rendered}
    # --include-crds: the chart's copy of the bgjobs CRDs goes through the API server too.
    objects = render(helm, variant, ns, "--include-crds", *sets)
    out = kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(objects))
    accepted = [line for line in out.stdout.splitlines() if line.endswith("(server dry run)")]
    assert len(accepted) == len(objects), out.stdout


# --- RBAC ---------------------------------------------------------------------------------


def test_cluster_rbac_is_least_privilege(
    cluster_release: Release,
    kubectl: Kubectl,
    namespaces: Callable[..., str],
) -> None:
    elsewhere = namespaces("any")  # cluster mode: any namespace, here one made afterwards
    user = cluster_release.user
    for verb, resource, *flags in NEEDED:
        assert can_i(kubectl, user, verb, resource, "-n", elsewhere, *flags), (verb, resource)
    for verb, resource in [("list", "backgroundjobs.bgjobs.dev"), ("watch", "jobs.batch")]:
        assert can_i(kubectl, user, verb, resource, "--all-namespaces")
    for verb, resource, *flags in REFUSED:
        assert not can_i(kubectl, user, verb, resource, "-n", elsewhere, *flags), (verb, resource)
    assert not can_i(kubectl, user, "list", "namespaces")
    # NOTES.txt tells how to submit and watch a job, and that no Redis is configured.
    assert "kubectl apply -n default -f -" in cluster_release.notes
    assert "kubectl get backgroundjobs -n default -w" in cluster_release.notes
    assert "no Redis configured" in cluster_release.notes
    assert not can_i(kubectl, user, "list", "customresourcedefinitions.apiextensions.k8s.io")


def test_namespaced_rbac_stays_in_its_namespaces(
    namespaced_release: Release,
    cluster_release: Release,
    kubectl: Kubectl,
) -> None:
    user = namespaced_release.user
    for ns in namespaced_release.watched:
        for verb, resource, *flags in NEEDED:
            assert can_i(kubectl, user, verb, resource, "-n", ns, *flags), (ns, verb, resource)
        for verb, resource, *flags in REFUSED:
            assert not can_i(kubectl, user, verb, resource, "-n", ns, *flags), (verb, resource)
    for outside in (cluster_release.namespace, "default"):
        assert not can_i(kubectl, user, "create", "jobs.batch", "-n", outside)
        assert not can_i(kubectl, user, "watch", "backgroundjobs.bgjobs.dev", "-n", outside)
    assert not can_i(kubectl, user, "list", "backgroundjobs.bgjobs.dev", "--all-namespaces")
    first = namespaced_release.watched[0]
    assert f"watches the namespaces: {', '.join(namespaced_release.watched)}" in (
        namespaced_release.notes
    )
    assert f"kubectl get backgroundjobs -n {first} -w" in namespaced_release.notes


def test_peering_release_installs_crds_peering_object_and_rbac(
    peering_release: Release,
    cluster_release: Release,
    kubectl: Kubectl,
) -> None:
    peering = json.loads(kubectl("get", "clusterkopfpeering", "bgjobs", "-o", "json").stdout)
    assert peering["kind"] == "ClusterKopfPeering"
    deployment = kubectl(
        "get", "deployment", "rel-p-bgjobs", "-n", peering_release.namespace, "-o", "json"
    ).stdout
    replicas = json.loads(deployment)["spec"]["replicas"]
    assert replicas == 2
    for verb in ("get", "list", "watch", "patch"):
        assert can_i(kubectl, peering_release.user, verb, "clusterkopfpeerings.kopf.dev")
    assert not can_i(kubectl, peering_release.user, "delete", "clusterkopfpeerings.kopf.dev")
    assert not can_i(kubectl, cluster_release.user, "patch", "clusterkopfpeerings.kopf.dev")
    assert "2 replicas with kopf peering: each draws its own priority" in peering_release.notes


# --- the operator with exactly the chart's RBAC --------------------------------------------


def token_kubeconfig(devcluster: ClusterInfo, token: str, path: Path) -> str:
    """The devcluster's server and CA with a ServiceAccount token instead of the admin's."""
    admin = yaml.safe_load(Path(devcluster.kubeconfig).read_text())
    cluster = admin["clusters"][0]["cluster"]
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "devcluster", "cluster": cluster}],
                "users": [{"name": "operator", "user": {"token": token}}],
                "contexts": [
                    {"name": "operator", "context": {"cluster": "devcluster", "user": "operator"}}
                ],
                "current-context": "operator",
            }
        )
    )
    return str(path)


@pytest.mark.parametrize("mode", ["cluster", "namespaced"])
def test_operator_works_with_only_the_chart_rbac(
    request: pytest.FixtureRequest,
    mode: str,
    devcluster: ClusterInfo,
    redis_server: RedisServer,
    operator: OperatorProcess,
    api_client: client.ApiClient,
    core: client.CoreV1Api,
    batch: client.BatchV1Api,
    helm: Helm,
    kubectl: Kubectl,
    namespaces: Callable[..., str],
    tmp_path: Path,
) -> None:
    """The session operator (cluster-wide, admin credentials) would reconcile our namespace
    too and make the outcome say nothing about the chart's RBAC; there is no way to keep it
    out of one namespace, so it is stopped for this test and restarted afterwards (the
    `operator` fixture is requested only for that). Our operator runs on a token of the
    chart's ServiceAccount: any missing permission shows up as a job that never ends, a
    missing DeadLetter or Event, or a Forbidden in its log."""
    release: Release = request.getfixturevalue(f"{mode}_release")
    token = kubectl(
        "create", "token", release.service_account, "-n", release.namespace, "--duration=1h"
    ).stdout.strip()
    kubeconfig = token_kubeconfig(devcluster, token, tmp_path / "kubeconfig")
    if mode == "namespaced":
        ns = release.watched[-1]  # a watched namespace other than the release's own
        unwatched = namespaces("unwatched")
        extra_env = {"BGJOBS_NAMESPACES": ",".join(release.watched)}
    else:
        ns, unwatched = namespaces("run"), None
        extra_env = {}
    chart_operator = OperatorProcess(kubeconfig, redis_server.url, tmp_path, extra_env)
    operator.stop()
    try:
        chart_operator.start()
        jobs = BgJobs(client.CustomObjectsApi(api_client), ns)
        jobs.submit("add", "examples.add", args=[1, 2])
        jobs.submit("perm", "examples.permanent")
        if unwatched:
            BgJobs(client.CustomObjectsApi(api_client), unwatched).submit(
                "ignored", "examples.add", args=[1, 2]
            )
        st = jobs.wait_phase("add", timeout=90)
        assert (st["phase"], st["result"]) == ("Succeeded", 3), st
        st = jobs.wait_phase("perm", timeout=90)
        assert st["phase"] == "Failed", st
        (dead,) = [d for d in jobs.list("deadletters") if d["spec"]["jobName"] == "perm"]
        assert st["deadLetter"]["name"] == dead["metadata"]["name"]
        events = core.list_namespaced_event(ns, field_selector="involvedObject.name=perm").items
        assert "Failed" in {e.reason for e in events}, [e.reason for e in events]
        if unwatched:
            assert not batch.list_namespaced_job(unwatched).items
        # The helm test hook's check, run here against this operator's metrics endpoint
        # (no cluster DNS on devcluster, so the hook pod itself cannot reach the Service).
        hook = find(render(helm, "default", release.namespace), "Pod")[0]
        command = hook["spec"]["containers"][0]["command"]
        assert command[:2] == ["python", "-c"]
        metrics_url = f"http://127.0.0.1:{chart_operator.metrics_port}/metrics"
        check = subprocess.run(
            [sys.executable, "-c", command[2]],
            env={**os.environ, "METRICS_URL": metrics_url},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 0 and check.stdout.startswith("ok:"), check
        log = chart_operator.log_text()
        assert "Forbidden" not in log and " 403" not in log, log[-3000:]
    finally:
        chart_operator.stop()
        operator.start()


# --- Pod Security -------------------------------------------------------------------------


def test_every_pod_passes_the_restricted_profile(
    helm: Helm,
    kubectl: Kubectl,
    namespaces: Callable[..., str],
) -> None:
    ns = namespaces("restricted", {"pod-security.kubernetes.io/enforce": "restricted"})
    # Enforcement is on: a bare pod with no securityContext is refused.
    bare = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bare"},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
    }
    refused = kubectl(
        "apply", "--dry-run=server", "-n", ns, "-f", "-", check=False, input=json.dumps(bare)
    )
    assert refused.returncode != 0 and 'violates PodSecurity "restricted' in refused.stderr

    # The worker pod the operator builds with the chart's defaults. The Job is created for
    # real: the Job controller's pod must be admitted, and it runs to completion.
    body = {
        "apiVersion": "bgjobs.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {"name": "psa-worker", "namespace": ns, "uid": str(uuid.uuid4())},
        "spec": {"task": "examples.add", "args": [1, 2]},
    }
    config = OperatorConfig(
        default_image=CHART_VALUES["worker"]["image"], task_modules=["examples.tasks"]
    )
    job = build_job(body, BackgroundJobSpec.model_validate(body["spec"]), config)
    # No BackgroundJob owns it here: the garbage collector would delete a Job whose owner
    # does not exist.
    del job["metadata"]["ownerReferences"]
    kubectl("create", "-f", "-", input=json.dumps(job))

    def succeeded() -> bool:
        out = kubectl("get", "job", "psa-worker", "-n", ns, "-o", "json").stdout
        return int(json.loads(out).get("status", {}).get("succeeded") or 0) >= 1

    wait_for(succeeded, timeout=60, what="the worker Job's pod to be admitted and succeed")

    # The chart's own pods: operator, bundled Redis, helm test hook. devcluster runs no
    # Deployment controller, so the Deployments' pod templates are dry-run as Pods.
    objects = render(helm, "bundled-redis", ns, "--set", "dashboard.enabled=true")
    pods = [o for o in objects if o["kind"] == "Pod"]
    for deploy in find(objects, "Deployment"):
        template = deploy["spec"]["template"]
        pods.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": deploy["metadata"]["name"], **template["metadata"]},
                "spec": template["spec"],
            }
        )
    assert len(pods) == 4
    for pod in pods:
        pod["metadata"]["namespace"] = ns
        # The ServiceAccount is not installed in this namespace; admission of the pod's
        # security settings is what is checked here.
        pod["spec"].pop("serviceAccountName", None)
    out = kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(pods))
    assert out.stdout.count("(server dry run)") == 4, out.stdout


# --- NetworkPolicy ------------------------------------------------------------------------


def test_network_policies_admit_only_the_operator_and_workers_to_redis(helm: Helm) -> None:
    """What the policies select and allow (the devcluster has no network plugin, so
    enforcement itself is not tested here; the API server's acceptance is, above)."""
    assert not find(render(helm, "default", "bgjobs"), "NetworkPolicy"), "off by default"
    objects = render(helm, "networkpolicy", "bgjobs", "--set", "redis.bundled.enabled=true")
    policies = {p["metadata"]["name"]: p["spec"] for p in find(objects, "NetworkPolicy")}
    operator, redis = policies["bgjobs-operator"], policies["bgjobs-redis"]
    deployments = {d["metadata"]["name"]: d for d in find(objects, "Deployment")}
    op_labels = deployments["bgjobs"]["spec"]["template"]["metadata"]["labels"]
    redis_labels = deployments["bgjobs-redis"]["spec"]["template"]["metadata"]["labels"]
    assert operator["podSelector"]["matchLabels"].items() <= op_labels.items()
    assert redis["podSelector"]["matchLabels"].items() <= redis_labels.items()
    # Redis: port 6379 from the operator's pods and from worker pods in any namespace.
    (rule,) = redis["ingress"]
    assert rule["ports"] == [{"port": 6379, "protocol": "TCP"}]
    peers = rule["from"]
    assert peers[0]["podSelector"]["matchLabels"].items() <= op_labels.items()
    assert peers[1]["namespaceSelector"] == {}
    spec = BackgroundJobSpec.model_validate({"task": "examples.add"})
    bj = {
        "apiVersion": "bgjobs.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {"name": "j", "namespace": "shop", "uid": "u"},
    }
    worker_pod_labels = build_job(bj, spec, OperatorConfig())["spec"]["template"]["metadata"][
        "labels"
    ]
    assert peers[1]["podSelector"]["matchLabels"].items() <= worker_pod_labels.items()
    # The operator: metrics in from the scraper only; out to DNS, the API server, Redis.
    (metrics_in,) = operator["ingress"]
    assert metrics_in["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert metrics_in["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    dns, api, to_redis = operator["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert api["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    assert {p["port"] for p in api["ports"]} == {443, 6443}
    assert to_redis["to"][0]["podSelector"]["matchLabels"].items() <= redis_labels.items()


# --- values.schema.json -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["replicas=-1"], ["/replicas", "minimum"]),
        (["rbac.mode=everywhere"], ["/rbac/mode", "'cluster', 'namespaced'"]),
        (["replicaz=1"], ["additional properties 'replicaz' not allowed"]),
        (["rbac.mode=namespaced"], ["/watchNamespaces", "minItems"]),
        (["replicas=2"], ["/replicas", "maximum"]),  # more than one replica needs peering
        (["dashboard.enabled=yes"], ["/dashboard/enabled", "want boolean"]),
        (["dashboard.service.port=0"], ["/dashboard/service/port", "minimum"]),
        (["dashboard.colour=red"], ["additional properties 'colour' not allowed"]),
        # The dashboard watches every namespace: a namespaced install cannot grant that.
        (
            ["dashboard.enabled=true", "rbac.mode=namespaced", "watchNamespaces={a}"],
            ["/rbac/mode", "value must be 'cluster'"],
        ),
        (["networkPolicy.apiServer.cidrs[0]=10.0.0.1"], ["/networkPolicy/apiServer/cidrs/0"]),
    ],
)
def test_schema_refuses_bad_values(helm: Helm, sets: list[str], expected: list[str]) -> None:
    args = [arg for item in sets for arg in ("--set", item)]
    out = helm("install", "bad", str(CHART), "--namespace", "default", *args, check=False)
    assert out.returncode != 0
    assert "values don't meet the specifications of the schema" in out.stderr
    for text in expected:
        assert text in out.stderr, out.stderr


# --- dashboard (dashboard.enabled) ----------------------------------------------------------

DASHBOARD_READS = ["backgroundjobs", "jobworkflows", "jobqueues", "jobschedules", "deadletters"]
# What the action buttons write (bgjobs/dashboard/actions.py), each the write kubectl bgjobs
# makes for the same action.
DASHBOARD_WRITES = [
    ("create", "backgroundjobs.bgjobs.dev"),  # submit a task
    ("patch", "backgroundjobs.bgjobs.dev"),  # cancel (spec.cancel), replay failed items
    ("patch", "deadletters.bgjobs.dev"),  # replay a dead letter
    ("patch", "jobqueues.bgjobs.dev"),  # pause/resume a queue
    ("patch", "jobschedules.bgjobs.dev"),  # suspend/resume a schedule
    ("patch", "jobworkflows.bgjobs.dev"),  # resume a workflow
]


def check_dashboard(objects: Objects, *, actions: bool) -> None:
    """The dashboard's objects as rendered: its own ServiceAccount, a ClusterIP Service,
    probes on /healthz, the operator's security settings, and --actions only when asked."""
    (deploy,) = [d for d in find(objects, "Deployment") if is_dashboard(d)]
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "bgjobs/operator:0.1.0"  # the operator image has the extra
    expected = ["python", "-m", "bgjobs.dashboard", "--in-cluster", "--host", "0.0.0.0"]
    expected += ["--port", "8080", *(["--actions"] if actions else [])]
    assert container["command"] == expected
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["securityContext"] == {  # the operator's
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["resources"]["limits"]["memory"]
    (sa,) = [o for o in find(objects, "ServiceAccount") if is_dashboard(o)]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert sa["metadata"]["name"].endswith("-dashboard")  # not the operator's
    (service,) = [o for o in find(objects, "Service") if is_dashboard(o)]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= deploy["spec"]["selector"]["matchLabels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    (role,) = [o for o in find(objects, "ClusterRole") if is_dashboard(o)]
    (binding,) = [o for o in find(objects, "ClusterRoleBinding") if is_dashboard(o)]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["name"] == sa["metadata"]["name"]
    writes = {
        (verb, res)
        for r in role["rules"]
        for verb in r["verbs"]
        for res in r["resources"]
        if verb not in ("get", "list", "watch")
    }
    wanted = {(verb, res.split(".")[0]) for verb, res in DASHBOARD_WRITES}
    assert writes == (wanted if actions else set())


@pytest.mark.parametrize("actions", [False, True])
def test_dashboard_rbac_grants_reads_and_only_the_action_writes(
    helm: Helm, kubectl: Kubectl, crds: Path, namespaces: Callable[..., str], actions: bool
) -> None:
    """The dashboard's ClusterRole applied for real: its ServiceAccount can watch what the
    pages show; without dashboard.actions it can write nothing, with it exactly the writes
    the action buttons make (and still no Secrets, Jobs or deletes)."""
    ns = namespaces("dash")
    release = f"dash{uuid.uuid4().hex[:6]}"
    sets = ["--set", "dashboard.enabled=true", "--set", f"dashboard.actions={str(actions).lower()}"]
    out = helm(
        "template",
        release,
        str(CHART),
        "--namespace",
        ns,
        "--show-only",
        "templates/dashboard.yaml",
        *sets,
    )
    objects = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    check_dashboard(objects, actions=actions)
    text = yaml.safe_dump_all(objects)
    kubectl("apply", "-f", "-", input=text)
    try:
        user = f"system:serviceaccount:{ns}:{release}-bgjobs-dashboard"
        for resource in DASHBOARD_READS:
            for verb in ("get", "list", "watch"):
                assert can_i(kubectl, user, verb, f"{resource}.bgjobs.dev", "-A")
        assert can_i(kubectl, user, "watch", "events", "-A")
        assert can_i(kubectl, user, "get", "pods", "--subresource=log", "-n", ns)
        for verb, resource in DASHBOARD_WRITES:
            assert can_i(kubectl, user, verb, resource, "-n", ns) is actions, (verb, resource)
        for verb, resource, *flags in [
            ("delete", "backgroundjobs.bgjobs.dev"),
            ("create", "deadletters.bgjobs.dev"),
            ("patch", "backgroundjobs.bgjobs.dev", "--subresource=status"),
            ("create", "jobs.batch"),
            ("get", "secrets"),
            ("list", "configmaps"),
        ]:
            assert not can_i(kubectl, user, verb, resource, *flags, "-n", ns), (verb, resource)
    finally:
        kubectl("delete", "--ignore-not-found", "-f", "-", input=text)
