"""Names and the BackgroundJob object a submission creates: pure functions."""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from bgjobs.api.v1alpha1 import API_VERSION, MAX_JOB_NAME
from bgjobs.client.constants import IDEMPOTENCY_ANNOTATION
from bgjobs.errors import (
    InvalidSpec,
)
from bgjobs_worker.batch_keys import as_item

# --- names (pure) ---------------------------------------------------------------------

# The Kubernetes name generator's alphabet (no vowels, no look-alike digits), so generated
# names never spell words and read like the ones `generateName` gives.
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_SUFFIX_LEN = 5
_KEY_HASH_LEN = 10


def task_prefix(task: str, max_len: int = MAX_JOB_NAME - 1 - _SUFFIX_LEN) -> str:
    """A DNS-label-safe prefix from a task name: ``reports.Export`` -> ``reports-export``."""
    prefix = re.sub(r"[^a-z0-9]+", "-", task.lower()).strip("-")
    prefix = prefix[:max_len].rstrip("-")
    return prefix or "job"


def generate_name(task: str, rand: Callable[[str], str] = secrets.choice) -> str:
    """A fresh unique name for a run of ``task``, ``<task-prefix>-<5 random characters>``
    (at most 63 characters, a DNS label: the batch Job gets the same name)."""
    suffix = "".join(rand(_SUFFIX_ALPHABET) for _ in range(_SUFFIX_LEN))
    return f"{task_prefix(task)}-{suffix}"


def idempotent_name(task: str, key: str) -> str:
    """The name a submission with idempotency ``key`` always gets:
    ``<task-prefix>-<sha256(key)[:10]>``. Keys are therefore scoped per task prefix."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:_KEY_HASH_LEN]
    return f"{task_prefix(task, MAX_JOB_NAME - 1 - _KEY_HASH_LEN)}-{digest}"


# --- building a BackgroundJob (pure) --------------------------------------------------


def _seconds(value: float | timedelta | None) -> int | None:
    """Whole seconds for a CRD integer field, rounded up (a limit is never shortened)."""
    if value is None:
        return None
    secs = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if secs <= 0:
        raise InvalidSpec(f"time limits and deadlines must be positive, got {value!r}")
    return max(1, math.ceil(secs))


def _exception_names(items: Sequence[str | type[BaseException]] | None) -> list[str] | None:
    if items is None:
        return None
    # A bare class name matches any class of that name in the raised exception's hierarchy
    # (see RetryPolicy.retryOn), which survives the app and the worker importing the class
    # under different module paths.
    return [i if isinstance(i, str) else i.__name__ for i in items]


def _env_list(env: Mapping[str, str] | Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    if env is None:
        return []
    if isinstance(env, Mapping):
        return [{"name": str(k), "value": str(v)} for k, v in env.items()]
    return [dict(e) for e in env]


def _json_value(what: str, value: Any) -> Any:
    """A JSON round trip, so the caller learns at once what the worker would not receive."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidSpec(f"{what} must be JSON-serializable: {exc}") from None


def encode_items(items: Sequence[Any]) -> list[str]:
    """Each batch item's JSON, as an upload holds it (refusing what JSON cannot carry)."""
    try:
        return [json.dumps(as_item(i), ensure_ascii=False, allow_nan=False) for i in items]
    except (TypeError, ValueError) as exc:
        raise InvalidSpec(f"items must be JSON-serializable: {exc}") from None


def build_background_job(
    task: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    name: str,
    idempotency_key: str | None = None,
    queue: str | None = None,
    max_retries: int | None = None,
    retry_on: Sequence[str | type[BaseException]] | None = None,
    permanent_on: Sequence[str | type[BaseException]] | None = None,
    soft_time_limit: float | timedelta | None = None,
    time_limit: float | timedelta | None = None,
    deadline: float | timedelta | None = None,
    critical: bool | None = None,
    image: str | None = None,
    env: Mapping[str, str] | Sequence[Mapping[str, Any]] | None = None,
    labels: Mapping[str, str] | None = None,
    priority: int | None = None,
    countdown: float | timedelta | None = None,
    eta: datetime | None = None,
    items: Sequence[Any] | None = None,
    items_from: str | None = None,
    items_from_task: Mapping[str, Any] | None = None,
    parallelism: int | None = None,
    chunk_size: int | None = None,
    max_failed_items: int | None = None,
) -> dict[str, Any]:
    """The BackgroundJob object for a submission. Options left as None are left out, so the
    CRD's defaults apply (maxRetries 3, queue from the routes or "default", ...).
    ``countdown`` (seconds or timedelta, Celery's countdown=, RQ's enqueue_in) and ``eta``
    (an aware datetime, Celery's eta=, RQ's enqueue_at) delay the start; not both."""
    spec: dict[str, Any] = {
        "task": task,
        "args": _json_value("args", list(args)),
        "kwargs": _json_value("kwargs", dict(kwargs or {})),
    }
    retry: dict[str, Any] = {}
    if max_retries is not None:
        retry["maxRetries"] = int(max_retries)
    if (names := _exception_names(retry_on)) is not None:
        retry["retryOn"] = names
    if (names := _exception_names(permanent_on)) is not None:
        retry["permanentOn"] = names
    if retry:
        spec["retry"] = retry
    limits = {
        k: v
        for k, v in (
            ("softSeconds", _seconds(soft_time_limit)),
            ("hardSeconds", _seconds(time_limit)),
        )
        if v is not None
    }
    if limits:
        spec["timeLimits"] = limits
    if deadline is not None:
        spec["activeDeadlineSeconds"] = _seconds(deadline)
    if queue is not None:
        spec["queue"] = queue
    if priority is not None:
        spec["priority"] = int(priority)
    if countdown is not None and eta is not None:
        raise InvalidSpec("give countdown or eta, not both")
    if countdown is not None:
        spec["countdownSeconds"] = _seconds(countdown)
    if eta is not None:
        if eta.tzinfo is None:
            raise InvalidSpec("eta must be an aware datetime (e.g. datetime.now(UTC) + ...)")
        spec["startAt"] = eta.isoformat()
    if critical is not None:
        spec["critical"] = bool(critical)
    if image is not None:
        spec["image"] = image
    if env:
        spec["env"] = _env_list(env)
    if items is not None:
        spec["items"] = _json_value("items", [as_item(i) for i in items])
    if items_from is not None:
        spec["itemsFrom"] = {"upload": items_from}
    if items_from_task is not None:
        spec["itemsFrom"] = _json_value("itemsFrom", items_from_task)
    for field, value in (
        ("parallelism", parallelism),
        ("chunkSize", chunk_size),
        ("maxFailedItems", max_failed_items),
    ):
        if value is not None:
            spec[field] = int(value)
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = {str(k): str(v) for k, v in labels.items()}
    if idempotency_key is not None:
        metadata["annotations"] = {IDEMPOTENCY_ANNOTATION: idempotency_key}
    return {"apiVersion": API_VERSION, "kind": "BackgroundJob", "metadata": metadata, "spec": spec}
