"""Build the batch/v1 Job (and CronJob job template) for a task: pure functions, no I/O.

The Job carries everything the worker needs in environment variables; the worker learns
its own Job's name and uid from the pod labels the Job controller sets, so the same
template serves a BackgroundJob's Job and every run of a CronJob.
"""

from __future__ import annotations

import json
from typing import Any

from bgjobs.api import names
from bgjobs.api.v1alpha1 import HARD_LIMIT_GRACE_SECONDS, TaskTemplate
from bgjobs_operator.config import OperatorConfig
from bgjobs_worker.errors import ExitCode

# The worker's own hard limit fires first; the pod deadline (hardSeconds plus
# HARD_LIMIT_GRACE_SECONDS, declared with the API's bound on hardSeconds) is the backstop for
# a task stuck where Python signals cannot reach it.


class InvalidSpec(ValueError):
    """The spec passed the CRD schema but cannot be run; the message says why."""


def literal(value: str) -> str:
    """An env value the kubelet passes through unchanged: it expands ``$(VAR)`` and turns
    ``$$`` into ``$`` in every ``value``, so each ``$`` is written ``$$``."""
    return value.replace("$", "$$")


def _literal_env(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": literal(value)}


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def worker_env(t: TaskTemplate, config: OperatorConfig) -> list[dict[str, Any]]:
    args, kwargs = json.dumps(t.args), json.dumps(t.kwargs)
    if len(args) + len(kwargs) > config.max_input_bytes:
        raise InvalidSpec(
            f"args and kwargs are {len(args) + len(kwargs)} bytes of JSON, over the "
            f"{config.max_input_bytes}-byte limit; pass large inputs by reference "
            "(an object-storage URL or a ConfigMap name)"
        )
    # Every value below is data, never a $(VAR) reference: written through literal().
    env: list[dict[str, Any]] = [
        _literal_env("BGJOBS_TASK", t.task),
        _literal_env("BGJOBS_ARGS", args),
        _literal_env("BGJOBS_KWARGS", kwargs),
        _field_env("BGJOBS_NAMESPACE", "metadata.namespace"),
        _field_env("BGJOBS_JOB_NAME", f"metadata.labels['{names.JOB_NAME_LABEL}']"),
        _field_env("BGJOBS_JOB_UID", f"metadata.labels['{names.JOB_UID_LABEL}']"),
        _field_env("BGJOBS_POD_NAME", "metadata.name"),
        _literal_env("BGJOBS_MAX_RETRIES", str(t.retry.maxRetries)),
        _literal_env("BGJOBS_RETRY_ON", ",".join(t.retry.retryOn)),
        _literal_env("BGJOBS_PERMANENT_ON", ",".join(t.retry.permanentOn)),
        _literal_env("BGJOBS_RESULT_TTL", str(t.resultTTLSeconds)),
    ]
    if config.redis_url:
        # The password never appears in the Job: pods read it from the Secret (in their
        # own namespace) that the operator only names; the worker adds it to the URL.
        env.append(_literal_env("BGJOBS_REDIS_URL", config.worker_redis_url or ""))
        if config.redis_secret:
            name, key = config.redis_secret
            env.append(
                {
                    "name": "BGJOBS_REDIS_PASSWORD",
                    # optional: a namespace without the Secret runs its jobs without Redis
                    # (outcomes via termination messages) rather than leaving pods
                    # unstartable; the worker logs the authentication failure.
                    "valueFrom": {"secretKeyRef": {"name": name, "key": key, "optional": True}},
                }
            )
    if config.task_modules:
        env.append(_literal_env("BGJOBS_TASK_MODULES", ",".join(config.task_modules)))
    if t.timeLimits and t.timeLimits.softSeconds:
        env.append(_literal_env("BGJOBS_SOFT_TIME_LIMIT", str(t.timeLimits.softSeconds)))
    if t.timeLimits and t.timeLimits.hardSeconds:
        env.append(_literal_env("BGJOBS_TIME_LIMIT", str(t.timeLimits.hardSeconds)))
    # User variables come last so they can reference ours with $(VAR), not override them;
    # theirs are not escaped: $(VAR) there is the Kubernetes feature the user asked for.
    reserved = {e["name"] for e in env}
    for var in t.env:
        if var.name in reserved:
            raise InvalidSpec(f"env {var.name} is reserved for the bgjobs worker runtime")
        env.append(var.model_dump(exclude_none=True))
    return env


def pod_failure_policy(t: TaskTemplate) -> dict[str, Any]:
    """The exit-code contract (README): 3 never retries, 4 retries unless configured not
    to, disruptions (eviction, preemption) are not the task's fault and are not counted."""
    fail_codes = [int(ExitCode.PERMANENT)]
    if not t.retry.retryOnSoftTimeLimit:
        fail_codes.append(int(ExitCode.TIME_LIMIT))
    return {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": names.WORKER_CONTAINER,
                    "operator": "In",
                    "values": fail_codes,
                },
            },
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]
    }


def job_labels(t: TaskTemplate) -> dict[str, str]:
    return {names.MANAGED_BY: names.MANAGER, names.QUEUE: t.queue}


def job_spec(
    t: TaskTemplate, config: OperatorConfig, extra_labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """The batch/v1 JobSpec running task template t (also a CronJob's jobTemplate.spec)."""
    container: dict[str, Any] = {
        "name": names.WORKER_CONTAINER,
        "image": t.image or config.default_image,
        "command": list(config.worker_command),
        "env": worker_env(t, config),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if t.envFrom:
        container["envFrom"] = [e.model_dump(exclude_none=True) for e in t.envFrom]
    if t.resources:
        container["resources"] = t.resources.model_dump(exclude_defaults=True)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # Workers report to Redis and their termination message; they never need the API.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
    }
    if t.timeLimits and t.timeLimits.hardSeconds:
        pod_spec["activeDeadlineSeconds"] = t.timeLimits.hardSeconds + HARD_LIMIT_GRACE_SECONDS
    pod_labels = {**job_labels(t), **(extra_labels or {})}
    spec: dict[str, Any] = {
        "backoffLimit": t.retry.maxRetries,
        "completions": 1,
        "parallelism": 1,
        "podFailurePolicy": pod_failure_policy(t),
        "template": {
            "metadata": {"labels": pod_labels, "annotations": {names.TASK_ANNOTATION: t.task}},
            "spec": pod_spec,
        },
    }
    if t.activeDeadlineSeconds:
        spec["activeDeadlineSeconds"] = t.activeDeadlineSeconds
    if t.ttlSecondsAfterFinished is not None:
        spec["ttlSecondsAfterFinished"] = t.ttlSecondsAfterFinished
    if t.queue in config.queue_limits:
        # Queued: the operator resumes it when its queue has room (queues.py). A suspended
        # Job has no pods and its activeDeadlineSeconds clock has not started.
        spec["suspend"] = True
    return spec


def owner_reference(body: dict[str, Any], controller: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "name": body["metadata"]["name"],
        "uid": body["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def build_job(bj: dict[str, Any], t: TaskTemplate, config: OperatorConfig) -> dict[str, Any]:
    """The one Job of a BackgroundJob: same name, owned by it (deleted with it)."""
    md = bj["metadata"]
    job_lbls = {**job_labels(t), names.BACKGROUND_JOB: md["name"]}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": md["name"],
            "namespace": md["namespace"],
            "labels": job_lbls,
            "annotations": {names.TASK_ANNOTATION: t.task},
            "ownerReferences": [owner_reference(bj)],
        },
        "spec": job_spec(t, config, {names.BACKGROUND_JOB: md["name"]}),
    }
