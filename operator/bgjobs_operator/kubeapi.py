"""The few Kubernetes API calls the operator makes, async, on kopf's event loop.

A thin aiohttp client rather than a generated one: the operator sends and receives plain
JSON dicts, so a generated client's model (de)serialisation is pure cost; measured in
docs/benchmarks.md, section 7 (API client). Every write goes through here, so the write
budget (README "API writes") can be read off this file: create, patch, status, Event.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from bgjobs.api import names
from bgjobs.api.v1alpha1 import GROUP, VERSION
from bgjobs_operator import fastjson
from bgjobs_operator.conditions import stamp, utcnow

log = logging.getLogger(__name__)
USER_AGENT = "bgjobs-operator/0.1"
# Bounded so one Event can never be refused for its size (etcd's request limit is 1.5 MiB,
# but a long Event helps nobody).
MAX_EVENT_MESSAGE = 1024
# A watch ends after at most 6 minutes (informer.py) and bookmarks arrive every minute; a
# read that waits longer than this is a dead connection.
WATCH_READ_TIMEOUT = 420

_CORE, _BATCH, _OURS = "/api/v1", "/apis/batch/v1", f"/apis/{GROUP}/{VERSION}"
RESOURCES: dict[str, tuple[str, str]] = {
    "Pod": (_CORE, "pods"),
    "Event": (_CORE, "events"),
    "Namespace": (_CORE, "namespaces"),
    "Job": (_BATCH, "jobs"),
    "CronJob": (_BATCH, "cronjobs"),
    **{kind: (_OURS, plural) for kind, plural in names.PLURALS.items()},
}


class Api(Protocol):
    """The narrow interface reconcilers use; tests drive them with a fake of it."""

    async def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None: ...

    async def list(
        self, kind: str, namespace: str, label_selector: str
    ) -> list[dict[str, Any]]: ...

    async def create(self, manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]: ...

    async def delete(self, kind: str, namespace: str, name: str) -> None: ...

    async def patch(
        self, kind: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]: ...

    async def replace_status(
        self, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]: ...

    async def post_event(
        self, obj: dict[str, Any], type_: str, reason: str, message: str
    ) -> None: ...


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any] | None, text: str = "") -> None:
        self.status = status
        self.body = body or {}
        self.reason = str(self.body.get("reason") or "")
        self.message = str(self.body.get("message") or text or f"HTTP {status}")
        super().__init__(f"{status} {self.reason}: {self.message}")

    @property
    def namespace_terminating(self) -> bool:
        """The namespace is being deleted: nothing new may be created in it. Not an error
        of ours, and not one that a retry would fix."""
        causes = (self.body.get("details") or {}).get("causes") or []
        return self.status == 403 and (
            any(c.get("reason") == "NamespaceTerminating" for c in causes)
            or "because it is being terminated" in self.message
        )


@dataclass
class Credentials:
    server: str
    ssl_context: ssl.SSLContext | bool
    token: str | None = None
    token_file: str | None = None  # in-cluster: the kubelet rotates the projected token


def load_credentials(kubeconfig: str | None = None) -> Credentials:
    """In-cluster service account, else the kubeconfig (KUBECONFIG or ~/.kube/config).
    The kubernetes package only parses the configuration here; it makes no calls."""
    from kubernetes import client, config

    token_file = None
    try:
        if kubeconfig:
            raise config.ConfigException("a kubeconfig was named")
        config.load_incluster_config()
        token_file = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    except config.ConfigException:
        config.load_kube_config(config_file=kubeconfig)
    cfg = client.Configuration.get_default_copy()
    if cfg.verify_ssl:
        ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
        if cfg.cert_file:
            ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
        if not cfg.assert_hostname and cfg.assert_hostname is not None:
            ctx.check_hostname = False
        tls: ssl.SSLContext | bool = ctx
    else:
        tls = False
    bearer = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
    token = bearer.split(" ", 1)[1] if bearer and bearer.startswith("Bearer ") else bearer
    return Credentials(
        server=cfg.host.rstrip("/"), ssl_context=tls, token=token, token_file=token_file
    )


class KubeApi:
    def __init__(self, creds: Credentials, pool_size: int = 32) -> None:
        self.creds = creds
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None
        self._watch_session: aiohttp.ClientSession | None = None
        self._token, self._token_read = creds.token, time.monotonic()

    def _headers(self) -> dict[str, str]:
        if self.creds.token_file and time.monotonic() - self._token_read > 60:
            try:
                with open(self.creds.token_file) as f:
                    self._token = f.read().strip()
                self._token_read = time.monotonic()
            except OSError as exc:
                log.warning("could not re-read the service-account token: %s", exc)
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.creds.ssl_context, limit=self._pool_size),
                timeout=aiohttp.ClientTimeout(total=60),
                json_serialize=json.dumps,
            )
        return self._session

    async def close(self) -> None:
        for session in (self._session, self._watch_session):
            if session is not None:
                await session.close()

    @contextlib.asynccontextmanager
    async def stream(
        self, path: str, params: dict[str, str]
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """A watch: the response's lines, one event each. Its own connection pool, so
        long-lived watches never hold the connections the requests need; no total timeout
        (the server ends the watch), but a read that stalls past the server's own end of
        it means a dead connection."""
        if self._watch_session is None or self._watch_session.closed:
            self._watch_session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.creds.ssl_context, limit=0),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=30, sock_read=WATCH_READ_TIMEOUT
                ),
            )
        async with self._watch_session.get(
            self.creds.server + path, params=params, headers=self._headers()
        ) as resp:
            if resp.status >= 400:
                raw = await resp.read()
                try:
                    parsed = fastjson.loads(raw) if raw else None
                except ValueError:
                    parsed = None
                body = parsed if isinstance(parsed, dict) else None
                raise ApiError(resp.status, body, raw.decode(errors="replace"))

            async def lines() -> AsyncIterator[bytes]:
                buffer = bytearray()
                async for chunk in resp.content.iter_any():
                    for line in split_lines(buffer, chunk):
                        yield line

            yield lines()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        headers = self._headers()
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = fastjson.dumps(body)
        async with self.session.request(
            method, self.creds.server + path, data=data, headers=headers, params=params
        ) as resp:
            raw = await resp.read()
            try:
                parsed = fastjson.loads(raw) if raw else {}
            except ValueError:
                parsed = None
            if resp.status >= 400:
                text = raw.decode(errors="replace")
                raise ApiError(resp.status, parsed if isinstance(parsed, dict) else None, text)
            return parsed if isinstance(parsed, dict) else {}

    @staticmethod
    def path(kind: str, namespace: str | None, name: str | None = None, sub: str = "") -> str:
        prefix, plural = RESOURCES[kind]
        path = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
        if name:
            path += f"/{name}"
        return path + (f"/{sub}" if sub else "")

    # --- reads ---------------------------------------------------------------------------
    async def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return await self.request("GET", self.path(kind, namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        resp = await self.request(
            "GET", self.path(kind, namespace), params={"labelSelector": label_selector}
        )
        return list(resp.get("items") or [])

    # --- writes --------------------------------------------------------------------------
    async def create(self, manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create-or-adopt by deterministic name: an object that already exists under the
        name is returned as is (the caller checks that it is the one it wants); never a
        second one. Returns (object, created)."""
        md = manifest["metadata"]
        path = self.path(manifest["kind"], md.get("namespace"))
        try:
            return await self.request("POST", path, manifest), True
        except ApiError as exc:
            if exc.status != 409:
                raise
        found = await self.get(manifest["kind"], md.get("namespace"), md["name"])
        if found is None:  # deleted between the conflict and the read: try once more
            return await self.request("POST", path, manifest), True
        return found, False

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        try:
            await self.request(
                "DELETE",
                self.path(kind, namespace, name),
                {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"},
            )
        except ApiError as exc:
            if exc.status != 404:
                raise

    async def patch(
        self, kind: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        return await self.request(
            "PATCH", self.path(kind, namespace, name), patch, "application/merge-patch+json"
        )

    async def replace_status(
        self, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Write the whole status. A JSON Patch, not a merge patch: a merge patch reads
        `null` as "delete this key", which would strip the nulls out of a task's result
        (and any other user data in status)."""
        ops = [{"op": "add", "path": "/status", "value": status}]
        return await self.request(
            "PATCH",
            self.path(kind, namespace, name, "status"),
            ops,
            "application/json-patch+json",
        )

    async def post_event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event on obj; failures are logged, never raised (an Event is a
        courtesy, the status is the record)."""
        md = obj["metadata"]
        ts = stamp(utcnow())
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
            "message": message[:MAX_EVENT_MESSAGE],
            "source": {"component": names.COMPONENT},
            "reportingComponent": names.COMPONENT,
            "reportingInstance": os.environ.get("HOSTNAME", names.COMPONENT),
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
        }
        try:
            await self.request("POST", self.path("Event", md["namespace"]), event)
        except (TimeoutError, ApiError, aiohttp.ClientError) as exc:
            level = (
                logging.DEBUG
                if isinstance(exc, ApiError) and exc.namespace_terminating
                else logging.WARNING
            )
            log.log(
                level,
                "could not post event %s on %s/%s: %s",
                reason,
                md["namespace"],
                md["name"],
                exc,
            )


def split_lines(buffer: bytearray, chunk: bytes) -> Iterator[bytes]:
    """Append a chunk of a watch stream and yield the complete lines it finished (a line is
    one event; an object of a megabyte arrives in many chunks)."""
    start = len(buffer)
    buffer += chunk
    begin = 0
    while True:
        end = buffer.find(b"\n", max(start, begin))
        if end < 0:
            break
        line = bytes(buffer[begin:end])
        begin = end + 1
        if line.strip():
            yield line
    del buffer[:begin]
