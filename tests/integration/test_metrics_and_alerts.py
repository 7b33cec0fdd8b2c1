"""The operator's Prometheus endpoint counts what happened; critical dead letters alert."""

from __future__ import annotations

import re

from tests.integration.support import AlertSink, BgJobs, OperatorProcess, wait_for


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_counters_follow_the_jobs(bgjobs: BgJobs, operator: OperatorProcess) -> None:
    before = operator.metrics()
    ok0 = sample(before, "bgjobs_jobs_finished_total", task="examples.noop", phase="Succeeded")
    bad0 = sample(
        before, "bgjobs_dead_letters_total", task="examples.always_fails", critical="false"
    )
    for i in range(3):
        bgjobs.submit(f"ok{i}", "examples.noop")
    bgjobs.submit("bad", "examples.always_fails", retry={"maxRetries": 0})
    for name in ("ok0", "ok1", "ok2", "bad"):
        bgjobs.wait_phase(name, timeout=60)
    after = operator.metrics()
    assert (
        sample(after, "bgjobs_jobs_finished_total", task="examples.noop", phase="Succeeded")
        == ok0 + 3
    )
    assert (
        sample(after, "bgjobs_dead_letters_total", task="examples.always_fails", critical="false")
        == bad0 + 1
    )
    assert sample(after, "bgjobs_job_duration_seconds_count", task="examples.noop") >= 3
    assert (
        sample(after, "bgjobs_jobs", phase="Succeeded", task="examples.noop", queue="default") >= 3
    )
    assert "bgjobs_reconcile_errors_total" in after


def test_critical_dead_letter_calls_the_webhook(
    bgjobs: BgJobs, operator: OperatorProcess, alert_sink: AlertSink
) -> None:
    bgjobs.submit("pager", "examples.permanent", critical=True)
    st = bgjobs.wait_phase("pager", timeout=60)
    alerts = wait_for(
        lambda: [
            a
            for a in alert_sink.received
            if a.get("backgroundJob") == "pager" and a.get("namespace") == bgjobs.namespace
        ],
        timeout=20,
        what="the webhook alert",
    )
    assert len(alerts) == 1
    assert alerts[0]["deadLetter"] == st["deadLetter"]["name"]
    assert alerts[0]["task"] == "examples.permanent"
    assert (
        sample(
            operator.metrics(),
            "bgjobs_dead_letters_total",
            task="examples.permanent",
            critical="true",
        )
        >= 1
    )
