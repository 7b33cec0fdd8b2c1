"""``bgjobs-worker run`` with ``BGJOBS_BATCH`` set: one warm worker of a batch.

Each pod of the batch's Indexed Job runs this loop: lease a chunk of items from Redis
(atomic Lua: expired leases of dead pods first, then pending items), call the task once per
item with in-process retries under the task's retry policy, record the chunk's outcomes
(HSETNX: once per item, however often it ran) and lease the next chunk in the same round
trip. A heartbeat thread keeps this pod's leases alive while it works.

Exit codes: 0 when the batch is drained (every item has an outcome), 3 when more items than
``BGJOBS_MAX_FAILED_ITEMS`` failed (the Job's podFailurePolicy fails the Job), 1 when Redis
stays unreachable or an item ran past the hard time limit (that item is recorded failed
first; the Job replaces the pod), 143 on SIGTERM (leased items not yet run are given back
first). Time limits are per item, its in-process retries included.
Redis is required here: without it there are no items.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from bgjobs_worker import batch_keys, logs
from bgjobs_worker.attempt import ErrorInfo, Outcome, as_json_value
from bgjobs_worker.config import (
    _int_env,
    _seconds_env,
    identity_from_env,
    redis_url_from_env,
    task_settings_from_env,
    termination_path_from_env,
)
from bgjobs_worker.context import JobIdentity, TaskContext, activated
from bgjobs_worker.errors import ConfigError, ExitCode, TimeLimitExceeded, WorkerShutdown
from bgjobs_worker.limits import hard_time_limit, soft_time_limit
from bgjobs_worker.producer import Producer, ProducerSpec
from bgjobs_worker.redis_keys import PROGRESS_CHANNEL, progress_notice
from bgjobs_worker.registry import Task, get_task, import_task_modules
from bgjobs_worker.retry_policy import RetryPolicy, exit_code_for, qualified_name
from bgjobs_worker.shutdown import ShutdownSignal
from bgjobs_worker.termination import build_termination_message, write_termination_message

log = logging.getLogger(__name__)

MAX_ERROR_MESSAGE = 1024
MAX_RETRY_DELAY = 60.0
REDIS_PATIENCE_SECONDS = 60.0


@dataclass(frozen=True)
class BatchSettings:
    batch_id: str  # the BackgroundJob's uid: the batch keys' prefix
    chunk_size: int = 10
    max_failed_items: int = -1  # -1: no limit
    lease_seconds: float = 30.0
    retry_delay: float = 1.0  # first in-process retry's delay, doubling up to a minute
    retry_on_soft_time_limit: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BatchSettings:
        batch_id = env.get("BGJOBS_BATCH", "").strip()
        if not batch_id:
            raise ConfigError("BGJOBS_BATCH is not set")
        max_failed = env.get("BGJOBS_MAX_FAILED_ITEMS", "").strip()
        return cls(
            batch_id=batch_id,
            chunk_size=_int_env(env, "BGJOBS_CHUNK_SIZE", 10, minimum=1),
            max_failed_items=int(max_failed) if max_failed else -1,
            lease_seconds=_seconds_env(env, "BGJOBS_LEASE_SECONDS") or 30.0,
            retry_delay=_float_env(env, "BGJOBS_ITEM_RETRY_DELAY", 1.0),
            retry_on_soft_time_limit=env.get("BGJOBS_RETRY_ON_SOFT_TIME_LIMIT", "true") != "false",
        )


def _float_env(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


@dataclass(frozen=True)
class ItemOutcome:
    index: str
    ok: bool
    document: str  # the JSON recorded in the outcomes hash
    calls: int


class ItemRunner:
    """Calls the task for one item: retries in process, never raises but WorkerShutdown."""

    def __init__(
        self,
        task: Task,
        policy: RetryPolicy,
        max_retries: int,
        identity: JobIdentity,
        settings: BatchSettings,
        soft_limit: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.task, self.policy, self.max_retries = task, policy, max_retries
        self.identity, self.settings, self.soft_limit = identity, settings, soft_limit
        self.sleep = sleep

    def run(self, index: str, raw: Any) -> ItemOutcome:
        try:
            item = batch_keys.decode_item(raw)
        except ValueError as exc:
            return self._failure(index, exc, 0)
        args, kwargs = (item, {}) if isinstance(item, list) else ([], item or {})
        attempt = 1
        while True:
            ctx = TaskContext(
                task_name=self.task.name,
                args=args,
                kwargs=kwargs,
                attempt=attempt,
                max_retries=self.max_retries,
                identity=self.identity,
            )
            try:
                bound = self.task.bind_arguments(ctx, args, kwargs)
                with activated(ctx), soft_time_limit(self.soft_limit):
                    value = self.task.fn(*bound.args, **bound.kwargs)
                doc = {"status": "SUCCESS", "result": as_json_value(value), "attempts": attempt}
                return ItemOutcome(index, True, json.dumps(doc, ensure_ascii=False), attempt)
            except WorkerShutdown:
                raise
            except Exception as exc:  # noqa: BLE001 - the task's failure is the item's
                if not self._retryable(exc) or attempt > self.max_retries:
                    log.warning(
                        "item %s failed after %d call(s): %s: %s",
                        index,
                        attempt,
                        type(exc).__name__,
                        exc,
                    )
                    return self._failure(index, exc, attempt)
                delay = min(MAX_RETRY_DELAY, self.settings.retry_delay * 2 ** (attempt - 1))
                log.info("item %s: call %d failed (%s); retry in %gs", index, attempt, exc, delay)
                self.sleep(delay)
                attempt += 1

    def _retryable(self, exc: BaseException) -> bool:
        code = exit_code_for(exc, self.policy)
        if code == ExitCode.TIME_LIMIT:
            return self.settings.retry_on_soft_time_limit
        return code == ExitCode.RETRYABLE

    @staticmethod
    def _failure(index: str, exc: BaseException, calls: int) -> ItemOutcome:
        message = str(exc)
        if len(message) > MAX_ERROR_MESSAGE:
            message = message[: MAX_ERROR_MESSAGE - 1] + "…"
        doc = {
            "status": "FAILURE",
            "error": {"type": qualified_name(type(exc)), "message": message},
            "attempts": calls,
        }
        return ItemOutcome(index, False, json.dumps(doc, ensure_ascii=False), calls)


class Leases:
    """The indexes this pod holds; a heartbeat thread pushes their deadlines forward."""

    def __init__(self, client: Any, key: str, lease_seconds: float) -> None:
        self.client, self.key, self.lease_seconds = client, key, lease_seconds
        self.held: set[str] = set()
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="bgjobs-leases", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def _beat(self) -> None:
        while not self.stopped.wait(self.lease_seconds / 3):
            with self.lock:
                held = list(self.held)
            if not held:
                continue
            try:
                seconds, micros = self.client.time()
                deadline = int(seconds) * 1000 + int(micros) // 1000
                deadline += int(self.lease_seconds * 1000)
                self.client.zadd(self.key, dict.fromkeys(held, deadline), xx=True)
            except Exception as exc:  # noqa: BLE001 - a missed beat only risks a re-run
                log.warning("lease heartbeat failed: %s", exc)


class BatchWorker:
    def __init__(
        self,
        client: Any,
        identity: JobIdentity,
        settings: BatchSettings,
        runner: ItemRunner,
        ttl: int,
        shutdown: ShutdownSignal | None = None,
        hard_limit: float | None = None,
        producer: ProducerSpec | None = None,
    ) -> None:
        self.client, self.identity, self.settings = client, identity, settings
        self.hard_limit = hard_limit  # per item, its in-process retries included
        self.runner, self.ttl, self.shutdown = runner, ttl, shutdown
        self.keys = batch_keys.BatchKeys.of(identity.namespace, settings.batch_id)
        self.lease_script = client.register_script(batch_keys.LEASE)
        self.record_script = client.register_script(batch_keys.RECORD)
        self.release_script = client.register_script(batch_keys.RELEASE)
        self.leases = Leases(client, self.keys.leases, settings.lease_seconds)
        self.items_run = 0
        self.producer = (
            Producer(client, self.keys, producer, identity, ttl, 2 * settings.lease_seconds)
            if producer is not None
            else None
        )

    def _lease_args(self) -> tuple[list[str], list[Any]]:
        keys = [self.keys.items, self.keys.pending, self.keys.leases, self.keys.counts]
        lease_ms = int(self.settings.lease_seconds * 1000)
        return keys, [self.settings.chunk_size, lease_ms, self.settings.max_failed_items]

    def _exchange(self, outcomes: list[ItemOutcome]) -> tuple[list[Any], list[int] | None]:
        """Record a chunk's outcomes, nudge the operator and lease the next chunk: one
        round trip."""
        pipe = self.client.pipeline(transaction=False)
        if outcomes:
            argv: list[Any] = [self.ttl, sum(o.calls for o in outcomes)]
            for o in outcomes:
                argv += [o.index, "ok" if o.ok else "fail", o.document]
            keys = [self.keys.outcomes, self.keys.leases, self.keys.failed, self.keys.counts]
            self.record_script(keys=keys, args=argv, client=pipe)
            notice = progress_notice(self.identity.namespace, self.identity.job_name)
            pipe.publish(PROGRESS_CHANNEL, notice)
        keys, args = self._lease_args()
        self.lease_script(keys=keys, args=args, client=pipe)
        replies = pipe.execute()
        counts = [int(x) for x in replies[0]] if outcomes else None
        return list(replies[-1]), counts

    def _too_many_failed(self, counts: list[int] | None) -> bool:
        limit = self.settings.max_failed_items
        return counts is not None and limit >= 0 and counts[1] > limit

    def run(self) -> ExitCode:
        self.leases.start()
        outcomes: list[ItemOutcome] = []
        if self.producer is not None:
            self.producer.try_start()
        try:
            while True:
                reply, counts = self._exchange(outcomes)
                outcomes = []
                if self._too_many_failed(counts) or reply[0] == batch_keys.TOO_MANY_FAILED:
                    return ExitCode.PERMANENT
                if reply[0] == batch_keys.DRAINED:
                    return ExitCode.SUCCESS
                if reply[0] == batch_keys.WAIT:
                    # Other pods hold the last items: wait for them, or for their leases
                    # to expire (their pod died) and take the items over. Or the producer
                    # has not produced more yet; if its pod died, produce here instead.
                    if self.producer is not None:
                        self.producer.try_start()
                    time.sleep(min(1.0, max(0.05, int(reply[1]) / 1000)))
                    continue
                outcomes = self._run_chunk(reply)
        finally:
            self.leases.stop()

    def _run_chunk(self, reply: list[Any]) -> list[ItemOutcome]:
        chunk = [(_text(reply[k]), reply[k + 1]) for k in range(1, len(reply), 2)]
        with self.leases.lock:
            self.leases.held.update(i for i, _ in chunk)
        outcomes: list[ItemOutcome] = []
        try:
            for n, (index, raw) in enumerate(chunk):

                def expired(index: str = index, n: int = n) -> None:
                    self._hard_limit_hit(index, [i for i, _ in chunk[n + 1 :]], outcomes)

                with hard_time_limit(self.hard_limit, expired):
                    outcomes.append(self.runner.run(index, raw))
                self.items_run += 1
        except WorkerShutdown:
            self._give_back([i for i, _ in chunk[len(outcomes) :]], outcomes)
            raise
        finally:
            with self.leases.lock:
                self.leases.held.clear()
        return outcomes

    def _hard_limit_hit(self, index: str, unrun: list[str], outcomes: list[ItemOutcome]) -> None:
        """From the watchdog thread: an item ran past the hard limit, which only ending the
        process can stop. Record it failed, give the rest of the chunk back, and exit 1 so
        the Job replaces this pod (one of its index's backoffLimitPerIndex restarts)."""
        limit = self.hard_limit or 0
        log.error("item %s exceeded the hard time limit of %gs: ending the process", index, limit)
        failure = ItemRunner._failure(
            index, TimeLimitExceeded(f"hard time limit of {limit:g}s exceeded"), 1
        )
        self._give_back(unrun, [*outcomes, failure])
        os._exit(ExitCode.RETRYABLE)

    def _give_back(self, unrun: list[str], outcomes: list[ItemOutcome]) -> None:
        """Stopping: record what finished, hand the rest back to other pods at once."""
        try:
            if outcomes:
                argv: list[Any] = [self.ttl, sum(o.calls for o in outcomes)]
                for o in outcomes:
                    argv += [o.index, "ok" if o.ok else "fail", o.document]
                keys = [self.keys.outcomes, self.keys.leases, self.keys.failed, self.keys.counts]
                self.record_script(keys=keys, args=argv)
            if unrun:
                self.release_script(keys=[self.keys.pending, self.keys.leases], args=unrun)
        except Exception as exc:  # noqa: BLE001 - the leases expire anyway
            log.warning("could not give back leased items: %s", exc)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _connect(url: str) -> Any:
    """Redis is required: wait for it a while (a restart), then fail retryably."""
    client = redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=5)
    deadline = time.monotonic() + REDIS_PATIENCE_SECONDS
    while True:
        try:
            client.ping()
            return client
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def run_batch(env: Mapping[str, str]) -> int:
    identity = identity_from_env(env)
    logs.configure(env.get("BGJOBS_LOG_LEVEL", "INFO"))
    logs.bind(namespace=identity.namespace, job=identity.job_name, task=env.get("BGJOBS_TASK", ""))
    shutdown = ShutdownSignal()
    shutdown.install()
    termination = termination_path_from_env(env)
    worker: BatchWorker | None = None
    error: ErrorInfo | None = None
    try:
        settings = task_settings_from_env(env)
        batch = BatchSettings.from_env(env)
        url = redis_url_from_env(env)
        if not url:
            raise ConfigError("BGJOBS_REDIS_URL is not set: a batch's items are in Redis")
        import_task_modules(settings.task_modules)
        task = get_task(settings.task_name)
        runner = ItemRunner(
            task,
            task.policy.overridden_by(settings.retry_on, settings.permanent_on),
            settings.max_retries,
            identity,
            batch,
            soft_limit=settings.soft_time_limit or task.soft_time_limit,
        )
        client = _connect(url)
        worker = BatchWorker(
            client,
            identity,
            batch,
            runner,
            batch_keys.batch_ttl(settings.result_ttl),
            shutdown,
            hard_limit=settings.time_limit or task.time_limit,
            producer=ProducerSpec.from_env(env),
        )
        code = worker.run()
        if code == ExitCode.PERMANENT:
            error = ErrorInfo(
                "TooManyFailedItems", f"more than {batch.max_failed_items} items failed"
            )
    except WorkerShutdown as exc:
        code, error = ExitCode.SHUTDOWN, ErrorInfo.of(exc)
    except redis.RedisError as exc:
        log.error("Redis unreachable: %s", exc)
        code, error = ExitCode.RETRYABLE, ErrorInfo.of(exc)
    except Exception as exc:  # noqa: BLE001 - reported like a task failure, by exit code
        log.error("batch worker failed: %s: %s", type(exc).__name__, exc)
        code, error = exit_code_for(exc, RetryPolicy()), ErrorInfo.of(exc)
    shutdown.stop_raising()
    ran = worker.items_run if worker is not None else 0
    log.info("batch worker exits %d after running %d item(s)", int(code), ran)
    outcome = Outcome(code, 1, result={"itemsRun": ran} if error is None else None, error=error)
    write_termination_message(termination, build_termination_message(outcome))
    return int(code)
