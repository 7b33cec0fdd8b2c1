"""Each rule is declared once (bgjobs/api/rules.py): its CEL, run here by a CEL interpreter,
and its Python check give the same answer on every case, and the models and the schedule
parser refuse what the CRD refuses."""

from __future__ import annotations

from typing import Any

import celpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bgjobs.api import rules
from bgjobs.api.v1alpha1 import BackgroundJobSpec, DeadLetterSpec, JobScheduleSpec
from bgjobs.schedule import ScheduleError, parse_schedule

CEL = celpy.Environment()


def cel(rule: rules.Rule | rules.TransitionRule, **activation: Any) -> bool:
    program = CEL.program(CEL.compile(rule.cel))
    return bool(program.evaluate({k: celpy.json_to_cel(v) for k, v in activation.items()}))


def agree(rule: rules.Rule, node: dict[str, Any]) -> bool:
    """The rule's verdict on ``node``, after checking that CEL and Python give the same."""
    verdict = rule.check(node)
    assert cel(rule, self=node) == verdict, (rule.cel, node)
    return verdict


# --------------------------------------------------------------------------- task template

TEMPLATE_CASES = [
    ({"task": "t"}, True),
    ({"task": "t", "timeLimits": {}}, True),
    ({"task": "t", "timeLimits": {"softSeconds": 5}}, True),
    ({"task": "t", "timeLimits": {"softSeconds": 5, "hardSeconds": 6}}, True),
    ({"task": "t", "timeLimits": {"softSeconds": 6, "hardSeconds": 6}}, False),
    ({"task": "t", "timeLimits": {"softSeconds": 7, "hardSeconds": 6}}, False),
    ({"task": "t", "activeDeadlineSeconds": 10, "timeLimits": {"hardSeconds": 10}}, True),
    ({"task": "t", "activeDeadlineSeconds": 9, "timeLimits": {"hardSeconds": 10}}, False),
    ({"task": "t", "activeDeadlineSeconds": 9, "timeLimits": {"softSeconds": 20}}, True),
    ({"task": "t", "activeDeadlineSeconds": 9}, True),
]


@pytest.mark.parametrize(("node", "valid"), TEMPLATE_CASES)
def test_task_template_rules_agree_in_cel_and_python(node: dict[str, Any], valid: bool) -> None:
    verdicts = [agree(rule, node) for rule in rules.TASK_TEMPLATE_RULES]
    assert all(verdicts) == valid


@pytest.mark.parametrize(("node", "valid"), TEMPLATE_CASES)
def test_both_specs_share_the_task_template_rules(node: dict[str, Any], valid: bool) -> None:
    for validate in (
        BackgroundJobSpec.model_validate,
        lambda n: JobScheduleSpec.model_validate({"schedule": "@daily", "template": n}),
    ):
        if valid:
            validate(node)
        else:
            with pytest.raises(ValidationError, match=r"timeLimits\.\w+ must"):
                validate(node)


@settings(max_examples=60, deadline=None)
@given(
    st.one_of(st.none(), st.integers(1, 50)),
    st.one_of(st.none(), st.integers(1, 50)),
    st.one_of(st.none(), st.integers(1, 50)),
)
def test_time_limit_rules_agree_on_any_numbers(
    soft: int | None, hard: int | None, deadline: int | None
) -> None:
    limits = {k: v for k, v in (("softSeconds", soft), ("hardSeconds", hard)) if v is not None}
    node: dict[str, Any] = {"task": "t", "timeLimits": limits}
    if deadline is not None:
        node["activeDeadlineSeconds"] = deadline
    for rule in rules.TASK_TEMPLATE_RULES:
        agree(rule, node)


# --------------------------------------------------------------------------- schedules

