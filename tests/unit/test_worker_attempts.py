"""The attempt number a task sees (ctx.attempt) follows the attempts the Job counts.

A pod ended by SIGTERM (eviction, preemption, node drain: the pod gets a DisruptionTarget
condition) is ignored by the Job's podFailurePolicy and not counted in status.attempts, so
the next pod must see the same attempt number, not one more.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bgjobs_worker import redis_keys, runner
from bgjobs_worker.context import JobIdentity, TaskContext
from bgjobs_worker.errors import ExitCode
from bgjobs_worker.redis_store import RedisStore
from bgjobs_worker.registry import task

SEEN: list[tuple[int, bool]] = []


@task(name="tests.attempts.record", bind=True)
def record(ctx: TaskContext, sigterm: bool = False, fail: bool = False) -> int:
    SEEN.append((ctx.attempt, ctx.is_last_attempt))
    if sigterm:
        os.kill(os.getpid(), signal.SIGTERM)  # raises WorkerShutdown here, like an eviction
    if fail:
        raise ConnectionError("retry me")
    return ctx.attempt


class MemoryRedis:
    """The few Redis commands the worker's store uses, in memory."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def pipeline(self, transaction: bool = True) -> MemoryPipeline:
        return MemoryPipeline(self)

    def incr(self, key: str) -> int:
        self.data[key] = int(self.data.get(key, 0)) + 1
        return int(self.data[key])

    def decr(self, key: str) -> int:
        self.data[key] = int(self.data.get(key, 0)) - 1
        return int(self.data[key])

    def close(self) -> None:
        pass


class MemoryPipeline:
    def __init__(self, redis: MemoryRedis) -> None:
        self.redis = redis
        self.ops: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        def queue(*args: Any, **kwargs: Any) -> MemoryPipeline:
            self.ops.append((name, args, kwargs))
            return self

        return queue

    def execute(self) -> list[Any]:
        out: list[Any] = []
        for name, args, kwargs in self.ops:
            if name in ("incr", "decr"):
                out.append(getattr(self.redis, name)(*args))
            elif name == "set":
                self.redis.data[args[0]] = args[1]
                out.append(True)
            elif name == "hset":
                self.redis.data[args[0]] = dict(kwargs["mapping"])
                out.append(1)
            else:  # expire, delete, publish: nothing this test reads
                out.append(1)
        return out


IDENTITY = JobIdentity(namespace="ns", job_name="j", job_uid="u-1", pod_name="j-abc")


@pytest.fixture
def redis(monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryRedis]:
    memory = MemoryRedis()
    monkeypatch.setattr(
        runner, "connect_store", lambda url, identity, password=None: RedisStore(memory, identity)
    )
    monkeypatch.setattr(runner.logs, "configure", lambda level="INFO": None)
    previous = signal.getsignal(signal.SIGTERM)
    SEEN.clear()
    try:
        yield memory
    finally:
        signal.signal(signal.SIGTERM, previous)


def pod(tmp_path: Path, max_retries: int = 2, **kwargs: Any) -> int:
    """One pod of the Job: the worker run with the environment the operator sets."""
    env = {
        "BGJOBS_TASK": "tests.attempts.record",
        "BGJOBS_KWARGS": json.dumps(kwargs),
        "BGJOBS_MAX_RETRIES": str(max_retries),
        "BGJOBS_REDIS_URL": "redis://unused:6379/0",
        "BGJOBS_NAMESPACE": IDENTITY.namespace,
        "BGJOBS_JOB_NAME": IDENTITY.job_name,
        "BGJOBS_JOB_UID": IDENTITY.job_uid,
        "BGJOBS_POD_NAME": IDENTITY.pod_name,
        "BGJOBS_TERMINATION_LOG": str(tmp_path / "termination-log"),
    }
    return runner.run(env)


def attempts(redis: MemoryRedis) -> int:
    return int(redis.data[redis_keys.attempts_key("ns", "u-1")])


def test_a_disrupted_attempt_is_not_counted(redis: MemoryRedis, tmp_path: Path) -> None:
    assert pod(tmp_path, sigterm=True) == ExitCode.SHUTDOWN
    assert pod(tmp_path) == ExitCode.SUCCESS
    assert SEEN == [(1, False), (1, False)]
    assert attempts(redis) == 1


def test_failed_attempts_still_count_around_a_disruption(
    redis: MemoryRedis, tmp_path: Path
) -> None:
    assert pod(tmp_path, fail=True) == ExitCode.RETRYABLE
    assert pod(tmp_path, sigterm=True) == ExitCode.SHUTDOWN
    assert pod(tmp_path, sigterm=True) == ExitCode.SHUTDOWN
    assert pod(tmp_path, fail=True) == ExitCode.RETRYABLE
    assert pod(tmp_path) == ExitCode.SUCCESS
    # is_last_attempt turns True on the third counted attempt, not one early.
    assert SEEN == [(1, False), (2, False), (2, False), (2, False), (3, True)]
    assert attempts(redis) == 3
