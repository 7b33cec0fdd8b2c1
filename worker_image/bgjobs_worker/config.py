"""The worker's settings, read from the BGJOBS_* environment the operator sets.

Parsing is split in two: the identity and the Redis/termination targets never fail (they are
needed to report any failure at all), while the task settings raise permanent errors that
the worker reports like any other (exit 3: a bad spec does not get better by retrying).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bgjobs_worker.context import JobIdentity
from bgjobs_worker.errors import ConfigError, InvalidArguments
from bgjobs_worker.redis_keys import DEFAULT_RESULT_TTL_SECONDS
from bgjobs_worker.retry_policy import parse_names

DEFAULT_TERMINATION_LOG = "/dev/termination-log"


def identity_from_env(env: Mapping[str, str]) -> JobIdentity:
    return JobIdentity(
        namespace=env.get("BGJOBS_NAMESPACE", ""),
        job_name=env.get("BGJOBS_JOB_NAME", ""),
        job_uid=env.get("BGJOBS_JOB_UID", ""),
        pod_name=env.get("BGJOBS_POD_NAME", ""),
    )


def redis_url_from_env(env: Mapping[str, str]) -> str | None:
    return env.get("BGJOBS_REDIS_URL", "").strip() or None


def redis_password_from_env(env: Mapping[str, str]) -> str | None:
    """The password from the Secret the operator names (secretKeyRef): the Job's URL never
    carries one. Used as is: a password may end in a space."""
    return env.get("BGJOBS_REDIS_PASSWORD") or None


def termination_path_from_env(env: Mapping[str, str]) -> str:
    return env.get("BGJOBS_TERMINATION_LOG", "").strip() or DEFAULT_TERMINATION_LOG


@dataclass(frozen=True)
class TaskSettings:
    task_name: str
    args: list[Any]
    kwargs: dict[str, Any]
    max_retries: int = 0
    retry_on: tuple[str, ...] = ()
    permanent_on: tuple[str, ...] = ()
    soft_time_limit: float | None = None
    time_limit: float | None = None
    task_modules: tuple[str, ...] = ()
    result_ttl: int = DEFAULT_RESULT_TTL_SECONDS


def _json_env(env: Mapping[str, str], name: str, default: str, kind: type) -> Any:
    raw = env.get(name, "").strip() or default
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise InvalidArguments(f"{name} is not valid JSON: {exc}") from exc
    if not isinstance(value, kind):
        raise InvalidArguments(f"{name} must be a JSON {kind.__name__}, got {type(value).__name__}")
    return value


def _int_env(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _seconds_env(env: Mapping[str, str], name: str) -> float | None:
    """Blank or 0 means "no limit", as the operator may render an absent field either way."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value < 0 or not math.isfinite(value):
        raise ConfigError(f"{name} must be a positive number of seconds, got {raw!r}")
    return value or None


def task_settings_from_env(env: Mapping[str, str]) -> TaskSettings:
    task_name = env.get("BGJOBS_TASK", "").strip()
    if not task_name:
        raise ConfigError("BGJOBS_TASK is not set: the worker does not know which task to run")
    return TaskSettings(
        task_name=task_name,
        args=_json_env(env, "BGJOBS_ARGS", "[]", list),
        kwargs=_json_env(env, "BGJOBS_KWARGS", "{}", dict),
        max_retries=_int_env(env, "BGJOBS_MAX_RETRIES", 0, minimum=0),
        retry_on=parse_names(env.get("BGJOBS_RETRY_ON")),
        permanent_on=parse_names(env.get("BGJOBS_PERMANENT_ON")),
        soft_time_limit=_seconds_env(env, "BGJOBS_SOFT_TIME_LIMIT"),
        time_limit=_seconds_env(env, "BGJOBS_TIME_LIMIT"),
        task_modules=parse_names(env.get("BGJOBS_TASK_MODULES")),
        result_ttl=_int_env(env, "BGJOBS_RESULT_TTL", DEFAULT_RESULT_TTL_SECONDS, minimum=1),
    )
