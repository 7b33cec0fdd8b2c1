"""The @task decorator, the registry, argument binding and the worker's env settings."""

from __future__ import annotations

import io
import json
import logging
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgjobs_worker import logs
from bgjobs_worker.config import (
    DEFAULT_TERMINATION_LOG,
    identity_from_env,
    redis_url_from_env,
    task_settings_from_env,
    termination_path_from_env,
)
from bgjobs_worker.context import TaskContext, activated, current_task
from bgjobs_worker.errors import (
    ConfigError,
    InvalidArguments,
    TaskAlreadyRegistered,
    TaskImportError,
    TaskNotRegistered,
)
from bgjobs_worker.registry import (
    Task,
    get_task,
    import_task_modules,
    registered_tasks,
    task,
    unregister,
)


@pytest.fixture
def fresh_name() -> Iterator[str]:
    name = f"tests.unit.{uuid.uuid4().hex[:8]}"
    yield name
    unregister(name)


def test_default_name_is_module_and_qualname() -> None:
    @task
    def plain(x: int) -> int:
        return x * 2

    try:
        expected = f"{__name__}.test_default_name_is_module_and_qualname.<locals>.plain"
        assert plain.name == expected
        assert get_task(expected) is plain
        assert plain(4) == 8  # calling a task runs it here, like Celery
        assert plain.__doc__ is None
        assert getattr(plain, "__name__", None) == "plain"  # functools.update_wrapper
    finally:
        unregister(plain.name)


def test_options_are_kept(fresh_name: str) -> None:
    @task(
        name=fresh_name,
        retry_on=(ConnectionError,),
        permanent_on=("ValueError",),
        soft_time_limit=5,
        time_limit=10,
        bind=True,
    )
    def export(ctx: TaskContext, report_id: int) -> int:
        return report_id

    assert isinstance(export, Task)
    assert export.bind
    assert export.policy.retry_on == (ConnectionError,)
    assert export.policy.permanent_on == ("ValueError",)
    assert (export.soft_time_limit, export.time_limit) == (5, 10)
    assert fresh_name in registered_tasks()


def test_registering_another_function_under_a_taken_name_raises(fresh_name: str) -> None:
    @task(name=fresh_name)
    def first() -> None: ...

    task(name=fresh_name)(first.fn)  # the same function again is harmless

    def second() -> None: ...

    with pytest.raises(TaskAlreadyRegistered, match="already taken"):
        task(name=fresh_name)(second)
    assert get_task(fresh_name).fn is first.fn


def test_unknown_task_is_a_permanent_error_naming_the_known_ones(fresh_name: str) -> None:
    task(name=fresh_name)(lambda: None)
    with pytest.raises(TaskNotRegistered, match=f"closest: {fresh_name}"):
        get_task(fresh_name + "x")  # a typo of a registered name


def test_bound_task_gets_the_context_first(fresh_name: str) -> None:
    @task(name=fresh_name, bind=True)
    def bound(ctx: TaskContext, a: int, b: int = 2) -> tuple[str, int]:
        return ctx.task_name, a + b

    ctx = TaskContext(task_name=fresh_name)
    args = bound.bind_arguments(ctx, [1], {"b": 5})
    assert args.args == (ctx, 1, 5)
    with pytest.raises(InvalidArguments, match="arguments do not fit"):
        bound.bind_arguments(ctx, [], {})
    with pytest.raises(InvalidArguments):
        bound.bind_arguments(ctx, [1], {"nope": 1})
    with activated(ctx):
        assert bound(1) == (fresh_name, 3)  # a direct call uses the running context
    assert bound(1)[0] == fresh_name  # outside a task: a detached context


def test_current_task_outside_a_task_raises() -> None:
    with pytest.raises(RuntimeError, match="outside"):
        current_task()
    ctx = TaskContext(task_name="t")
    with activated(ctx):
        assert current_task() is ctx
    with pytest.raises(RuntimeError):
        current_task()


