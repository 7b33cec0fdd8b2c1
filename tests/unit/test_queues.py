"""Which queued Jobs to resume."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bgjobs_operator.config import parse_queue_limits
from bgjobs_operator.queues import to_resume


def job(name: str, suspended: bool, done: bool = False, created: str = "") -> dict[str, Any]:
    conds = [{"type": "Complete", "status": "True"}] if done else []
    return {
        "metadata": {"name": name, "creationTimestamp": created or name},
        "spec": {"suspend": suspended},
        "status": {"conditions": conds},
    }


def test_resumes_oldest_waiting_up_to_the_limit() -> None:
    jobs = [
        job("c", True, created="3"),
        job("a", True, created="1"),
        job("r", False),
        job("b", True, created="2"),
        job("old", False, done=True),
    ]
    assert to_resume(jobs, 3) == ["a", "b"]
    assert to_resume(jobs, 1) == []


def test_just_resumed_jobs_count_as_running() -> None:
    jobs = [job("a", True), job("b", True)]
    assert to_resume(jobs, 1, {"a"}) == []


@given(st.lists(st.tuples(st.booleans(), st.booleans()), max_size=30), st.integers(1, 10))
def test_never_more_running_than_the_limit(states: list[tuple[bool, bool]], limit: int) -> None:
    jobs = [job(f"j{i:02d}", suspended, done) for i, (suspended, done) in enumerate(states)]
    running = sum(1 for j, (s, d) in zip(jobs, states, strict=True) if not s and not d)
    resumed = to_resume(jobs, limit)
    assert len(resumed) == max(0, min(limit - running, sum(1 for s, d in states if s and not d)))


def test_queue_limits_flag() -> None:
    assert parse_queue_limits("exports=2, default=50") == {"exports": 2, "default": 50}
    assert parse_queue_limits(None) == {}
