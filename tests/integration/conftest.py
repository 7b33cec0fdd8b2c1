"""Integration fixtures: one real devcluster per test session, a fresh namespace per test,
and a real redis-server on a free loopback port."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from devcluster import bins, cluster, images
from tests.integration.support import (
    AlertSink,
    BgJobs,
    OperatorProcess,
    RedisServer,
    wait_for,
)


@pytest.fixture(scope="session")
def devcluster() -> Iterator[cluster.ClusterInfo]:
    state = Path(tempfile.mkdtemp(prefix="bgjobs-it-"))
    info = cluster.up(state, name="tests")
    try:
        yield info
    finally:
        cluster.down(state)
        if not os.environ.get("BGJOBS_KEEP_TEST_STATE"):
            shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def api_client(devcluster: cluster.ClusterInfo) -> client.ApiClient:
    return config.new_client_from_config(config_file=devcluster.kubeconfig)


@pytest.fixture(scope="session")
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def batch(api_client: client.ApiClient) -> client.BatchV1Api:
    return client.BatchV1Api(api_client)


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # Pods are refused until the namespace's default ServiceAccount exists.
    wait_for(
        lambda: core.read_namespaced_service_account("default", name),
        timeout=30,
        what=f"default ServiceAccount in {name}",
    )
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def kubectl(devcluster: cluster.ClusterInfo):  # type: ignore[no-untyped-def]
    """Run the real kubectl against the test cluster; returns CompletedProcess."""
    exe = str(bins.binary("kubectl"))

    def run(
        *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [exe, f"--kubeconfig={devcluster.kubeconfig}", *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stderr}")
        return proc

    return run


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer.start(Path(tempfile.mkdtemp(prefix="bgjobs-redis-")))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def crds(kubectl):  # type: ignore[no-untyped-def]
    """The generated CRDs installed and established."""
    root = Path(__file__).resolve().parents[2]
    kubectl("apply", "-f", str(root / "crds"))
    kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd",
        "-l",
        "app.kubernetes.io/part-of=bgjobs",
    )
    return root / "crds"


@pytest.fixture(scope="session")
def alert_sink() -> Iterator[AlertSink]:
    """An HTTP endpoint on loopback collecting the operator's webhook alerts."""
    sink = AlertSink.start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture(scope="session")
def operator(
    devcluster: cluster.ClusterInfo, redis_server: RedisServer, crds: Path, alert_sink: AlertSink
) -> Iterator[OperatorProcess]:
    log_dir = Path(devcluster.state_dir) / "logs"
    proc = OperatorProcess(
        devcluster.kubeconfig,
        redis_server.url,
        log_dir,
        extra_env={"BGJOBS_WEBHOOK_URL": alert_sink.url, "BGJOBS_QUEUE_LIMITS": "serial=1"},
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def bgjobs(api_client: client.ApiClient, namespace: str, operator: OperatorProcess) -> BgJobs:
    """Create and read bgjobs resources in this test's namespace."""
    return BgJobs(client.CustomObjectsApi(api_client), namespace)


@pytest.fixture(scope="session")
def built_images() -> dict[str, str]:
    """bgjobs/operator and bgjobs/worker built with podman on the base made from Debian's
    packages, as CI builds them. The base is cached in podman storage by its recipe and
    podman's layer cache makes a rebuild of unchanged sources take seconds."""
    tag = os.environ.get("BGJOBS_E2E_TAG", "e2e")
    base = images.build_base()
    images.build(tag, base, tool="podman")
    return {
        "base": base,
        "tag": tag,
        "operator": f"{images.OPERATOR}:{tag}",
        "worker": f"{images.WORKER}:{tag}",
        "examples": images.build_examples(tag, tool="podman"),
    }


@pytest.fixture(scope="session")
def image_cluster() -> Iterator[cluster.ClusterInfo]:
    """A devcluster whose node runs containers in their images (podman storage)."""
    state = Path(tempfile.mkdtemp(prefix="bgjobs-e2e-"))
    info = cluster.up(state, name="e2e", run_images=True)
    try:
        yield info
    finally:
        cluster.down(state)
        if not os.environ.get("BGJOBS_KEEP_TEST_STATE"):
            shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def image_core(image_cluster: cluster.ClusterInfo) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=image_cluster.kubeconfig))


@pytest.fixture
def image_namespace(image_core: client.CoreV1Api) -> Iterator[str]:
    name = f"e-{uuid.uuid4().hex[:8]}"
    image_core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for(
        lambda: image_core.read_namespaced_service_account("default", name),
        timeout=30,
        what=f"default ServiceAccount in {name}",
    )
    yield name
    image_core.delete_namespace(name)
