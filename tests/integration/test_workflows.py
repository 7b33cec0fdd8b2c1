"""JobWorkflow end to end on devcluster: each step a real BackgroundJob run by the real Job
controller and worker, results passed through the steps' status, a failing step, resume."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from tests.integration.support import BgJobs, wait_for

ROOT = Path(__file__).resolve().parents[2]
PLURAL = "jobworkflows"


def step(name: str, task: str, *deps: str, **spec: Any) -> dict[str, Any]:
    return {"name": name, "task": task, "dependsOn": list(deps), **spec}


def submit(bgjobs: BgJobs, name: str, steps: list[dict[str, Any]], **spec: Any) -> None:
    bgjobs.create(
        PLURAL,
        {
            "apiVersion": "bgjobs.dev/v1alpha1",
            "kind": "JobWorkflow",
            "metadata": {"name": name},
            "spec": {"steps": steps, **spec},
        },
    )


def wait_workflow(
    bgjobs: BgJobs, name: str, *phases: str, timeout: float = 180, resumes: int = 0
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        st = bgjobs.get(name, PLURAL).get("status") or {}
        seen = st.get("phase") in phases and st.get("completionTime")
        return st if seen and (st.get("resumes") or 0) >= resumes else None

    return wait_for(reached, timeout=timeout, what=f"workflow {name} to reach {phases}")


def test_the_seed_canvas_runs_with_results_passed(
    bgjobs: BgJobs, kubectl, devcluster, capsys
) -> None:  # type: ignore[no-untyped-def]
    ns = bgjobs.namespace
    kubectl("apply", "-n", ns, "-f", str(ROOT / "examples" / "jobworkflow-seed.yaml"))
    st = wait_workflow(bgjobs, "analyze-file-42", "Succeeded", "Failed")
    assert st["phase"] == "Succeeded", st
    assert st["result"] == {
        "file": "file-42",
        "sentiment": "positive",
        "summary": "text of file-42: the",
    }
    assert st["stepsDone"] == "4/4" and st["progress"] == 100
    assert [s["phase"] for s in st["steps"]] == ["Succeeded"] * 4
    steps = {b["metadata"]["name"]: b for b in bgjobs.list("backgroundjobs")}
    assert sorted(steps) == [
        f"analyze-file-42-{s}" for s in sorted(("extract", "save", "sentiment", "summary"))
    ]
    save = steps["analyze-file-42-save"]
    assert save["spec"]["args"][0] == [
        {"sentiment": "positive", "score": 2},
        "text of file-42: the",
    ], "the chord body gets its members' results in dependsOn order"
    assert save["metadata"]["ownerReferences"][0]["kind"] == "JobWorkflow"
    table = kubectl("get", "bgwf", "-n", ns).stdout.splitlines()
    assert table[0].split()[:4] == ["NAME", "PHASE", "STEPS", "PROGRESS"]
    assert table[1].split()[:4] == ["analyze-file-42", "Succeeded", "4/4", "100"]
    from bgjobs import plugin

    capsys.readouterr()
    cli = [
        "workflow",
        "describe",
        "analyze-file-42",
        "-n",
        ns,
        "--kubeconfig",
        devcluster.kubeconfig,
    ]
    assert plugin.main(cli) == 0
    described = capsys.readouterr().out
    assert "Phase:          Succeeded" in described
    assert "  └ sentiment" in described and "    └ save" in described
    # Deleting the workflow deletes its steps (garbage collection through ownerReferences).
    kubectl("delete", "bgwf", "analyze-file-42", "-n", ns, "--wait=true")
    wait_for(lambda: not bgjobs.list("backgroundjobs"), timeout=60, what="steps collected")


def test_a_failing_step_skips_the_rest_and_resume_continues_after_the_fix(
    bgjobs: BgJobs,
    tmp_path: Path,
    kubectl,  # type: ignore[no-untyped-def]
) -> None:
    flag = tmp_path / "fixed"
    submit(
        bgjobs,
        "flow",
        [
            step("first", "examples.add", args=[1, 2]),
            step("broken", "examples.needs_file", "first", args=[str(flag)]),
            step("slow", "examples.sleep", "first", immutable=True, kwargs={"seconds": 3}),
            step("last", "examples.add", "broken", immutable=True, args=[10, 5]),
        ],
    )
    st = wait_workflow(bgjobs, "flow", "Failed")
    phases = {s["name"]: s["phase"] for s in st["steps"]}
    assert phases == {
        "first": "Succeeded",
        "broken": "Failed",
        "slow": "Succeeded",
        "last": "Skipped",
    }
    assert st["failedStep"] == "broken"
    assert "FileNotFoundError" in st["error"]["type"]
    assert "flow-last" not in {b["metadata"]["name"] for b in bgjobs.list("backgroundjobs")}
    (dl,) = [d for d in bgjobs.list("deadletters") if d["spec"]["jobName"] == "flow-broken"]
    assert dl["spec"]["workflow"] == "flow" and dl["spec"]["workflowStep"] == "broken"
    events = kubectl(
        "get", "events", "-n", bgjobs.namespace, "--field-selector", "involvedObject.name=flow"
    ).stdout
    assert "StepFailed" in events

    flag.write_text("ok")
    bgjobs.patch("flow", {"spec": {"resumes": 1}}, PLURAL)
    st = wait_workflow(bgjobs, "flow", "Succeeded", "Failed", resumes=1)
    assert st["phase"] == "Succeeded", st
    assert st["result"] == [{"slept": 3}, 15], "two last steps: both results, in step order"
    names = {b["metadata"]["name"]: b for b in bgjobs.list("backgroundjobs")}
    assert "flow-broken-r1" in names and "flow-last-r1" in names
    assert "flow-first-r1" not in names, "a succeeded step is not run again"
    assert names["flow-broken-r1"]["spec"]["args"] == [3, str(flag)]
    assert names["flow-broken-r1"]["status"]["result"] == {"got": 3, "flag": "ok"}


def test_a_cycle_is_reported_invalid_and_nothing_runs(bgjobs: BgJobs, kubectl) -> None:  # type: ignore[no-untyped-def]
    ns = bgjobs.namespace
    refused = kubectl(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        check=False,
        input=yaml.safe_dump(
            {
                "apiVersion": "bgjobs.dev/v1alpha1",
                "kind": "JobWorkflow",
                "metadata": {"name": "bad"},
                "spec": {
                    "steps": [step("a", "examples.noop", "ghost"), step("a", "examples.noop")]
                },
            }
        ),
    )
    assert refused.returncode != 0
    assert "dependsOn names a step that is not in spec.steps" in refused.stderr
    assert "step names must be unique" in refused.stderr
    submit(bgjobs, "loop", [step("a", "examples.noop", "b"), step("b", "examples.noop", "a")])
    st = wait_workflow(bgjobs, "loop", "Failed", timeout=60)
    assert st["error"]["reason"] == "Invalid" and "cycle" in st["error"]["message"]
    time.sleep(1)
    assert bgjobs.list("backgroundjobs") == []


def test_a_canvas_through_the_client(bgjobs: BgJobs, api_client) -> None:  # type: ignore[no-untyped-def]
    from bgjobs.canvas import chord
    from bgjobs.client import Client
    from examples import tasks

    client = Client(bgjobs.namespace, api_client=api_client)
    handle = client.submit(chord([tasks.add.s(1, 2), tasks.add.s(3, 4)], tasks.total.s()))
    assert handle.get(timeout=180) == 10
    assert [s["phase"] for s in handle.steps()] == ["Succeeded"] * 3


def test_a_for_each_step_runs_a_batch_over_the_previous_result(bgjobs: BgJobs, api_client) -> None:  # type: ignore[no-untyped-def]
    """Celery's group over a dynamic list: ids(6) -> item(n) for each id, as one batch of 2
    pods -> total of the item results."""
    from bgjobs.canvas import chain
    from bgjobs.client import Client
    from examples import tasks

    client = Client(bgjobs.namespace, api_client=api_client)
    each = tasks.item.s().set(for_each=True, parallelism=2)
    handle = client.submit(chain(tasks.ids.s(6), each, tasks.total.s()))
    assert handle.get(timeout=240) == sum(2 * i for i in range(6))
    batch_step = bgjobs.get(f"{handle.name}-item")
    assert batch_step["spec"]["items"] == [[i] for i in range(6)]
    status = batch_step["status"]
    assert status["batch"]["succeeded"] == 6 and status["result"] == [0, 2, 4, 6, 8, 10]


def test_fail_fast_cancels_running_steps_and_on_failure_runs_once(bgjobs: BgJobs) -> None:
    submit(
        bgjobs,
        "ff",
        [
            step("doomed", "examples.permanent"),
            step("long", "examples.sleep", kwargs={"seconds": 60}),
            step("after", "examples.noop", "doomed", "long", immutable=True),
        ],
        failFast=True,
        onFailure={"task": "examples.on_failure", "args": ["pager"]},
    )
    st = wait_workflow(bgjobs, "ff", "Failed", timeout=120)
    phases = {s["name"]: s["phase"] for s in st["steps"]}
    assert phases == {"doomed": "Failed", "long": "Cancelled", "after": "Skipped"}
    assert st["failedStep"] == "doomed"
    assert st["onFailure"]["phase"] == "Succeeded"
    handler = bgjobs.status("ff-on-failure")
    assert handler["result"] == (
        "[pager] ff: step doomed failed (bgjobs_worker.errors.PermanentError)"
    )
    handlers = [b for b in bgjobs.list("backgroundjobs") if "on-failure" in b["metadata"]["name"]]
    assert len(handlers) == 1


def test_operator_sigkilled_twice_while_workflows_run(
    bgjobs: BgJobs,
    operator,
    devcluster,  # type: ignore[no-untyped-def]
) -> None:
    from tests.integration.test_resilience import operator_creates

    count = 6
    for i in range(count):
        submit(
            bgjobs,
            f"w{i}",
            [
                step("one", "examples.add", args=[i, 1]),
                step("two", "examples.add", args=[i, 2]),
                step("sum", "examples.total", "one", "two"),
                step("plus", "examples.add", "sum", args=[10]),
            ],
        )
    for pause in (2.0, 4.0):
        time.sleep(pause)
        operator.kill()
        time.sleep(2)  # steps finish meanwhile; nobody starts the next ones
        operator.start()

    def all_done() -> bool:
        items = bgjobs.list(PLURAL)
        return len(items) == count and all(
            (w.get("status") or {}).get("completionTime") for w in items
        )

    wait_for(all_done, timeout=400, what="every workflow to finish", interval=1)
    for w in bgjobs.list(PLURAL):
        i = int(w["metadata"]["name"][1:])
        assert w["status"]["phase"] == "Succeeded", w["status"]
        assert w["status"]["result"] == (i + 1) + (i + 2) + 10, "no result lost"
    creates = operator_creates(f"{devcluster.state_dir}/logs/audit.log", bgjobs.namespace)
    steps = {n: c for (res, n), c in creates.items() if res == "backgroundjobs"}
    jobs = {n: c for (res, n), c in creates.items() if res == "jobs"}
    expected = {f"w{i}-{s}" for i in range(count) for s in ("one", "two", "sum", "plus")}
    assert set(steps) == expected and set(steps.values()) == {1}, "a step created twice"
    assert set(jobs) == expected and set(jobs.values()) == {1}, "a step's Job created twice"
    assert operator.alive()


def test_cancel_stops_a_whole_workflow(bgjobs: BgJobs) -> None:
    submit(
        bgjobs,
        "stopme",
        [
            step("long", "examples.sleep", kwargs={"seconds": 60}),
            step("next", "examples.noop", "long", immutable=True),
        ],
    )
    wait_for(
        lambda: bgjobs.status("stopme-long").get("phase") == "Running",
        timeout=90,
        what="the first step to run",
    )
    bgjobs.patch("stopme", {"spec": {"cancel": True}}, PLURAL)
    st = wait_workflow(bgjobs, "stopme", "Cancelled", timeout=90)
    assert {s["name"]: s["phase"] for s in st["steps"]} == {"long": "Cancelled", "next": "Skipped"}
    assert "stopme-next" not in {b["metadata"]["name"] for b in bgjobs.list("backgroundjobs")}


def test_replaying_a_steps_dead_letter_continues_the_workflow(
    bgjobs: BgJobs,
    tmp_path: Path,
    api_client,  # type: ignore[no-untyped-def]
) -> None:
    from bgjobs.client import Client

    flag = tmp_path / "fixed"
    submit(
        bgjobs,
        "dlwf",
        [
            step("first", "examples.add", args=[1, 2]),
            step("broken", "examples.needs_file", "first", args=[str(flag)]),
            step("last", "examples.generate_summary", "broken", immutable=True, args=["a b c"]),
        ],
    )
    st = wait_workflow(bgjobs, "dlwf", "Failed")
    dl = st["steps"][1]
    assert dl["phase"] == "Failed"
    (dead,) = [d for d in bgjobs.list("deadletters") if d["spec"]["jobName"] == "dlwf-broken"]
    flag.write_text("fixed")
    replay = Client(bgjobs.namespace, api_client=api_client).replay(dead["metadata"]["name"])
    wait_for(
        lambda: (bgjobs.get("dlwf", PLURAL).get("status") or {}).get("phase") == "Succeeded",
        timeout=180,
        what="the workflow to succeed after the replay",
    )
    st = bgjobs.get("dlwf", PLURAL)["status"]
    assert st["steps"][1]["jobName"] == replay
    assert bgjobs.status(replay)["result"] == {"got": 3, "flag": "fixed"}
    assert st["result"] == "a b c"
