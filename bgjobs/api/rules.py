"""Validation rules, each declared once: the CEL rule and the Python check come from it.

The API server runs the CEL rule (``x-kubernetes-validations``) at ``kubectl apply``; the
pydantic models run the Python check (``check``) when they validate, so the operator, the
client and the tests refuse exactly what the API server refuses. A rule is built by one of
the few constructors below from plain data (field paths, an operator, a regular expression),
and both forms are derived from that data, never written twice.

Regular expressions stay within what Go's RE2 (CEL ``matches``) and Python's ``re`` read
alike: no look-around, no back-references, flags only as a leading ``(?i)``.
"""

from __future__ import annotations

import fnmatch
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

from bgjobs.schedule import (
    ASCII_PATTERN,
    CRON_PATTERN,
    EXPRESSIBLE_INTERVAL_PATTERN,
    INTERVAL_PREFIX_PATTERN,
    MACRO_PATTERN,
    MACROS,
    TZ_PREFIX_PATTERN,
)

Node = Mapping[str, Any]
# What a rule reads: the node's JSON, or the pydantic model holding it (read by attribute,
# which spares the models a dump on every validation).
Value = Mapping[str, Any] | BaseModel


@dataclass(frozen=True)
class Rule:
    """A rule on one schema node: ``self`` in CEL, the node's JSON in Python."""

    cel: str
    message: str
    check: Callable[[Value], bool]

    def schema(self) -> dict[str, str]:
        return {"rule": self.cel, "message": self.message}


@dataclass(frozen=True)
class SchemaRule:
    """A rule CEL cannot state because it reads fields CEL cannot see (schemaless lists
    such as ``args`` and ``items``, schemaless maps such as ``kwargs``): an OpenAPI value
    validation (one ``allOf`` entry on the node) in the CRD, the same check in Python. The
    API server's message for it is generic; ``message`` is what Python says."""

    openapi: dict[str, Any]
    message: str
    check: Callable[[Value], bool]


AnyRule = Rule | SchemaRule


@dataclass(frozen=True)
class TransitionRule:
    """A rule on updates: ``self`` and ``oldSelf`` in CEL, ``check(old, new)`` in Python."""

    cel: str
    message: str
    check: Callable[[Node, Node], bool]

    def schema(self) -> dict[str, str]:
        return {"rule": self.cel, "message": self.message}


def x_validations(rules: Iterable[AnyRule | TransitionRule]) -> list[dict[str, str]]:
    return [rule.schema() for rule in rules if not isinstance(rule, SchemaRule)]


def all_of(rules: Iterable[AnyRule | TransitionRule]) -> list[dict[str, Any]]:
    return [rule.openapi for rule in rules if isinstance(rule, SchemaRule)]


def violations(node: Value, rules: Iterable[AnyRule]) -> list[str]:
    """The messages of the rules ``node`` breaks, in declaration order."""
    return [rule.message for rule in rules if not rule.check(node)]


def transition_violations(old: Node, new: Node, rules: Iterable[TransitionRule]) -> list[str]:
    return [rule.message for rule in rules if not rule.check(old, new)]


# --- constructors -------------------------------------------------------------------


