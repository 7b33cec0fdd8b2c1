"""Retry classification: which exceptions retry (exit 1) and which end the job (exit 3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgjobs_worker.errors import (
    ExitCode,
    InvalidArguments,
    PermanentError,
    SoftTimeLimitExceeded,
    TaskNotRegistered,
    WorkerShutdown,
)
from bgjobs_worker.retry_policy import (
    RetryPolicy,
    exit_code_for,
    matches,
    parse_names,
    qualified_name,
)


class UpstreamError(Exception):
    pass


class UpstreamTimeout(UpstreamError):
    pass


# A pool of exceptions with overlapping ancestry for the property tests.
EXCEPTIONS: list[BaseException] = [
    RuntimeError("x"),
    ValueError("x"),
    KeyError("x"),
    ConnectionError("x"),
    ConnectionRefusedError("x"),
    TimeoutError("x"),
    UpstreamError("x"),
    UpstreamTimeout("x"),
]
NAMES = [
    "RuntimeError",
    "ValueError",
    "LookupError",
    "ConnectionError",
    "OSError",
    "UpstreamError",
    f"{__name__}.UpstreamTimeout",
    "NoSuchError",
]


def test_bare_name_matches_any_class_in_the_mro() -> None:
    assert matches(ConnectionRefusedError(), "ConnectionError")
    assert matches(ConnectionRefusedError(), "OSError")
    assert matches(UpstreamTimeout(), "UpstreamError")
    assert not matches(UpstreamError(), "UpstreamTimeout")
    assert not matches(ValueError(), "ConnectionError")


def test_dotted_name_matches_module_and_qualname() -> None:
    assert matches(UpstreamTimeout(), f"{__name__}.UpstreamTimeout")
    assert matches(UpstreamTimeout(), f"{__name__}.UpstreamError")
    assert matches(ConnectionRefusedError(), "builtins.ConnectionError")
    assert not matches(UpstreamTimeout(), "other_module.UpstreamTimeout")


def test_class_matcher_uses_isinstance() -> None:
    assert matches(UpstreamTimeout(), UpstreamError)
    assert not matches(UpstreamError(), UpstreamTimeout)


def test_qualified_name_leaves_builtins_bare() -> None:
    assert qualified_name(RuntimeError) == "RuntimeError"
    assert qualified_name(UpstreamTimeout) == f"{__name__}.UpstreamTimeout"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, ()),
        ("", ()),
        (" , ,", ()),
        ("ConnectionError", ("ConnectionError",)),
        (" ConnectionError , pkg.mod.Err,", ("ConnectionError", "pkg.mod.Err")),
    ],
)
def test_parse_names(text: str | None, expected: tuple[str, ...]) -> None:
    assert parse_names(text) == expected


@given(st.lists(st.sampled_from(NAMES), max_size=3), st.sampled_from(EXCEPTIONS))
def test_empty_retry_on_retries_everything_not_permanent(
    permanent_on: list[str], exc: BaseException
) -> None:
    policy = RetryPolicy(permanent_on=tuple(permanent_on))
    assert policy.is_retryable(exc) == (not any(matches(exc, n) for n in permanent_on))


@given(
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=3),
    st.lists(st.sampled_from(NAMES), max_size=3),
    st.sampled_from(EXCEPTIONS),
)
def test_listed_retry_on_retries_only_listed_and_permanent_wins(
    retry_on: list[str], permanent_on: list[str], exc: BaseException
) -> None:
    policy = RetryPolicy(retry_on=tuple(retry_on), permanent_on=tuple(permanent_on))
    listed = any(matches(exc, n) for n in retry_on)
    excluded = any(matches(exc, n) for n in permanent_on)
    assert policy.is_retryable(exc) == (listed and not excluded)
    expected = ExitCode.RETRYABLE if listed and not excluded else ExitCode.PERMANENT
    assert exit_code_for(exc, policy) == expected


@given(st.lists(st.sampled_from(NAMES), max_size=3))
def test_permanent_error_is_never_retried(retry_on: list[str]) -> None:
    policy = RetryPolicy(retry_on=(*retry_on, "PermanentError", "Exception"))
    for exc in (PermanentError("bad"), InvalidArguments("x"), TaskNotRegistered("y")):
        assert not policy.is_retryable(exc)
        assert exit_code_for(exc, policy) == ExitCode.PERMANENT


@pytest.mark.parametrize(
    ("exc", "policy", "code"),
    [
        (RuntimeError("boom"), RetryPolicy(), 1),
        (PermanentError("bad"), RetryPolicy(), 3),
        (ValueError("v"), RetryPolicy(permanent_on=("ValueError",)), 3),
        (ValueError("v"), RetryPolicy(retry_on=("ConnectionError",)), 3),
        (ConnectionRefusedError(), RetryPolicy(retry_on=("ConnectionError",)), 1),
        # Limits and shutdown keep their own codes whatever the lists say.
        (SoftTimeLimitExceeded(), RetryPolicy(permanent_on=("Exception",)), 4),
        (WorkerShutdown(), RetryPolicy(retry_on=("ConnectionError",)), 143),
    ],
)
def test_exit_code_mapping(exc: BaseException, policy: RetryPolicy, code: int) -> None:
    assert exit_code_for(exc, policy) == code


def test_exit_codes_are_the_documented_contract() -> None:
    assert {c.name: int(c) for c in ExitCode} == {
        "SUCCESS": 0,
        "RETRYABLE": 1,
        "PERMANENT": 3,
        "TIME_LIMIT": 4,
        "SHUTDOWN": 143,
    }


def test_spec_lists_override_decorator_lists_only_when_given() -> None:
    decorator = RetryPolicy(retry_on=(ConnectionError,), permanent_on=(ValueError,))
    assert decorator.overridden_by((), ()) == decorator
    spec = decorator.overridden_by(("TimeoutError",), ())
    assert spec.retry_on == ("TimeoutError",)
    assert spec.permanent_on == (ValueError,)
    assert not spec.is_retryable(ConnectionError())
    assert spec.is_retryable(TimeoutError())


def test_worker_shutdown_is_not_an_exception() -> None:
    # A task's `except Exception` must not swallow a cancellation.
    assert not issubclass(WorkerShutdown, Exception)
    assert issubclass(SoftTimeLimitExceeded, Exception)
