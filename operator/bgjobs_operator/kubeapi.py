"""The few Kubernetes API calls the operator makes, each named for what it does.

Every write goes through here, so the write budget (README "API writes") can be read off
this file: create Job, patch status, create DeadLetter, post Event."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from bgjobs.api import names
from bgjobs.api.v1alpha1 import GROUP, VERSION
from bgjobs_operator.conditions import now

log = logging.getLogger(__name__)
USER_AGENT = "bgjobs-operator/0.1"
PLURALS = {
    "BackgroundJob": "backgroundjobs",
    "JobSchedule": "jobschedules",
    "DeadLetter": "deadletters",
}


def load_client() -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    cfg = client.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = 32  # handlers run in a thread pool
    api_client = client.ApiClient(cfg)
    # Named, so the API server's audit log and metrics can attribute our writes.
    api_client.user_agent = USER_AGENT
    return api_client


class KubeApi:
    def __init__(self, api_client: client.ApiClient) -> None:
        # Typed as Any: the operator passes plain dict manifests, which the generated
        # client accepts at run time but its annotations do not describe.
        self.core: Any = client.CoreV1Api(api_client)
        self.batch: Any = client.BatchV1Api(api_client)
        self.custom: Any = client.CustomObjectsApi(api_client)
        self.api_client = api_client

    # --- batch ---------------------------------------------------------------------------
    def create_or_get_job(self, job: dict[str, Any]) -> dict[str, Any]:
        """Create-or-adopt: a Job that already exists under the deterministic name is
        returned as is (the caller checks it is ours); never a second one."""
        md = job["metadata"]
        try:
            # Raw JSON: the generated models' deserialisation costs more CPU than the call.
            resp = self.batch.create_namespaced_job(md["namespace"], job, _preload_content=False)
            return dict(json.loads(resp.data))
        except ApiException as exc:
            if exc.status != 409:
                raise
        return self.read_job(md["namespace"], md["name"]) or {}

    def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._dict(self.batch.read_namespaced_job(name, namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def delete_job(self, namespace: str, name: str) -> None:
        try:
            self.batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise

    def resume_job(self, namespace: str, name: str) -> None:
        self.batch.patch_namespaced_job(name, namespace, {"spec": {"suspend": False}})

    def job_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        pods = self.core.list_namespaced_pod(
            namespace, label_selector=f"{names.JOB_NAME_LABEL}={job_name}", _preload_content=False
        )
        return list(json.loads(pods.data).get("items", []))

    def create_cronjob(self, cronjob: dict[str, Any]) -> dict[str, Any] | None:
        """Create a CronJob; None when one of that name exists already."""
        try:
            return self._dict(
                self.batch.create_namespaced_cron_job(cronjob["metadata"]["namespace"], cronjob)
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
        return None

    def read_cronjob(self, namespace: str, name: str) -> dict[str, Any]:
        return self._dict(self.batch.read_namespaced_cron_job(name, namespace))

    def patch_cronjob(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self._dict(self.batch.patch_namespaced_cron_job(name, namespace, patch))

    # --- custom resources ----------------------------------------------------------------
    def patch_status(
        self, kind: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURALS[kind], name, {"status": patch}
        )

    def create_or_get(self, obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create a custom object, or return the existing one of that name.
        Returns (object, created)."""
        md, plural = obj["metadata"], PLURALS[obj["kind"]]
        try:
            return self.custom.create_namespaced_custom_object(
                GROUP, VERSION, md["namespace"], plural, obj
            ), True
        except ApiException as exc:
            if exc.status != 409:
                raise
        return self.custom.get_namespaced_custom_object(
            GROUP, VERSION, md["namespace"], plural, md["name"]
        ), False

    def get_custom(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return dict(
                self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURALS[kind], name
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def delete_custom(self, kind: str, namespace: str, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURALS[kind], name, propagation_policy="Background"
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    # --- events --------------------------------------------------------------------------
    def post_event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event on obj; failures are logged, never raised (an Event is a
        courtesy, the status is the record)."""
        md = obj["metadata"]
        ts = now()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{md['name']}.{uuid.uuid4().hex[:12]}",
                "namespace": md["namespace"],
            },
            "involvedObject": {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "name": md["name"],
                "namespace": md["namespace"],
                "uid": md["uid"],
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": names.COMPONENT},
            "reportingComponent": names.COMPONENT,
            "reportingInstance": names.COMPONENT,
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
        }
        try:
            self.core.create_namespaced_event(md["namespace"], event)
        except ApiException as exc:
            log.warning(
                "could not post event %s on %s/%s: %s",
                reason,
                md["namespace"],
                md["name"],
                exc.reason,
            )

    def _dict(self, obj: Any) -> dict[str, Any]:
        return self.api_client.sanitize_for_serialization(obj)
