"""The dashboard's actions: each one API write, the same `kubectl bgjobs` makes (through
bgjobs.client). Each returns the page to show next and a message; API refusals raise."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from bgjobs.api.v1alpha1 import GROUP, VERSION
from bgjobs.client import Client
from bgjobs.client.workflows import WorkflowHandle

Form = Mapping[str, Any]
Action = Callable[[Any, str, Form], tuple[str, str]]


def _client(api_client: Any, ns: str) -> Client:
    return Client(namespace=ns, api_client=api_client)


def _name(form: Form) -> str:
    name = str(form.get("name") or "")
    if not name:
        raise ValueError("no object named in the form")
    return name


def _patch(api_client: Any, ns: str, plural: str, name: str, spec: dict[str, Any]) -> None:
    c = _client(api_client, ns)
    with c.errors(plural, name):
        c.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, plural, name, {"spec": spec})


def cancel(api_client: Any, ns: str, form: Form) -> tuple[str, str]:
    name = _name(form)
    _client(api_client, ns).cancel(name)
    return f"/jobs/{ns}/{name}", f"cancel requested for {name}"


def replay(api_client: Any, ns: str, form: Form) -> tuple[str, str]:
    name = _name(form)
    job = _client(api_client, ns).replay(name)
    return f"/deadletters/{ns}/{name}", f"replay requested: the operator creates {job}"


def resume_workflow(api_client: Any, ns: str, form: Form) -> tuple[str, str]:
    name = _name(form)
    n = WorkflowHandle(_client(api_client, ns), name).resume()
    return f"/workflows/{ns}/{name}", f"resume {n} requested for {name}"


def _queue(paused: bool) -> Action:
    def run(api_client: Any, ns: str, form: Form) -> tuple[str, str]:
        name = _name(form)
        _patch(api_client, ns, "jobqueues", name, {"paused": paused})
        return f"/queues?namespace={ns}", f"queue {name} {'paused' if paused else 'resumed'}"

    return run


def _schedule(suspend: bool) -> Action:
    def run(api_client: Any, ns: str, form: Form) -> tuple[str, str]:
        name = _name(form)
        _patch(api_client, ns, "jobschedules", name, {"suspend": suspend})
        return "/schedules", f"schedule {name} {'suspended' if suspend else 'resumed'}"

    return run


def submit(api_client: Any, ns: str, form: Form) -> tuple[str, str]:
    task = str(form.get("task") or "").strip()
    if not ns or not task:
        raise ValueError("namespace and task are required")
    args = json.loads(str(form.get("args") or "[]") or "[]")
    kwargs = json.loads(str(form.get("kwargs") or "{}") or "{}")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError("args must be a JSON array and kwargs a JSON object")
    queue = str(form.get("queue") or "").strip() or None
    handle = _client(api_client, ns).submit_call(task, args, kwargs, queue=queue)
    return f"/jobs/{ns}/{handle.name}", f"submitted {task} as {handle.name}"


ACTIONS: dict[str, Action] = {
    "cancel": cancel,
    "replay": replay,
    # A batch's DeadLetter lists its failed items: its replay runs only them.
    "replay-failed-items": replay,
    "resume-workflow": resume_workflow,
    "pause-queue": _queue(True),
    "resume-queue": _queue(False),
    "suspend-schedule": _schedule(True),
    "resume-schedule": _schedule(False),
    "submit": submit,
}
