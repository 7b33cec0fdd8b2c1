"""The committed CRD YAML is exactly what the API models generate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bgjobs.api import crdgen

ROOT = Path(__file__).resolve().parents[2]


def test_committed_crds_match_the_models() -> None:
    for fname, text in crdgen.render().items():
        committed = ROOT / "crds" / fname
        assert committed.exists(), f"{fname} missing: run `make crds`"
        assert committed.read_text() == text, f"{fname} is stale: run `make crds`"


def test_chart_carries_the_same_crds() -> None:
    chart = ROOT / "charts" / "bgjobs" / "crds"
    if not chart.exists():  # the chart copies them with `make crds`
        return
    for fname, text in crdgen.render().items():
        assert (chart / fname).read_text() == text, f"chart {fname} is stale: run `make crds`"


def test_every_field_has_a_description() -> None:
    def walk(node: dict, path: str) -> list[str]:  # type: ignore[type-arg]
        missing = []
        for name, prop in (node.get("properties") or {}).items():
            here = f"{path}.{name}"
            if name not in ("apiVersion", "kind", "metadata") and not prop.get("description"):
                missing.append(here)
            missing += walk(prop, here)
            if isinstance(prop.get("items"), dict):
                missing += walk(prop["items"], here + "[]")
        return missing

    for fname, text in crdgen.render().items():
        crd = yaml.safe_load(text)
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        assert walk(schema, crd["spec"]["names"]["kind"]) == [], fname


def _junctors(node: Any) -> list[Any]:
    if isinstance(node, dict):
        found = [node["allOf"]] if "allOf" in node else []
        return found + [j for v in node.values() for j in _junctors(v)]
    if isinstance(node, list):
        return [j for v in node for j in _junctors(v)]
    return []


def test_crds_are_structural_enough() -> None:
    """No $ref, no nullable anyOf, no titles: the API server refuses those. (anyOf only
    as a value validation in a SchemaRule's allOf entry, which carries no types.)"""

    def without_junctors(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: without_junctors(v) for k, v in node.items() if k != "allOf"}
        if isinstance(node, list):
            return [without_junctors(v) for v in node]
        return node

    for text in crdgen.render().values():
        assert "$ref" not in text and "title:" not in text
        crd = yaml.safe_load(text)
        assert "anyOf" not in yaml.safe_dump(without_junctors(crd))
        assert "type:" not in yaml.safe_dump(_junctors(crd))
        version = crd["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
        assert "bgjobs" in crd["spec"]["names"]["categories"]


def test_every_declared_rule_is_in_the_crds_where_it_belongs() -> None:
    """The CEL in the CRDs is the CEL of bgjobs/api/rules.py, on the node it is declared for
    (the task template's rules on BackgroundJob.spec and JobSchedule.spec.template alike)."""
    from bgjobs.api import rules
    from bgjobs.api.v1alpha1 import BackgroundJobSpec, DeadLetterSpec, JobQueueSpec

    def spec_of(fname: str) -> dict:  # type: ignore[type-arg]
        crd = yaml.safe_load(crdgen.render()[fname])
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        return schema["properties"]["spec"]  # type: ignore[no-any-return]

    def cel(node: dict) -> list[str]:  # type: ignore[type-arg]
        return [v["rule"] for v in node.get("x-kubernetes-validations", [])]

    job = spec_of("bgjobs.dev_backgroundjobs.yaml")
    schedule = spec_of("bgjobs.dev_jobschedules.yaml")
    dead_letter = spec_of("bgjobs.dev_deadletters.yaml")
    template = [r.cel for r in rules.TASK_TEMPLATE_RULES]
    job_rules = [r.cel for r in rules.BACKGROUND_JOB_RULES]
    assert job_rules[: len(template)] == template
    assert cel(job) == job_rules + [r.cel for r in BackgroundJobSpec.transition_rules()]
    assert job["allOf"] == [r.openapi for r in rules.BATCH_RULES]
    queue = spec_of("bgjobs.dev_jobqueues.yaml")
    assert cel(queue) == [r.cel for r in JobQueueSpec.rules()]
    assert cel(schedule["properties"]["template"]) == template
    assert cel(schedule) == [r.cel for r in rules.SCHEDULE_RULES]
    assert cel(dead_letter) == [r.cel for r in DeadLetterSpec.transition_rules()]
    assert schedule["properties"]["schedule"]["maxLength"] <= 100, "bounds the CEL cost"


def test_example_manifests_are_valid() -> None:
    from bgjobs.api import v1alpha1 as api

    kinds = (api.BackgroundJob, api.JobSchedule, api.JobQueue, api.JobWorkflow)
    models = {m.__name__: m for m in kinds}
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                models[doc["kind"]].model_validate(doc)


def _spec_schema(fname: str) -> dict:  # type: ignore[type-arg]
    crd = yaml.safe_load(crdgen.render()[fname])
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]  # type: ignore[no-any-return]


def test_args_items_may_be_null() -> None:
    # Found by the fuzzed-manifest suite: CEL cannot read a list holding null unless its
    # items are nullable, so the immutability rule failed every status write of a job
    # with a null in its args (it stayed Pending while its task ran).
    job = _spec_schema("bgjobs.dev_backgroundjobs.yaml")
    schedule = _spec_schema("bgjobs.dev_jobschedules.yaml")["properties"]["template"]
    letter = _spec_schema("bgjobs.dev_deadletters.yaml")
    for spec in (job, schedule, letter):
        assert spec["properties"]["args"]["items"].get("nullable") is True


def test_resource_maps_take_any_resource_name() -> None:
    # Found by the fuzzed-manifest suite: without additionalProperties every resource name
    # was an unknown field (refused by kubectl apply, pruned by other clients).
    resources = _spec_schema("bgjobs.dev_backgroundjobs.yaml")["properties"]["resources"]
    for key in ("requests", "limits"):
        values = resources["properties"][key]["additionalProperties"]
        assert values == {"x-kubernetes-int-or-string": True}


def test_every_duration_is_bounded() -> None:
    # Found by the fuzzed-manifest suite: unbounded seconds overflowed the Job's int32
    # TTL, the Job controller's clock and Redis' expiry.
    job = _spec_schema("bgjobs.dev_backgroundjobs.yaml")["properties"]
    limits = job["timeLimits"]["properties"]
    for node in (
        job["ttlSecondsAfterFinished"],
        job["resultTTLSeconds"],
        job["activeDeadlineSeconds"],
        _spec_schema("bgjobs.dev_jobschedules.yaml")["properties"]["startingDeadlineSeconds"],
    ):
        assert node["maximum"] == 2**31 - 1
    # the pod's deadline is hardSeconds + 30 s, and pod validation wants an int32
    for node in (limits["softSeconds"], limits["hardSeconds"]):
        assert node["maximum"] == 2**31 - 1 - 30


def test_env_values_refuse_nul() -> None:
    env = _spec_schema("bgjobs.dev_backgroundjobs.yaml")["properties"]["env"]["items"]
    assert env["properties"]["value"]["pattern"] == "^[^\\x00]*$"