SCHEDULE_CASES = [
    # (schedule, the CRD accepts it, parse_schedule accepts it)
    ("*/15 * * * *", True, True),
    ("0 9 * * MON-FRI", True, True),
    ("0 0 1 jan,Jul *", True, True),
    ("0 0 * * 7", True, True),
    ("00 09 * * *", True, True),
    ("5/10 * * * *", True, True),
    ("61 * * * *", False, False),
    ("60 * * * *", False, False),
    ("0 24 * * *", False, False),
    ("0 0 0 * *", False, False),
    ("0 0 32 * *", False, False),
    ("0 0 1 13 *", False, False),
    ("0 0 * * 8", False, False),
    ("0 0 * * FUNDAY", False, False),
    ("*/0 * * * *", False, False),
    ("*/60 * * * *", False, False),
    ("1,,2 * * * *", False, False),
    ("* * * *", False, False),
    ("0 * * * * *", False, False),
    ("@hourly", True, True),
    ("@Daily", True, True),
    ("@every 5m", False, False),
    ("@reboot", False, False),
    ("every 15m", True, True),
    ("every 120s", True, True),
    ("EVERY 2 Hours", True, True),
    ("every minute", True, True),
    ("every 1d", True, True),
    ("every 90m", False, False),
    ("every 2d", False, False),
    ("every 30s", False, False),
    ("every second", False, False),
    ("every fortnight", False, False),
    ("0\t9 * *\n* ", True, True),
    ("every 15\u017f", False, False),  # a long s, which (?i) folds to "s"
    ("0\u00a00 * * * *", False, False),  # a no-break space, white space to Python only
    ("0 0 * * mon\u212a", False, False),  # a Kelvin sign
    ("TZ=Europe/Berlin 0 0 * * *", False, False),
    ("CRON_TZ=UTC 0 0 * * *", False, False),
    # What only the parser sees: it refuses them when the operator reconciles (Invalid).
    ("30-10 * * * *", True, False),  # a backwards range
    ("0-10/20 * * * *", True, False),  # a step longer than its range
    ("0 0 30 2 *", True, False),  # a date that never occurs
]


def parses(schedule: str) -> bool:
    try:
        parse_schedule(schedule)
    except ScheduleError:
        return False
    return True


@pytest.mark.parametrize(("schedule", "crd", "parser"), SCHEDULE_CASES)
def test_schedule_rules_agree_in_cel_and_python_and_with_the_parser(
    schedule: str, crd: bool, parser: bool
) -> None:
    node = {"schedule": schedule}
    assert all([agree(rule, node) for rule in rules.SCHEDULE_RULES]) == crd
    assert parses(schedule) == parser


def test_the_model_refuses_what_the_crd_refuses() -> None:
    template = {"task": "t"}
    JobScheduleSpec.model_validate({"schedule": "every 120s", "template": template})
    with pytest.raises(ValidationError, match="minute \\(0-59\\)"):
        JobScheduleSpec.model_validate({"schedule": "61 * * * *", "template": template})


def openapi_valid(schema: dict[str, Any], node: Any) -> bool:
    """The OpenAPI value validations SchemaRules use, as the API server reads them."""
    checks = {
        "required": lambda v: all(k in node for k in v),
        "properties": lambda v: all(openapi_valid(s, node[k]) for k, s in v.items() if k in node),
        "minItems": lambda v: len(node) >= v,
        "minProperties": lambda v: len(node) >= v,
        "anyOf": lambda v: any(openapi_valid(s, node) for s in v),
        "allOf": lambda v: all(openapi_valid(s, node) for s in v),
        "not": lambda v: not openapi_valid(v, node),
    }
    return all(checks[k](v) for k, v in schema.items())


def agree_schema(rule: rules.SchemaRule, node: dict[str, Any]) -> bool:
    verdict = rule.check(node)
    assert openapi_valid(rule.openapi, node) == verdict, (rule.openapi, node)
    return verdict


BATCH_CASES = [
    ({"task": "t", "items": [[1], {"x": 2}]}, True),
    ({"task": "t", "items": [[1]], "args": [], "kwargs": {}}, True),
    ({"task": "t", "items": [[1]], "args": [1]}, False),
    ({"task": "t", "items": [[1]], "kwargs": {"a": 1}}, False),
    ({"task": "t", "args": [1], "kwargs": {"a": 1}}, True),
    ({"task": "t", "items": [[1]], "parallelism": 2, "chunkSize": 5, "maxFailedItems": 0}, True),
    ({"task": "t", "parallelism": 2}, False),
    ({"task": "t", "chunkSize": 2}, False),
    ({"task": "t", "maxFailedItems": 2}, False),
]