def test_import_task_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"user_tasks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "from bgjobs_worker import task\n"
        f"@task(name='{name}.hello')\n"
        "def hello():\n    return 'hi'\n"
    )
    (tmp_path / f"{name}_broken.py").write_text("raise RuntimeError('import-time failure')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import_task_modules([name])
        assert get_task(f"{name}.hello")() == "hi"
        with pytest.raises(TaskImportError, match="import-time failure"):
            import_task_modules([f"{name}_broken"])
        with pytest.raises(TaskImportError, match="no_such_module"):
            import_task_modules(["no_such_module_for_bgjobs"])
    finally:
        unregister(f"{name}.hello")
        sys.modules.pop(name, None)


def test_task_settings_from_env() -> None:
    settings = task_settings_from_env(
        {
            "BGJOBS_TASK": "reports.export",
            "BGJOBS_ARGS": '[1, "a"]',
            "BGJOBS_KWARGS": '{"fmt": "csv"}',
            "BGJOBS_MAX_RETRIES": "3",
            "BGJOBS_RETRY_ON": "ConnectionError, pkg.Timeout",
            "BGJOBS_PERMANENT_ON": "ValueError",
            "BGJOBS_SOFT_TIME_LIMIT": "1.5",
            "BGJOBS_TIME_LIMIT": "0",
            "BGJOBS_TASK_MODULES": "app.tasks,app.more",
            "BGJOBS_RESULT_TTL": "60",
        }
    )
    assert settings.task_name == "reports.export"
    assert settings.args == [1, "a"]
    assert settings.kwargs == {"fmt": "csv"}
    assert settings.max_retries == 3
    assert settings.retry_on == ("ConnectionError", "pkg.Timeout")
    assert settings.permanent_on == ("ValueError",)
    assert settings.soft_time_limit == 1.5
    assert settings.time_limit is None  # 0 = no limit
    assert settings.task_modules == ("app.tasks", "app.more")
    assert settings.result_ttl == 60


def test_task_settings_defaults() -> None:
    settings = task_settings_from_env(
        {"BGJOBS_TASK": "t", "BGJOBS_ARGS": "", "BGJOBS_RETRY_ON": ""}
    )
    assert (settings.args, settings.kwargs, settings.max_retries) == ([], {}, 0)
    assert settings.retry_on == ()
    assert settings.result_ttl == 86400
    assert settings.soft_time_limit is None


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({}, ConfigError),
        ({"BGJOBS_ARGS": "[1,"}, InvalidArguments),
        ({"BGJOBS_ARGS": '{"a": 1}'}, InvalidArguments),
        ({"BGJOBS_KWARGS": "[1]"}, InvalidArguments),
        ({"BGJOBS_MAX_RETRIES": "two"}, ConfigError),
        ({"BGJOBS_MAX_RETRIES": "-1"}, ConfigError),
        ({"BGJOBS_TIME_LIMIT": "soon"}, ConfigError),
        ({"BGJOBS_SOFT_TIME_LIMIT": "-5"}, ConfigError),
        ({"BGJOBS_RESULT_TTL": "0"}, ConfigError),
    ],
)
def test_bad_settings_are_permanent_errors(env: dict[str, str], error: type[Exception]) -> None:
    full = {"BGJOBS_TASK": "t", **env} if env else {}
    with pytest.raises(error):
        task_settings_from_env(full)


def test_identity_and_targets_never_fail() -> None:
    assert identity_from_env({}).namespace == ""
    ident = identity_from_env(
        {
            "BGJOBS_NAMESPACE": "ns",
            "BGJOBS_JOB_NAME": "j",
            "BGJOBS_JOB_UID": "u",
            "BGJOBS_POD_NAME": "p",
        }
    )
    assert (ident.namespace, ident.job_name, ident.job_uid, ident.pod_name) == ("ns", "j", "u", "p")
    assert redis_url_from_env({"BGJOBS_REDIS_URL": " "}) is None
    assert termination_path_from_env({}) == DEFAULT_TERMINATION_LOG


def test_log_lines_are_json_with_the_job_identity() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        logs.configure("INFO", stream=stream)
        logs.bind(namespace="ns", job="j", uid="u", task="t", attempt=2)
        logging.getLogger("user.code").info("hello %s", "world", extra={"rows": 3})
        try:
            raise ValueError("bad")
        except ValueError:
            logging.getLogger("user.code").exception("failed")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logs.bind(namespace="", job="", uid="", task="", attempt=None)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert {
        k: first[k]
        for k in ("level", "msg", "logger", "namespace", "job", "uid", "task", "attempt", "rows")
    } == {
        "level": "INFO",
        "msg": "hello world",
        "logger": "user.code",
        "namespace": "ns",
        "job": "j",
        "uid": "u",
        "task": "t",
        "attempt": 2,
        "rows": 3,
    }
    assert first["ts"].endswith("Z")
    assert second["level"] == "ERROR"
    assert "ValueError: bad" in second["exc"]
