"""Status is a pure function of what is observed."""

from __future__ import annotations

from typing import Any

from bgjobs_operator import status as st
from bgjobs_operator.deadletters import (
    build_dead_letter,
    build_replay,
    pending_replays,
    replay_name,
)


def bj(status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "bgjobs.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {"name": "j", "namespace": "ns", "uid": "1234567890", "generation": 1},
        "spec": {"task": "t", "args": [1], "kwargs": {}, "critical": True},
        "status": status or {"phase": "Pending"},
    }


def job(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "j", "uid": "job-uid", "namespace": "ns"}, "status": status}


def complete(**extra: Any) -> dict[str, Any]:
    return job(
        succeeded=1,
        completionTime="2026-01-01T00:00:05Z",
        startTime="2026-01-01T00:00:00Z",
        conditions=[{"type": "Complete", "status": "True"}],
        **extra,
    )


def test_pending_job_needs_no_write() -> None:
    current = bj()
    desired = st.desired_status(st.Observation(bj=current, job=job(active=1, ready=0)))
    assert st.status_patch(current["status"], desired) is None


def test_running_then_succeeded_with_result() -> None:
    running = st.desired_status(
        st.Observation(bj=bj(), job=job(active=1, ready=1, startTime="2026-01-01T00:00:00Z"))
    )
    assert running["phase"] == "Running" and running["attempts"] == 1
    done = st.desired_status(
        st.Observation(
            bj=bj(running), job=complete(), outcome={"status": "SUCCESS", "result": {"n": 1}}
        )
    )
    assert done["phase"] == "Succeeded" and done["result"] == {"n": 1}
    conds = {c["type"]: c["status"] for c in done["conditions"]}
    assert conds == {"Running": "False", "Succeeded": "True"}


def test_never_steps_back_to_pending_between_pod_end_and_condition() -> None:
    running = st.desired_status(st.Observation(bj=bj(), job=job(active=1, ready=1)))
    between = st.desired_status(st.Observation(bj=bj(running), job=job(active=0, ready=0)))
    assert st.status_patch(running, between) is None


def test_large_result_is_referenced_not_copied() -> None:
    obs = st.Observation(
        bj=bj(),
        job=complete(),
        result_key="bgjobs:ns:job-uid:result",
        outcome={"status": "SUCCESS", "result": "x" * 10000},
    )
    done = st.desired_status(obs)
    assert done["result"] is None and done["resultRef"] == "bgjobs:ns:job-uid:result"


def test_failure_carries_worker_error_and_job_reason() -> None:
    failed = job(
        failed=2,
        conditions=[
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "lastTransitionTime": "2026-01-01T00:01:00Z",
            }
        ],
    )
    outcome = {
        "status": "FAILURE",
        "exitCode": 1,
        "attempt": 2,
        "error": {"type": "RuntimeError", "message": "boom"},
    }
    out = st.desired_status(st.Observation(bj=bj(), job=failed, outcome=outcome))
    assert out["phase"] == "Failed" and out["attempts"] == 2
    assert out["error"] == {
        "type": "RuntimeError",
        "message": "boom",
        "exitCode": 1,
        "attempt": 2,
        "reason": "BackoffLimitExceeded",
    }
    assert "retries exhausted; RuntimeError: boom" in out["conditions"][-1]["message"]


def test_unchanged_conditions_keep_their_transition_time() -> None:
    first = st.desired_status(st.Observation(bj=bj(), job=job(active=1, ready=1)))
    again = st.desired_status(st.Observation(bj=bj(first), job=job(active=1, ready=1)))
    assert st.status_patch(first, again) is None


def test_dead_letter_is_deterministic_and_replays_are_numbered() -> None:
    body = bj(
        {
            "phase": "Failed",
            "attempts": 3,
            "error": {"type": "E"},
            "completionTime": "2026-01-01T00:00:00Z",
        }
    )
    dl = build_dead_letter(body, body["status"], "tail of output")
    assert dl["metadata"]["name"] == "j-12345678"
    assert dl["spec"]["critical"] is True and dl["spec"]["attempts"] == 3
    assert "ownerReferences" not in dl["metadata"], "a dead letter outlives its job"
    dl["spec"]["replays"] = 2
    dl["status"] = {"replayedJobs": ["j-12345678-r1"]}
    assert pending_replays(dl) == [2]
    replay = build_replay(dl, 2)
    assert replay["metadata"]["name"] == "j-12345678-r2"
    assert replay["spec"]["task"] == "t" and replay["spec"]["cancel"] is False


def test_replay_names_fit_a_job_name() -> None:
    dl = {"metadata": {"name": "a" * 63, "namespace": "ns"}, "spec": {}}
    assert len(replay_name(dl, 100)) <= 63
    assert replay_name(dl, 1) != replay_name(dl, 2)


def test_patch_removes_fields_that_vanished_from_nested_objects() -> None:
    current = {"progress": {"current": 1, "message": "old"}, "phase": "Running"}
    desired = {"progress": {"current": 2}, "phase": "Running"}
    assert st.status_patch(current, desired) == {"progress": {"current": 2, "message": None}}
