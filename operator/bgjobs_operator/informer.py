"""List, then watch: the operator's own informer for its two busy resources.

BackgroundJobs and their Jobs bring nearly every watch event the operator receives (a
Job alone changes four or five times in its life). kopf turned each event into a cause,
a handler call with a dozen keyword views and a progress-storage pass: a fifth of the
operator's CPU in a 1,000-job burst, for handlers that only store the object and enqueue
its key (docs/benchmarks.md, section 1). Here an event costs one JSON parse and the
handler: the reflector of client-go, reduced to what the handlers need.

* List (paged), hand every object to the handler, and report as deleted what the store
  holds in that scope but the list no longer has (deleted while nobody watched).
* Watch from the list's resourceVersion, with bookmarks; on `410 Gone` list again; on any
  other failure back off (1 s doubling to 30 s) and watch again from the last version.
* With peering, watch only while this replica is active (standby.py): a standby keeps no
  stream open, and a takeover lists again into the stores the takeover emptied.

kopf still runs everything else (the other resources, peering, probes).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from bgjobs_operator import fastjson
from bgjobs_operator.kubeapi import ApiError, KubeApi
from bgjobs_operator.standby import Standby
from bgjobs_operator.store import Store, key_of, rv

log = logging.getLogger(__name__)

Event = dict[str, Any]  # {"type": "ADDED" | "MODIFIED" | "DELETED" | None, "object": {...}}
Handler = Callable[[Mapping[str, Any]], None]

PAGE_SIZE = 500  # one response of a big cluster's every object leaves a heap that stays
SERVER_TIMEOUT = 300  # the API server ends a watch after this; it is then resumed
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0


class Gone(Exception):
    """The watch's resourceVersion is too old (compacted): list again."""


class Informer:
    def __init__(
        self,
        api: KubeApi,
        kind: str,
        namespace: str | None,
        store: Store,
        handler: Handler,
        label_selector: str = "",
        gate: Standby | None = None,
    ) -> None:
        self.api, self.kind, self.namespace = api, kind, namespace
        self.store, self.handler = store, handler
        self.label_selector = label_selector
        self.gate = gate
        self.listed = asyncio.Event()  # set after each complete listing
        self._what = f"{kind} watch in {namespace or 'all namespaces'}"
        self.name = f"informer-{kind}-{namespace or '*'}"

    async def run(self) -> None:
        delay = BACKOFF_FIRST
        while True:
            if self.gate is not None:
                await self.gate.wait_open()
            try:
                version: str | None = await self._list()
                delay = BACKOFF_FIRST
                while version is not None:  # None: standing by; list again when active
                    version = await self._until_standby(self._watch(version))
            except asyncio.CancelledError:
                raise
            except Gone:
                log.info("%s: history compacted, listing again", self._what)
                continue
            except (ApiError, aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                log.warning("%s failed: %s; listing again in %.0f s", self._what, exc, delay)
            except Exception:  # a bug must not end the watch for good
                log.exception("%s failed; listing again in %.0f s", self._what, delay)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, BACKOFF_MAX)

    async def _until_standby(self, watch: Any) -> str | None:
        """Run one watch; None when this replica went on standby meanwhile."""
        if self.gate is None:
            result: str = await watch
            return result
        task = asyncio.ensure_future(watch)
        closed = asyncio.ensure_future(self.gate.wait_closed())
        try:
            await asyncio.wait({task, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None

    async def _list(self) -> str:
        seen = set()
        params = {"limit": str(PAGE_SIZE)}
        if self.label_selector:
            params["labelSelector"] = self.label_selector
        while True:
            page = await self.api.request(
                "GET", self.api.path(self.kind, self.namespace), params=params
            )
            for obj in page.get("items") or []:
                obj.setdefault("kind", self.kind)
                seen.add(key_of(obj))
                self._deliver({"type": None, "object": obj})
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                break
            params["continue"] = token
        version = str(meta.get("resourceVersion") or "")
        listed_at = rv({"metadata": {"resourceVersion": version}})
        for obj in self.store.values():
            ns = obj["metadata"].get("namespace")
            if (
                (self.namespace is None or ns == self.namespace)
                and key_of(obj) not in seen
                # Newer than the listing (our own create's response): not judged by it.
                and rv(obj) <= listed_at
            ):
                self._deliver({"type": "DELETED", "object": obj})
        self.listed.set()
        return version

    async def _watch(self, version: str) -> str:
        """Follow the changes after `version` until the server ends the stream; returns the
        last version seen, to resume from."""
        params = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": version,
            # Spread the reconnections of many watches over a minute, as client-go does.
            "timeoutSeconds": str(int(SERVER_TIMEOUT * random.uniform(1.0, 1.2))),
        }
        if self.label_selector:
            params["labelSelector"] = self.label_selector
        try:
            async with self.api.stream(self.api.path(self.kind, self.namespace), params) as lines:
                async for line in lines:
                    version = self._handle(line, version)
        except ApiError as exc:
            if exc.status == 410:
                raise Gone() from exc
            raise
        return version

    def _handle(self, line: bytes, version: str) -> str:
        """One watch event into the handler; returns the version to resume from."""
        event = fastjson.loads(line)
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise ApiError(int(obj.get("code") or 500), obj)
        version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
        if kind != "BOOKMARK":
            obj.setdefault("kind", self.kind)
            self._deliver(event)
        return version

    def _deliver(self, event: Event) -> None:
        try:
            self.handler(event)
        except Exception:  # one object's bug must not stop the others' events
            md = (event.get("object") or {}).get("metadata") or {}
            log.exception(
                "%s: handling %s/%s failed", self._what, md.get("namespace"), md.get("name")
            )
