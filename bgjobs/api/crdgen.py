"""Generate the CRD YAML from the pydantic models (what controller-gen does for Go).

    python -m bgjobs.api.crdgen crds/ charts/bgjobs/crds/

Pydantic emits JSON Schema; a CRD needs a *structural* OpenAPI v3 schema: no $ref, no
anyOf-with-null for optional fields, no additionalProperties next to properties, no
titles. `structural()` does that translation; everything else (descriptions, defaults,
limits, CEL rules) is carried over from the models unchanged.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import PydanticUndefined, core_schema

from bgjobs.api import v1alpha1 as api

DROP = {"title", "const"}


class _WithFactoryDefaults(GenerateJsonSchema):
    """Emit `default` for default_factory fields too, so the API server fills them in and
    `kubectl get -o yaml` shows the effective values."""

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> dict[str, Any]:
        factory = schema.get("default_factory")
        if factory is not None and schema.get("default", PydanticUndefined) is PydanticUndefined:
            value = factory()  # type: ignore[call-arg]
            schema = {**schema, "default": {} if isinstance(value, BaseModel) else value}
            schema.pop("default_factory", None)
        return super().default_schema(schema)


def _deref(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[1]]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def structural(node: Any, defs: dict[str, Any]) -> Any:
    if not isinstance(node, dict):
        return node
    node = _deref(node, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if node.get("x-kubernetes-int-or-string"):
            node = rest
        elif len(options) == 1:
            node = {**_deref(options[0], defs), **rest}
        else:
            raise ValueError(f"cannot express anyOf {node['anyOf']} structurally")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in DROP or (key == "default" and value is None):
            continue
        if key == "additionalProperties" and not (
            isinstance(value, dict) and "properties" not in node
        ):
            continue
        if key == "description":
            out[key] = " ".join(value.split())
        elif key == "properties":
            out[key] = {k: structural(v, defs) for k, v in value.items()}
        elif key == "items":
            out[key] = structural(value, defs)
        elif key == "additionalProperties":
            # a map's value schema (e.g. resources.requests: name -> quantity); without it
            # every key is an unknown field: refused by `kubectl apply`, pruned otherwise
            if (
                isinstance(value, dict)
                and value
                and "properties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                out[key] = structural(value, defs)
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def object_schema(model: type[BaseModel], root_rules: list[dict[str, str]]) -> dict[str, Any]:
    schema = model.model_json_schema(schema_generator=_WithFactoryDefaults)
    defs = schema.get("$defs", {})
    props = schema["properties"]
    top: dict[str, Any] = {
        "type": "object",
        "description": " ".join((model.__doc__ or "").split()),
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of this object."},
            "kind": {"type": "string", "description": "Kind of this object."},
            "metadata": {"type": "object"},
            "spec": structural(props["spec"], defs),
            "status": {**structural(props["status"], defs), "default": {}},
        },
        "required": ["spec"],
    }
    if root_rules:
        top["x-kubernetes-validations"] = root_rules
    return top


def column(
    name: str, path: str, type_: str = "string", priority: int = 0, description: str = ""
) -> dict[str, Any]:
    col: dict[str, Any] = {"name": name, "type": type_, "jsonPath": path}
    if priority:
        col["priority"] = priority
    if description:
        col["description"] = description
    return col


AGE = column("Age", ".metadata.creationTimestamp", "date")


def name_rule(limit: int, why: str) -> list[dict[str, str]]:
    return [
        {
            "rule": f"self.metadata.name.size() <= {limit}",
            "message": f"metadata.name must be at most {limit} characters ({why})",
        }
    ]


KINDS: list[dict[str, Any]] = [
    {
        "model": api.BackgroundJob,
        "plural": "backgroundjobs",
        "short": ["bgj", "bgjob"],
        "rules": name_rule(api.MAX_JOB_NAME, "it names the batch Job and its pods"),
        "columns": [
            column("Task", ".spec.task"),
            column("Phase", ".status.phase"),
            column("Progress", ".status.progress.percent", "number", description="percent done"),
            column("Attempts", ".status.attempts", "integer"),
            column("Queue", ".status.queue", priority=1),
            column(
                "Waiting-On",
                '.status.conditions[?(@.type=="Queued")].reason',
                description="why a queued job waits",
            ),
            column("Job", ".status.jobName", priority=1),
            AGE,
        ],
    },
    {
        "model": api.JobSchedule,
        "plural": "jobschedules",
        "short": ["bgs", "jsched"],
        "rules": name_rule(api.MAX_SCHEDULE_NAME, "the CronJob adds 11 characters per run"),
        "columns": [
            column("Schedule", ".spec.schedule"),
            column("Suspended", ".spec.suspend", "boolean"),
            column("Last-Run", ".status.lastRun.phase"),
            column("Next-Run", ".status.nextScheduleTime"),
            column("Task", ".spec.template.task", priority=1),
            AGE,
        ],
    },
    {
        "model": api.DeadLetter,
        "plural": "deadletters",
        "short": ["bgdl", "dlq"],
        "rules": [],
        "columns": [
            column("Task", ".spec.task"),
            column("Job", ".spec.jobName"),
            column("Error", ".spec.error.type"),
            column("Attempts", ".spec.attempts", "integer"),
            column("Critical", ".spec.critical", "boolean"),
            column("Replays", ".spec.replays", "integer"),
            AGE,
        ],
    },
    {
        "model": api.JobWorkflow,
        "plural": "jobworkflows",
        "short": ["bgwf", "jwf"],
        "rules": name_rule(api.MAX_WORKFLOW_NAME, "it is a label value on its steps"),
        "columns": [
            column("Phase", ".status.phase"),
            column("Steps", ".status.stepsDone", description="steps succeeded of all steps"),
            column("Progress", ".status.progress", "number", description="percent done"),
            column("Failed-Step", ".status.failedStep", priority=1),
            AGE,
        ],
    },
    {
        "model": api.JobQueue,
        "plural": "jobqueues",
        "short": ["bgq", "jq"],
        "rules": [],
        "columns": [
            column("Running", ".status.running", "integer"),
            column("Limit", ".spec.concurrency", "integer"),
            column("Waiting", ".status.waiting", "integer"),
            column("Admitted-1m", ".status.admittedLastMinute", "integer"),
            column("Rate", ".spec.rateLimit"),
            column("Paused", ".spec.paused", "boolean"),
            AGE,
        ],
    },
]


def crd(kind: dict[str, Any]) -> dict[str, Any]:
    model: type[BaseModel] = kind["model"]
    name = model.__name__
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{kind['plural']}.{api.GROUP}",
            "labels": {"app.kubernetes.io/part-of": "bgjobs"},
        },
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": name,
                "listKind": f"{name}List",
                "plural": kind["plural"],
                "singular": name.lower(),
                "shortNames": kind["short"],
                "categories": [api.CATEGORY],
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": kind["columns"],
                    "schema": {"openAPIV3Schema": object_schema(model, kind["rules"])},
                }
            ],
        },
    }


HEADER = "# Generated by `make crds` from bgjobs/api/v1alpha1.py. Do not edit by hand.\n"


def render() -> dict[str, str]:
    """File name -> YAML text for every CRD."""
    return {
        f"{api.GROUP}_{k['plural']}.yaml": HEADER
        + yaml.safe_dump(crd(k), sort_keys=False, width=100)
        for k in KINDS
    }


def main(argv: list[str]) -> int:
    for out_dir in argv or ["crds"]:
        path = Path(out_dir)
        path.mkdir(parents=True, exist_ok=True)
        for fname, text in render().items():
            (path / fname).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
