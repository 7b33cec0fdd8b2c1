"""JobSchedule on devcluster: the real CronJob controller fires runs, each run is a
BackgroundJob with the usual status, retries and dead letters."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.integration.support import BgJobs, wait_for


def schedule(
    bgjobs: BgJobs,
    name: str,
    cron: str | None = None,
    template: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    if cron is not None:
        spec["schedule"] = cron
    return bgjobs.create(
        "jobschedules",
        {
            "apiVersion": "bgjobs.dev/v1alpha1",
            "kind": "JobSchedule",
            "metadata": {"name": name},
            "spec": {"template": template or {}, **spec},
        },
    )


def runs(bgjobs: BgJobs, name: str) -> list[dict[str, Any]]:
    return [
        j
        for j in bgjobs.list("backgroundjobs")
        if (j["metadata"].get("labels") or {}).get("bgjobs.dev/schedule") == name
    ]


def cronjob(batch: client.BatchV1Api, ns: str, name: str) -> client.V1CronJob:
    return wait_for(
        lambda: batch.read_namespaced_cron_job(name, ns), timeout=30, what=f"CronJob {name}"
    )


def trigger(kubectl, ns: str, cron: str, run: str) -> None:  # type: ignore[no-untyped-def]
    """What `kubectl create job --from=cronjob/...` does: one run now, no clock involved."""
    cronjob_ready = lambda: kubectl("get", "cronjob", cron, "-n", ns, check=False).returncode == 0  # noqa: E731
    wait_for(cronjob_ready, timeout=30, what="the CronJob")
    kubectl("create", "job", run, f"--from=cronjob/{cron}", "-n", ns)


@pytest.mark.slow
def test_every_minute_runs_on_a_real_tick_without_overlap(
    bgjobs: BgJobs, batch: client.BatchV1Api
) -> None:
    # Forbid + a run longer than a minute: the second tick must be skipped.
    schedule(
        bgjobs,
        "tick",
        "* * * * *",
        {"task": "examples.sleep", "kwargs": {"seconds": 65}},
        concurrencyPolicy="Forbid",
    )
    first = wait_for(lambda: runs(bgjobs, "tick"), timeout=90, what="a run on the minute tick")
    name = first[0]["metadata"]["name"]
    st = bgjobs.wait_phase(name, "Running", timeout=30)
    assert st["jobName"] == name
    sched = wait_for(
        lambda: (
            (bgjobs.get("tick", "jobschedules").get("status") or {}).get("lastScheduleTime")
            and bgjobs.get("tick", "jobschedules")["status"]
        ),
        timeout=30,
        what="schedule status",
    )
    assert sched["cronJobName"] == "tick"
    assert sched["nextScheduleTime"] > sched["lastScheduleTime"]
    assert [r["name"] for r in sched["active"]] == [name]
    # The next tick comes while the first run is still going: Forbid holds it back. (The
    # CronJob controller may start that missed run once the first has finished.)
    first_done = bgjobs.wait_phase(name, timeout=90)
    assert first_done["phase"] == "Succeeded"
    time.sleep(3)
    for other in runs(bgjobs, "tick"):
        started = (other.get("status") or {}).get("startTime")
        if other["metadata"]["name"] != name and started:
            assert started >= first_done["completionTime"], "runs overlapped"

    def schedule_shows_newest_run() -> bool:
        newest = max(runs(bgjobs, "tick"), key=lambda r: r["metadata"]["creationTimestamp"])
        last = bgjobs.get("tick", "jobschedules")["status"].get("lastRun") or {}
        phase = (newest.get("status") or {}).get("phase", "Pending")
        return bool(last.get("name") == newest["metadata"]["name"] and last["phase"] == phase)

    wait_for(schedule_shows_newest_run, timeout=30, what="lastRun to follow the runs")
    assert (
        bgjobs.get("tick", "jobschedules")["status"]["lastRun"]["name"] != name
        or bgjobs.get("tick", "jobschedules")["status"]["lastRun"]["phase"] == "Succeeded"
    )


def test_triggered_run_is_a_backgroundjob_that_runs_once(
    bgjobs: BgJobs,
    kubectl,  # type: ignore[no-untyped-def]
    core: client.CoreV1Api,
) -> None:
    schedule(
        bgjobs,
        "nightly",
        "0 3 * * *",
        {"task": "examples.add", "args": [20, 22]},
        timeZone="Europe/Berlin",
    )
    trigger(kubectl, bgjobs.namespace, "nightly", "nightly-manual")
    st = bgjobs.wait_phase("nightly-manual", timeout=60)
    assert st["phase"] == "Succeeded"
    assert st["result"] == 42
    assert len(runs(bgjobs, "nightly")) == 1
    pods = core.list_namespaced_pod(bgjobs.namespace, label_selector="job-name=nightly-manual")
    assert len(pods.items) == 1, "the task ran exactly once"
    bj = bgjobs.get("nightly-manual")
    assert bj["metadata"]["ownerReferences"][0]["kind"] == "JobSchedule"
    status = wait_for(
        lambda: bgjobs.get("nightly", "jobschedules")["status"].get("lastRun"),
        timeout=30,
        what="lastRun",
    )
    assert status["name"] == "nightly-manual"
    nxt = bgjobs.get("nightly", "jobschedules")["status"]["nextScheduleTime"]
    # 03:00 in Berlin is 02:00 UTC in winter.
    assert nxt.endswith("T02:00:00Z")


def test_failing_scheduled_run_is_dead_lettered_with_its_schedule(
    bgjobs: BgJobs,  # type: ignore[no-untyped-def]
    kubectl,
) -> None:
    schedule(bgjobs, "broken", "@daily", {"task": "examples.permanent"})
    trigger(kubectl, bgjobs.namespace, "broken", "broken-1")
    st = bgjobs.wait_phase("broken-1", timeout=60)
    assert st["phase"] == "Failed"
    dl = bgjobs.get(st["deadLetter"]["name"], "deadletters")
    assert dl["spec"]["schedule"] == "broken"
    assert dl["spec"]["jobName"] == "broken-1"


def test_suspend_and_resume(bgjobs: BgJobs, batch: client.BatchV1Api) -> None:
    schedule(bgjobs, "pausable", "*/5 * * * *", {"task": "examples.noop"})
    assert cronjob(batch, bgjobs.namespace, "pausable").spec.suspend is False
    bgjobs.patch("pausable", {"spec": {"suspend": True}}, "jobschedules")
    wait_for(
        lambda: batch.read_namespaced_cron_job("pausable", bgjobs.namespace).spec.suspend,
        timeout=30,
        what="CronJob suspended",
    )
    st = wait_for(
        lambda: (
            bgjobs.get("pausable", "jobschedules")["status"].get("nextScheduleTime") is None
            and bgjobs.get("pausable", "jobschedules")["status"]
        ),
        timeout=30,
        what="no next run while suspended",
    )
    assert {c["type"]: c["status"] for c in st["conditions"]}["Suspended"] == "True"
    bgjobs.patch("pausable", {"spec": {"suspend": False}}, "jobschedules")
    wait_for(
        lambda: not batch.read_namespaced_cron_job("pausable", bgjobs.namespace).spec.suspend,
        timeout=30,
        what="CronJob resumed",
    )


def test_template_change_reaches_the_next_run_and_history_is_bounded(
    bgjobs: BgJobs, kubectl, batch: client.BatchV1Api
) -> None:  # type: ignore[no-untyped-def]
    schedule(
        bgjobs,
        "evolving",
        "@hourly",
        {"task": "examples.add", "args": [1, 1]},
        successfulRunsHistoryLimit=1,
    )
    trigger(kubectl, bgjobs.namespace, "evolving", "evolving-1")
    assert bgjobs.wait_phase("evolving-1", timeout=60)["result"] == 2
    bgjobs.patch("evolving", {"spec": {"template": {"args": [40, 2]}}}, "jobschedules")

    def template_updated() -> bool:
        cron = batch.read_namespaced_cron_job("evolving", bgjobs.namespace)
        env = cron.spec.job_template.spec.template.spec.containers[0].env
        return any(e.name == "BGJOBS_ARGS" and e.value == "[40, 2]" for e in env)

    wait_for(template_updated, timeout=30, what="the CronJob to follow the template")
    trigger(kubectl, bgjobs.namespace, "evolving", "evolving-2")
    assert bgjobs.wait_phase("evolving-2", timeout=60)["result"] == 42
    wait_for(
        lambda: [r["metadata"]["name"] for r in runs(bgjobs, "evolving")] == ["evolving-2"],
        timeout=60,
        what="history limit to remove the older run",
    )


def test_deleting_the_schedule_removes_cronjob_and_runs(
    bgjobs: BgJobs,
    kubectl,  # type: ignore[no-untyped-def]
    batch: client.BatchV1Api,
) -> None:
    schedule(bgjobs, "temp", "@weekly", {"task": "examples.noop"})
    trigger(kubectl, bgjobs.namespace, "temp", "temp-1")
    bgjobs.wait_phase("temp-1", timeout=60)
    bgjobs.custom.delete_namespaced_custom_object(
        bgjobs.group, bgjobs.version, bgjobs.namespace, "jobschedules", "temp"
    )

    def cron_gone() -> bool:
        try:
            batch.read_namespaced_cron_job("temp", bgjobs.namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(cron_gone, timeout=60, what="CronJob garbage-collected")
    wait_for(lambda: not runs(bgjobs, "temp"), timeout=60, what="runs garbage-collected")


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("every 90m", "cannot be expressed as a cron schedule"),
        ("every 7 minutes", "cannot be expressed as a cron schedule"),
        ("61 * * * *", "minute (0-59)"),
        ("0 0 * * 8", "day of week (0-7 or SUN-SAT)"),
    ],
)
def test_schedule_cel_can_judge_is_refused_at_apply(  # type: ignore[no-untyped-def]
    kubectl, crds, namespace: str, cron: str, message: str
) -> None:
    proc = kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        check=False,
        input=(
            "apiVersion: bgjobs.dev/v1alpha1\nkind: JobSchedule\nmetadata: {name: odd}\n"
            f"spec: {{schedule: '{cron}', template: {{task: examples.noop}}}}\n"
        ),
    )
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"schedule": "0 0 30 2 *"}, "30 never occurs in FEB"),
        ({"schedule": "0 * * * *", "timeZone": "Mars/Olympus"}, 'unknown time zone "Mars/Olympus"'),
        ({"schedule": "30-10 * * * *"}, "range 30-10 is backwards"),
    ],
)
def test_bad_schedule_gets_invalid_condition_and_event(
    bgjobs: BgJobs,
    core: client.CoreV1Api,
    batch: client.BatchV1Api,
    spec: dict[str, Any],
    message: str,
) -> None:
    schedule(bgjobs, "bad", template={"task": "examples.noop"}, **spec)  # type: ignore[arg-type]
    st = wait_for(
        lambda: bgjobs.get("bad", "jobschedules").get("status", {}).get("conditions"),
        timeout=30,
        what="conditions",
    )
    invalid = next(c for c in st if c["type"] == "Invalid")
    assert invalid["status"] == "True" and message in invalid["message"]
    events = wait_for(
        lambda: [
            e
            for e in core.list_namespaced_event(bgjobs.namespace).items
            if e.reason == "InvalidSchedule"
        ],
        timeout=20,
        what="event",
    )
    assert message in events[0].message
    assert not batch.list_namespaced_cron_job(bgjobs.namespace).items
