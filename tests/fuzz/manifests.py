"""Hypothesis strategies for fuzzed bgjobs manifests (issue 15, item 3).

Every generated manifest is a :class:`Case`: a BackgroundJob, JobSchedule or DeadLetter with a
category (what was fuzzed) and the outcome the fuzz run demands of it:

* ``run``: a valid BackgroundJob of ``examples.echo`` (or a DeadLetter replaying one). It must
  be accepted, reach ``Succeeded``, and the task must have received its args and kwargs
  exactly (compared as canonical JSON, see :func:`canonical`).
* ``accept``: a valid JobSchedule or DeadLetter: accepted, never marked Invalid; a schedule's
  CronJob carries the template's args and kwargs exactly.
* ``reject``: an invalid manifest: refused at apply (HTTP 422 with ``fieldValidation=Strict``,
  what ``kubectl apply`` sends) or accepted and then marked Invalid by the operator with a
  message, and no Job, CronJob or replay created for it.
* ``run_or_reject``: schema-valid but extreme numbers for fields Kubernetes or Redis bound
  (a Job's int32 fields, Redis expiry): either ``run`` or ``reject`` is acceptable, never a
  job stuck, a traceback or a wrong result.

The strategies are derived from the pydantic models in bgjobs/api/v1alpha1.py: valid specs are
built field by field from the models' declared fields and bounds (read from the models'
JSON schemas, the source of the CRDs), and every valid one is checked against the model, so a
generator mistake shows up as a failed unit test rather than as a bogus finding.
"""

from __future__ import annotations

import json
import math
import string
from dataclasses import dataclass, field
from typing import Any, Literal

from hypothesis import strategies as st

from bgjobs.api.v1alpha1 import (
    MAX_ARGS,
    MAX_JOB_NAME,
    MAX_SCHEDULE_NAME,
    BackgroundJobSpec,
    DeadLetterSpec,
    JobScheduleSpec,
    RetryPolicy,
    TaskTemplate,
)

Expect = Literal["run", "accept", "reject", "run_or_reject"]
Kind = Literal["BackgroundJob", "JobSchedule", "DeadLetter"]
PLURAL = {
    "BackgroundJob": "backgroundjobs",
    "JobSchedule": "jobschedules",
    "DeadLetter": "deadletters",
}
ECHO = "examples.echo"
# The operator's default --max-input-bytes: args and kwargs as JSON (ensure_ascii) beyond it
# are Invalid (jobspec.worker_env).
MAX_INPUT_BYTES = 32768
# Queue names the integration fixture's operator limits (BGJOBS_QUEUE_LIMITS): not fuzzed.
RESERVED_QUEUES = frozenset({"serial"})


@dataclass
class Case:
    name: str
    kind: Kind
    category: str
    expect: Expect
    manifest: dict[str, Any]
    note: str = ""
    # outcome, filled in by the runner
    outcome: str = ""
    detail: str = ""
    ok: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def plural(self) -> str:
        return PLURAL[self.kind]

    @property
    def valid(self) -> bool:
        return self.expect in ("run", "accept")


# --- hostile JSON values ----------------------------------------------------------------

SPECIAL_STRINGS = [
    "",
    "$(BGJOBS_TASK)",
    "$(BGJOBS_ARGS)",
    "$(HOME)",
    "$(",
    "$)",
    "$",
    "$$",
    "$$$",
    "$$(BGJOBS_TASK)",
    "price: $$5",
    "${HOME}",
    "$HOME",
    "\x00",
    "a\x00b",
    "\x01\x7f\x1b[31m",
    "e\u0301\u0301\u0301",  # combining acute accents
    "Z\u0351\u0352\u0353\u0354\u0355\u0356\u0357",
    "\U0001f600",  # astral (emoji)
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # ZWJ sequence
    "\U0010ffff",
    "\U00020000",  # CJK extension B
    "\ufeff",
    "\u202eevil",
    "\u2028\u2029",
    "ü",
    'quote " backslash \\ slash /',
    "\n\r\t\b\f",
    "null",
    "true",
    "0",
    "1e308",
    "{}",
    "[]",
    "`id`",
    "%s%n",
    "{{ .Values }}",
    "<script>",
    "\\u0000",
]

SPECIAL_INTS = [
    0,
    -1,
    1,
    2**31 - 1,
    2**31,
    -(2**31),
    2**53,
    2**53 + 1,
    2**63 - 1,
    -(2**63),
    2**63,
    2**64 + 1,
    -(2**64) - 1,
    10**30,
    -(10**40),
    123456789012345678901234567890,
]

