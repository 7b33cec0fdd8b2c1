"""The process node never runs a pod twice: a stale Running event of a pod it already ran
is ignored, and a pod an earlier (killed) node process had reported Running is reported
lost (exit 137, ContainerStatusUnknown), as kubelet does after a reboot. Its status
reports are retried while the API server is unreachable."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from devcluster import processnode
from devcluster.kube import ApiError
from devcluster.processnode import ProcessNode


class FakeKube:
    server = "https://127.0.0.1:6443"

    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.failures = list(failures or [])

    def patch_status(self, path: str, status: dict[str, Any]) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.patches.append((path, status))


def pod(uid: str, phase: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"p-{uid}", "namespace": "ns", "uid": uid},
        "spec": {"nodeName": "n", "containers": [{"name": "worker", "image": "x"}]},
        "status": {"phase": phase},
    }


def node(tmp_path: Path, kube: FakeKube) -> ProcessNode:
    return ProcessNode(kube, "n", tmp_path)  # type: ignore[arg-type]


def test_a_running_pod_unknown_to_the_node_is_reported_lost(tmp_path: Path) -> None:
    kube = FakeKube()
    n = node(tmp_path, kube)
    n.handle(pod("u1", "Running"))
    assert not n.runs
    [(path, status)] = kube.patches
    assert path == "/api/v1/namespaces/ns/pods/p-u1"
    assert status["phase"] == "Failed"
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 137
    assert terminated["reason"] == "ContainerStatusUnknown"
    n.handle(pod("u1", "Running"))  # reported once
    assert len(kube.patches) == 1


def test_a_pod_is_started_once_whatever_events_follow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[str] = []
    monkeypatch.setattr(
        processnode.PodRun, "main", lambda self: started.append(self.pod["metadata"]["uid"])
    )
    monkeypatch.setattr(threading.Thread, "start", lambda self: self.run())
    kube = FakeKube()
    n = node(tmp_path, kube)
    n.handle(pod("u2", "Pending"))
    n.runs.clear()  # the run ended
    n.handle(pod("u2", "Running"))  # its own Running report, delivered late
    n.handle(pod("u2", "Pending"))
    assert started == ["u2"]
    assert kube.patches == []


def test_status_reports_are_retried_while_the_api_server_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processnode.time, "sleep", lambda _s: None)
    kube = FakeKube([ConnectionError("refused"), ApiError(503, "starting"), ApiError(429, "")])
    node(tmp_path, kube).patch_status("/p", {"phase": "Succeeded"})
    assert kube.patches == [("/p", {"phase": "Succeeded"})]


def test_a_refused_status_report_is_not_retried(tmp_path: Path) -> None:
    kube = FakeKube([ApiError(422, "invalid")])
    with pytest.raises(ApiError):
        node(tmp_path, kube).patch_status("/p", {"phase": "Succeeded"})
