"""The termination message: built within 4 KiB, parsed back by the operator."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from bgjobs_worker.attempt import ErrorInfo, Outcome, result_document
from bgjobs_worker.errors import ExitCode
from bgjobs_worker.termination import (
    MAX_BYTES,
    build_termination_message,
    parse_termination_message,
    write_termination_message,
)


def size(text: str) -> int:
    return len(text.encode())


def test_success_round_trips() -> None:
    text = build_termination_message(Outcome(ExitCode.SUCCESS, 2, result={"url": "s3://x"}))
    assert parse_termination_message(text) == {
        "status": "SUCCESS",
        "attempt": 2,
        "result": {"url": "s3://x"},
    }


def test_failure_round_trips_without_traceback() -> None:
    error = ErrorInfo(type="RuntimeError", message="boom", traceback="Traceback ...")
    text = build_termination_message(Outcome(ExitCode.RETRYABLE, 1, error=error))
    assert parse_termination_message(text) == {
        "status": "FAILURE",
        "attempt": 1,
        "exitCode": 1,
        "error": {"type": "RuntimeError", "message": "boom"},
    }


def test_a_result_too_big_is_replaced_by_a_flag() -> None:
    text = build_termination_message(Outcome(ExitCode.SUCCESS, 1, result="x" * MAX_BYTES))
    assert size(text) <= MAX_BYTES
    assert parse_termination_message(text) == {
        "status": "SUCCESS",
        "attempt": 1,
        "result": None,
        "resultTruncated": True,
    }


def test_a_result_that_just_fits_is_kept() -> None:
    overhead = size(build_termination_message(Outcome(ExitCode.SUCCESS, 1, result="")))
    value = "y" * (MAX_BYTES - overhead)
    text = build_termination_message(Outcome(ExitCode.SUCCESS, 1, result=value))
    assert size(text) == MAX_BYTES
    assert parse_termination_message(text)["result"] == value  # type: ignore[index]


@given(st.text(max_size=6000), st.sampled_from([1, 3, 4, 143]))
def test_failure_message_is_cut_to_fit_and_still_parses(message: str, code: int) -> None:
    outcome = Outcome(ExitCode(code), 7, error=ErrorInfo(type="pkg.Err", message=message))
    text = build_termination_message(outcome)
    assert size(text) <= MAX_BYTES
    doc = parse_termination_message(text)
    assert doc is not None
    assert doc["exitCode"] == code
    kept = doc["error"]["message"]
    if kept != message:
        assert kept.endswith("...")
        assert message.startswith(kept[:-3])
        # Cut no more than needed: one more character would not have fitted.
        assert size(text) > MAX_BYTES - 16


def test_a_long_message_uses_the_whole_budget() -> None:
    outcome = Outcome(ExitCode.PERMANENT, 1, error=ErrorInfo(type="E", message="é" * 5000))
    text = build_termination_message(outcome)
    assert MAX_BYTES - 4 <= size(text) <= MAX_BYTES


def test_parse_refuses_what_is_not_ours() -> None:
    for text in ("", None, "not json", "[1]", '{"status": "RUNNING"}', '{"status":"SUCC'):
        assert parse_termination_message(text) is None
    assert parse_termination_message(b'{"status":"SUCCESS","attempt":1,"result":1}') == {
        "status": "SUCCESS",
        "attempt": 1,
        "result": 1,
    }


def test_write_ignores_a_missing_directory(tmp_path: Path) -> None:
    write_termination_message(str(tmp_path / "no" / "such" / "dir"), "{}")
    target = tmp_path / "termination-log"
    write_termination_message(str(target), '{"status":"SUCCESS"}')
    assert target.read_text() == '{"status":"SUCCESS"}'


def test_result_document_carries_traceback_for_failures() -> None:
    error = ErrorInfo(type="RuntimeError", message="boom", traceback="line1\nline2")
    doc = result_document(Outcome(ExitCode.RETRYABLE, 3, error=error), finished_at="T")
    assert doc == {
        "status": "FAILURE",
        "exitCode": 1,
        "error": {"type": "RuntimeError", "message": "boom", "traceback": "line1\nline2"},
        "attempt": 3,
        "finishedAt": "T",
    }
    ok = result_document(Outcome(ExitCode.SUCCESS, 1, result=[1]), finished_at="T")
    assert ok == {"status": "SUCCESS", "result": [1], "attempt": 1, "finishedAt": "T"}
    assert json.dumps(ok)


def test_error_info_keeps_the_last_lines_of_the_traceback() -> None:
    message = "\n".join(f"detail {i}" for i in range(100))
    try:
        raise RuntimeError(message)
    except RuntimeError as exc:
        info = ErrorInfo.of(exc)
    assert info.type == "RuntimeError"
    assert info.message == message
    lines = info.traceback.splitlines()
    assert len(lines) == 50
    assert lines[-1] == "detail 99"
    assert lines[0] == "detail 50"


def test_the_last_progress_rides_along_when_it_fits_and_never_displaces_the_outcome() -> None:
    progress = {"current": 10, "total": 10, "percent": 100.0, "stage": "working", "message": "ü"}
    text = build_termination_message(Outcome(ExitCode.SUCCESS, 1, result=[1]), progress)
    assert parse_termination_message(text) == {
        "status": "SUCCESS",
        "attempt": 1,
        "result": [1],
        "progress": progress,
    }
    huge = {**progress, "stage": "x" * MAX_BYTES}
    error = ErrorInfo(type="ValueError", message="m" * 10_000)
    failed = build_termination_message(Outcome(ExitCode.RETRYABLE, 2, error=error), huge)
    doc = parse_termination_message(failed)
    assert doc is not None and "progress" not in doc and size(failed) <= MAX_BYTES
    assert doc["error"]["message"].startswith("mmm"), "the outcome keeps its whole budget"
