"""Queue concurrency: the session operator runs with BGJOBS_QUEUE_LIMITS=serial=1."""

from __future__ import annotations

import itertools

from tests.integration.support import BgJobs


def test_a_limited_queue_runs_one_job_at_a_time(bgjobs: BgJobs) -> None:
    names = [f"s{i}" for i in range(3)]
    for name in names:
        bgjobs.submit(name, "examples.sleep", kwargs={"seconds": 2}, queue="serial")
    done = [bgjobs.wait_phase(name, timeout=120) for name in names]
    assert [d["phase"] for d in done] == ["Succeeded"] * 3
    spans = sorted((d["startTime"], d["completionTime"]) for d in done)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, f"jobs of queue 'serial' overlapped: {spans}"


def test_unlimited_queues_are_not_held_back(bgjobs: BgJobs) -> None:
    bgjobs.submit("free", "examples.noop", queue="other")
    assert bgjobs.wait_phase("free", timeout=60)["phase"] == "Succeeded"
