"""Build the batch/v1 Job (and CronJob job template) for a task: pure functions, no I/O.

The Job carries everything the worker needs in environment variables; the worker learns
its own Job's name and uid from the pod labels the Job controller sets, so the same
template serves a BackgroundJob's Job and every run of a CronJob.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bgjobs.api import names
from bgjobs.api.v1alpha1 import (
    DEFAULT_QUEUE,
    HARD_LIMIT_GRACE_SECONDS,
    BackgroundJobSpec,
    PodDefaults,
    TaskTemplate,
)
from bgjobs_operator.config import OperatorConfig
from bgjobs_worker.errors import ExitCode

# A batch pod that crashes (OOM, node loss) is replaced this many times per index; its
# leased items go back to the other pods when their lease expires meanwhile.
BATCH_POD_RESTARTS = 3
# A batch is leased in about this many chunks per pod, at most MAX_DEFAULT_CHUNK items each.
CHUNKS_PER_POD = 20
MAX_DEFAULT_CHUNK = 100
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


@dataclass(frozen=True)
class Placement:
    """Which queue a Job belongs to, whether it starts suspended (a JobQueue or a
    --queue-limits queue admits it) and the queue's pod defaults."""

    queue: str = DEFAULT_QUEUE
    suspend: bool = False
    pod: PodDefaults | None = None


def legacy_placement(t: TaskTemplate, config: OperatorConfig) -> Placement:
    """The queue as spec.queue names it, suspended when --queue-limits limits it."""
    queue = t.queue or DEFAULT_QUEUE
    return Placement(queue, suspend=queue in config.queue_limits)


def job_labels(queue: str) -> dict[str, str]:
    return {names.MANAGED_BY: names.MANAGER, names.QUEUE: queue}


def _apply_pod_defaults(
    pod_spec: dict[str, Any], container: dict[str, Any], pod: PodDefaults
) -> None:
    if pod.nodeSelector:
        pod_spec["nodeSelector"] = dict(pod.nodeSelector)
    if pod.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in pod.tolerations]
    if pod.affinity:
        pod_spec["affinity"] = dict(pod.affinity)
    if pod.priorityClassName:
        pod_spec["priorityClassName"] = pod.priorityClassName
    if pod.resources and "resources" not in container:
        container["resources"] = pod.resources.model_dump(exclude_defaults=True)


def job_spec(
    t: TaskTemplate,
    config: OperatorConfig,
    extra_labels: dict[str, str] | None = None,
    placement: Placement | None = None,
) -> dict[str, Any]:
    """The batch/v1 JobSpec running task template t (also a CronJob's jobTemplate.spec)."""
    placement = placement or legacy_placement(t, config)
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
    if placement.pod is not None:
        _apply_pod_defaults(pod_spec, container, placement.pod)
    pod_labels = {**job_labels(placement.queue), **(extra_labels or {})}
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
    if placement.suspend:
        # Queued: the operator resumes it when its queue admits it (controllers/jobqueue.py,
        # controllers/queue.py). A suspended Job has no pods and its activeDeadlineSeconds
        # clock has not started.
        spec["suspend"] = True
    return spec


def items_json(spec: BackgroundJobSpec, config: OperatorConfig) -> list[str]:
    """Each item's JSON, as seeded into Redis; refuses a batch over --max-items-bytes."""
    encoded = [json.dumps(item, ensure_ascii=False) for item in spec.items or ()]
    size = sum(len(e.encode()) for e in encoded)
    if size > config.max_items_bytes:
        raise InvalidSpec(
            f"spec.items is {size} bytes of JSON, over the {config.max_items_bytes}-byte "
            "limit for inline items"
        )
    return encoded


def chunk_size(spec: BackgroundJobSpec) -> int:
    if spec.chunkSize:
        return spec.chunkSize
    if spec.items is None:  # uploaded: many items, their count unknown here
        return MAX_DEFAULT_CHUNK
    pods = spec.parallelism or 1
    return max(1, min(MAX_DEFAULT_CHUNK, len(spec.items) // (pods * CHUNKS_PER_POD)))


def batch_job_spec(
    spec: BackgroundJobSpec, bj_uid: str, config: OperatorConfig, job: dict[str, Any]
) -> dict[str, Any]:
    """Turn a task's JobSpec into a batch's: one Indexed Job of warm workers that lease
    the items (seeded in Redis under the BackgroundJob's uid) until none are left."""
    pods = spec.parallelism or 1
    batch = {k: v for k, v in job.items() if k != "backoffLimit"}
    batch.update(
        completionMode="Indexed",
        completions=pods,
        parallelism=pods,
        backoffLimitPerIndex=BATCH_POD_RESTARTS,
    )
    pod = batch["template"]["spec"]
    pod.pop("activeDeadlineSeconds", None)  # time limits are per item in a batch
    container = pod["containers"][0]
    env = [e for e in container["env"] if e["name"] not in ("BGJOBS_ARGS", "BGJOBS_KWARGS")]
    env[1:1] = [
        {"name": "BGJOBS_BATCH", "value": bj_uid},
        {"name": "BGJOBS_CHUNK_SIZE", "value": str(chunk_size(spec))},
        {
            "name": "BGJOBS_RETRY_ON_SOFT_TIME_LIMIT",
            "value": str(spec.retry.retryOnSoftTimeLimit).lower(),
        },
    ]
    if spec.maxFailedItems is not None:
        env.insert(2, {"name": "BGJOBS_MAX_FAILED_ITEMS", "value": str(spec.maxFailedItems)})
    source = spec.itemsFrom
    if source is not None and source.task is not None:
        producer = {"task": source.task, "args": source.args, "kwargs": source.kwargs}
        env.insert(2, _literal_env("BGJOBS_PRODUCER", json.dumps(producer)))
    container["env"] = env
    return batch


def owner_reference(body: dict[str, Any], controller: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "name": body["metadata"]["name"],
        "uid": body["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def build_job(
    bj: dict[str, Any],
    t: TaskTemplate,
    config: OperatorConfig,
    placement: Placement | None = None,
) -> dict[str, Any]:
    """The one Job of a BackgroundJob: same name, owned by it (deleted with it)."""
    md = bj["metadata"]
    placement = placement or legacy_placement(t, config)
    job_lbls = {**job_labels(placement.queue), names.BACKGROUND_JOB: md["name"]}
    spec = job_spec(t, config, {names.BACKGROUND_JOB: md["name"]}, placement)
    if isinstance(t, BackgroundJobSpec) and t.is_batch:
        spec = batch_job_spec(t, md["uid"], config, spec)
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
        "spec": spec,
    }
