"""A watch cache of the bgjobs kinds: one thread per kind lists once, then watches from
that resourceVersion, and lists again when the watch expires (410) or fails. Pages and
live updates read only this cache, so an open page costs the API server nothing beyond
these shared watches."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from bgjobs.api.v1alpha1 import GROUP, VERSION
from bgjobs.client.constants import BACKGROUND_JOBS, DEAD_LETTERS, JOB_QUEUES, JOB_WORKFLOWS

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
Obj = dict[str, Any]

# Each kind the dashboard shows, by its plural.
KINDS: dict[str, str] = {
    BACKGROUND_JOBS: "BackgroundJob",
    JOB_WORKFLOWS: "JobWorkflow",
    "jobschedules": "JobSchedule",
    DEAD_LETTERS: "DeadLetter",
    JOB_QUEUES: "JobQueue",
}
WATCH_SECONDS = 300
RETRY_SECONDS = (1, 2, 5, 10, 30)


@dataclass(frozen=True)
class Change:
    seq: int
    plural: str
    key: Key


class WatchCache:
    def __init__(self, api_client: Any, namespace: str | None = None) -> None:
        from kubernetes import client

        self.custom = client.CustomObjectsApi(api_client)
        self.namespace = namespace
        self._objects: dict[str, dict[Key, Obj]] = {p: {} for p in KINDS}
        self._lock = threading.Lock()
        self._seq = 0
        self._changes: list[Change] = []  # bounded: the newest MAX_CHANGES
        self._listed: set[str] = set()
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    MAX_CHANGES = 10000

    # -- reading -------------------------------------------------------------------

    def objects(self, plural: str, namespace: str | None = None) -> list[Obj]:
        with self._lock:
            found = list(self._objects[plural].values())
        if namespace:
            found = [o for o in found if o["metadata"].get("namespace") == namespace]
        return found

    def get(self, plural: str, namespace: str, name: str) -> Obj | None:
        with self._lock:
            return self._objects[plural].get((namespace, name))

    def get_or_fetch(self, plural: str, namespace: str, name: str) -> Obj | None:
        """The cached object, or, when the watch has not delivered it yet (a link followed
        right after a create), one GET of it; None when the API server has none."""
        found = self.get(plural, namespace, name)
        if found is not None:
            return found
        from kubernetes.client.exceptions import ApiException

        try:
            obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return cast(Obj, obj)

    def namespaces(self) -> list[str]:
        with self._lock:
            return sorted({k[0] for objs in self._objects.values() for k in objs})

    @property
    def seq(self) -> int:
        return self._seq

    def changes_since(self, seq: int) -> tuple[int, list[Change]]:
        """The changes after `seq` and the newest seq; a reader that fell behind the bounded
        log gets what is left (the page then shows the newest state anyway)."""
        with self._lock:
            return self._seq, [c for c in self._changes if c.seq > seq]

    # -- feeding -------------------------------------------------------------------

    def apply(self, plural: str, event_type: str, obj: Obj) -> None:
        md = obj.get("metadata") or {}
        key = (md.get("namespace") or "", md.get("name") or "")
        with self._lock:
            if event_type == "DELETED":
                self._objects[plural].pop(key, None)
            else:
                self._objects[plural][key] = obj
            self._record(plural, [key])

    def replace(self, plural: str, items: Iterable[Obj]) -> None:
        """A fresh listing: objects no longer there are gone, every listed one counts as
        changed."""
        fresh = {((o["metadata"].get("namespace") or ""), o["metadata"]["name"]): o for o in items}
        with self._lock:
            gone = set(self._objects[plural]) - set(fresh)
            self._objects[plural] = fresh
            self._record(plural, [*gone, *fresh])
            self._listed.add(plural)
            if self._listed == set(KINDS):
                self.synced.set()

    def _record(self, plural: str, keys: list[Key]) -> None:
        """Append changes to the bounded log (the caller holds the lock)."""
        for key in keys:
            self._seq += 1
            self._changes.append(Change(self._seq, plural, key))
        if len(self._changes) > self.MAX_CHANGES:
            del self._changes[: len(self._changes) - self.MAX_CHANGES]

    # -- the watch threads ------------------------------------------------------------

    def start(self) -> None:
        for plural in KINDS:
            t = threading.Thread(target=self._run, args=(plural,), name=f"watch-{plural}")
            t.daemon = True
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()

    def _lister(self, plural: str) -> tuple[Any, tuple[str, ...]]:
        """The list call for this kind and its arguments (a watch is the same call)."""
        if self.namespace:
            return self.custom.list_namespaced_custom_object, (
                GROUP,
                VERSION,
                self.namespace,
                plural,
            )
        return self.custom.list_cluster_custom_object, (GROUP, VERSION, plural)

    def _run(self, plural: str) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        failures = 0
        while not self._stop.is_set():
            try:
                func, args = self._lister(plural)
                listing = cast(dict[str, Any], func(*args))
                self.replace(plural, listing.get("items") or [])
                rv = listing["metadata"]["resourceVersion"]
                failures = 0
                while not self._stop.is_set():
                    w = watch.Watch()
                    for event in w.stream(
                        func,
                        *args,
                        resource_version=rv,
                        timeout_seconds=WATCH_SECONDS,
                        allow_watch_bookmarks=True,
                    ):
                        obj = event["object"]
                        rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                        if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                            self.apply(plural, event["type"], obj)
                        if self._stop.is_set():
                            break
            except ApiException as exc:
                if exc.status == 410:  # the watch expired: list again
                    continue
                failures += 1
                log.warning("watching %s failed (%s); retrying", plural, exc.reason)
            except Exception as exc:  # noqa: BLE001 - a watch thread must outlive any failure
                failures += 1
                log.warning("watching %s failed: %s; retrying", plural, exc)
            self._stop.wait(RETRY_SECONDS[min(failures, len(RETRY_SECONDS)) - 1] if failures else 0)