def _cel_string(text: str) -> str:
    """A CEL string literal (single-quoted, backslashes and quotes escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _lookup(node: Any, path: str) -> Any:
    """The value at a dotted path; None where any step is absent (CEL's ``!has()``)."""
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else getattr(node, part, None)
        if node is None:
            return None
    return node


def _presence(path: str) -> list[str]:
    """``a.b`` -> ``[has(self.a), has(self.a.b)]``: CEL needs every step tested."""
    parts = path.split(".")
    return [f"has(self.{'.'.join(parts[: i + 1])})" for i in range(len(parts))]


_ORDER: Mapping[str, Callable[[Any, Any], bool]] = {"<": operator.lt, "<=": operator.le}


def ordered(low: str, op: str, high: str, message: str) -> Rule:
    """``low op high`` where both optional fields are set (dotted paths from ``self``)."""
    compare = _ORDER[op]
    guards = list(dict.fromkeys(_presence(low) + _presence(high)))
    cel = " || ".join([f"!{g}" for g in guards] + [f"self.{low} {op} self.{high}"])

    def check(node: Value) -> bool:
        a, b = _lookup(node, low), _lookup(node, high)
        return a is None or b is None or compare(a, b)

    return Rule(cel, message, check)


def matches_if(field: str, when: str, must: str, message: str) -> Rule:
    """A string field that matches ``when`` must also match ``must``."""
    cel = f"!self.{field}.matches({_cel_string(when)}) || self.{field}.matches({_cel_string(must)})"
    when_re, must_re = re.compile(when), re.compile(must)

    def check(node: Value) -> bool:
        value = _lookup(node, field)
        return value is None or not when_re.search(value) or bool(must_re.search(value))

    return Rule(cel, message, check)


def always_matches(field: str, pattern: str, message: str) -> Rule:
    cel = f"self.{field}.matches({_cel_string(pattern)})"
    compiled = re.compile(pattern)

    def check(node: Value) -> bool:
        value = _lookup(node, field)
        return value is None or bool(compiled.search(value))

    return Rule(cel, message, check)


def unless_matches(field: str, exempt: str, must: str, message: str) -> Rule:
    """A string field matches ``must`` unless it matches ``exempt``."""
    cel = (
        f"self.{field}.matches({_cel_string(exempt)}) || self.{field}.matches({_cel_string(must)})"
    )
    exempt_re, must_re = re.compile(exempt), re.compile(must)

    def check(node: Value) -> bool:
        value = _lookup(node, field)
        return value is None or bool(exempt_re.search(value) or must_re.search(value))

    return Rule(cel, message, check)


def never_matches(field: str, pattern: str, message: str) -> Rule:
    cel = f"!self.{field}.matches({_cel_string(pattern)})"
    compiled = re.compile(pattern)

    def check(node: Value) -> bool:
        value = _lookup(node, field)
        return value is None or not compiled.search(value)

    return Rule(cel, message, check)


def optional_matches(field: str, pattern: str, message: str) -> Rule:
    """An optional string field, where set, matches ``pattern``."""
    cel = f"!has(self.{field}) || self.{field}.matches({_cel_string(pattern)})"
    compiled = re.compile(pattern)

    def check(node: Value) -> bool:
        value = _lookup(node, field)
        return value is None or bool(compiled.search(value))

    return Rule(cel, message, check)


def at_most_one_of(first: str, second: str, message: str) -> Rule:
    """Two optional fields that exclude each other."""
    cel = f"!(has(self.{first}) && has(self.{second}))"

    def check(node: Value) -> bool:
        return _lookup(node, first) is None or _lookup(node, second) is None

    return Rule(cel, message, check)


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, list | dict | Mapping) and not value)


def excludes(field: str, lists: Iterable[str], maps: Iterable[str], message: str) -> SchemaRule:
    """When ``field`` is set, each of ``lists`` and ``maps`` is absent or empty."""
    lists, maps = list(lists), list(maps)
    both = [{"required": [field, o], "properties": {o: {"minItems": 1}}} for o in lists] + [
        {"required": [field, o], "properties": {o: {"minProperties": 1}}} for o in maps
    ]

    def check(node: Value) -> bool:
        return _lookup(node, field) is None or all(
            _empty(_lookup(node, o)) for o in [*lists, *maps]
        )

    return SchemaRule({"not": {"anyOf": both}}, message, check)


def requires(field: str, needed: str | tuple[str, ...], message: str) -> SchemaRule:
    """``field`` may be set only together with ``needed`` (one of them, for a tuple)."""
    options = (needed,) if isinstance(needed, str) else needed

    def check(node: Value) -> bool:
        return _lookup(node, field) is None or any(_lookup(node, n) is not None for n in options)

    return SchemaRule(
        {"anyOf": [*({"required": [n]} for n in options), {"not": {"required": [field]}}]},
        message,
        check,
    )


def only_grows(field: str, message: str) -> TransitionRule:
    def check(old: Node, new: Node) -> bool:
        return bool(new[field] >= old[field])

    return TransitionRule(f"self.{field} >= oldSelf.{field}", message, check)


def stays_true(field: str, message: str) -> TransitionRule:
    def check(old: Node, new: Node) -> bool:
        return not old.get(field) or bool(new.get(field))

    return TransitionRule(f"!oldSelf.{field} || self.{field}", message, check)


def _cel_visible(annotation: Any) -> bool:
    """Whether CEL can read a field: a list of schemaless items (``args``, ``items``,
    optional or not) it cannot."""
    if get_origin(annotation) in (Union, UnionType):
        return all(_cel_visible(a) for a in get_args(annotation) if a is not type(None))
    return not (get_origin(annotation) is list and get_args(annotation) == (Any,))


def _same(name: str) -> Callable[[Node, Node], bool]:
    def check(old: Node, new: Node) -> bool:
        return bool(old.get(name) == new.get(name))

    return check


