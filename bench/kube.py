"""Client-side helpers: raw-JSON watches that time when objects appear or change, and a
thread pool that creates objects in a burst. The generated client's model classes cost
milliseconds per object, so everything here reads and writes plain JSON."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client

from bgjobs.api.v1alpha1 import GROUP, VERSION

log = logging.getLogger("bench")
Obj = dict[str, Any]
OnEvent = Callable[[str, Obj, float], None]
WARM_UP = "warm-up"


def _lines(resp: Any) -> Iterator[bytes]:
    buffer = b""
    for chunk in resp.stream(65536, decode_content=True):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


class Watch:
    """List, then watch one collection; on_event(type, object, received_at) is called for
    the listed objects (as ADDED) and every later event, with time.time() on arrival."""

    def __init__(self, list_fn: Callable[..., Any], on_event: OnEvent) -> None:
        self.list_fn = list_fn
        self.on_event = on_event
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-watch", daemon=True)

    def start(self) -> Watch:
        self.thread.start()
        if not self.ready.wait(60):
            raise RuntimeError("the bench's watch could not list its collection")
        return self

    def stop(self) -> None:
        self.stopping.set()

    def _run(self) -> None:
        rv: str | None = None
        while not self.stopping.is_set():
            try:
                if rv is None:
                    resp = self.list_fn(_preload_content=False)
                    listing = json.loads(resp.data)
                    now = time.time()
                    for item in listing.get("items") or []:
                        self.on_event("ADDED", item, now)
                    rv = listing["metadata"]["resourceVersion"]
                    self.ready.set()
                resp = self.list_fn(
                    watch=True,
                    resource_version=rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=60,
                    _preload_content=False,
                )
                try:
                    for line in _lines(resp):
                        event = json.loads(line)
                        received = time.time()
                        if event.get("type") == "ERROR":
                            rv = None  # usually 410 Gone: list again
                            break
                        rv = event["object"]["metadata"]["resourceVersion"]
                        if event["type"] != "BOOKMARK":
                            self.on_event(event["type"], event["object"], received)
                        if self.stopping.is_set():
                            return
                finally:
                    resp.close()  # never hand a half-read stream back to the pool
            except Exception as exc:  # noqa: BLE001 - watches end; start again
                if self.stopping.is_set():
                    return
                log.warning("bench watch error (%s); watching again", exc)
                time.sleep(0.5)


class Tracker:
    """When each object was first seen, and when it first satisfied `done`."""

    def __init__(self, done: Callable[[Obj], bool] | None = None) -> None:
        self.done = done
        self.ignore = WARM_UP
        self.first_seen: dict[str, float] = {}
        self.done_at: dict[str, float] = {}
        self.cond = threading.Condition()

    def on_event(self, type_: str, obj: Obj, received: float) -> None:
        if type_ == "DELETED":
            return
        name = obj["metadata"]["name"]
        if name == self.ignore:
            return
        with self.cond:
            self.first_seen.setdefault(name, received)
            if self.done is not None and name not in self.done_at and self.done(obj):
                self.done_at[name] = received
            self.cond.notify_all()

    def wait_seen(self, count: int, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.first_seen) >= count, timeout)

    def wait_done(self, count: int, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.done_at) >= count, timeout)


def watch_jobs(api: client.ApiClient, namespace: str, tracker: Tracker) -> Watch:
    batch = client.BatchV1Api(api)
    return Watch(lambda **kw: batch.list_namespaced_job(namespace, **kw), tracker.on_event).start()


def watch_backgroundjobs(api: client.ApiClient, namespace: str, on_event: OnEvent) -> Watch:
    custom = client.CustomObjectsApi(api)
    return Watch(
        lambda **kw: custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, "backgroundjobs", **kw
        ),
        on_event,
    ).start()


def job_complete(job: Obj) -> bool:
    conds = (job.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Complete" and c.get("status") == "True" for c in conds)


def phase_is(*phases: str) -> Callable[[Obj], bool]:
    return lambda bj: (bj.get("status") or {}).get("phase") in phases


def backgroundjob(namespace: str, name: str, task: str, **spec: Any) -> Obj:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "BackgroundJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"task": task, **spec},
    }


def create_backgroundjob(api: client.ApiClient, body: Obj) -> None:
    resp = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP,
        VERSION,
        body["metadata"]["namespace"],
        "backgroundjobs",
        body,
        _preload_content=False,
    )
    _consume(resp)


def create_job(api: client.ApiClient, body: Obj) -> None:
    batch: Any = client.BatchV1Api(api)  # plain dict manifests, like the operator
    resp = batch.create_namespaced_job(body["metadata"]["namespace"], body, _preload_content=False)
    _consume(resp)


def _consume(resp: Any) -> None:
    """Read the response to its end, so its connection can serve the next request."""
    _ = resp.data
    resp.release_conn()


def warm_up(api: client.ApiClient, namespace: str, timeout: float = 60) -> None:
    """One BackgroundJob through the operator before a timed run: its Job exists only
    once kopf's watches are running, which /healthz alone does not promise."""
    batch = client.BatchV1Api(api)
    create_backgroundjob(api, backgroundjob(namespace, WARM_UP, "examples.noop"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = batch.list_namespaced_job(namespace, field_selector=f"metadata.name={WARM_UP}")
        if listing.items:
            return
        time.sleep(0.1)
    raise TimeoutError(f"the operator did not create the warm-up Job in {namespace}")


def burst(create: Callable[[Obj], None], bodies: Iterable[Obj], threads: int) -> float:
    """Create every body with `threads` threads; returns the seconds it took."""
    start = time.time()
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(create, body) for body in bodies]:
            future.result()
    return time.time() - start
