"""Process-wide state of a running operator: configuration, API access, the caches fed by
the watch streams, and per-object locks. Handlers get it from `runtime.get()`."""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import redis

from bgjobs_operator.config import OperatorConfig
from bgjobs_operator.kubeapi import KubeApi
from bgjobs_operator.status import awaits_dead_letter

Key = tuple[str, str]


def rv(obj: dict[str, Any]) -> int:
    """resourceVersion as a number, to tell the newer of two copies of one object (etcd
    revisions grow monotonically; anything unparsable counts as oldest)."""
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return -1


# What the caches keep of an object's metadata.
_META_KEYS = (
    "name",
    "namespace",
    "uid",
    "generation",
    "labels",
    "ownerReferences",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
)


def _meta(md: dict[str, Any], annotations: dict[str, Any] | None) -> dict[str, Any]:
    return {**{k: md.get(k) for k in _META_KEYS}, "annotations": annotations}


def trim_job(job: dict[str, Any]) -> dict[str, Any]:
    """What the operator needs of a batch Job; keeps memory flat with many jobs."""
    return {
        "metadata": _meta(job["metadata"], None),
        "spec": {"suspend": (job.get("spec") or {}).get("suspend")},
        "status": job.get("status") or {},
    }


def trim_object(obj: dict[str, Any]) -> dict[str, Any]:
    md = obj["metadata"]
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": _meta(md, md.get("annotations")),
        "spec": obj.get("spec") or {},
        "status": obj.get("status") or {},
    }


_FINISHED_STATUS_KEYS = (
    "phase",
    "deadLetter",
    "error",
    "attempts",
    "startTime",
    "completionTime",
    "jobName",
)


def compact_if_finished(bj: dict[str, Any]) -> dict[str, Any]:
    """A finished BackgroundJob needs little more than its phase (schedule history, the
    jobs gauge); keeping the rest for thousands of old jobs is what makes memory grow.
    A Failed one still waiting for its DeadLetter keeps everything: that needs the spec."""
    st = bj.get("status") or {}
    if st.get("phase") not in ("Succeeded", "Failed", "Cancelled") or awaits_dead_letter(st):
        return bj
    md, spec = bj["metadata"], bj.get("spec") or {}
    # Our own annotations only: kubectl's last-applied-configuration is a copy of the spec.
    ours = {k: v for k, v in (md.get("annotations") or {}).items() if k.startswith("bgjobs.dev/")}
    return {
        "apiVersion": bj.get("apiVersion"),
        "kind": bj.get("kind"),
        "metadata": _meta(md, ours),
        "spec": {k: spec.get(k) for k in ("task", "queue", "critical")},
        "status": {k: st[k] for k in _FINISHED_STATUS_KEYS if st.get(k) is not None},
    }


@dataclass
class Runtime:
    config: OperatorConfig
    api: KubeApi
    redis: redis.Redis | None = None
    jobs: dict[Key, dict[str, Any]] = field(default_factory=dict)
    backgroundjobs: dict[Key, dict[str, Any]] = field(default_factory=dict)
    schedules: dict[Key, dict[str, Any]] = field(default_factory=dict)
    cronjobs: dict[Key, dict[str, Any]] = field(default_factory=dict)
    resumed: set[Key] = field(default_factory=set)  # queued Jobs resumed, not yet seen so
    _locks: defaultdict[str, threading.Lock] = field(
        default_factory=lambda: defaultdict(threading.Lock)
    )
    _locks_guard: threading.Lock = field(default_factory=threading.Lock)

    def lock(self, uid: str) -> threading.Lock:
        """One lock per object: BackgroundJob and Job events for one job may arrive on
        different handler threads at once."""
        with self._locks_guard:
            return self._locks[uid]

    def forget_lock(self, uid: str) -> None:
        with self._locks_guard:
            self._locks.pop(uid, None)

    def remember(self, store: dict[Key, dict[str, Any]], obj: dict[str, Any]) -> dict[str, Any]:
        """Keep the newest copy of obj (watch event or our own write's response)."""
        if store is self.backgroundjobs:
            obj = compact_if_finished(obj)
        md = obj["metadata"]
        key = (md["namespace"], md["name"])
        old = store.get(key)
        if old is not None and old["metadata"].get("uid") == md.get("uid") and rv(old) > rv(obj):
            return old
        store[key] = obj
        return obj

    def read_redis(self, fn: Any, *args: Any) -> Any:
        """Call a bgjobs_worker.redis_keys reader; None when Redis is absent or down."""
        if self.redis is None:
            return None
        try:
            return fn(self.redis, *args)
        except (redis.RedisError, OSError):
            return None


_current: Runtime | None = None


def install(rt: Runtime) -> None:
    global _current
    _current = rt


def get() -> Runtime:
    if _current is None:
        raise RuntimeError("the operator runtime is not installed (bgjobs_operator.main)")
    return _current
