"""The dashboard's pure parts and its pages rendered from a cache filled by hand (no API
server: what the pages show of given objects, escaping, CSRF refusals, coalescing)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bgjobs.dashboard import csrf, graph, present
from bgjobs.dashboard.app import Settings, create_app
from bgjobs.dashboard.cache import KINDS, WatchCache
from bgjobs.dashboard.live import Coalescer

HOSTILE = "<script>alert('x')</script>"


class FakeCache(WatchCache):
    """The real cache's bookkeeping without its watch threads or an API client."""

    def __init__(self) -> None:
        self.namespace = None
        self._objects = {p: {} for p in KINDS}
        self._lock = threading.Lock()
        self._seq = 0
        self._changes = []
        self._listed = set()
        self.synced = threading.Event()
        for p in KINDS:
            self.replace(p, [])

    def get_or_fetch(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(plural, namespace, name)


def bj(name: str, phase: str = "Running", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "bgjobs.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"task": "examples.echo", **spec},
        "status": {"phase": phase, "progress": {"current": 3, "total": 4}},
    }


def dead_letter(name: str = "broken-dl") -> dict[str, Any]:
    return {
        "apiVersion": "bgjobs.dev/v1alpha1",
        "kind": "DeadLetter",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "jobName": "broken",
            "task": "examples.permanent",
            "args": [HOSTILE],
            "error": {"type": "PermanentError", "message": "bad input"},
            "attempts": 1,
            "failedAt": "2026-01-01T00:00:00Z",
        },
    }


def client_for(cache: FakeCache, actions: bool) -> TestClient:
    return TestClient(create_app(Settings(actions=actions), cache))


@pytest.fixture
def cache() -> FakeCache:
    c = FakeCache()
    c.apply("backgroundjobs", "ADDED", bj("hostile", args=[HOSTILE], kwargs={"k": HOSTILE}))
    c.apply("backgroundjobs", "ADDED", bj("done", "Succeeded"))
    c.apply("deadletters", "ADDED", dead_letter())
    c.apply(
        "jobqueues",
        "ADDED",
        {"metadata": {"name": "gate", "namespace": "shop"}, "spec": {"concurrency": 1}},
    )
    return c


def test_every_page_renders_and_escapes_user_data(cache: FakeCache) -> None:
    web = client_for(cache, actions=True)
    for page in (
        "/jobs",
        "/jobs?namespace=shop&phase=Running",
        "/jobs/shop/hostile",
        "/deadletters",
        "/deadletters/shop/broken-dl",
        "/queues",
        "/workflows",
        "/batches",
        "/schedules",
        "/submit",
    ):
        resp = web.get(page)
        assert resp.status_code == 200, (page, resp.text[:500])
        assert "<script>alert" not in resp.text, page
    assert "&lt;script&gt;alert" in web.get("/jobs/shop/hostile").text
    assert web.get("/jobs/shop/nothing").status_code == 404


def test_the_jobs_list_shows_progress_phase_and_filters(cache: FakeCache) -> None:
    web = client_for(cache, actions=False)
    page = web.get("/jobs?namespace=shop").text
    assert 'data-key="shop/hostile" data-phase="Running"' in page
    assert 'value="75.0"' in page, "3 of 4 done"
    assert 'data-key="shop/done" data-phase="Succeeded"' in page
    assert 'value="100.0"' in page, "a succeeded job is done"
    only_running = web.get("/jobs?phase=Running").text
    assert "shop/hostile" in only_running and "shop/done" not in only_running


def test_actions_need_the_flag_and_a_matching_token(cache: FakeCache) -> None:
    read_only = client_for(cache, actions=False)
    assert 'data-role="action"' not in read_only.get("/queues").text
    form = {"namespace": "shop", "name": "gate"}
    assert read_only.post("/actions/pause-queue", data=form).status_code == 403

    web = client_for(cache, actions=True)
    page = web.get("/queues").text
    assert 'data-action="pause-queue"' in page
    token = web.cookies.get(csrf.COOKIE)
    assert token and f'value="{token}"' in page
    assert web.post("/actions/pause-queue", data=form).status_code == 403, "no token"
    forged = {**form, "csrf_token": "forged"}
    assert web.post("/actions/pause-queue", data=forged).status_code == 403
    cross = web.post(
        "/actions/pause-queue",
        data={**form, "csrf_token": token},
        headers={"Origin": "http://evil.example"},
    )
    assert cross.status_code == 403