SPECIAL_FLOATS = [
    1e308,
    -1e308,
    1.7976931348623157e308,
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    -0.0,
    0.0,
    0.1,
    1.0,
    -1.5,
    1e-7,
    123456789.123456789,
    2.0**53,
]

# Surrogates are left out: they are not Unicode scalar values, and a lone one in JSON is
# turned into U+FFFD by the API server's decoder (not bgjobs' doing; not fuzzed).
any_char = st.characters(codec="utf-8")
texts = st.one_of(
    st.sampled_from(SPECIAL_STRINGS),
    st.text(any_char, max_size=24),
    st.lists(
        st.one_of(st.sampled_from(SPECIAL_STRINGS), st.text(any_char, max_size=6)), max_size=5
    ).map("".join),
)
ints = st.one_of(st.sampled_from(SPECIAL_INTS), st.integers(), st.integers(-(2**70), 2**70))
floats = st.one_of(
    st.sampled_from(SPECIAL_FLOATS),
    st.floats(allow_nan=False, allow_infinity=False),
)
leaves = st.one_of(st.none(), st.booleans(), ints, floats, texts)
keys = st.one_of(st.sampled_from(SPECIAL_STRINGS), st.text(any_char, max_size=12))
json_values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)
    ),
    max_leaves=16,
)


@st.composite
def deep(draw: st.DrawFn) -> Any:
    """A value nested ``depth`` lists/objects deep (the API server accepts any depth of a
    schemaless field; Python, orjson and Go each have their own recursion limits)."""
    depth = draw(st.sampled_from([16, 32, 64, 100, 127, 128, 200, 250]))
    value: Any = draw(leaves)
    for _ in range(depth):
        value = [value] if draw(st.booleans()) else {draw(keys): value}
    return value


