"""A minimal Kubernetes REST client over plain dicts for the process node.

The node handles every pod of the cluster, so it avoids the generated client's slow
model deserialisation and talks JSON directly."""

from __future__ import annotations

import base64
import json
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import requests
import yaml


class Kube:
    def __init__(self, kubeconfig: str) -> None:
        with open(kubeconfig) as f:
            cfg = yaml.safe_load(f)
        cluster = cfg["clusters"][0]["cluster"]
        self.server = cluster["server"].rstrip("/")
        self.token = cfg["users"][0]["user"]["token"]
        with tempfile.NamedTemporaryFile("wb", suffix=".crt", delete=False) as ca:
            ca.write(base64.b64decode(cluster["certificate-authority-data"]))
        self.ca = ca.name
        self._local = threading.local()

    @property
    def session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.headers["Authorization"] = f"Bearer {self.token}"
            s.headers["User-Agent"] = "devcluster-process-node"
            s.verify = self.ca
            self._local.session = s
        return s

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        ok404: bool = False,
        **params: Any,
    ) -> dict[str, Any] | None:
        resp = self.session.request(
            method,
            self.server + path,
            params=params or None,
            data=None if body is None else json.dumps(body),
            headers={"Content-Type": content_type},
            timeout=30,
            verify=self.ca,
        )
        if ok404 and resp.status_code in (404, 409):
            return None
        if resp.status_code >= 400:
            raise ApiError(resp.status_code, resp.text)
        return resp.json() if resp.content else {}

    def patch_status(self, path: str, status: dict[str, Any]) -> None:
        self.request(
            "PATCH",
            path + "/status",
            {"status": status},
            content_type="application/strategic-merge-patch+json",
            ok404=True,
        )

    def watch(self, path: str, resource_version: str) -> Iterator[dict[str, Any]]:
        resp = self.session.get(
            self.server + path,
            params={
                "watch": "1",
                "resourceVersion": resource_version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": "300",
            },
            stream=True,
            timeout=(10, 330),
            verify=self.ca,
        )
        if resp.status_code >= 400:
            raise ApiError(resp.status_code, resp.text)
        with resp:
            for line in resp.iter_lines():
                if line:
                    yield json.loads(line)


class ApiError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status