def immutable_fields(
    model: type[BaseModel], mutable: Iterable[str], kind: str, advice: str
) -> list[TransitionRule]:
    """One rule per field of ``model`` outside ``mutable`` (naming it in the message), and a
    catch-all for what CEL cannot read: the spec equals the old one unless a mutable
    field changed. (An update that changes a mutable field *and* a field CEL cannot read
    is the one edit that gets through; the Python check mirrors the CEL exactly.)"""
    keep = set(mutable)
    rules: list[TransitionRule] = []
    for name, field in model.model_fields.items():
        if name in keep or not _cel_visible(field.annotation):
            continue
        optional = field.default is None and not field.is_required()
        if optional:
            cel = (
                f"has(self.{name}) == has(oldSelf.{name}) && "
                f"(!has(self.{name}) || self.{name} == oldSelf.{name})"
            )
        else:
            cel = f"self.{name} == oldSelf.{name}"
        rules.append(TransitionRule(cel, f"spec.{name} is immutable; {advice}", _same(name)))
    changed = " || ".join(f"self.{name} != oldSelf.{name}" for name in sorted(keep))
    spelled = ", ".join(sorted(keep))

    def unchanged_unless_mutable_changed(old: Node, new: Node) -> bool:
        return old == new or any(old.get(n) != new.get(n) for n in keep)

    rules.append(
        TransitionRule(
            f"self == oldSelf || {changed}",
            f"a {kind}'s spec cannot change once created, apart from {spelled}; {advice}",
            unchanged_unless_mutable_changed,
        )
    )
    return rules


# --- the rules of bgjobs.dev/v1alpha1 -----------------------------------------------

# A task template (BackgroundJob.spec, JobSchedule.spec.template).
SOFT_BEFORE_HARD = ordered(
    "timeLimits.softSeconds",
    "<",
    "timeLimits.hardSeconds",
    "timeLimits.softSeconds must be less than timeLimits.hardSeconds",
)
HARD_WITHIN_DEADLINE = ordered(
    "timeLimits.hardSeconds",
    "<=",
    "activeDeadlineSeconds",
    "timeLimits.hardSeconds must not exceed activeDeadlineSeconds (the whole job's deadline)",
)
TASK_TEMPLATE_RULES: tuple[Rule, ...] = (SOFT_BEFORE_HARD, HARD_WITHIN_DEADLINE)

# A batch (BackgroundJob.spec.items): each item is one call's arguments, so the job's own
# args and kwargs would be ambiguous; the batch settings mean nothing without items.
ITEMS_EXCLUDE_ARGS = excludes(
    "items",
    ("args",),
    ("kwargs",),
    "spec.items and spec.args/spec.kwargs are exclusive: each item holds one call's arguments",
)
# CEL cannot see spec.items at all (a list of schemaless values), so these are OpenAPI.
ITEMS_FROM_EXCLUDE_ARGS = excludes(
    "itemsFrom",
    ("args",),
    ("kwargs",),
    "spec.itemsFrom and spec.args/spec.kwargs are exclusive: each item holds one call's arguments",
)
# spec.itemsFrom: an upload or a producer task, exactly one.
ONE_PRODUCER = Rule(
    "has(self.upload) != has(self.task)",
    "spec.itemsFrom takes upload (items in Redis) or task (a producer), exactly one",
    lambda node: (_lookup(node, "upload") is None) != (_lookup(node, "task") is None),
)
ITEMS_FROM_RULES: tuple[Rule, ...] = (ONE_PRODUCER,)
# Inline items or items uploaded to Redis, not both.
ONE_ITEM_SOURCE = SchemaRule(
    {"not": {"required": ["items", "itemsFrom"]}},
    "set spec.items or spec.itemsFrom, not both",
    lambda node: _lookup(node, "items") is None or _lookup(node, "itemsFrom") is None,
)
BATCH_RULES: tuple[SchemaRule, ...] = (
    ONE_ITEM_SOURCE,
    ITEMS_EXCLUDE_ARGS,
    ITEMS_FROM_EXCLUDE_ARGS,
    *(
        requires(
            name,
            ("items", "itemsFrom"),
            f"spec.{name} applies to batches only: set spec.items or spec.itemsFrom",
        )
        for name in ("parallelism", "chunkSize", "maxFailedItems")
    ),
    requires("itemIndexes", "items", "spec.itemIndexes numbers spec.items: set spec.items"),
)


# JobSchedule.spec.schedule: the patterns come from bgjobs.schedule, which parses schedules
# for the operator, so the API server and the operator read a schedule alike.
ASCII_ONLY = always_matches(
    "schedule", ASCII_PATTERN, "a schedule is printable ASCII (with spaces or tabs between fields)"
)
NO_TIME_ZONE_PREFIX = never_matches(
    "schedule", TZ_PREFIX_PATTERN, "put the time zone in spec.timeZone, not in the schedule"
)
KNOWN_MACRO = matches_if(
    "schedule",
    r"^\s*@",
    MACRO_PATTERN,
    f"unknown macro; use one of {', '.join(MACROS)}",
)
EXPRESSIBLE_INTERVAL = matches_if(
    "schedule",
    INTERVAL_PREFIX_PATTERN,
    EXPRESSIBLE_INTERVAL_PATTERN,
    "this interval cannot be expressed as a cron schedule: write every <N><unit> (unit s, m, "
    "h or d) that divides an hour or a day evenly (e.g. every 15m, every 2h, every 1d), or "
    "a cron expression",
)
CRON_FIELDS = unless_matches(
    "schedule",
    r"(?i)^\s*(@|every|(CRON_)?TZ=)",  # macros, intervals, time zones: the rules above
    CRON_PATTERN,
    "a cron schedule has 5 fields: minute (0-59), hour (0-23), day of month (1-31), month "
    "(1-12 or JAN-DEC) and day of week (0-7 or SUN-SAT), each *, a value, a range a-b, a list "
    "a,b or any of these with a step /n",
)
SCHEDULE_RULES: tuple[Rule, ...] = (
    ASCII_ONLY,
    NO_TIME_ZONE_PREFIX,
    KNOWN_MACRO,
    EXPRESSIBLE_INTERVAL,
    CRON_FIELDS,
)

