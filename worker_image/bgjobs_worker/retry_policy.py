"""Which failures deserve another attempt: the retry policy and the exit code it implies.

A policy is two lists of exception matchers. A matcher is either an exception class (from the
``@task`` decorator) or a name (from the BackgroundJob spec, which cannot hold classes):

* a bare name such as ``ConnectionError`` matches any class in the exception's MRO with that
  ``__name__``, so ``ConnectionError`` also catches ``ConnectionRefusedError``;
* a dotted name such as ``requests.exceptions.Timeout`` matches ``__module__.__qualname__``
  of any class in the MRO, for when bare names are ambiguous.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bgjobs_worker.errors import (
    ExitCode,
    PermanentError,
    SoftTimeLimitExceeded,
    WorkerShutdown,
)

Matcher = type[BaseException] | str


def parse_names(text: str | None) -> tuple[str, ...]:
    """Split a comma-separated env value into exception names, dropping blanks."""
    if not text:
        return ()
    return tuple(name.strip() for name in text.split(",") if name.strip())


def qualified_name(cls: type) -> str:
    """``module.Qualname``, with builtins left bare (``RuntimeError``, not ``builtins.…``)."""
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def matches(exc: BaseException, matcher: Matcher) -> bool:
    if isinstance(matcher, type):
        return isinstance(exc, matcher)
    for cls in type(exc).__mro__:
        if "." in matcher:
            if f"{cls.__module__}.{cls.__qualname__}" == matcher:
                return True
        elif cls.__name__ == matcher:
            return True
    return False


def matches_any(exc: BaseException, matchers: Iterable[Matcher]) -> bool:
    return any(matches(exc, m) for m in matchers)


@dataclass(frozen=True)
class RetryPolicy:
    """``retry_on`` empty means "retry everything not permanent"; otherwise only what it lists."""

    retry_on: tuple[Matcher, ...] = ()
    permanent_on: tuple[Matcher, ...] = ()

    def is_retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, PermanentError) or matches_any(exc, self.permanent_on):
            return False
        return not self.retry_on or matches_any(exc, self.retry_on)

    def overridden_by(
        self, retry_on: tuple[Matcher, ...], permanent_on: tuple[Matcher, ...]
    ) -> RetryPolicy:
        """The spec's lists replace the decorator's, each only when the spec gives one.

        Blank counts as "not given", so the operator may render absent fields as empty env
        values; the price is that a spec cannot widen a decorator's retry_on to "everything".
        """
        return RetryPolicy(
            retry_on=retry_on or self.retry_on,
            permanent_on=permanent_on or self.permanent_on,
        )


def exit_code_for(exc: BaseException, policy: RetryPolicy) -> ExitCode:
    """The exit code a failed attempt reports (see errors.ExitCode)."""
    if isinstance(exc, WorkerShutdown):
        return ExitCode.SHUTDOWN
    if isinstance(exc, SoftTimeLimitExceeded):
        return ExitCode.TIME_LIMIT
    return ExitCode.RETRYABLE if policy.is_retryable(exc) else ExitCode.PERMANENT