@st.composite
def long_string(draw: st.DrawFn, budget: int, over: bool = False) -> str:
    """A string whose JSON (ensure_ascii) is just under ``budget`` bytes (just over: ``over``)."""
    unit = draw(st.sampled_from(["a", "$", "ü", "\U0001f600", "\x00", "e\u0301", "$(X)"]))
    escaped = len(json.dumps(unit)) - 2
    return unit * (max(1, budget // escaped) + (1 if over else 0))


def input_size(args: list[Any], kwargs: dict[str, Any]) -> int:
    """What the operator measures against --max-input-bytes."""
    return len(json.dumps(args)) + len(json.dumps(kwargs))


INPUT_KINDS = ["mixed", "strings", "numbers", "deep", "mixed", "long", "strings", "nulls"]


@st.composite
def hostile_inputs(draw: st.DrawFn, n: int) -> tuple[str, list[Any], dict[str, Any]]:
    """(category, args, kwargs): valid inputs within the operator's byte limit; ``n`` picks
    the kind round robin."""
    kind = pick(INPUT_KINDS, n)
    if kind == "strings":
        args = draw(st.lists(texts, max_size=8))
        kwargs = draw(st.dictionaries(keys, texts, max_size=8))
    elif kind == "numbers":
        args = draw(st.lists(st.one_of(ints, floats), max_size=12))
        kwargs = draw(st.dictionaries(keys, st.one_of(ints, floats), max_size=8))
    elif kind == "deep":
        args = [draw(deep())]
        kwargs = {draw(keys): draw(deep())} if draw(st.booleans()) else {}
    elif kind == "long":
        budget = pick([1000, 8000, 9000, 16000, MAX_INPUT_BYTES - 64], n // len(INPUT_KINDS))
        args = [draw(long_string(budget))]
        kwargs = {}
    elif kind == "nulls":
        args = [None, [None], {"x": None, "empty": {}, "list": []}]
        kwargs = {"nested": [1, {"deep": ["ü", {"x": None, "empty": {}}]}], "null": None}
    else:
        args = draw(st.lists(json_values, max_size=6))
        kwargs = draw(st.dictionaries(keys, json_values, max_size=6))
    if input_size(args, kwargs) > MAX_INPUT_BYTES:
        args, kwargs = args[:1], {}
        if input_size(args, kwargs) > MAX_INPUT_BYTES:
            args = ["trimmed"]
    return f"hostile-{kind}", args, kwargs


# --- names ----------------------------------------------------------------------------


def case_name(index: int, length: int | None = None) -> str:
    base = f"f{index:04d}"
    if length is None or length <= len(base):
        return base
    return base + "-" + "x" * (length - len(base) - 2) + "z"


def bad_names(index: int) -> list[str]:
    """Names the API server must refuse (each unique to the case, should one get through)."""
    base = case_name(index)
    return [
        base.upper(),
        f"{base}_x",
        f"-{base}",
        f"{base}-",
        f"{base} x",
        f"{base}\u00fc",
        f"{base}..b",
        f"{base}/b",
        ".",
        "..",
        base + "a" * 250,
        f"{base}$(X)",
        "\U0001f600" + base,
        "",
    ]


def pick(options: list[Any], ordinal: int) -> Any:
    """Round robin: the n-th case of a generator gets the n-th option, so every category
    is covered evenly (hypothesis' own choices lean towards the first option)."""
    return options[ordinal % len(options)]


# --- valid specs, from the models -----------------------------------------------------


def _bound(model: type, name: str, key: str) -> int:
    """A numeric or length bound of a model field, from its JSON schema (the CRD's source)."""
    schema = model.model_json_schema()["properties"][name]  # type: ignore[attr-defined]
    for option in [schema, *schema.get("anyOf", [])]:
        if key in option:
            return int(option[key])
    raise KeyError(f"{model.__name__}.{name} has no {key}")


MAX_RETRIES = _bound(RetryPolicy, "maxRetries", "maximum")
MIN_RESULT_TTL = _bound(TaskTemplate, "resultTTLSeconds", "minimum")
MAX_QUEUE = _bound(TaskTemplate, "queue", "maxLength")
MAX_TASK = _bound(TaskTemplate, "task", "maxLength")
MAX_IMAGE = _bound(TaskTemplate, "image", "maxLength")
MAX_LAST_OUTPUT = _bound(DeadLetterSpec, "lastOutput", "maxLength")
MAX_REPLAYS = _bound(DeadLetterSpec, "replays", "maximum")
MAX_HISTORY = _bound(JobScheduleSpec, "successfulRunsHistoryLimit", "maximum")

queue_names = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z").filter(
    lambda q: q not in RESERVED_QUEUES
)
exception_names = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_.]{0,30}\Z")
# an env value may hold anything but NUL (EnvVar.value's pattern: no process environment can)
env_values = texts.filter(lambda v: "\x00" not in v)
env_names = st.from_regex(r"\A[A-Z_][A-Z0-9_]{0,20}\Z").filter(lambda n: not n.startswith("BGJOBS"))


@st.composite
def task_template(
    draw: st.DrawFn, args: list[Any], kwargs: dict[str, Any], task: str = ECHO
) -> dict[str, Any]:
    """A valid TaskTemplate (as JSON) running ``task`` with the given inputs; the optional
    fields the model declares are set at random, within their bounds."""
    spec: dict[str, Any] = {"task": task, "args": args, "kwargs": kwargs}
    optional = {
        "queue": queue_names,
        "retry": st.fixed_dictionaries(
            {},
            optional={
                "maxRetries": st.integers(0, MAX_RETRIES),
                "retryOn": st.lists(exception_names, max_size=3),
                "permanentOn": st.lists(exception_names, max_size=3),
                "retryOnSoftTimeLimit": st.booleans(),
            },
        ),
        "ttlSecondsAfterFinished": st.sampled_from([0, 1, 60, 3600, 86400 * 365]),
        "resultTTLSeconds": st.sampled_from([MIN_RESULT_TTL, 3600, 86400 * 30]),
        "image": st.sampled_from(["bgjobs/worker:0.1.0", "registry.example/w@sha256:" + "a" * 64]),
        "env": st.lists(
            st.fixed_dictionaries({"name": env_names, "value": env_values}),
            max_size=3,
            unique_by=lambda e: e["name"],
        ),
        "critical": st.booleans(),
        "resources": st.just({"requests": {"cpu": "10m", "memory": "32Mi"}}),
    }
    for name, strategy in optional.items():
        if draw(st.integers(0, 3)) == 0:
            spec[name] = draw(strategy)
    if input_size(args, kwargs) > 4000 and spec.get("resultTTLSeconds") == MIN_RESULT_TTL:
        # a result over status' 8 KiB lives only in Redis, for resultTTLSeconds: one kept a
        # minute may expire before a 1,000-manifest run reads it back (not a defect)
        spec["resultTTLSeconds"] = 3600
    if draw(st.integers(0, 3)) == 0:
        soft = draw(st.integers(60, 600))
        hard = draw(st.integers(soft + 1, soft + 600))
        spec["timeLimits"] = {"softSeconds": soft, "hardSeconds": hard}
        if draw(st.booleans()):
            spec["activeDeadlineSeconds"] = draw(st.integers(hard, hard + 3600))
    TaskTemplate.model_validate(spec)  # a generator bug fails here, not in the cluster
    return spec


def background_job(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "bgjobs.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {"name": name},
        "spec": spec,
    }


def job_schedule(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "bgjobs.dev/v1alpha1",
        "kind": "JobSchedule",
        "metadata": {"name": name},
        "spec": spec,
    }


def dead_letter(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "bgjobs.dev/v1alpha1",
        "kind": "DeadLetter",
        "metadata": {"name": name},
        "spec": spec,
    }


# --- schedules --------------------------------------------------------------------------

# (low, high, names) per cron field; day of month kept <= 28 so every valid one occurs
CRON_FIELDS = [
    (0, 59, None),
    (0, 23, None),
    (1, 28, None),
    (1, 12, ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]),
    (0, 6, ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]),
]


