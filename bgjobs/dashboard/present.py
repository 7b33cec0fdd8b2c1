"""What the pages show of each object, from the objects as the API returns them: pure."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from bgjobs.client.views import DeadLetterView, JobView
from bgjobs.client.workflows import WorkflowView

TRUNCATE_AT = 2000  # characters of a value shown before "show all"


def as_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=1, sort_keys=False)


def truncated(text: str, limit: int = TRUNCATE_AT) -> tuple[str, bool]:
    """The start of a long value and whether it was cut (the page offers the whole)."""
    return (text, False) if len(text) <= limit else (text[:limit], True)


def pending_reason(obj: Mapping[str, Any]) -> str | None:
    """Why a job is not running yet: its Queued condition while it is true."""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Queued" and c.get("status") == "True":
            return f"{c.get('reason') or 'Queued'}: {c.get('message') or ''}".rstrip(": ")
    return None


def job_row(obj: Mapping[str, Any]) -> dict[str, Any]:
    view = JobView.from_object(obj)
    percent = view.percent
    if view.succeeded and percent is not None:
        percent = 100.0  # a finished task is done, whatever it last reported
    return {
        "key": f"{view.namespace}/{view.name}",
        "namespace": view.namespace,
        "name": view.name,
        "task": view.task,
        "queue": view.status.queue or view.queue,
        "phase": view.phase,
        "percent": None if percent is None else round(percent, 1),
        "attempts": view.attempts,
        "created": view.created.isoformat() if view.created else "",
        "pending": pending_reason(obj),
        "batch": view.batch,
        "labels": view.labels,
    }


class RowMemo:
    """job_row per object, kept until the object's resourceVersion changes: a page over
    10,000 jobs then derives only what changed since the last view, not every row."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}

    def rows(self, objs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for obj in objs:
            md = obj.get("metadata") or {}
            key, rv = (md.get("namespace") or "", md.get("name") or ""), md.get("resourceVersion")
            hit = self._rows.get(key)
            if hit is None or hit[0] != rv or rv is None:
                hit = (str(rv), job_row(obj))
                self._rows[key] = hit
            out.append(hit[1])
        if len(self._rows) > 2 * len(objs) + 1000:  # forget deleted jobs now and then
            live = {
                ((o.get("metadata") or {}).get("namespace") or "", o["metadata"]["name"])
                for o in objs
            }
            self._rows = {k: v for k, v in self._rows.items() if k in live}
        return out


def pod_attempts(pods: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per pod of the job's Job, oldest first: each attempt's phase, exit code and
    the error its worker wrote as the termination message (the Job keeps failed pods
    until its TTL, so every attempt since then is here, not only the last)."""
    from bgjobs_worker.termination import parse_termination_message

    rows = []
    ordered = sorted(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")
    for n, pod in enumerate(ordered, 1):
        st = pod.get("status") or {}
        term: dict[str, Any] = {}
        for cs in st.get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or term
        doc = parse_termination_message(term.get("message")) or {}
        error = doc.get("error") or {}
        rows.append(
            {
                "n": n,
                "pod": (pod.get("metadata") or {}).get("name", ""),
                "phase": st.get("phase") or "",
                "exitCode": term.get("exitCode"),
                "reason": term.get("reason") or "",
                "error": f"{error.get('type') or ''}: {error.get('message') or ''}"
                if error
                else "",
                "finished": term.get("finishedAt") or "",
            }
        )
    return rows


def matches(row: Mapping[str, Any], filters: Mapping[str, str]) -> bool:
    """The jobs page's filters: namespace, phase, task (prefix), queue, label (k=v)."""
    if filters.get("namespace") and row["namespace"] != filters["namespace"]:
        return False
    if filters.get("phase") and row["phase"] != filters["phase"]:
        return False
    if filters.get("task") and not row["task"].startswith(filters["task"]):
        return False
    if filters.get("queue") and row["queue"] != filters["queue"]:
        return False
    label = filters.get("label")
    if label:
        k, _, v = label.partition("=")
        if row["labels"].get(k.strip()) != v.strip():
            return False
    return True


def page_of(rows: list[Any], page: int, size: int) -> tuple[list[Any], int]:
    """One page (1-based, clamped) and the number of pages."""
    pages = max(1, -(-len(rows) // size))
    page = min(max(1, page), pages)
    return rows[(page - 1) * size : page * size], pages


def workflow_steps(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each step with its dependencies (spec) and phase/progress (status)."""
    view = WorkflowView.from_object(obj)
    status = {s["name"]: s for s in view.steps}
    out = []
    for step in (obj.get("spec") or {}).get("steps") or []:
        st = status.get(step["name"], {})
        out.append(
            {
                "name": step["name"],
                "task": step.get("task", ""),
                "dependsOn": list(step.get("dependsOn") or []),
                "phase": st.get("phase") or "Waiting",
                "progress": st.get("progress"),
                "jobName": st.get("jobName"),
            }
        )
    return out


def queue_row(obj: Mapping[str, Any]) -> dict[str, Any]:
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    return {
        "paused": bool(spec.get("paused")),
        "concurrency": spec.get("concurrency"),
        "rate": spec.get("rateLimit"),
        "waiting": st.get("waiting", st.get("pending")),
        "running": st.get("running"),
        "admittedLastMinute": st.get("admittedLastMinute"),
    }


def dead_letter_row(obj: Mapping[str, Any]) -> dict[str, Any]:
    v = DeadLetterView.from_object(obj)
    spec = obj.get("spec") or {}
    return {
        "key": f"{v.namespace}/{v.name}",
        "namespace": v.namespace,
        "name": v.name,
        "job": v.job_name,
        "task": v.task,
        "error": v.error or {},
        "attempts": v.attempts,
        "critical": v.critical,
        "replays": v.replays,
        "replayed": v.replayed_jobs,
        "failedItems": spec.get("failedItemsCount"),
        "failedAt": v.failed_at.isoformat() if v.failed_at else "",
    }
