"""JobWorkflow: the API model's rules, step names, and the reconciler driven through chain,
group, chord, failure, failFast, resume and restart cases with a fake API and a fixed clock
(the devcluster suite runs the real thing: tests/integration/test_workflows.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from bgjobs.api import names
from bgjobs.api.v1alpha1 import MAX_JOB_NAME, JobWorkflowSpec, Phase
from bgjobs_operator.config import OperatorConfig
from bgjobs_operator.controllers import jobworkflow
from bgjobs_operator.deadletters import build_dead_letter
from bgjobs_operator.kubeapi import ApiError
from bgjobs_operator.runtime import Runtime
from bgjobs_operator.status import parse
from tests.unit.fakeapi import FakeApi

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
NS = "ns"


def step(name: str, *deps: str, **spec: Any) -> dict[str, Any]:
    return {"name": name, "task": f"app.{name}", "dependsOn": list(deps), **spec}


# The seed's canvas: chain(extract, group(analyze, summarize), save).
SEED = [
    step("extract", args=["file-1"]),
    step("analyze", "extract"),
    step("summarize", "extract"),
    step("save", "analyze", "summarize", args=["file-1"]),
]


def workflow(steps: list[dict[str, Any]], name: str = "wf", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "bgjobs.dev/v1alpha1",
        "kind": "JobWorkflow",
        "metadata": {"name": name, "namespace": NS, "generation": 1},
        "spec": {"steps": steps, **spec},
    }


def setup(wf: dict[str, Any]) -> tuple[Runtime, FakeApi]:
    api = FakeApi()
    rt = Runtime(config=OperatorConfig(), api=api, clock=lambda: NOW)
    rt.workflows.put(api.add(wf))
    return rt, api


def reconcile(rt: Runtime, name: str = "wf") -> float | None:
    return asyncio.run(jobworkflow.reconcile(rt, NS, name))


def created_steps(api: FakeApi) -> list[str]:
    return [n for v, k, n in api.writes if v == "create" and k == "BackgroundJob"]


def bj(api: FakeApi, name: str) -> dict[str, Any]:
    return api.objects[("BackgroundJob", NS, name)]


def finish(rt: Runtime, api: FakeApi, name: str, phase: str = "Succeeded", **status: Any) -> None:
    """What the BackgroundJob reconciler would write; the watch delivers it."""
    obj = bj(api, name)
    obj["status"] = {"phase": phase, "attempts": 1, **status}
    if phase == "Failed":
        obj["status"].setdefault("error", {"type": "ValueError", "message": "bad", "reason": "X"})
        obj["status"].setdefault("deadLetter", {"name": f"{name}-dl"})
    obj["metadata"]["resourceVersion"] = str(next(api._rv))
    rt.backgroundjobs.put(obj)


def wf_status(api: FakeApi, name: str = "wf") -> dict[str, Any]:
    return api.objects[("JobWorkflow", NS, name)].get("status") or {}


def step_phases(api: FakeApi) -> dict[str, str]:
    return {s["name"]: s["phase"] for s in wf_status(api)["steps"]}


def patch_spec(rt: Runtime, api: FakeApi, **spec: Any) -> None:
    obj = api.objects[("JobWorkflow", NS, "wf")]
    obj["spec"].update(spec)
    obj["metadata"]["generation"] += 1
    obj["metadata"]["resourceVersion"] = str(next(api._rv))
    rt.workflows.put(obj)


# --- the API model ----------------------------------------------------------------------


def test_the_model_refuses_duplicates_unknown_dependencies_self_and_cycles() -> None:
    JobWorkflowSpec.model_validate({"steps": SEED})
    cases = {
        "unique": [step("a"), step("a")],
        "not in spec.steps": [step("a", "ghost")],
        "itself": [step("a", "a")],
        "cycle: a -> b -> a": [step("a", "b"), step("b", "a")],
    }
    for message, steps in cases.items():
        with pytest.raises(ValidationError, match=message):
            JobWorkflowSpec.model_validate({"steps": steps})
    with pytest.raises(ValidationError):
        JobWorkflowSpec.model_validate({"steps": [step(f"s{i}") for i in range(51)]})


def test_step_names_are_deterministic_and_bounded() -> None:
    assert names.step_job_name("wf", "extract") == "wf-extract"
    assert names.step_job_name("wf", "extract", 2) == "wf-extract-r2"
    long = names.step_job_name("w" * 63, "s" * 40, 3)
    assert len(long) <= MAX_JOB_NAME and long.endswith("-r3")
    assert long != names.step_job_name("w" * 62 + "x", "s" * 40, 3)


# --- the reconciler -----------------------------------------------------------------------


def test_the_seed_canvas_runs_step_by_step_with_results_passed() -> None:
    rt, api = setup(workflow(SEED))
    assert reconcile(rt) == jobworkflow.RESYNC_SECONDS
    assert created_steps(api) == ["wf-extract"], "only the step without dependencies starts"
    extract = bj(api, "wf-extract")
    assert extract["metadata"]["ownerReferences"][0]["kind"] == "JobWorkflow"
    assert extract["metadata"]["labels"][names.WORKFLOW] == "wf"
    assert extract["spec"]["args"] == ["file-1"]
    assert "dependsOn" not in extract["spec"] and "name" not in extract["spec"]
    assert wf_status(api)["phase"] == "Running"
    assert wf_status(api)["stepsDone"] == "0/4"

    reconcile(rt)  # no event: nothing new
    assert created_steps(api) == ["wf-extract"]

    finish(rt, api, "wf-extract", result={"text": "hello"})
    reconcile(rt)
    assert created_steps(api) == ["wf-extract", "wf-analyze", "wf-summarize"]
    assert bj(api, "wf-analyze")["spec"]["args"] == [{"text": "hello"}], "chain: first arg"

    finish(rt, api, "wf-analyze", result="positive")
    reconcile(rt)
    assert "wf-save" not in created_steps(api), "a chord body waits for every member"
    finish(rt, api, "wf-summarize", result="short")
    reconcile(rt)
    assert bj(api, "wf-save")["spec"]["args"] == [["positive", "short"], "file-1"], "chord body"

    finish(rt, api, "wf-save", result={"saved": True})
    assert reconcile(rt) is None
    st = wf_status(api)
    assert st["phase"] == "Succeeded" and st["stepsDone"] == "4/4" and st["progress"] == 100
    assert st["result"] == {"saved": True}
    assert st["completionTime"] == "2026-03-01T12:00:00Z"
    assert [r for _, r, _ in api.events] == ["Succeeded"]
    assert api.count("create", "BackgroundJob") == 4


def test_immutable_steps_receive_no_result() -> None:
    rt, api = setup(workflow([step("a"), step("b", "a", immutable=True, args=[7])]))
    reconcile(rt)
    finish(rt, api, "wf-a", result=1)
    reconcile(rt)
    assert bj(api, "wf-b")["spec"]["args"] == [7]


def test_a_none_result_is_passed_as_none() -> None:
    rt, api = setup(workflow([step("a"), step("b", "a")]))
    reconcile(rt)
    finish(rt, api, "wf-a")
    reconcile(rt)
    assert bj(api, "wf-b")["spec"]["args"] == [None]


def test_a_result_too_large_to_pass_fails_the_step_with_size_and_limit() -> None:
    rt, api = setup(workflow([step("a"), step("b", "a")]))
    reconcile(rt)
    finish(rt, api, "wf-a", resultRef="bgjobs:ns:uid:result")
    obs = asyncio.run(jobworkflow.observe(rt, NS, "wf"))
    obs = jobworkflow.Observed(obs.wf, obs.steps, {"bgjobs:ns:uid:result": 20000})
    decision = jobworkflow.decide(obs, NOW, rt.config)
    assert decision.actions == []
    assert decision.status is not None
    assert decision.status["phase"] == "Failed" and decision.status["failedStep"] == "b"
    message = decision.status["error"]["message"]
    assert "20000 bytes" in message and "8192-byte limit" in message and "reference" in message


def test_a_failed_step_fails_the_workflow_skips_the_rest_and_lets_running_steps_finish() -> None:
    rt, api = setup(workflow(SEED))
    reconcile(rt)
    finish(rt, api, "wf-extract", result="t")
    reconcile(rt)
    finish(rt, api, "wf-analyze", "Failed")
    reconcile(rt)
    st = wf_status(api)
    assert st["phase"] == "Failed" and st["failedStep"] == "analyze"
    assert st["error"]["type"] == "ValueError"
    assert step_phases(api) == {
        "extract": "Succeeded",
        "analyze": "Failed",
        "summarize": "Pending",
        "save": "Skipped",
    }
    assert "completionTime" not in st, "a step still runs"
    assert api.count("patch", "BackgroundJob") == 0, "running steps run to the end"
    assert [r for _, r, _ in api.events] == ["StepFailed"]
    finish(rt, api, "wf-summarize", result="s")
    reconcile(rt)
    assert "wf-save" not in created_steps(api), "no step starts after a failure"
    assert wf_status(api)["completionTime"]
    assert [r for _, r, _ in api.events] == ["StepFailed"], "announced once"


def test_fail_fast_cancels_running_steps_once() -> None:
    rt, api = setup(workflow(SEED, failFast=True))
    reconcile(rt)
    finish(rt, api, "wf-extract", result="t")
    reconcile(rt)
    finish(rt, api, "wf-analyze", "Failed")
    reconcile(rt)
    assert bj(api, "wf-summarize")["spec"]["cancel"] is True
    rt.backgroundjobs.put(bj(api, "wf-summarize"))  # the watch delivers the patch
    reconcile(rt)
    assert api.count("patch", "BackgroundJob") == 1


def test_resume_reruns_failed_and_skipped_steps_with_new_names_keeping_results() -> None:
    rt, api = setup(workflow(SEED))
    reconcile(rt)
    finish(rt, api, "wf-extract", result="t")
    reconcile(rt)
    finish(rt, api, "wf-analyze", "Failed")
    finish(rt, api, "wf-summarize", result="s")
    reconcile(rt)
    assert wf_status(api)["phase"] == "Failed"

    patch_spec(rt, api, resumes=1)
    reconcile(rt)
    assert created_steps(api)[-1] == "wf-analyze-r1"
    assert bj(api, "wf-analyze-r1")["spec"]["args"] == ["t"], "the old result is passed"
    assert bj(api, "wf-analyze-r1")["metadata"]["labels"][names.ROUND] == "1"
    st = wf_status(api)
    assert st["phase"] == "Running" and st["resumes"] == 1 and "failedStep" not in st
    assert "Resumed" in [r for _, r, _ in api.events]

    finish(rt, api, "wf-analyze-r1", result="p")
    reconcile(rt)
    assert bj(api, "wf-save-r1")["spec"]["args"] == [["p", "s"], "file-1"]
    finish(rt, api, "wf-save-r1", result="ok")
    reconcile(rt)
    assert wf_status(api)["phase"] == "Succeeded"
    assert sorted(created_steps(api)) == sorted(
        ["wf-extract", "wf-analyze", "wf-summarize", "wf-analyze-r1", "wf-save-r1"]
    ), "succeeded steps never rerun"


def test_cancel_stops_running_steps_and_starts_none() -> None:
    rt, api = setup(workflow(SEED))
    reconcile(rt)
    patch_spec(rt, api, cancel=True)
    reconcile(rt)
    assert bj(api, "wf-extract")["spec"]["cancel"] is True
    assert wf_status(api)["phase"] == "Cancelled"
    finish(rt, api, "wf-extract", "Cancelled")
    reconcile(rt)
    assert created_steps(api) == ["wf-extract"]
    assert set(step_phases(api).values()) == {"Cancelled", "Skipped"}


def test_a_cycle_is_invalid_with_an_event_before_anything_runs() -> None:
    rt, api = setup(workflow([step("a", "b"), step("b", "a")]))
    assert reconcile(rt) is None
    st = wf_status(api)
    assert st["phase"] == "Failed" and st["error"]["reason"] == "Invalid"
    assert "cycle" in st["error"]["message"]
    assert {c["type"]: c["status"] for c in st["conditions"]}["Invalid"] == "True"
    assert created_steps(api) == []
    assert [r for _, r, _ in api.events] == ["InvalidSpec"]
    reconcile(rt)
    assert api.count("status", "JobWorkflow") == 1 and len(api.events) == 1


def test_a_crash_after_creating_a_step_never_creates_it_twice() -> None:
    rt, api = setup(workflow([step("a"), step("b")]))
    api.fail_next["status"] = ApiError(500, {"message": "operator killed here"})
    with pytest.raises(ApiError):
        reconcile(rt)
    rt2 = Runtime(config=OperatorConfig(), api=api, clock=lambda: NOW)  # restarted: empty
    rt2.workflows.put(api.objects[("JobWorkflow", NS, "wf")])
    reconcile(rt2)  # before the BackgroundJob listing arrived: adopts by name
    assert api.count("create", "BackgroundJob") == 2
    assert wf_status(api)["phase"] == "Running"


def test_a_foreign_background_job_of_a_step_name_is_not_adopted() -> None:
    rt, api = setup(workflow([step("a")]))
    api.add({"kind": "BackgroundJob", "metadata": {"name": "wf-a", "namespace": NS}, "spec": {}})
    with pytest.raises(ApiError, match="does not belong to this workflow"):
        reconcile(rt)


def test_steps_of_a_deleted_workflow_of_the_same_name_are_ignored() -> None:
    rt, api = setup(workflow([step("a")]))
    stale = {
        "apiVersion": "bgjobs.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {
            "name": "wf-a-r1",
            "namespace": NS,
            "labels": {names.WORKFLOW: "wf", names.STEP: "a", names.ROUND: "1"},
            "ownerReferences": [{"uid": "old-uid"}],
        },
        "spec": {},
        "status": {"phase": "Failed"},
    }
    rt.backgroundjobs.put(api.add(stale))
    reconcile(rt)
    assert created_steps(api) == ["wf-a"]


def test_progress_is_the_mean_over_steps() -> None:
    rt, api = setup(workflow([step("a"), step("b")]))
    reconcile(rt)
    finish(rt, api, "wf-a", result=1)
    obj = bj(api, "wf-b")
    obj["status"] = {"phase": "Running", "progress": {"percent": 50.0}}
    obj["metadata"]["resourceVersion"] = str(next(api._rv))
    rt.backgroundjobs.put(obj)
    reconcile(rt)
    assert wf_status(api)["progress"] == 75.0
    assert wf_status(api)["stepsDone"] == "1/2"


def test_a_step_dead_letter_names_its_workflow() -> None:
    rt, api = setup(workflow([step("a")]))
    reconcile(rt)
    failed = bj(api, "wf-a")
    status = parse({"phase": Phase.FAILED, "error": {"type": "E"}})
    dl = build_dead_letter(failed, status, None)
    assert dl["spec"]["workflow"] == "wf" and dl["spec"]["workflowStep"] == "a"
    assert dl["metadata"]["labels"][names.WORKFLOW] == "wf"


def test_finished_steps_keep_their_result_in_the_store_plain_jobs_do_not() -> None:
    rt, api = setup(workflow([step("a")]))
    reconcile(rt)
    finish(rt, api, "wf-a", result={"big": "x"})
    assert rt.backgroundjobs.get((NS, "wf-a"))["status"]["result"] == {"big": "x"}  # type: ignore[index]
    plain = api.add(
        {
            "kind": "BackgroundJob",
            "metadata": {"name": "p", "namespace": NS},
            "spec": {"task": "t"},
            "status": {"phase": "Succeeded", "result": 1},
        }
    )
    assert "result" not in rt.backgroundjobs.put(plain)["status"]


def test_on_failure_runs_once_per_failure_with_the_failed_step_and_error() -> None:
    handler = {"task": "app.alert", "args": ["ops"]}
    rt, api = setup(workflow([step("a"), step("b", "a")], onFailure=handler))
    reconcile(rt)
    finish(rt, api, "wf-a", "Failed")
    reconcile(rt)
    reconcile(rt)
    assert created_steps(api) == ["wf-a", "wf-on-failure"]
    args = bj(api, "wf-on-failure")["spec"]["args"]
    assert args[0]["workflow"] == "wf" and args[0]["step"] == "a"
    assert args[0]["error"]["type"] == "ValueError" and args[1:] == ["ops"]
    st = wf_status(api)
    assert st["onFailure"]["phase"] == "Pending" and "completionTime" not in st
    finish(rt, api, "wf-on-failure", result=None)
    reconcile(rt)
    assert wf_status(api)["onFailure"]["phase"] == "Succeeded"
    assert wf_status(api)["completionTime"]
    patch_spec(rt, api, resumes=1)
    reconcile(rt)
    finish(rt, api, "wf-a-r1", "Failed")
    reconcile(rt)
    assert created_steps(api)[-1] == "wf-on-failure-r1", "a new failure, a new run"


def test_the_on_failure_name_is_reserved() -> None:
    with pytest.raises(ValidationError, match="reserved"):
        JobWorkflowSpec.model_validate({"steps": [step("on-failure")]})


def test_replaying_a_failed_steps_dead_letter_continues_the_workflow() -> None:
    from bgjobs_operator.controllers import deadletter

    rt, api = setup(workflow([step("a"), step("b", "a")]))
    reconcile(rt)
    finish(rt, api, "wf-a", "Failed")
    reconcile(rt)
    assert wf_status(api)["phase"] == "Failed"
    failed = api.objects[("BackgroundJob", NS, "wf-a")]
    dl = build_dead_letter(failed, parse(failed["status"]), None)
    dl["spec"]["replays"] = 1
    dl = rt.deadletters.put(api.add(dl))
    asyncio.run(deadletter.reconcile(rt, NS, dl["metadata"]["name"]))
    replay_name = names.replay_name(dl["metadata"]["name"], 1)
    replay = bj(api, replay_name)
    assert replay["metadata"]["labels"][names.STEP] == "a"
    assert replay["metadata"]["ownerReferences"][0]["kind"] == "JobWorkflow"
    replay["metadata"]["creationTimestamp"] = "2026-03-01T12:05:00Z"
    rt.backgroundjobs.put(replay)  # the watch delivers it: the workflow follows
    reconcile(rt)
    assert wf_status(api)["phase"] == "Running" and "failedStep" not in wf_status(api)
    finish(rt, api, replay_name, result=42)
    reconcile(rt)
    assert bj(api, "wf-b")["spec"]["args"] == [42]
    finish(rt, api, "wf-b", result=43)
    reconcile(rt)
    assert wf_status(api)["phase"] == "Succeeded" and wf_status(api)["result"] == 43


def test_a_plain_dead_letter_replay_is_unchanged() -> None:
    from bgjobs_operator.deadletters import build_replay

    dl = {
        "metadata": {"name": "j-1234", "namespace": NS, "labels": {}},
        "spec": {"jobName": "j", "task": "t", "args": [1], "kwargs": {}},
    }
    replay = build_replay(dl, 1, None)
    assert "ownerReferences" not in replay["metadata"]
    assert replay["metadata"]["labels"] == {names.DEAD_LETTER: "j-1234"}


def test_a_step_whose_args_grow_past_the_limit_fails_instead_of_being_refused() -> None:
    rt, api = setup(workflow([step("a"), step("b", "a", args=list(range(64)))]))
    reconcile(rt)
    finish(rt, api, "wf-a", result=1)
    reconcile(rt)
    st = wf_status(api)
    assert st["phase"] == "Failed" and st["failedStep"] == "b"
    assert st["error"]["type"] == "InvalidSpec" and "args" in st["error"]["message"]
    assert created_steps(api) == ["wf-a"]


def test_a_for_each_step_is_a_batch_over_its_dependencys_list() -> None:
    rt, api = setup(
        workflow([step("a"), step("b", "a", forEach=True, parallelism=3), step("c", "b")])
    )
    reconcile(rt)
    finish(rt, api, "wf-a", result=[1, [2, 3], {"x": 4}, None])
    reconcile(rt)
    spec = bj(api, "wf-b")["spec"]
    assert spec["items"] == [[1], [2, 3], {"x": 4}, [None]], "each element one call's arguments"
    assert (spec["args"], spec["kwargs"], spec["parallelism"]) == ([], {}, 3)
    assert "forEach" not in spec


@pytest.mark.parametrize("result", [{"not": "a list"}, [], 7])
def test_a_for_each_step_over_something_else_fails_saying_what_it_got(result: Any) -> None:
    rt, api = setup(workflow([step("a"), step("b", "a", forEach=True)]))
    reconcile(rt)
    finish(rt, api, "wf-a", result=result)
    reconcile(rt)
    status = wf_status(api)
    failed = next(s for s in status["steps"] if s["name"] == "b")
    assert failed["phase"] == "Failed"
    assert "must be a non-empty list" in failed["error"]["message"]


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"dependsOn": []}, "exactly one dependsOn"),
        ({"immutable": True}, "exactly one dependsOn and no immutable"),
        ({"args": [1]}, "remove its args and kwargs"),
    ],
)
def test_a_for_each_step_is_refused_without_one_dependency_or_with_args(
    extra: dict[str, Any], says: str
) -> None:
    steps = [
        {"name": "a", "task": "t"},
        {"name": "b", "task": "t", "dependsOn": ["a"], "forEach": True, **extra},
    ]
    with pytest.raises(ValidationError, match=says):
        JobWorkflowSpec.model_validate({"steps": steps})