@st.composite
def cron_field(draw: st.DrawFn, low: int, high: int, names: list[str] | None) -> str:
    form = draw(st.sampled_from(["*", "value", "range", "step", "list", "name"]))
    if form == "*":
        return "*"
    if form == "value":
        return str(draw(st.integers(low, high)))
    if form == "range":
        a = draw(st.integers(low, high - 1))
        b = draw(st.integers(a + 1, high))
        return f"{a}-{b}"
    if form == "step":
        step = draw(st.integers(1, (high - low) // 2 or 1))
        return f"*/{step}"
    if form == "list":
        values = draw(st.lists(st.integers(low, high), min_size=2, max_size=4, unique=True))
        return ",".join(map(str, sorted(values)))
    if names:
        return draw(st.sampled_from(names))
    return str(low)


@st.composite
def valid_schedule(draw: st.DrawFn) -> str:
    form = draw(st.sampled_from(["cron", "cron", "cron", "macro", "interval"]))
    if form == "macro":
        return draw(st.sampled_from(["@hourly", "@daily", "@weekly", "@monthly", "@yearly"]))
    if form == "interval":
        return draw(
            st.sampled_from(
                ["every 1m", "every 5m", "every 15m", "every 30 minutes", "every 2h", "every 1d"]
            )
        )
    return " ".join(draw(cron_field(*f)) for f in CRON_FIELDS)


BAD_SCHEDULES = [
    "61 * * * *",
    "* 24 * * *",
    "* * 32 * *",
    "* * * 13 *",
    "* * * * 8",
    "* * * *",
    "* * * * * *",
    "",
    " ",
    "@fortnightly",
    "every 7m",
    "every 90 minutes",
    "every 0m",
    "TZ=UTC * * * * *",
    "CRON_TZ=Europe/Paris 0 * * * *",
    "0 0 30 2 *",
    "30-10 * * * *",
    "*/90 * * * *",
    "1,,2 * * * *",
    "\u0661 * * * *",
    "* * * * MON-",
    "$(X) * * * *",
    "0\x00 * * * *",
    "1-2-3 * * * *",
    "-1 * * * *",
    "99999999999999999999 * * * *",
]
BAD_TIME_ZONES = [
    "Mars/Olympus",
    "UTC+1",
    "../../etc/passwd",
    "Europe/Paris ",
    "\U0001f600",
    "local",
]
GOOD_TIME_ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"]


# --- the cases --------------------------------------------------------------------------


@st.composite
def valid_background_job(draw: st.DrawFn, index: int, n: int) -> Case:
    category, args, kwargs = draw(hostile_inputs(n))
    spec = draw(task_template(args, kwargs))
    name = case_name(index)
    if n % 10 == 9:  # names at their limit, dotted names
        name = pick([case_name(index, MAX_JOB_NAME), f"{case_name(index)}.a.b"], n // 10)
        category = "valid-name"
    BackgroundJobSpec.model_validate(spec)
    return Case(name, "BackgroundJob", category, "run", background_job(name, spec))


def extreme_background_job(index: int, n: int) -> st.SearchStrategy[Case]:
    """Schema-valid numbers the Job (int32 fields) or Redis (expiry) may not take."""
    name = case_name(index)
    spec: dict[str, Any] = {"task": ECHO, "args": [index], "kwargs": {}}
    fields = ["ttlSecondsAfterFinished", "resultTTLSeconds", "activeDeadlineSeconds", "timeLimits"]
    what = pick(fields, n)
    big = pick([2**31 - 1, 2**31, 2**53, 2**62, 2**63 - 1], n // len(fields))
    if what == "timeLimits":
        big = big if big != 2**31 - 1 else 2**31 - 1 - 30  # the largest hardSeconds allowed
        spec["timeLimits"] = {"softSeconds": big - 1, "hardSeconds": big}
    else:
        spec[what] = big
    # no model check: beyond 2^31-1 the models (and the CRDs) refuse them
    return st.just(
        Case(name, "BackgroundJob", f"extreme-{what}", "run_or_reject", background_job(name, spec))
    )


WRONG_TYPES: dict[str, list[Any]] = {
    "task": [1, ["examples.echo"], {"a": 1}, True],
    "args": ["notalist", 1, {"a": 1}, True],
    "kwargs": ["x", [1, 2], 3],
    "queue": [7, ["a"], False],
    "retry": ["3", [1], 3],
    "timeLimits": [5, "5s", [1]],
    "activeDeadlineSeconds": ["10", 1.5, [1], True],
    "ttlSecondsAfterFinished": ["1", 2.5],
    "resultTTLSeconds": ["3600", 3600.5],
    "env": [{"name": "X"}, "X=1", [1]],
    "envFrom": [{"x": 1}, "s"],
    "critical": ["yes", 1, "true"],
    "cancel": ["no", 0],
    "resources": ["1cpu", [1]],
    "image": [1, ["a"]],
}
OUT_OF_RANGE: dict[str, list[Any]] = {
    "retry.maxRetries": [-1, MAX_RETRIES + 1, 2**64, -(2**63)],
    "resultTTLSeconds": [MIN_RESULT_TTL - 1, 0, -1],
    "ttlSecondsAfterFinished": [-1, -(2**40)],
    "activeDeadlineSeconds": [0, -5],
    "timeLimits.softSeconds": [0, -1],
    "timeLimits.hardSeconds": [0, -(2**63)],
    "queue": ["x" * (MAX_QUEUE + 1), "", "Upper", "under_score", "-a", "a-", "ü"],
    "task": ["", "x" * (MAX_TASK + 1), "1abc", "has space", "$(X)", "ü.task", "a/b"],
    "image": ["", "x" * (MAX_IMAGE + 1)],
    "retry.retryOn": [["1bad"], ["a b"], [""], ["X"] * 33],
    "retry.permanentOn": [["$(X)"], ["E"] * 33],
    "args": [[0] * (MAX_ARGS + 1)],
    "kwargs": [{f"k{i}": i for i in range(MAX_ARGS + 1)}],
    "env": [[{"name": ""}], [{"name": "X" * 257}], [{"name": f"V{i}"} for i in range(65)]],
}


def _set(spec: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = spec
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value


INVALID_JOB = [
    "unknown-field",
    "unknown-nested-field",
    "wrong-type",
    "wrong-type",
    "out-of-range",
    "out-of-range",
    "out-of-range",
    "soft-not-before-hard",
    "hard-beyond-deadline",
    "bad-name",
    "missing-task",
    "inputs-too-big",
    "reserved-env",
    "nul-in-env",
    "bad-quantity",
    "wrong-api-field",
]


@st.composite
def invalid_background_job(draw: st.DrawFn, index: int, n: int) -> Case:
    name = case_name(index)
    _, args, kwargs = draw(hostile_inputs(n))
    spec: dict[str, Any] = {"task": ECHO, "args": args, "kwargs": kwargs}
    what = pick(INVALID_JOB, n)
    m = n // len(INVALID_JOB)
    if what == "unknown-field":
        key = draw(st.sampled_from(["bogus", "Task", "arg", "timeout", "retries", "\U0001f600"]))
        spec[key] = draw(leaves)
    elif what == "unknown-nested-field":
        path = draw(st.sampled_from(["retry.bogus", "timeLimits.minutes", "resources.gpu"]))
        _set(spec, path, 1)
    elif what == "wrong-type":
        key = pick(sorted(WRONG_TYPES), m)
        spec[key] = draw(st.sampled_from(WRONG_TYPES[key]))
        what = f"wrong-type-{key}"
    elif what == "out-of-range":
        key = pick(sorted(OUT_OF_RANGE), m)
        _set(spec, key, draw(st.sampled_from(OUT_OF_RANGE[key])))
        what = f"out-of-range-{key}"
    elif what == "soft-not-before-hard":
        hard = draw(st.integers(1, 2**40))
        soft = draw(st.integers(hard, hard + 100))
        spec["timeLimits"] = {"softSeconds": soft, "hardSeconds": hard}
    elif what == "hard-beyond-deadline":
        deadline = draw(st.integers(1, 10**6))
        spec["timeLimits"] = {"hardSeconds": deadline + draw(st.integers(1, 100))}
        spec["activeDeadlineSeconds"] = deadline
    elif what == "bad-name":
        name = pick([*bad_names(index), case_name(index, MAX_JOB_NAME + 1)], m)
    elif what == "missing-task":
        del spec["task"]
    elif what == "inputs-too-big":
        # accepted by the API server (no schema on values), Invalid for the operator
        budget = pick([MAX_INPUT_BYTES + 1, 40000, 200000, 1000000], m)
        spec["args"] = [draw(long_string(budget, over=True))]
        spec["kwargs"] = {}
        assert input_size(spec["args"], spec["kwargs"]) > MAX_INPUT_BYTES
    elif what == "nul-in-env":
        spec["env"] = [{"name": "GREETING", "value": pick(["\x00", "a\x00b", "$(X)\x00"], m)}]
    elif what == "reserved-env":
        env = draw(
            st.sampled_from(["BGJOBS_ARGS", "BGJOBS_TASK", "BGJOBS_KWARGS", "BGJOBS_JOB_UID"])
        )
        spec["env"] = [{"name": env, "value": "$(BGJOBS_TASK)"}]
    elif what == "bad-quantity":
        spec["resources"] = {
            "requests": {"cpu": draw(st.sampled_from(["lots", "1.2.3", "-1", "∞"]))}
        }
    elif what == "wrong-api-field":
        manifest = background_job(name, spec)
        manifest[draw(st.sampled_from(["specs", "Spec", "extra"]))] = {}
        return Case(name, "BackgroundJob", what, "reject", manifest)
    return Case(name, "BackgroundJob", what, "reject", background_job(name, spec))


@st.composite
def valid_job_schedule(draw: st.DrawFn, index: int, n: int) -> Case:
    _, args, kwargs = draw(hostile_inputs(n))
    template = draw(task_template(args, kwargs))
    spec: dict[str, Any] = {"schedule": draw(valid_schedule()), "template": template}
    # suspended: the fuzz run checks the CronJob, it does not wait for minute ticks
    spec["suspend"] = True
    if draw(st.booleans()):
        spec["timeZone"] = draw(st.sampled_from(GOOD_TIME_ZONES))
    if draw(st.booleans()):
        spec["concurrencyPolicy"] = draw(st.sampled_from(["Allow", "Forbid", "Replace"]))
    if draw(st.booleans()):
        spec["successfulRunsHistoryLimit"] = draw(st.integers(0, MAX_HISTORY))
    name = case_name(index)
    if n % 10 == 9:
        name = case_name(index, MAX_SCHEDULE_NAME)
    JobScheduleSpec.model_validate(spec)
    return Case(name, "JobSchedule", "valid-schedule", "accept", job_schedule(name, spec))


INVALID_SCHEDULE = [
    "bad-cron",
    "bad-cron",
    "bad-cron",
    "bad-time-zone",
    "name-too-long",
    "bad-policy",
    "history-out-of-range",
    "bad-template",
    "unknown-field",
    "wrong-type",
]


@st.composite
def invalid_job_schedule(draw: st.DrawFn, index: int, n: int) -> Case:
    name = case_name(index)
    template: dict[str, Any] = {"task": ECHO, "args": [index]}
    spec: dict[str, Any] = {"schedule": "*/5 * * * *", "template": template, "suspend": True}
    what = pick(INVALID_SCHEDULE, n)
    m = n // len(INVALID_SCHEDULE)
    if what == "bad-cron":
        spec["schedule"] = pick(BAD_SCHEDULES, m)
    elif what == "bad-time-zone":
        spec["timeZone"] = pick(BAD_TIME_ZONES, m)
    elif what == "name-too-long":
        name = case_name(index, MAX_SCHEDULE_NAME + 1)
    elif what == "bad-policy":
        spec["concurrencyPolicy"] = draw(st.sampled_from(["Sometimes", "allow", ""]))
    elif what == "history-out-of-range":
        key = draw(st.sampled_from(["successfulRunsHistoryLimit", "failedRunsHistoryLimit"]))
        spec[key] = draw(st.sampled_from([-1, MAX_HISTORY + 1, 2**63]))
    elif what == "bad-template":
        bad = draw(
            st.sampled_from(
                [
                    {"timeLimits": {"softSeconds": 10, "hardSeconds": 10}},
                    {"task": "bad task"},
                    {"queue": "UPPER"},
                    {"bogus": 1},
                    {"cancel": True},  # a BackgroundJob field, not a template field
                ]
            )
        )
        template.update(bad)
    elif what == "unknown-field":
        spec["cron"] = "* * * * *"
    elif what == "wrong-type":
        key, value = draw(
            st.sampled_from(
                [
                    ("schedule", 5),
                    ("suspend", "yes"),
                    ("startingDeadlineSeconds", "10"),
                    ("startingDeadlineSeconds", 0),
                    ("template", "examples.echo"),
                ]
            )
        )
        spec[key] = value
    return Case(name, "JobSchedule", what, "reject", job_schedule(name, spec))


def _dl_spec(draw: st.DrawFn, index: int, n: int) -> dict[str, Any]:
    _, args, kwargs = draw(hostile_inputs(n))
    spec: dict[str, Any] = {
        "jobName": f"gone-{index}",
        "jobUID": f"00000000-0000-4000-8000-{index:012d}",
        "task": ECHO,
        "args": args,
        "kwargs": kwargs,
    }
    if draw(st.booleans()):
        spec["error"] = {"type": draw(texts), "message": draw(texts), "exitCode": 3, "attempt": 1}
        spec["attempts"] = draw(st.integers(0, 2**62))
        spec["failedAt"] = "2026-01-01T00:00:00Z"
    if draw(st.booleans()):
        spec["lastOutput"] = draw(
            st.one_of(
                texts, st.just("x" * MAX_LAST_OUTPUT), st.just("\U0001f600" * MAX_LAST_OUTPUT)
            )
        )
    return spec


@st.composite
def valid_dead_letter(draw: st.DrawFn, index: int, n: int) -> Case:
    spec = _dl_spec(draw, index, n)
    name = case_name(index)
    if n % 2 == 0:
        # a replay: a new BackgroundJob of the original spec with the letter's inputs
        spec["originalSpec"] = draw(task_template([], {}))
        spec["replays"] = 1
        DeadLetterSpec.model_validate(spec)
        return Case(name, "DeadLetter", "replayed", "run", dead_letter(name, spec))
    spec["originalSpec"] = draw(st.dictionaries(keys, json_values, max_size=3))
    DeadLetterSpec.model_validate(spec)
    return Case(name, "DeadLetter", "record", "accept", dead_letter(name, spec))


INVALID_DEAD_LETTER = [
    "missing-field",
    "replays-out-of-range",
    "wrong-type",
    "last-output-too-long",
    "unknown-field",
    "bad-name",
    "unreplayable",
    "unreplayable",
]


@st.composite
def invalid_dead_letter(draw: st.DrawFn, index: int, n: int) -> Case:
    spec = _dl_spec(draw, index, n)
    name = case_name(index)
    what = pick(INVALID_DEAD_LETTER, n)
    m = n // len(INVALID_DEAD_LETTER)
    if what == "missing-field":
        del spec[draw(st.sampled_from(["jobName", "jobUID", "task"]))]
    elif what == "replays-out-of-range":
        spec["replays"] = draw(st.sampled_from([-1, MAX_REPLAYS + 1, 2**64]))
    elif what == "wrong-type":
        key, value = draw(
            st.sampled_from(
                [("replays", "1"), ("args", {}), ("kwargs", []), ("critical", "no"), ("task", 1)]
            )
        )
        spec[key] = value
    elif what == "last-output-too-long":
        spec["lastOutput"] = "y" * (MAX_LAST_OUTPUT + 1)
    elif what == "unknown-field":
        spec["bogus"] = draw(leaves)
    elif what == "bad-name":
        name = pick(bad_names(index), m)
    elif what == "unreplayable":
        # a replay whose BackgroundJob the API server must refuse: no valid job can come of it
        spec["replays"] = 1
        unreplayable: list[tuple[str, Any]] = [
            ("task", "not a task name!"),
            ("originalSpec", {"task": ECHO, "timeLimits": {"softSeconds": 5, "hardSeconds": 5}}),
            # (an unknown field in originalSpec is no such case: the operator's create is not
            # strict, so the API server prunes it and the replay runs)
            ("originalSpec", {"task": ECHO, "queue": "NOT_A_QUEUE"}),
            ("args", [0] * (MAX_ARGS + 1)),
        ]
        bad = pick(unreplayable, m)
        spec[bad[0]] = bad[1]
    return Case(name, "DeadLetter", what, "reject", dead_letter(name, spec))


# (weight, strategy factory) per 50 manifests: about 40 % run a task
MIX = [
    (15, valid_background_job),
    (2, extreme_background_job),
    (13, invalid_background_job),
    (4, valid_job_schedule),
    (6, invalid_job_schedule),
    (4, valid_dead_letter),
    (6, invalid_dead_letter),
]


def _period() -> list[int]:
    """The order of the factories within one period: smooth weighted round robin, so any
    stretch of consecutive indexes has every factory in its proportion."""
    total = sum(w for w, _ in MIX)
    credit = [0] * len(MIX)
    order = []
    for _ in range(total):
        credit = [c + w for c, (w, _) in zip(credit, MIX, strict=True)]
        best = max(range(len(MIX)), key=lambda i: credit[i])
        credit[best] -= total
        order.append(best)
    return order


PERIOD = _period()


def slot(index: int) -> tuple[int, int]:
    """(factory, ordinal): which factory makes case ``index``, and how many cases that
    factory made before it."""
    rounds, pos = divmod(index, len(PERIOD))
    factory = PERIOD[pos]
    return factory, rounds * MIX[factory][0] + PERIOD[:pos].count(factory)


@st.composite
def any_case(draw: st.DrawFn, index: int) -> Case:
    factory, ordinal = slot(index)
    case: Case = draw(MIX[factory][1](index, ordinal))
    return case


def _draw_one(strategy: st.SearchStrategy[Case], seed: int) -> Case:
    """The second example of a short hypothesis run (the first is always the simplest)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as with_seed

    drawn: list[Case] = []

    @with_seed(seed)
    @settings(
        max_examples=2,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(case: Case) -> None:
        drawn.append(case)

    collect()
    return drawn[-1]


def generate(count: int, seed: int) -> list[Case]:
    """``count`` cases, the same ones for the same seed (in the same program: hypothesis
    also draws from constants it finds in the loaded modules).

    Each case is drawn by its own short hypothesis run (seeded from ``seed`` and its index):
    which generator makes case ``index`` is decided by the index (round robin, ``slot``),
    the values by hypothesis."""
    return [_draw_one(any_case(index), seed * 1_000_003 + index) for index in range(count)]


# --- comparing inputs and outputs ----------------------------------------------------------


def canonical(value: Any) -> str:
    """Canonical JSON: keys sorted, strings as UTF-8 (no escapes), numbers by exact value.

    JSON has one number type: ``1``, ``1.0`` and ``-0.0``/``0`` are the same number, and the
    API server (Go, float64) writes integral floats without a fraction. So an integral float
    is written as the integer it equals (exactly: ``int(x)``); other floats by their shortest
    round-trip repr. Two values are equal as JSON exactly when their canonical forms are
    equal byte for byte. Big integers are kept exact, never rounded.
    """
    return json.dumps(_normal(value), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _normal(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value):
            return int(value)
        return value
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    raise TypeError(f"not JSON: {type(value).__name__}")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def float64_equal(submitted: Any, stored: Any) -> bool:
    """Whether ``stored`` is ``submitted`` as the API server keeps it: numbers it cannot hold
    exactly as int64 become float64 (Go's encoding/json into interface{}), written back as
    the shortest decimal that reads as the same float64, without an exponent below 1e21
    (so ``3.3e16`` comes back as the integer ``33000000000000000``, and ``2**64 + 1`` as
    ``18446744073709552000``). Everything else must be equal as JSON."""
    if (
        _number(submitted)
        and _number(stored)
        and (isinstance(submitted, float) or not -(2**63) <= submitted < 2**63)
    ):
        return float(submitted) == float(stored)
    if isinstance(submitted, list) and isinstance(stored, list):
        return len(submitted) == len(stored) and all(
            float64_equal(a, b) for a, b in zip(submitted, stored, strict=True)
        )
    if isinstance(submitted, dict) and isinstance(stored, dict):
        return submitted.keys() == stored.keys() and all(
            float64_equal(v, stored[k]) for k, v in submitted.items()
        )
    return canonical(submitted) == canonical(stored)


# printable summary of a text for reports
def short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=True)
    text = "".join(c if c in string.printable and c not in "\r\n\t\x0b\x0c" else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
