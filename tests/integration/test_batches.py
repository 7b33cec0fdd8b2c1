"""Batches end to end on the devcluster: one Indexed Job of warm workers (process node),
items in a real redis-server, the real operator's counts, DeadLetter and replay."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.integration.support import BgJobs, wait_for


def pods_of(core: client.CoreV1Api, ns: str, job: str) -> list[Any]:
    return list(core.list_namespaced_pod(ns, label_selector=f"job-name={job}").items)


def dead_letters_of(bgjobs: BgJobs, job: str) -> list[dict[str, Any]]:
    return [d for d in bgjobs.list("deadletters") if d["spec"]["jobName"] == job]


def submit_batch(bgjobs: BgJobs, name: str, items: list[Any], **spec: Any) -> None:
    body = {
        "apiVersion": "bgjobs.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {"name": name},
        "spec": {"task": "examples.item", "items": items, **spec},
    }
    bgjobs.create("backgroundjobs", body)


FAILING = {4, 19, 33}


def test_a_batch_with_failing_items_fails_with_exact_counts_and_one_dead_letter(
    bgjobs: BgJobs, core: client.CoreV1Api
) -> None:
    items = [{"n": i, "fail": i in FAILING, "delay": 0.1} for i in range(50)]
    submit_batch(bgjobs, "invoices", items, parallelism=2, chunkSize=2)

    def midway() -> bool:
        b = bgjobs.status("invoices").get("batch") or {}
        return 0 < b.get("succeeded", 0) + b.get("failed", 0) < 50

    wait_for(midway, timeout=90, what="a live item count between 0 and 50")
    st = bgjobs.wait_phase("invoices", timeout=120)
    assert st["phase"] == "Failed", st
    b = st["batch"]
    assert (b["total"], b["succeeded"], b["failed"]) == (50, 47, 3)
    assert b["executions"] == 50 and b["ratePerSecond"] > 0
    assert st["error"]["type"] == "ItemsFailed"
    assert st["error"]["message"].startswith("3 of 50 items failed")
    assert len(pods_of(core, bgjobs.namespace, "invoices")) == 2, "two warm pods, not 50"

    dls = dead_letters_of(bgjobs, "invoices")
    assert len(dls) == 1
    dl = dls[0]["spec"]
    assert sorted(f["index"] for f in dl["failedItems"]) == sorted(FAILING)
    assert {f["error"]["message"] for f in dl["failedItems"]} == {
        f"item {i} refused" for i in FAILING
    }
    assert dl["failedItemsCount"] == 3
    assert st["deadLetter"]["name"] == dls[0]["metadata"]["name"]

    # The replay runs the failed items only (they fail again: this input is refused).
    name = dls[0]["metadata"]["name"]
    bgjobs.patch(name, {"spec": {"replays": 1}}, plural="deadletters")
    replay = bgjobs.wait_phase(f"{name}-r1", timeout=120)
    assert [i["n"] for i in bgjobs.get(f"{name}-r1")["spec"]["items"]] == sorted(FAILING)
    rb = replay["batch"]
    assert (rb["total"], rb["succeeded"], rb["failed"], rb["executions"]) == (3, 0, 3, 3)


def test_a_batch_whose_items_all_succeed_succeeds(bgjobs: BgJobs) -> None:
    submit_batch(bgjobs, "emails", [[i] for i in range(30)], parallelism=2)
    st = bgjobs.wait_phase("emails", timeout=120)
    assert st["phase"] == "Succeeded", st
    assert (st["batch"]["total"], st["batch"]["succeeded"], st["batch"]["failed"]) == (30, 30, 0)
    assert st["resultRef"].endswith(":batch:outcomes")


def test_items_and_args_are_refused_together_at_apply(bgjobs: BgJobs) -> None:
    from kubernetes.client.exceptions import ApiException

    with pytest.raises(ApiException) as refused:
        submit_batch(bgjobs, "both", [[1]], args=[1])
    assert refused.value.status == 422
    with pytest.raises(ApiException) as refused:
        bgjobs.submit("single", "examples.noop", parallelism=2)
    assert refused.value.status == 422
    submit_batch(bgjobs, "fine", [[1]], args=[], kwargs={})
