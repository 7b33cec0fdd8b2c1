"""The fuzzed-manifest generator (tests/fuzz/manifests.py): deterministic, every category
covered, valid manifests valid for the models, and the JSON comparison it relies on."""

from __future__ import annotations

from collections import Counter

from bgjobs.api.v1alpha1 import BackgroundJobSpec
from tests.fuzz.manifests import MIX, canonical, float64_equal, generate, input_size


def test_same_seed_same_manifests_and_every_generator_used() -> None:
    first, again = generate(len(MIX) * 2, 5), generate(len(MIX) * 2, 5)
    assert [c.manifest for c in first] == [c.manifest for c in again]
    assert {c.kind for c in first} == {"BackgroundJob", "JobSchedule", "DeadLetter"}
    assert {c.expect for c in first} == {"run", "accept", "reject", "run_or_reject"}


def test_valid_jobs_are_valid_and_within_the_input_limit() -> None:
    cases = generate(20, 9)
    runs = [c for c in cases if c.kind == "BackgroundJob" and c.expect == "run"]
    assert runs
    for case in runs:
        spec = BackgroundJobSpec.model_validate(case.manifest["spec"])
        assert input_size(spec.args, spec.kwargs) <= 32768
    assert Counter(c.category for c in runs)


def test_canonical_json_compares_numbers_by_value() -> None:
    assert canonical({"b": 1.0, "a": [-0.0]}) == canonical({"a": [0], "b": 1})
    assert canonical(True) != canonical(1)
    assert canonical("ü") == '"ü"'
    assert canonical(2**64 + 1) != canonical(float(2**64 + 1))


def test_float64_equal_explains_only_the_api_servers_rounding() -> None:
    assert float64_equal(2**64 + 1, 18446744073709552000)
    assert float64_equal(3.3e16, 33000000000000000)
    assert not float64_equal(2**62, 2**62 + 1)  # int64: must be exact
    assert not float64_equal({"a": 1}, {"a": 1, "b": None})