@pytest.mark.parametrize(("node", "valid"), BATCH_CASES)
def test_batch_rules_agree_in_cel_and_python_and_the_model(
    node: dict[str, Any], valid: bool
) -> None:
    assert all([agree_schema(rule, node) for rule in rules.BATCH_RULES]) == valid
    if valid:
        BackgroundJobSpec.model_validate(node)
    else:
        with pytest.raises(ValidationError):
            BackgroundJobSpec.model_validate(node)


def test_a_batch_item_is_a_list_or_an_object() -> None:
    with pytest.raises(ValidationError, match=r"items\[1\] must be a list"):
        BackgroundJobSpec.model_validate({"task": "t", "items": [[1], 2]})
    with pytest.raises(ValidationError):
        BackgroundJobSpec.model_validate({"task": "t", "items": []})


def test_batch_items_are_immutable() -> None:
    old = {"task": "t", "items": [[1]]}
    new = {"task": "t", "items": [[2]]}
    assert rules.transition_violations(old, new, BackgroundJobSpec.transition_rules())


FIELD_TOKENS = ["*", "?", "0", "5", "07", "23", "24", "31", "32", "59", "60", "61", "7", "8"]
NAMES = ["jan", "DEC", "Mon", "sun", "sat", "feb", "xyz"]


@st.composite
def cron_like(draw: st.DrawFn) -> str:
    def item() -> str:
        start = draw(st.sampled_from(FIELD_TOKENS + NAMES))
        if draw(st.booleans()) and start not in ("*", "?"):
            start += "-" + draw(st.sampled_from(FIELD_TOKENS + NAMES))
        if draw(st.booleans()):
            start += "/" + draw(st.sampled_from(["0", "1", "2", "7", "30", "59", "60"]))
        return start

    fields = [
        ",".join(item() for _ in range(draw(st.integers(1, 2))))
        for _ in range(draw(st.sampled_from([4, 5, 5, 5, 6])))
    ]
    return " ".join(fields)


@settings(max_examples=300, deadline=None)
@given(cron_like())
def test_the_parser_refuses_whatever_the_crd_refuses(schedule: str) -> None:
    crd = all(agree(rule, {"schedule": schedule}) for rule in rules.SCHEDULE_RULES)
    if parses(schedule):
        assert crd, schedule


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 100_000),
    st.sampled_from(["s", "sec", "secs", "m", "min", "minutes", "h", "hr", "hours", "d", "day"]),
    st.sampled_from(["", " ", "  "]),
)
def test_interval_rule_agrees_with_the_parser(amount: int, unit: str, gap: str) -> None:
    schedule = f"every {amount}{gap}{unit}"
    crd = all(agree(rule, {"schedule": schedule}) for rule in rules.SCHEDULE_RULES)
    assert crd == parses(schedule), schedule


# --------------------------------------------------------------------------- immutability


def job_spec(**fields: Any) -> dict[str, Any]:
    """A BackgroundJob spec as the API server stores it: defaults filled in."""
    return BackgroundJobSpec.model_validate({"task": "t", **fields}).model_dump(
        mode="json", exclude_none=True
    )


