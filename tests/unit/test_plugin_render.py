"""kubectl bgjobs: argument parsing and the text it prints, from API objects alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bgjobs.client import JobView
from bgjobs.errors import ClusterUnreachable, InvalidSpec
from bgjobs.plugin import (
    build_parser,
    describe_job,
    exit_code_for,
    final_line,
    human_age,
    job_table,
    parse_cli_arg,
    parse_kwargs,
    progress_bar,
    unreachable_message,
    watch_line,
)

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def job(name: str, phase: str, **status: Any) -> JobView:
    return JobView.from_object(
        {
            "metadata": {
                "name": name,
                "namespace": "shop",
                "creationTimestamp": (NOW - timedelta(seconds=75)).isoformat(),
            },
            "spec": {"task": "examples.progress"},
            "status": {"phase": phase, **status},
        }
    )


@pytest.mark.parametrize(
    ("percent", "bar"),
    [
        (None, "-"),
        (0, "[----------]   0%"),
        (50, "[#####-----]  50%"),
        (99.9, "[#########-]  99%"),
        (100, "[##########] 100%"),
        (250, "[##########] 100%"),
        (-3, "[----------]   0%"),
        (33.4, "[###-------]  33%"),
    ],
)
def test_progress_bar(percent: float | None, bar: str) -> None:
    assert progress_bar(percent) == bar


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (42, "42s"),
        (119, "119s"),
        (192, "3m12s"),
        (600, "10m"),
        (2 * 3600 + 59 * 60, "179m"),
        (5 * 3600 + 3 * 60, "5h3m"),
        (20 * 3600, "20h"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (30 * 86400, "30d"),
        (800 * 86400, "2y"),
        (-5, "0s"),
        (None, "<unknown>"),
    ],
)
def test_human_age(seconds: float | None, text: str) -> None:
    assert human_age(seconds) == text


@pytest.mark.parametrize(
    ("arg", "value"),
    [
        ("42", 42),
        ("4.5", 4.5),
        ("true", True),
        ("null", None),
        ("[1, 2]", [1, 2]),
        ('{"a": 1}', {"a": 1}),
        ('"007"', "007"),
        ("007", "007"),
        ("report.csv", "report.csv"),
        ("", ""),
    ],
)
def test_cli_args_are_json_when_they_parse(arg: str, value: Any) -> None:
    assert parse_cli_arg(arg) == value


def test_kwargs_must_be_a_json_object() -> None:
    assert parse_kwargs('{"steps": 3}') == {"steps": 3}
    assert parse_kwargs(None) == {}
    with pytest.raises(InvalidSpec, match="JSON object"):
        parse_kwargs("[1]")
    with pytest.raises(InvalidSpec, match="JSON object"):
        parse_kwargs("steps=3")


def test_list_table() -> None:
    views = [
        job("report", "Running", attempts=1, progress={"percent": 50}),
        job("done", "Succeeded", attempts=2),
    ]
    lines = job_table(views, NOW).splitlines()
    assert lines[0].split() == ["NAME", "TASK", "PHASE", "PROGRESS", "ATTEMPTS", "AGE"]
    assert lines[1] == (
        "report   examples.progress   Running     [#####-----]  50%   1          75s"
    )
    assert lines[2].split() == ["done", "examples.progress", "Succeeded", "-", "2", "75s"]
    wide = job_table(views, NOW, namespaces=True).splitlines()
    assert wide[0].split()[:2] == ["NAMESPACE", "NAME"] and wide[1].startswith("shop ")


def test_watch_and_final_lines() -> None:
    running = job(
        "exp",
        "Running",
        attempts=1,
        progress={"percent": 40, "stage": "exporting", "message": "2000/5000"},
    )
    assert watch_line(running) == "exp  Running  [####------]  40%  exporting: 2000/5000  attempt 1"
    assert watch_line(job("exp", "Pending")) == "exp  Pending"

    done = job("exp", "Succeeded", result={"url": "s3://x"})
    assert final_line(done) == 'result: {"url": "s3://x"}'
    assert exit_code_for(done) == 0
    failed = job(
        "exp",
        "Failed",
        error={"type": "ValueError", "message": "bad", "exitCode": 3, "reason": "PodFailurePolicy"},
        deadLetter={"name": "exp-1234abcd"},
    )
    assert final_line(failed) == (
        "error: ValueError: bad (PodFailurePolicy, exit code 3); dead letter exp-1234abcd"
    )
    assert exit_code_for(failed) == 1
    cancelled = job("exp", "Cancelled")
    assert (final_line(cancelled), exit_code_for(cancelled)) == ("cancelled", 2)


def test_describe_shows_status_error_conditions_and_events() -> None:
    view = job(
        "perm",
        "Failed",
        attempts=1,
        error={"type": "PermanentError", "message": "bad input", "exitCode": 3},
        deadLetter={"name": "perm-1234abcd"},
        conditions=[
            {
                "type": "Failed",
                "status": "True",
                "reason": "PodFailurePolicy",
                "message": "permanent error, not retried",
                "lastTransitionTime": "2025-03-01T11:59:50Z",
            }
        ],
    )
    events = [
        {
            "type": "Warning",
            "reason": "Failed",
            "message": "permanent error",
            "lastTimestamp": "2025-03-01T11:59:51Z",
            "source": {"component": "bgjobs-operator"},
        }
    ]
    text = describe_job(view, events, NOW)
    lines = text.splitlines()
    assert "Phase:          Failed" in lines
    assert "  Message:      bad input" in lines
    assert "  Exit Code:    3" in lines
    assert any(line.startswith("Dead Letter:    perm-1234abcd") for line in lines)
    cond = lines[lines.index("Conditions:") + 2].split()
    assert cond[:4] == ["Failed", "True", "PodFailurePolicy", "10s"]
    event = lines[lines.index("Events:") + 2].split()
    assert event[:4] == ["Warning", "Failed", "9s", "bgjobs-operator"]
    empty = describe_job(job("new", "Pending"), [], NOW).splitlines()
    assert empty[empty.index("Events:") + 1] == "  <none>"


def test_global_options_before_or_after_the_command() -> None:
    parser = build_parser()
    opts = parser.parse_args(["-n", "a", "--kubeconfig", "/k", "list", "--phase", "Failed"])
    assert (opts.namespace, opts.kubeconfig, opts.phase, opts.output) == (
        "a",
        "/k",
        "Failed",
        "table",
    )
    opts = parser.parse_args(["list", "-n", "b", "-o", "json"])
    assert (opts.namespace, opts.kubeconfig, opts.output) == ("b", None, "json")
    opts = parser.parse_args(["-n", "a", "watch", "x", "-n", "c"])
    assert opts.namespace == "c", "the later, more specific one wins"
    opts = parser.parse_args(["submit", "examples.add", "40", "2", "--kwargs", "{}", "--wait"])
    assert (opts.task, opts.args, opts.wait, opts.critical) == (
        "examples.add",
        ["40", "2"],
        True,
        False,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        *[
            [cmd, "--help"]
            for cmd in ("submit", "list", "watch", "logs", "describe", "cancel", "replay", "dl")
        ],
    ],
)
def test_help_everywhere(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 0
    assert "--namespace" in capsys.readouterr().out


def test_unreachable_message_names_the_server_and_what_to_do() -> None:
    text = unreachable_message(
        ClusterUnreachable("https://127.0.0.1:1", "[Errno 111] Connection refused"), "/tmp/kc"
    )
    assert "\n" not in text
    assert "https://127.0.0.1:1" in text and "Connection refused" in text
    assert "make cluster-up" in text and "KUBECONFIG (using /tmp/kc)" in text


def _workflow_view() -> Any:
    from bgjobs.client.workflows import WorkflowView

    return WorkflowView.from_object(
        {
            "metadata": {"name": "wf", "namespace": "n"},
            "spec": {
                "steps": [
                    {"name": "extract", "task": "t"},
                    {"name": "analyze", "task": "t", "dependsOn": ["extract"]},
                    {"name": "save", "task": "t", "dependsOn": ["analyze"]},
                ],
            },
            "status": {
                "phase": "Failed",
                "stepsDone": "1/3",
                "progress": 33.3,
                "failedStep": "analyze",
                "error": {"type": "ValueError", "message": "bad"},
                "completionTime": "2026-03-01T12:00:00Z",
                "steps": [
                    {
                        "name": "extract",
                        "phase": "Succeeded",
                        "attempts": 1,
                        "progress": 100,
                        "result": '"text"',
                    },
                    {
                        "name": "analyze",
                        "phase": "Failed",
                        "attempts": 2,
                        "error": {"type": "ValueError", "message": "bad"},
                    },
                    {"name": "save", "phase": "Skipped"},
                ],
            },
        }
    )


def test_workflow_tree_indents_steps_by_depth() -> None:
    from bgjobs.plugin import workflow_tree

    lines = workflow_tree(_workflow_view()).splitlines()
    assert lines[0].split() == ["STEP", "PHASE", "ATTEMPTS", "PROGRESS", "AFTER", "RESULT/ERROR"]
    assert lines[1].startswith("extract ") and "[##########] 100%" in lines[1]
    assert lines[2].startswith("  └ analyze") and "ValueError: bad" in lines[2]
    assert lines[3].startswith("    └ save") and "Skipped" in lines[3]


def test_describe_workflow_names_the_failed_step_and_how_to_resume() -> None:
    from datetime import UTC, datetime

    from bgjobs.plugin import describe_workflow

    text = describe_workflow(_workflow_view(), [], datetime(2026, 3, 1, tzinfo=UTC))
    assert "Failed Step:    analyze" in text
    assert "kubectl bgjobs workflow resume wf" in text
    assert "Steps:" in text and "Events:" in text


def test_queue_table() -> None:
    from bgjobs.plugin import queue_table

    queues = [
        {
            "metadata": {"name": "heavy"},
            "spec": {"concurrency": 5, "rateLimit": "10/m", "paused": True},
            "status": {
                "running": 5,
                "waiting": 3,
                "admittedLastMinute": 7,
                "oldestWaiting": "2025-03-01T11:57:00Z",
            },
        },
        {"metadata": {"name": "light"}, "spec": {}, "status": {}},
    ]
    assert queue_table(queues, NOW).splitlines() == [
        "NAME    WAITING   RUNNING   RATE   ADMITTED-1M   PAUSED   OLDEST-WAITING",
        "heavy   3         5/5       10/m   7             yes      3m",
        "light   0         0/-       -      0             no       -",
    ]


def test_a_batch_shows_a_bar_over_its_items() -> None:
    batch = {"total": 50, "succeeded": 18, "failed": 2, "running": 4, "executions": 21}
    running = job("inv", "Running", batch={**batch, "ratePerSecond": 12.5})
    assert watch_line(running) == "inv  Running  [####------]  40%  20/50 items, 2 failed, 12.5/s"
    assert "[####------]  40%" in job_table([running], NOW)
    text = describe_job(running, [], NOW)
    assert "Items:          [####------]  40%  20/50 items, 2 failed, 12.5/s" in text
    assert "  Executions:   21" in text
    done = job("inv", "Succeeded", batch={"total": 50, "succeeded": 50, "outcomesKey": "k"})
    assert final_line(done) == "all 50 items succeeded"
    assert "per item, in Redis at k" in describe_job(done, [], NOW)


def test_an_items_outcome_renders_its_result_or_error() -> None:
    from bgjobs.plugin import item_text

    ok = {"status": "SUCCESS", "result": {"ü": None}, "attempts": 1}
    assert item_text("b", 3, ok) == 'item 3 of b: SUCCESS after 1 attempt\nresult: {"ü": null}'
    bad = {"status": "FAILURE", "error": {"type": "ValueError", "message": "no"}, "attempts": 3}
    assert item_text("b", 7, bad) == "item 7 of b: FAILURE after 3 attempts\nerror: ValueError: no"
