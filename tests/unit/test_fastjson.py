"""The operator's JSON: fast where it can be, exactly the standard library's answer always."""

from __future__ import annotations

import json

import kopf._cogs.clients.api as kopf_api
from hypothesis import given
from hypothesis import strategies as st

from bgjobs_operator import fastjson

HOSTILE = [
    '{"big": 123456789012345678901234567890}',  # beyond 64 bits: orjson refuses
    '{"lone": "\\ud800"}',  # a lone surrogate: orjson refuses
    '{"nested": [1, {"deep": ["\\u00fc", {"x": null, "empty": {}}]}], "f": 0.1}',
    '"$(BGJOBS_TASK) price: $$5"',
]


def test_loads_agrees_with_the_standard_library_on_hostile_documents() -> None:
    for doc in HOSTILE:
        assert fastjson.loads(doc) == json.loads(doc), doc
        assert fastjson.loads(doc.encode("utf-8", "surrogatepass")) == json.loads(doc), doc


def test_dumps_round_trips_what_orjson_refuses() -> None:
    value = {"big": 2**70, "text": "ü", "none": None}
    assert json.loads(fastjson.dumps(value)) == value


def test_kopf_watch_parser_is_patched_and_still_parses_everything() -> None:
    before = kopf_api.json
    try:
        assert fastjson.speed_up_kopf_watch_parsing()
        for doc in HOSTILE:
            assert kopf_api.json.loads(doc) == json.loads(doc)
        assert kopf_api.json.dumps({"a": 1}) == json.dumps({"a": 1})
    finally:
        kopf_api.json = before  # type: ignore[assignment]


def test_numbers_keep_their_exact_values() -> None:
    for doc in (
        "[9223372036854775807]",
        "[-9223372036854775808]",
        "[18446744073709551616]",
        "[1e400]",
        "[0.30000000000000004]",
        "[1.0]",
        "[12345678901234567890.5]",
    ):
        got, want = fastjson.loads(doc), json.loads(doc)
        assert got == want and [type(x) for x in got] == [type(x) for x in want], doc


def test_the_long_digit_scan_counts_consecutive_digits_only() -> None:
    assert not fastjson.has_long_digit_run(b"[123456789012345678]")  # 18 digits
    assert fastjson.has_long_digit_run(b"[1234567890123456789]")  # 19
    assert fastjson.has_long_digit_run(b'{"x": "a0000000000000000000b"}')  # zeros count too
    assert not fastjson.has_long_digit_run(b"[123456789.0123456789, 1e123456789]")


@given(st.integers(min_value=-(2**80), max_value=2**80))
def test_any_integer_reads_exactly(n: int) -> None:
    doc = json.dumps({"args": [n, str(n)], "k": {"v": -n}})
    got = fastjson.loads(doc)
    assert got == json.loads(doc) and type(got["args"][0]) is int