def transition_verdict(model: type[Any], old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    broken = rules.transition_violations(old, new, model.transition_rules())
    for rule in model.transition_rules():
        assert cel(rule, self=new, oldSelf=old) == rule.check(old, new), rule.cel
    return broken


@pytest.mark.parametrize(
    ("change", "refused"),
    [
        ({"cancel": True}, []),
        ({"priority": 5}, []),  # reorders a waiting job in its JobQueue
        ({"kwargs": {"a": 2}}, ["spec.kwargs is immutable"]),
        ({"image": "other:1"}, ["spec.image is immutable"]),
        ({"queue": "fast"}, ["spec.queue is immutable"]),
        ({"retry": {"maxRetries": 9}}, ["spec.retry is immutable"]),
        ({"timeLimits": {"hardSeconds": 5}}, ["spec.timeLimits is immutable"]),
        ({"task": "u"}, ["spec.task is immutable"]),
        ({"critical": True}, ["spec.critical is immutable"]),
        ({"startAt": "2026-03-01T12:00:00Z"}, ["spec.startAt is immutable"]),
        ({"args": [1, 2]}, []),  # only the catch-all sees args (CEL cannot read them)
    ],
)
def test_a_job_spec_is_immutable_but_for_cancel_and_priority(
    change: dict[str, Any], refused: list[str]
) -> None:
    old = job_spec(args=[1], kwargs={"a": 1}, image="img:1")
    new = {**old, **change}
    broken = transition_verdict(BackgroundJobSpec, old, new)
    for fragment in refused:
        assert any(fragment in message for message in broken), broken
    catch_all = (
        "spec cannot change once created, apart from cancel, priority; submit a new BackgroundJob"
    )
    assert (catch_all in " ".join(broken)) == (change not in ({"cancel": True}, {"priority": 5}))


def test_cancel_cannot_be_undone_and_a_cancel_passes_alone() -> None:
    cancelled = job_spec(cancel=True)
    assert transition_verdict(BackgroundJobSpec, cancelled, {**cancelled, "cancel": False}) == [
        "a cancelled job cannot be resumed"
    ]
    assert transition_verdict(BackgroundJobSpec, cancelled, cancelled) == []


def test_a_dead_letter_takes_only_more_replays() -> None:
    old = DeadLetterSpec.model_validate(
        {"jobName": "j", "jobUID": "u", "task": "t", "args": [1]}
    ).model_dump(mode="json", exclude_none=True)
    assert transition_verdict(DeadLetterSpec, old, {**old, "replays": 1}) == []
    assert transition_verdict(DeadLetterSpec, {**old, "replays": 2}, {**old, "replays": 1}) == [
        "replays can only grow"
    ]
    broken = transition_verdict(DeadLetterSpec, old, {**old, "task": "other"})
    assert any("spec.task is immutable" in message for message in broken)
    assert transition_verdict(DeadLetterSpec, old, {**old, "args": [2]})


def test_job_schedule_spec_stays_editable() -> None:
    assert JobScheduleSpec.transition_rules() == ()


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(" \t*?,-/0123456789@aeimnrstvyTZ=\u017f\u00a0"), max_size=24)
)
def test_the_parser_refuses_whatever_the_crd_refuses_on_any_text(schedule: str) -> None:
    crd = all(agree(rule, {"schedule": schedule}) for rule in rules.SCHEDULE_RULES)
    if parses(schedule):
        assert crd, schedule


# --------------------------------------------------------------------------- queues


@pytest.mark.parametrize(
    ("node", "valid"),
    [
        ({}, True),
        ({"rateLimit": "10/m"}, True),
        ({"rateLimit": "1/s"}, True),
        ({"rateLimit": "120/h"}, True),
        ({"rateLimit": "fast"}, False),
        ({"rateLimit": "0/m"}, False),
        ({"rateLimit": "10/d"}, False),
        ({"rateLimit": "-1/s"}, False),
    ],
)
def test_rate_limit_rule_agrees_in_cel_and_python_and_with_the_limiter(
    node: dict[str, Any], valid: bool
) -> None:
    from bgjobs.api.v1alpha1 import JobQueueSpec
    from bgjobs_operator.ratelimit import parse_rate

    assert agree(rules.RATE_LIMIT_FORMAT, node) == valid
    if valid:
        JobQueueSpec.model_validate(node)
        if node:
            parse_rate(node["rateLimit"])
    else:
        with pytest.raises(ValidationError):
            JobQueueSpec.model_validate(node)
        with pytest.raises(ValueError):
            parse_rate(node["rateLimit"])


def test_negative_concurrency_is_refused() -> None:
    from bgjobs.api.v1alpha1 import JobQueueSpec

    with pytest.raises(ValidationError):
        JobQueueSpec.model_validate({"concurrency": -1})


@pytest.mark.parametrize(
    ("node", "valid"),
    [
        ({"task": "t"}, True),
        ({"task": "t", "startAt": "2026-03-01T12:00:00Z"}, True),
        ({"task": "t", "countdownSeconds": 30}, True),
        ({"task": "t", "startAt": "2026-03-01T12:00:00Z", "countdownSeconds": 30}, False),
    ],
)
def test_start_at_or_countdown_not_both(node: dict[str, Any], valid: bool) -> None:
    assert agree(rules.ONE_START_TIME, node) == valid
    if not valid:
        with pytest.raises(ValidationError, match="not both"):
            BackgroundJobSpec.model_validate(node)


def test_start_at_needs_a_time_zone() -> None:
    with pytest.raises(ValidationError, match="time zone"):
        BackgroundJobSpec.model_validate({"task": "t", "startAt": "2026-03-01T12:00:00"})
