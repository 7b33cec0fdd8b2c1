"""Status is a pure function of what is observed and the clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from bgjobs.api.v1alpha1 import BackgroundJobStatus
from bgjobs_operator import status as st
from bgjobs_operator.deadletters import (
    build_dead_letter,
    build_replay,
    pending_replays,
    replay_name,
)

NOW = datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)
LATER = datetime(2026, 1, 1, 0, 5, 0, tzinfo=UTC)


def bj(status: dict[str, Any] | BackgroundJobStatus | None = None) -> dict[str, Any]:
    if isinstance(status, BackgroundJobStatus):
        status = st.dump(status)
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


def derive(body: dict[str, Any], j: dict[str, Any], now: datetime = NOW, **kw: Any) -> Any:
    return st.desired_status(st.Observation(bj=body, job=j, **kw), now)


def test_pending_job_needs_no_write() -> None:
    current = bj()
    assert derive(current, job(active=1, ready=0)) == st.parse(current["status"])


def test_running_then_succeeded_with_result() -> None:
    running = derive(bj(), job(active=1, ready=1, startTime="2026-01-01T00:00:00Z"))
    assert running.phase == "Running" and running.attempts == 1
    done = derive(bj(running), complete(), outcome={"status": "SUCCESS", "result": {"n": 1}})
    assert done.phase == "Succeeded" and done.result == {"n": 1}
    assert {c.type: c.status for c in done.conditions} == {"Running": "False", "Succeeded": "True"}


def test_result_keeps_nested_nulls_and_unicode_exactly() -> None:
    value = {"nested": [1, {"deep": ["ü", {"x": None, "empty": {}}]}], "n": None}
    done = derive(bj(), complete(), outcome={"status": "SUCCESS", "result": value})
    written = st.dump(done)
    assert json.dumps(written["result"], sort_keys=True) == json.dumps(value, sort_keys=True)


def test_never_steps_back_to_pending_between_pod_end_and_condition() -> None:
    running = derive(bj(), job(active=1, ready=1))
    between = derive(bj(running), job(active=0, ready=0))
    assert between == running


def test_large_result_is_referenced_not_copied() -> None:
    done = derive(
        bj(),
        complete(),
        result_key="bgjobs:ns:job-uid:result",
        outcome={"status": "SUCCESS", "result": "x" * 10000},
    )
    assert done.result is None and done.resultRef == "bgjobs:ns:job-uid:result"


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
    out = derive(bj(), failed, outcome=outcome)
    assert out.phase == "Failed" and out.attempts == 2
    assert out.error is not None
    assert out.error.model_dump(exclude_none=True) == {
        "type": "RuntimeError",
        "message": "boom",
        "exitCode": 1,
        "attempt": 2,
        "reason": "BackoffLimitExceeded",
    }
    assert "retries exhausted; RuntimeError: boom" in (out.conditions[-1].message or "")


def test_every_field_a_task_controls_is_bounded() -> None:
    """A 2 MB progress stage or error message once made every status write fail
    (etcd's request limit) and wedged the job in Running."""
    huge = "s" * 2_000_000
    progress = st.progress_of({"stage": huge, "message": huge, "current": 1, "percent": 5})
    assert progress is not None
    failed = job(
        failed=1,
        conditions=[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}],
    )
    outcome = {"status": "FAILURE", "error": {"type": huge, "message": huge}}
    out = derive(bj(), failed, outcome=outcome, progress=progress)
    assert len(json.dumps(st.dump(out))) < 16_000
    assert out.progress is not None and (out.progress.stage or "").endswith("[truncated]")


def test_progress_drops_values_that_are_not_finite_numbers() -> None:
    progress = st.progress_of({"current": float("nan"), "total": float("inf"), "percent": 50})
    assert progress is not None and progress.current is None and progress.total is None
    assert progress.percent == 50.0


def test_unchanged_conditions_keep_their_transition_time() -> None:
    first = derive(bj(), job(active=1, ready=1))
    again = derive(bj(first), job(active=1, ready=1), now=LATER)
    assert again == first


def test_an_unreadable_status_starts_over_from_what_can_be_read() -> None:
    parsed = st.parse({"phase": "Running", "jobName": "j", "unknownField": 1})
    assert parsed.phase == "Running" and parsed.jobName == "j"


def test_dead_letter_is_deterministic_and_replays_are_numbered() -> None:
    body = bj(
        {
            "phase": "Failed",
            "attempts": 3,
            "error": {"type": "E"},
            "completionTime": "2026-01-01T00:00:00Z",
        }
    )
    dl = build_dead_letter(body, st.parse(body["status"]), "tail of output")
    assert dl["metadata"]["name"] == "j-12345678"
    assert dl["spec"]["critical"] is True and dl["spec"]["attempts"] == 3
    assert dl["spec"]["error"] == {"type": "E"}
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
