"""``bgjobs-worker run``: one attempt of one task, reported to Redis and the termination log.

The process exits with the code from errors.ExitCode; the Job's podFailurePolicy decides
from it whether another pod (attempt) follows.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from bgjobs_worker import logs
from bgjobs_worker.attempt import ErrorInfo, Outcome, execute, last_lines, result_document
from bgjobs_worker.config import (
    identity_from_env,
    redis_password_from_env,
    redis_url_from_env,
    task_settings_from_env,
    termination_path_from_env,
)
from bgjobs_worker.context import JobIdentity, TaskContext
from bgjobs_worker.errors import ExitCode, PermanentError, TimeLimitExceeded
from bgjobs_worker.limits import hard_time_limit, main_thread_stack, soft_time_limit
from bgjobs_worker.progress_writer import ProgressWriter
from bgjobs_worker.redaction import redact
from bgjobs_worker.redis_keys import DEFAULT_RESULT_TTL_SECONDS
from bgjobs_worker.redis_store import RedisStore
from bgjobs_worker.registry import get_task, import_task_modules
from bgjobs_worker.retry_policy import RetryPolicy, qualified_name
from bgjobs_worker.shutdown import ShutdownSignal
from bgjobs_worker.termination import build_termination_message, write_termination_message

log = logging.getLogger(__name__)


class OutcomeReporter:
    """Reports the outcome exactly once, whether the main thread or the hard-limit watchdog
    gets there first."""

    def __init__(self, store: RedisStore | None, termination_path: str) -> None:
        self.store = store
        self.termination_path = termination_path
        self.result_ttl = DEFAULT_RESULT_TTL_SECONDS
        self._lock = threading.Lock()
        self._reported = False
        # The task's last progress report, for the termination message (Redis may be gone).
        self.last_progress: dict[str, Any] | None = None

    def report(self, outcome: Outcome) -> bool:
        with self._lock:
            if self._reported:
                return False
            self._reported = True
        log.info(
            "attempt finished: %s (exit code %d)",
            outcome.status,
            outcome.exit_code,
            extra={"status": outcome.status, "exitCode": int(outcome.exit_code)},
        )
        if self.store is not None:
            doc = result_document(outcome)
            if self.last_progress:  # a report Redis missed (down then) lands with the result
                doc["progress"] = self.last_progress
            self.store.write_result(doc, self.result_ttl)
        message = build_termination_message(outcome, self.last_progress)
        write_termination_message(self.termination_path, message)
        return True


def connect_store(
    url: str | None, identity: JobIdentity, password: str | None = None
) -> RedisStore | None:
    if not url:
        log.warning("BGJOBS_REDIS_URL is not set: running without progress or result storage")
        return None
    if not (identity.namespace and identity.job_uid):
        log.warning("BGJOBS_NAMESPACE or BGJOBS_JOB_UID is not set: running without Redis")
        return None
    try:
        return RedisStore.from_url(url, identity, password=password)
    except ValueError as exc:  # a malformed URL: a spec mistake, but not the task's failure
        log.warning("BGJOBS_REDIS_URL is unusable (%s): running without Redis", redact(str(exc)))
        return None


def _drop_progress(snapshot: dict[str, Any]) -> None:
    log.debug("progress not stored (no Redis): %s", snapshot)


def run_attempt(
    env: Mapping[str, str],
    identity: JobIdentity,
    attempt: int | None,
    store: RedisStore | None,
    reporter: OutcomeReporter,
    shutdown: ShutdownSignal,
) -> Outcome:
    settings = task_settings_from_env(env)
    reporter.result_ttl = settings.result_ttl
    import_task_modules(settings.task_modules)
    task = get_task(settings.task_name)
    policy = task.policy.overridden_by(settings.retry_on, settings.permanent_on)
    soft_limit = settings.soft_time_limit or task.soft_time_limit
    hard_limit = settings.time_limit or task.time_limit

    writer = ProgressWriter(store.write_progress) if store is not None else None
    ctx = TaskContext(
        task_name=task.name,
        args=settings.args,
        kwargs=settings.kwargs,
        attempt=attempt or 1,
        attempt_known=attempt is not None,
        max_retries=settings.max_retries,
        identity=identity,
        report=_keeping_last(reporter, writer.submit if writer is not None else _drop_progress),
    )

    def on_hard_limit() -> None:
        message = f"hard time limit of {hard_limit:g}s exceeded"
        log.error("%s: ending the process", message)
        error = ErrorInfo(
            type=qualified_name(TimeLimitExceeded),
            message=message,
            traceback=last_lines(main_thread_stack()),
        )
        if reporter.report(Outcome(ExitCode.TIME_LIMIT, ctx.attempt, error=error)):
            os._exit(ExitCode.TIME_LIMIT)

    try:
        with hard_time_limit(hard_limit, on_hard_limit), soft_time_limit(soft_limit):
            outcome = execute(task, ctx, policy)
            shutdown.stop_raising()
    finally:
        if writer is not None:
            writer.close()  # the last progress must land before the result's notice
    return outcome


def _keeping_last(
    reporter: OutcomeReporter, send: Callable[[dict[str, Any]], None]
) -> Callable[[dict[str, Any]], None]:
    def report(snapshot: dict[str, Any]) -> None:
        reporter.last_progress = snapshot
        send(snapshot)

    return report


def disrupted(shutdown: ShutdownSignal, outcome: Outcome) -> bool:
    """Whether this attempt is one the Job will not count: it failed after SIGTERM.

    Evictions, preemptions and node drains mark the pod ``DisruptionTarget`` and then send
    SIGTERM; the Job's podFailurePolicy ignores such a pod whatever its exit code (unless a
    FailJob code ends the Job anyway). The worker cannot read its pod's conditions, so it
    takes SIGTERM as the sign. A pod deleted outright (``kubectl delete pod``: no
    ``DisruptionTarget``) is counted by the Job, and the next task then sees one attempt
    number less than ``status.attempts`` (README, "Limits").
    """
    return shutdown.requested and outcome.exit_code != ExitCode.SUCCESS


def run(env: Mapping[str, str]) -> int:
    """Run the task the environment describes, report its outcome, return the exit code."""
    if env.get("BGJOBS_BATCH"):
        from bgjobs_worker.batch import run_batch

        return run_batch(env)
    identity = identity_from_env(env)
    logs.configure(env.get("BGJOBS_LOG_LEVEL", "INFO"))
    logs.bind(
        namespace=identity.namespace,
        job=identity.job_name,
        uid=identity.job_uid,
        task=env.get("BGJOBS_TASK", ""),
    )
    shutdown = ShutdownSignal()
    shutdown.install()

    store: RedisStore | None = None
    attempt: int | None = None
    reporter = OutcomeReporter(None, termination_path_from_env(env))
    try:
        store = reporter.store = connect_store(
            redis_url_from_env(env), identity, redis_password_from_env(env)
        )
        attempt = store.next_attempt() if store is not None else None
        if attempt is None:
            log.warning("attempt number unknown without Redis: assuming 1")
        logs.bind(attempt=attempt or 1)
        outcome = run_attempt(env, identity, attempt, store, reporter, shutdown)
    except BaseException as exc:
        # Failures before the task ran (bad spec, unknown task, SIGTERM while starting) and
        # bugs in the worker itself: PermanentError subclasses exit 3, the rest 1 or 143.
        # A PermanentError here is a spec problem, explained by its message; anything else
        # is unexpected and its traceback is worth the lines.
        log.error(
            "attempt failed outside the task: %s: %s",
            type(exc).__name__,
            redact(str(exc)),
            exc_info=None if isinstance(exc, PermanentError) else exc,
        )
        outcome = Outcome.failure(exc, RetryPolicy(), attempt or 1)
    shutdown.stop_raising()
    if shutdown.requested and outcome.exit_code != ExitCode.SHUTDOWN:
        log.info("SIGTERM arrived after the task finished; reporting its outcome")
    reported = reporter.report(outcome)
    if store is not None:
        if attempt is not None and disrupted(shutdown, outcome):
            store.return_attempt()
        store.close()
    # Only the hard-limit watchdog reports first; it is ending the process with exit 4,
    # and the exit code must agree with what it reported.
    return int(outcome.exit_code if reported else ExitCode.TIME_LIMIT)
