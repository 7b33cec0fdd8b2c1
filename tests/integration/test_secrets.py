"""The Redis password stays secret: Jobs and pods reference a Secret, they never carry it.

The session operator (cluster-wide, passwordless Redis) would reconcile our namespaces too,
so, as in test_chart, it is stopped for these tests and restarted afterwards. Ours talks to
a real redis-server with requirepass.
"""

from __future__ import annotations

import base64
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from kubernetes import client

from bgjobs_worker import redis_keys
from devcluster.cluster import ClusterInfo
from tests.integration.support import BgJobs, OperatorProcess, RedisServer, wait_for

PASSWORD = "s3cr3t-" + uuid.uuid4().hex[:12] + "/$(X)@:"
SECRET, KEY = "redis-auth", "password"


@pytest.fixture(scope="module")
def auth_redis() -> Iterator[RedisServer]:
    server = RedisServer.start(
        Path(tempfile.mkdtemp(prefix="bgjobs-redis-auth-")), password=PASSWORD
    )
    try:
        yield server
    finally:
        server.stop()


def new_namespace(core: client.CoreV1Api, with_secret: bool) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for(
        lambda: core.read_namespaced_service_account("default", name),
        timeout=30,
        what=f"default ServiceAccount in {name}",
    )
    if with_secret:
        core.create_namespaced_secret(
            name,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name=SECRET),
                data={KEY: base64.b64encode(PASSWORD.encode()).decode()},
            ),
        )
    return name


@pytest.fixture(scope="module")
def auth_operator(
    devcluster: ClusterInfo, auth_redis: RedisServer, operator: OperatorProcess, crds: Path
) -> Iterator[OperatorProcess]:
    """An operator configured with a password-bearing Redis URL and the Secret to name."""
    log_dir = Path(tempfile.mkdtemp(prefix="bgjobs-auth-operator-"))
    ours = OperatorProcess(
        devcluster.kubeconfig,
        auth_redis.url_with_password,
        log_dir,
        {"BGJOBS_REDIS_SECRET": f"{SECRET}/{KEY}"},
    )
    operator.stop()
    try:
        ours.start()
        yield ours
    finally:
        ours.stop()
        operator.start()


def test_jobs_reference_the_secret_and_pods_still_reach_redis(
    auth_operator: OperatorProcess,
    auth_redis: RedisServer,
    api_client: client.ApiClient,
    core: client.CoreV1Api,
    batch: client.BatchV1Api,
    kubectl,  # type: ignore[no-untyped-def]
) -> None:
    ns = new_namespace(core, with_secret=True)
    try:
        jobs = BgJobs(client.CustomObjectsApi(api_client), ns)
        jobs.submit("report", "examples.progress", kwargs={"steps": 3, "delay": 0.1})
        st = jobs.wait_phase("report", timeout=90)
        assert (st["phase"], st["result"]) == ("Succeeded", {"steps": 3}), st
        # Progress only travels through Redis: the pod authenticated.
        assert (st.get("progress") or {}).get("percent") == 100, st
        uid = batch.read_namespaced_job("report", ns).metadata.uid
        rds = redis.Redis.from_url(auth_redis.url_with_password)
        stored = redis_keys.read_result(rds, ns, uid)
        assert stored is not None and stored["result"] == {"steps": 3}
        for kind in ("job", "pod", "backgroundjob", "events"):
            text = kubectl("get", kind, "-n", ns, "-o", "yaml").stdout
            assert PASSWORD not in text, f"password in {kind}"
            assert "s3cr3t" not in text, f"password in {kind}"
        job_yaml = kubectl("get", "job", "report", "-n", ns, "-o", "yaml").stdout
        assert "secretKeyRef" in job_yaml and SECRET in job_yaml
        assert PASSWORD not in auth_operator.log_text()
    finally:
        core.delete_namespace(ns)


def test_a_namespace_without_the_secret_still_runs_its_jobs(
    auth_operator: OperatorProcess, api_client: client.ApiClient, core: client.CoreV1Api
) -> None:
    """The secretKeyRef is optional: without the Secret the worker cannot authenticate and
    runs without Redis; the outcome still arrives through the termination message."""
    ns = new_namespace(core, with_secret=False)
    try:
        jobs = BgJobs(client.CustomObjectsApi(api_client), ns)
        jobs.submit("add", "examples.add", args=[1, 2])
        st = jobs.wait_phase("add", timeout=90)
        assert (st["phase"], st["result"]) == ("Succeeded", 3), st
    finally:
        core.delete_namespace(ns)


def test_the_operator_log_never_shows_the_password(
    auth_operator: OperatorProcess, auth_redis: RedisServer
) -> None:
    auth_redis.stop()
    try:
        wait_for(
            lambda: "unreachable" in auth_operator.log_text(),
            timeout=30,
            what="the operator to notice Redis is down",
        )
    finally:
        auth_redis.resume()
    log = auth_operator.log_text()
    assert "s3cr3t" not in log, [line for line in log.splitlines() if "s3cr3t" in line]
    assert "redis://:***@127.0.0.1" in log