# JobWorkflow.spec: the step graph. Cycles need a graph search CEL cannot express; the
# model refuses them (bgjobs.api.dag) and the operator reports them as Invalid.


def _field(item: Any, key: str) -> Any:
    return item.get(key) if isinstance(item, Mapping) else getattr(item, key, None)


def _steps(node: Value) -> list[Any]:
    return list(_lookup(node, "steps") or [])


def _unique_step_names(node: Value) -> bool:
    found = [_field(s, "name") for s in _steps(node)]
    return len(found) == len(set(found))


def _known_dependencies(node: Value) -> bool:
    known = {_field(s, "name") for s in _steps(node)}
    return all(d in known for s in _steps(node) for d in _field(s, "dependsOn") or [])


def _no_self_dependency(node: Value) -> bool:
    return all(_field(s, "name") not in (_field(s, "dependsOn") or []) for s in _steps(node))


UNIQUE_STEP_NAMES = Rule(
    "self.steps.all(a, self.steps.exists_one(b, b.name == a.name))",
    "step names must be unique within a workflow",
    _unique_step_names,
)
KNOWN_DEPENDENCIES = Rule(
    "self.steps.all(s, !has(s.dependsOn) || s.dependsOn.all(d, self.steps.exists(t, t.name == d)))",
    "dependsOn names a step that is not in spec.steps",
    _known_dependencies,
)
NO_SELF_DEPENDENCY = Rule(
    "self.steps.all(s, !has(s.dependsOn) || !(s.name in s.dependsOn))",
    "a step cannot depend on itself",
    _no_self_dependency,
)


# The step name of spec.onFailure's BackgroundJob; no step may take it.
ON_FAILURE_STEP = "on-failure"


def _no_reserved_name(node: Value) -> bool:
    return all(_field(s, "name") != ON_FAILURE_STEP for s in _steps(node))


RESERVED_STEP_NAME = Rule(
    f"self.steps.all(s, s.name != {_cel_string(ON_FAILURE_STEP)})",
    f"the step name {ON_FAILURE_STEP} is reserved for spec.onFailure",
    _no_reserved_name,
)
WORKFLOW_RULES: tuple[Rule, ...] = (
    UNIQUE_STEP_NAMES,
    KNOWN_DEPENDENCIES,
    NO_SELF_DEPENDENCY,
    RESERVED_STEP_NAME,
)


# Queues and delayed start.
# "N/s", "N/m" or "N/h": the pattern the rate limiter parses (bgjobs_operator.ratelimit).
RATE_LIMIT_PATTERN = r"^[1-9][0-9]{0,5}/[smh]$"
RATE_LIMIT_FORMAT = optional_matches(
    "rateLimit",
    RATE_LIMIT_PATTERN,
    "rateLimit is N/s, N/m or N/h with N from 1 to 999999 (e.g. 10/m: ten admissions a minute)",
)
JOB_QUEUE_RULES: tuple[Rule, ...] = (RATE_LIMIT_FORMAT,)


def route(task: str, jobqueues: Iterable[dict[str, Any]]) -> str | None:
    """The queue whose routes match `task` (Celery's task_routes). Several matching: the
    longest glob wins (the most specific), then the queue name that sorts first, so the
    answer never depends on the order objects were seen."""
    best: tuple[int, str] | None = None
    for jq in jobqueues:
        name = jq["metadata"]["name"]
        for glob in (jq.get("spec") or {}).get("routes") or []:
            if fnmatch.fnmatchcase(task, glob):
                candidate = (-len(glob), name)
                if best is None or candidate < best:
                    best = candidate
    return best[1] if best else None


ONE_START_TIME = at_most_one_of(
    "startAt",
    "countdownSeconds",
    "set startAt or countdownSeconds, not both",
)
BACKGROUND_JOB_RULES: tuple[Rule, ...] = (*TASK_TEMPLATE_RULES, ONE_START_TIME)