def test_the_dead_letter_page_offers_a_replay(cache: FakeCache) -> None:
    page = client_for(cache, actions=True).get("/deadletters/shop/broken-dl").text
    assert 'data-action="replay"' in page and "bad input" in page


def test_csrf_rules() -> None:
    assert csrf.valid("t", "t", "h:1", "http://h:1", None)
    assert csrf.valid("t", "t", "h:1", None, None), "no Origin: the token decides"
    assert not csrf.valid("t", "u", "h:1", None, None)
    assert not csrf.valid(None, "t", "h:1", None, None)
    assert not csrf.valid("t", "t", "h:1", "http://evil:1", None)
    assert not csrf.valid("t", "t", "h:1", None, "http://evil:1/x")
    assert not csrf.valid("t", "t", "h:1", "null", None)


def test_the_coalescer_sends_each_object_at_most_once_a_second() -> None:
    c = Coalescer()
    c.offer(["a", "b"])
    assert sorted(c.due(10.0)) == ["a", "b"]
    c.offer(["a"])
    c.offer(["a"])
    assert c.due(10.5) == [], "sent 0.5 s ago: waits"
    assert c.due(11.0) == ["a"], "once, however often it changed"
    assert c.due(12.0) == []


def test_graph_layers_follow_the_longest_dependency_chain() -> None:
    steps = [
        {"name": "a"},
        {"name": "b", "dependsOn": ["a"]},
        {"name": "c", "dependsOn": ["a", "b"]},
        {"name": "d", "dependsOn": ["ghost"]},
        {"name": "x", "dependsOn": ["y"]},
        {"name": "y", "dependsOn": ["x"]},
    ]
    assert graph.layers(steps) == {"a": 0, "b": 1, "c": 2, "d": 0, "x": 1, "y": 0}
    g = graph.layout(steps)
    assert len(g["edges"]) == 5
    xs = {b["name"]: b["x"] for b in g["boxes"]}
    assert xs["a"] < xs["b"] < xs["c"]


def test_long_values_are_cut_and_can_be_seen_whole() -> None:
    text, cut = present.truncated("x" * 5000)
    assert cut and len(text) == present.TRUNCATE_AT
    assert present.truncated("short") == ("short", False)
    assert present.page_of(list(range(250)), 3, 100) == (list(range(200, 250)), 3)
    assert present.page_of([], 9, 100) == ([], 1)


def test_rows_are_derived_again_only_when_the_object_changed() -> None:
    memo = present.RowMemo()
    first = bj("a")
    first["metadata"]["resourceVersion"] = "1"
    (row,) = memo.rows([first])
    assert memo.rows([first])[0] is row, "same resourceVersion: the same row"
    newer = bj("a", "Succeeded")
    newer["metadata"]["resourceVersion"] = "2"
    assert memo.rows([newer])[0]["phase"] == "Succeeded"


def test_each_pod_is_an_attempt_with_the_error_its_worker_wrote() -> None:
    def pod(name: str, created: str, message: str | None, code: int) -> dict[str, Any]:
        term = {"exitCode": code, "reason": "Error", "finishedAt": created}
        if message is not None:
            term["message"] = message
        return {
            "metadata": {"name": name, "creationTimestamp": created},
            "status": {"phase": "Failed", "containerStatuses": [{"state": {"terminated": term}}]},
        }

    failed = '{"status": "FAILURE", "error": {"type": "ValueError", "message": "<b>no</b>"}}'
    rows = present.pod_attempts(
        [
            pod("p2", "2026-01-01T00:01:00Z", "not json", 137),
            pod("p1", "2026-01-01T00:00:00Z", failed, 1),
        ]
    )
    assert [(r["n"], r["pod"], r["exitCode"]) for r in rows] == [(1, "p1", 1), (2, "p2", 137)]
    assert rows[0]["error"] == "ValueError: <b>no</b>" and rows[1]["error"] == ""
