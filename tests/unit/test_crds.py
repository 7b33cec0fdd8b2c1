"""The committed CRD YAML is exactly what the API models generate."""

from __future__ import annotations

from pathlib import Path

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


def test_crds_are_structural_enough() -> None:
    """No $ref, no nullable anyOf, no titles: the API server refuses those."""
    for text in crdgen.render().values():
        assert "$ref" not in text and "anyOf" not in text and "title:" not in text
        crd = yaml.safe_load(text)
        version = crd["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
        assert "bgjobs" in crd["spec"]["names"]["categories"]
