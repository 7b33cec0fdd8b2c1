"""The operator's own informer (informer.py) against the real API server: the listing, the
watch, deletions missed while nobody watched, and standing by. (An expired version, which
a fresh etcd does not produce on demand, is driven in tests/unit/test_informer_stream.py.)"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes import client

from bgjobs_operator.informer import Informer
from bgjobs_operator.kubeapi import KubeApi, load_credentials
from bgjobs_operator.standby import Standby
from bgjobs_operator.store import Store
from devcluster import cluster


def _job(name: str, label: str) -> Any:
    # Suspended: no pods, nothing else changes it while the test watches.
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"informer-test": label}},
        "spec": {
            "suspend": True,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "none", "command": ["true"]}],
                }
            },
        },
    }


def _exists(batch: client.BatchV1Api, name: str, namespace: str) -> bool:
    try:
        batch.read_namespaced_job(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


class Recorder:
    """What the operator's handlers do with an event (handlers._apply), and a log."""

    def __init__(self) -> None:
        self.store = Store()
        self.events: list[tuple[str | None, str]] = []

    def __call__(self, event: Any) -> None:
        obj = event["object"]
        self.events.append((event["type"], obj["metadata"]["name"]))
        if event["type"] == "DELETED":
            self.store.remove(obj)
        else:
            self.store.put(obj)

    def names(self) -> set[str]:
        return {o["metadata"]["name"] for o in self.store.values()}


async def _until(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _run(devcluster: cluster.ClusterInfo, body: Callable[[KubeApi], Awaitable[None]]) -> None:
    async def main() -> None:
        api = KubeApi(load_credentials(devcluster.kubeconfig))
        try:
            await body(api)
        finally:
            await api.close()

    asyncio.run(main())


def test_lists_then_follows_creates_changes_and_deletes(
    devcluster: cluster.ClusterInfo, batch: client.BatchV1Api, namespace: str
) -> None:
    label = uuid.uuid4().hex[:8]
    for n in range(3):
        batch.create_namespaced_job(namespace, _job(f"pre-{n}", label))
    batch.create_namespaced_job(namespace, _job("other", "not-" + label))  # not selected

    async def body(api: KubeApi) -> None:
        rec = Recorder()
        inf = Informer(api, "Job", namespace, rec.store, rec, f"informer-test={label}")
        task = asyncio.create_task(inf.run())
        try:
            await asyncio.wait_for(inf.listed.wait(), 20)
            assert rec.names() == {"pre-0", "pre-1", "pre-2"}
            assert {t for t, _ in rec.events} == {None}
            await asyncio.to_thread(batch.create_namespaced_job, namespace, _job("new", label))
            await _until(lambda: ("ADDED", "new") in rec.events, "the ADDED event")
            await asyncio.to_thread(
                batch.patch_namespaced_job,
                "pre-0",
                namespace,
                {"metadata": {"annotations": {"seen": "yes"}}},
            )
            await _until(
                lambda: (
                    (rec.store.get((namespace, "pre-0")) or {})["metadata"]
                    .get("annotations", {})
                    .get("seen")
                    == "yes"
                ),
                "the change",
            )
            await asyncio.to_thread(
                batch.delete_namespaced_job, "pre-1", namespace, propagation_policy="Background"
            )
            await _until(lambda: "pre-1" not in rec.names(), "the deletion")
            assert rec.names() == {"pre-0", "pre-2", "new"}
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    _run(devcluster, body)


def test_a_listing_reports_what_was_deleted_while_nobody_watched(
    devcluster: cluster.ClusterInfo, batch: client.BatchV1Api, namespace: str
) -> None:
    label = uuid.uuid4().hex[:8]
    for n in range(2):
        batch.create_namespaced_job(namespace, _job(f"j-{n}", label))

    async def body(api: KubeApi) -> None:
        rec = Recorder()
        inf = Informer(api, "Job", namespace, rec.store, rec, f"informer-test={label}")
        await inf._list()
        assert rec.names() == {"j-0", "j-1"}
        await asyncio.to_thread(
            batch.delete_namespaced_job, "j-0", namespace, propagation_policy="Background"
        )
        await _until(lambda: not _exists(batch, "j-0", namespace), "j-0 to be gone")
        rec.events.clear()
        await inf._list()
        assert ("DELETED", "j-0") in rec.events
        assert rec.names() == {"j-1"}

    _run(devcluster, body)


def test_a_standby_stops_watching_and_lists_again_on_takeover(
    devcluster: cluster.ClusterInfo, batch: client.BatchV1Api, namespace: str
) -> None:
    label = uuid.uuid4().hex[:8]
    batch.create_namespaced_job(namespace, _job("before", label))

    async def body(api: KubeApi) -> None:
        rec = Recorder()
        gate = Standby(on_takeover=rec.store.clear)  # as Runtime.forget_cluster_state
        inf = Informer(api, "Job", namespace, rec.store, rec, f"informer-test={label}", gate)
        task = asyncio.create_task(inf.run())
        try:
            await asyncio.wait_for(inf.listed.wait(), 20)
            gate.changed(1, True)  # a peer of higher priority is active
            await asyncio.sleep(0.5)
            inf.listed.clear()
            rec.events.clear()
            await asyncio.to_thread(batch.create_namespaced_job, namespace, _job("while", label))
            await asyncio.to_thread(
                batch.delete_namespaced_job, "before", namespace, propagation_policy="Background"
            )
            await asyncio.sleep(2)
            assert rec.events == []  # no stream while standing by
            assert not inf.listed.is_set()
            gate.changed(1, False)  # takeover: stores emptied, everything listed again
            await asyncio.wait_for(inf.listed.wait(), 20)
            assert rec.names() == {"while"}
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    _run(devcluster, body)
