"""Baseline for the API-write count: the same work as bgjobs' operator for a successful
job, written the usual kopf way and run with kopf's default settings.

* ``@kopf.on.create`` for BackgroundJobs creates the batch Job (the same manifest,
  ``bgjobs_operator.jobspec.build_job``) and returns a status dict, which kopf stores;
* ``@kopf.on.event`` for batch Jobs patches the owning BackgroundJob's status phase
  (Running, Succeeded, Failed) through the API, once per phase change.

Nothing in kopf's settings is changed: default persistence (progress and
last-handled-configuration annotations), default event posting, default finalizer
behaviour, default peering detection. Its own API requests carry the user agent
``kopf/<version>``, the Kubernetes-client requests below ``bgjobs-bench-kopf-baseline/``.
Run: ``kopf run --namespace NS bench/kopf_default_operator.py`` (the bench does).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import kopf
from kubernetes import client, config

from bgjobs.api import names
from bgjobs.api.v1alpha1 import GROUP, VERSION, BackgroundJobSpec, Phase
from bgjobs_operator.config import OperatorConfig
from bgjobs_operator.jobspec import build_job
from bgjobs_operator.status import phase_of

USER_AGENT = "bgjobs-bench-kopf-baseline/0.1"
CONFIG = OperatorConfig(
    redis_url=os.environ.get("BGJOBS_REDIS_URL") or None,
    task_modules=[m for m in os.environ.get("BGJOBS_TASK_MODULES", "").split(",") if m],
)
_api: client.ApiClient | None = None
_written: dict[str, str] = {}  # Job uid -> phase last written to its owner
_lock = threading.Lock()


def api() -> client.ApiClient:
    global _api
    with _lock:
        if _api is None:
            config.load_kube_config()
            _api = client.ApiClient()
            _api.user_agent = USER_AGENT
        return _api


@kopf.on.create(GROUP, VERSION, "backgroundjobs")
def create_job(body: kopf.Body, spec: kopf.Spec, **_: Any) -> dict[str, Any]:
    bj = {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "metadata": {
            "name": body.metadata.name,
            "namespace": body.metadata.namespace,
            "uid": body.metadata.uid,
        },
    }
    manifest = build_job(bj, BackgroundJobSpec.model_validate(dict(spec)), CONFIG)
    batch: Any = client.BatchV1Api(api())  # plain dict manifests, like the operator
    batch.create_namespaced_job(str(body.metadata.namespace), manifest)
    return {"jobName": manifest["metadata"]["name"]}


@kopf.on.event("batch", "v1", "jobs", labels={names.MANAGED_BY: names.MANAGER})
def job_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    if event.get("type") == "DELETED":
        return
    owners = [o for o in body.metadata.get("ownerReferences") or [] if o["kind"] == "BackgroundJob"]
    phase = phase_of({"status": dict(body.get("status") or {})})
    uid = body.metadata.uid
    if not owners or phase == Phase.PENDING or _written.get(uid) == phase:
        return
    client.CustomObjectsApi(api()).patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        str(body.metadata.namespace),
        "backgroundjobs",
        owners[0]["name"],
        {"status": {"phase": phase.value}},
    )
    _written[uid] = phase
