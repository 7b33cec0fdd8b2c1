"""examples/fastapi_app.py over HTTP (FastAPI's TestClient) against devcluster."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from bgjobs.client import AsyncClient
from tests.integration.support import BgJobs, wait_for

with warnings.catch_warnings():
    # starlette's TestClient announces a future move from httpx; httpx is what we have.
    warnings.filterwarnings("ignore", message=".*httpx.*deprecated", category=UserWarning)
    from fastapi.testclient import TestClient

    from examples.fastapi_app import app, get_client


@pytest.fixture
def http(bgjobs: BgJobs, api_client: client.ApiClient) -> Iterator[TestClient]:
    app.dependency_overrides[get_client] = lambda: AsyncClient(
        bgjobs.namespace, api_client=api_client
    )
    try:
        with TestClient(app) as c:
            yield c
    finally:
        app.dependency_overrides.clear()


def poll_until(http: TestClient, task_id: str, state: str, seen: list[str]) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        resp = http.get(f"/api/tasks/{task_id}")
        assert resp.status_code == 200, resp.text
        doc: dict[str, Any] = resp.json()
        seen.append(doc["state"])
        return doc if doc["state"] == state else None

    return wait_for(reached, timeout=90, what=f"{task_id} {state}", interval=0.3)


def test_submit_then_poll_until_success_with_progress(http: TestClient) -> None:
    resp = http.post(
        "/api/tasks", json={"task": "examples.progress", "kwargs": {"steps": 5, "delay": 0.4}}
    )
    assert resp.status_code == 202, resp.text
    body = resp.json()
    task_id = body["id"]
    assert task_id.startswith("examples-progress-")
    assert body["status_url"].endswith(f"/api/tasks/{task_id}")

    seen: list[str] = []
    doc = poll_until(http, task_id, "SUCCESS", seen)
    assert doc["phase"] == "Succeeded"
    assert doc["progress"] == {
        "current": 5,
        "total": 5,
        "percent": 100,
        "stage": "working",
        "message": "step 5/5",
    }
    assert doc["result"] == {"steps": 5}
    assert doc["error"] is None
    assert set(seen) <= {"PENDING", "STARTED", "SUCCESS"}, seen


def test_export_endpoint_is_idempotent_per_key(http: TestClient) -> None:
    request = {"total_records": 2000, "batch_size": 1000, "idempotency_key": "export-42"}
    first = http.post("/api/tasks/export", json=request)
    again = http.post("/api/tasks/export", json=request)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    doc = poll_until(http, first.json()["id"], "SUCCESS", [])
    assert doc["result"]["records"] == 2000 and doc["result"]["parts"] == 2
    assert doc["progress"]["percent"] == 100


def test_failure_carries_the_error(http: TestClient) -> None:
    resp = http.post("/api/tasks", json={"task": "examples.permanent", "idempotencyKey": "p-1"})
    doc = poll_until(http, resp.json()["id"], "FAILURE", [])
    assert doc["phase"] == "Failed"
    assert doc["error"]["message"] == "bad input" and doc["error"]["exitCode"] == 3
    assert doc["result"] is None


def test_cancel_and_unknown_ids(http: TestClient) -> None:
    assert http.get("/api/tasks/no-such-task").status_code == 404
    assert http.delete("/api/tasks/no-such-task").status_code == 404

    task_id = http.post(
        "/api/tasks", json={"task": "examples.sleep", "kwargs": {"seconds": 600}}
    ).json()["id"]
    resp = http.delete(f"/api/tasks/{task_id}")
    assert resp.status_code == 202
    assert resp.json()["cancel_requested"] is True
    doc = poll_until(http, task_id, "REVOKED", [])
    assert doc["phase"] == "Cancelled"


def test_refused_submission_is_422_with_the_reason(http: TestClient) -> None:
    resp = http.post("/api/tasks", json={"task": "not a task name!"})
    assert resp.status_code == 422
    assert "spec.task" in resp.json()["detail"]
