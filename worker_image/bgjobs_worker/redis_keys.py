"""Every Redis key and channel bgjobs uses, and how to read them back.

The worker writes; the operator (and anyone else) reads through the functions below, so the
names and formats live in this one module. It imports nothing beyond the standard library.

=================================  ======  ===================================================
key / channel                      type    content (written by the worker)
=================================  ======  ===================================================
``bgjobs:{ns}:{uid}:attempts``     string  integer, INCR at the start of every attempt (pod);
                                           its value is that attempt's 1-based number.
                                           DECR when an attempt fails after SIGTERM (a
                                           disruption the Job does not count).
                                           TTL ``STATE_TTL_SECONDS`` (7 days).
``bgjobs:{ns}:{uid}:progress``     hash    the latest progress snapshot, replaced whole:
                                           ``current``, ``total``, ``percent`` (JSON numbers),
                                           ``stage``, ``message`` (strings), ``updatedAt``
                                           (RFC 3339 UTC), ``attempt`` (int). A field the task
                                           did not report is absent. TTL 7 days.
``bgjobs:{ns}:{uid}:result``       string  JSON, written once when an attempt ends:
                                           ``{"status": "SUCCESS", "result": ..., "attempt": n,
                                           "finishedAt": ...}`` or ``{"status": "FAILURE",
                                           "exitCode": c, "error": {"type", "message",
                                           "traceback"}, "attempt": n, "finishedAt": ...}``.
                                           TTL ``BGJOBS_RESULT_TTL`` (default 1 day).
``bgjobs:progress`` (channel)      pub/sub ``"{ns}/{job_name}"`` after every progress or result
                                           write: a nudge to re-read the keys, no payload.
=================================  ======  ===================================================

``ns`` is the namespace and ``uid`` the ``metadata.uid`` of the batch/v1 *Job* running the
task (the worker reads it from its pod's ``batch.kubernetes.io/controller-uid`` label), so a
BackgroundJob and every run of a JobSchedule have their own keys, and a job deleted and
re-created under the same name starts from clean keys.

The ``read_*`` functions take a synchronous redis-py client; with ``redis.asyncio`` await the
raw command yourself and pass its reply to the matching ``decode_*`` function.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

STATE_TTL_SECONDS = 7 * 24 * 3600
DEFAULT_RESULT_TTL_SECONDS = 24 * 3600
PROGRESS_CHANNEL = "bgjobs:progress"

_NUMERIC_PROGRESS_FIELDS = ("current", "total", "percent")
_TEXT_PROGRESS_FIELDS = ("stage", "message", "updatedAt")


def key_prefix(namespace: str, job_uid: str) -> str:
    return f"bgjobs:{namespace}:{job_uid}:"


def attempts_key(namespace: str, job_uid: str) -> str:
    return key_prefix(namespace, job_uid) + "attempts"


def progress_key(namespace: str, job_uid: str) -> str:
    return key_prefix(namespace, job_uid) + "progress"


def result_key(namespace: str, job_uid: str) -> str:
    return key_prefix(namespace, job_uid) + "result"


def job_keys(namespace: str, job_uid: str) -> list[str]:
    """All keys of one job, e.g. to delete them with the BackgroundJob."""
    return [f(namespace, job_uid) for f in (attempts_key, progress_key, result_key)]


def progress_notice(namespace: str, job_name: str) -> str:
    return f"{namespace}/{job_name}"


def parse_progress_notice(data: str | bytes) -> tuple[str, str] | None:
    """``(namespace, job_name)`` from a message on PROGRESS_CHANNEL, None if malformed."""
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    namespace, sep, name = text.partition("/")
    return (namespace, name) if sep and namespace and name else None


def encode_progress(snapshot: Mapping[str, Any]) -> dict[str, str]:
    """Hash fields for a snapshot from ``progress.build_progress``; None values are left out."""
    fields: dict[str, str] = {}
    for name in _NUMERIC_PROGRESS_FIELDS:
        if snapshot.get(name) is not None:
            fields[name] = json.dumps(snapshot[name])
    for name in _TEXT_PROGRESS_FIELDS:
        if snapshot.get(name) is not None:
            fields[name] = str(snapshot[name])
    if snapshot.get("attempt") is not None:
        fields["attempt"] = str(int(snapshot["attempt"]))
    return fields


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def decode_progress(raw: Mapping[Any, Any] | None) -> dict[str, Any] | None:
    """The reply of ``HGETALL progress_key`` as a dict with every field present (maybe None)."""
    if not raw:
        return None
    fields = {_text(k): _text(v) for k, v in raw.items()}
    progress: dict[str, Any] = {}
    for name in _NUMERIC_PROGRESS_FIELDS:
        try:
            progress[name] = json.loads(fields[name]) if name in fields else None
        except ValueError:
            progress[name] = None
    for name in _TEXT_PROGRESS_FIELDS:
        progress[name] = fields.get(name)
    progress["attempt"] = _int_or_none(fields.get("attempt"))
    return progress


def decode_result(raw: str | bytes | None) -> dict[str, Any] | None:
    """The reply of ``GET result_key`` as a dict, None when absent or unreadable."""
    if raw is None:
        return None
    try:
        doc = json.loads(_text(raw))
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and doc.get("status") in ("SUCCESS", "FAILURE") else None


def _int_or_none(raw: str | bytes | None) -> int | None:
    try:
        return int(_text(raw)) if raw is not None else None
    except ValueError:
        return None


def read_progress(client: Any, namespace: str, job_uid: str) -> dict[str, Any] | None:
    return decode_progress(client.hgetall(progress_key(namespace, job_uid)))


def read_result(client: Any, namespace: str, job_uid: str) -> dict[str, Any] | None:
    return decode_result(client.get(result_key(namespace, job_uid)))


def read_attempts(client: Any, namespace: str, job_uid: str) -> int | None:
    """How many attempts have started (the latest attempt's number), None before the first."""
    return _int_or_none(client.get(attempts_key(namespace, job_uid)))
