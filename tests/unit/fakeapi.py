"""A fake of the operator's narrow KubeApi interface: objects in a dict, resourceVersions
counting up, create-or-adopt on name conflicts, and a record of every write. Enough to
drive the reconcilers through their cases without a cluster; the integration suite runs
the same paths against the real API server."""

from __future__ import annotations

import copy
import itertools
from typing import Any

from bgjobs_operator.kubeapi import ApiError

ObjKey = tuple[str, str | None, str]


class FakeApi:
    def __init__(self) -> None:
        self.objects: dict[ObjKey, dict[str, Any]] = {}
        self.writes: list[tuple[str, str, str]] = []  # (verb, kind, name)
        self.events: list[tuple[str, str, str]] = []  # (object name, reason, message)
        self.fail_next: dict[str, Exception] = {}  # verb -> raise once
        self.pods: list[dict[str, Any]] = []
        self.lists: list[str] = []  # kinds listed
        self._rv = itertools.count(100)
        self._uid = itertools.count(1)

    def _maybe_fail(self, verb: str) -> None:
        exc = self.fail_next.pop(verb, None)
        if exc is not None:
            raise exc

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        md = obj.setdefault("metadata", {})
        md.setdefault("uid", f"uid-{next(self._uid)}")
        md["resourceVersion"] = str(next(self._rv))
        self.objects[(obj["kind"], md.get("namespace"), md["name"])] = obj
        return copy.deepcopy(obj)

    async def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        obj = self.objects.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    async def list(self, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        self.lists.append(kind)
        if kind == "Pod":
            return copy.deepcopy(self.pods)
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in self.objects.items()
            if k == kind and ns == namespace
        ]

    async def create(self, manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        self._maybe_fail("create")
        md = manifest["metadata"]
        existing = self.objects.get((manifest["kind"], md.get("namespace"), md["name"]))
        if existing is not None:
            return copy.deepcopy(existing), False
        self.writes.append(("create", manifest["kind"], md["name"]))
        return self.add(manifest), True

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        self._maybe_fail("delete")
        self.writes.append(("delete", kind, name))
        self.objects.pop((kind, namespace, name), None)

    async def patch(
        self, kind: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        self._maybe_fail("patch")
        obj = self.objects[(kind, namespace, name)]
        for section, values in patch.items():
            obj.setdefault(section, {}).update(values)
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        self.writes.append(("patch", kind, name))
        return copy.deepcopy(obj)

    async def replace_status(
        self, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        self._maybe_fail("status")
        obj = self.objects.get((kind, namespace, name))
        if obj is None:
            raise ApiError(404, {"reason": "NotFound", "message": f"{name} not found"})
        obj["status"] = copy.deepcopy(status)
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        self.writes.append(("status", kind, name))
        return copy.deepcopy(obj)

    async def post_event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((obj["metadata"]["name"], reason, message))

    def count(self, verb: str, kind: str) -> int:
        return sum(1 for v, k, _ in self.writes if v == verb and k == kind)
