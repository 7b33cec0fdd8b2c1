"""Progress snapshots, their Redis encoding, and the never-failing, paced Redis writes."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgjobs_worker import redis_keys
from bgjobs_worker.context import JobIdentity, TaskContext
from bgjobs_worker.progress import MAX_MESSAGE_CHARS, build_progress, compute_percent
from bgjobs_worker.progress_writer import ProgressWriter
from bgjobs_worker.redis_store import RedisStore
from bgjobs_worker.timestamps import rfc3339


@pytest.mark.parametrize(
    ("current", "total", "percent", "expected"),
    [
        (3, 10, None, 30.0),
        (1, 3, None, 33.3),
        (2, 3, None, 66.7),
        (10, 10, None, 100.0),
        (12, 10, None, 100.0),  # over-reporting is clamped, not shown as 120 %
        (-1, 10, None, 0.0),
        (3, 0, None, None),  # unknown total: no percent rather than a division error
        (3, None, None, None),
        (None, None, 42, 42.0),
        (3, 10, 75, 75.0),  # an explicit percent wins (multi-stage tasks weight stages)
        (None, None, float("nan"), None),
    ],
)
def test_compute_percent(
    current: float | None, total: float | None, percent: float | None, expected: float | None
) -> None:
    assert compute_percent(current, total, percent) == expected


@given(st.integers(0, 10**9), st.integers(1, 10**9))
def test_percent_is_always_between_0_and_100(current: int, total: int) -> None:
    value = compute_percent(current, total, None)
    assert value is not None
    assert 0.0 <= value <= 100.0


def test_build_progress_snapshot() -> None:
    now = datetime(2025, 1, 31, 12, 0, 0, 123456, tzinfo=UTC)
    snapshot = build_progress(attempt=2, current=3, total=10, stage="rows", message="3/10", now=now)
    assert snapshot == {
        "current": 3,
        "total": 10,
        "percent": 30.0,
        "stage": "rows",
        "message": "3/10",
        "updatedAt": "2025-01-31T12:00:00.123Z",
        "attempt": 2,
    }


def test_long_messages_are_capped() -> None:
    snapshot = build_progress(attempt=1, message="m" * (MAX_MESSAGE_CHARS * 2))
    assert len(snapshot["message"]) == MAX_MESSAGE_CHARS
    assert snapshot["message"].endswith("...")


def test_rfc3339_is_utc_with_milliseconds() -> None:
    assert rfc3339(datetime(2025, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)) == "2025-01-02T03:04:05.006Z"
    assert rfc3339().endswith("Z")


def test_context_progress_reports_snapshots_and_never_raises() -> None:
    seen: list[dict[str, Any]] = []
    ctx = TaskContext(task_name="t", attempt=3, report=seen.append)
    ctx.progress(current=1, total=4, stage="a")
    assert [(s["percent"], s["stage"], s["attempt"]) for s in seen] == [(25.0, "a", 3)]

    def broken(_snapshot: dict[str, Any]) -> None:
        raise RuntimeError("sink down")

    TaskContext(task_name="t", report=broken).progress(current=1)
    TaskContext(task_name="t", report=seen.append).progress(current="x", total=2)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("attempt", "max_retries", "known", "last"),
    [
        (1, 0, True, True),
        (1, 2, True, False),
        (2, 2, True, False),
        (3, 2, True, True),
        (4, 2, True, True),  # past the last (a SIGKILLed disruption stays counted)
        (1, 2, False, False),  # unknown attempt: do not give up on retries early
        (1, 0, False, True),  # ...unless there are none to give up
    ],
)
def test_is_last_attempt(attempt: int, max_retries: int, known: bool, last: bool) -> None:
    ctx = TaskContext(task_name="t", attempt=attempt, max_retries=max_retries, attempt_known=known)
    assert ctx.is_last_attempt is last


def test_redis_keys_are_namespaced_per_job_uid() -> None:
    assert redis_keys.attempts_key("ns", "u-1") == "bgjobs:ns:u-1:attempts"
    assert redis_keys.progress_key("ns", "u-1") == "bgjobs:ns:u-1:progress"
    assert redis_keys.result_key("ns", "u-1") == "bgjobs:ns:u-1:result"
    assert redis_keys.job_keys("ns", "u") == [
        "bgjobs:ns:u:attempts",
        "bgjobs:ns:u:progress",
        "bgjobs:ns:u:result",
    ]
    assert redis_keys.PROGRESS_CHANNEL == "bgjobs:progress"
    assert redis_keys.progress_notice("ns", "job") == "ns/job"
    assert redis_keys.parse_progress_notice(b"ns/job") == ("ns", "job")
    assert redis_keys.parse_progress_notice("garbage") is None


def test_progress_survives_the_hash_encoding() -> None:
    snapshot = build_progress(attempt=2, current=2.5, total=10, stage="s", message="m")
    fields = redis_keys.encode_progress(snapshot)
    assert all(isinstance(v, str) for v in fields.values())
    raw = {k.encode(): v.encode() for k, v in fields.items()}  # what HGETALL returns
    assert redis_keys.decode_progress(raw) == snapshot


def test_absent_progress_fields_decode_as_none() -> None:
    fields = redis_keys.encode_progress(build_progress(attempt=1, stage="only"))
    assert set(fields) == {"stage", "updatedAt", "attempt"}
    decoded = redis_keys.decode_progress(fields)
    assert decoded is not None
    assert decoded["current"] is None
    assert decoded["percent"] is None
    assert redis_keys.decode_progress({}) is None


def test_decode_result() -> None:
    assert redis_keys.decode_result(None) is None
    assert redis_keys.decode_result(b"{oops") is None
    assert redis_keys.decode_result('{"status": "SUCCESS", "result": 1}') == {
        "status": "SUCCESS",
        "result": 1,
    }


class DeadRedis:
    """Stands in for a client whose every command fails, counting the tries."""

    def __init__(self) -> None:
        self.calls = 0

    def pipeline(self, transaction: bool = True) -> DeadRedis:
        self.calls += 1
        raise ConnectionError("connection refused")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_dead_redis_is_tried_at_most_once_per_interval() -> None:
    client, clock = DeadRedis(), FakeClock()
    store = RedisStore(client, JobIdentity("ns", "job", "uid"), retry_interval=1.0, clock=clock)
    snapshot = build_progress(attempt=1, current=1)
    for _ in range(1000):
        assert store.write_progress(snapshot) is False
    assert client.calls == 1
    clock.now += 0.5
    store.write_progress(snapshot)
    assert client.calls == 1
    clock.now += 0.6
    store.write_progress(snapshot)
    assert client.calls == 2
    # The final result is tried even inside the quiet period: it is written once and matters.
    assert store.write_result({"status": "SUCCESS"}, 60) is False
    assert client.calls == 3
    assert store.next_attempt() is None


def test_progress_writer_sends_the_latest_snapshot_and_paces_writes() -> None:
    written: list[int] = []
    release = threading.Event()

    def slow_write(snapshot: dict[str, Any]) -> bool:
        release.wait(5)
        written.append(snapshot["current"])
        return True

    writer = ProgressWriter(slow_write, min_interval=0.05)
    started = time.monotonic()
    for i in range(1, 1001):
        writer.submit({"current": i})
    assert time.monotonic() - started < 1.0  # the task is not held up by the writes
    release.set()
    writer.close(timeout=5)
    assert written[-1] == 1000
    assert len(written) <= 3  # coalesced: the first, maybe one in between, the last
    writer.submit({"current": 1001})  # after close: dropped, and no new thread
    assert written[-1] == 1000


def test_a_snapshot_redis_refused_is_retried_until_it_lands_unless_a_newer_one_came() -> None:
    attempts: list[int] = []
    landed: list[int] = []
    redis_up = threading.Event()

    def write(snapshot: dict[str, Any]) -> bool:
        attempts.append(snapshot["current"])
        if not redis_up.is_set():
            return False  # RedisStore.write_progress while Redis is down
        landed.append(snapshot["current"])
        return True

    writer = ProgressWriter(write, min_interval=0.01, retry_initial=0.02, retry_max=0.05)
    writer.submit({"current": 1})
    writer.submit({"current": 2})  # reported during the outage; the task reports no more
    deadline = time.monotonic() + 5
    while attempts.count(2) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert attempts.count(2) >= 3 and landed == [], "retried while Redis is away"
    redis_up.set()  # Redis is back
    while not landed and time.monotonic() < deadline:
        time.sleep(0.01)
    writer.close(timeout=5)
    assert landed == [2], "the last snapshot of the outage lands, once, and 1 never does"


def test_a_refused_snapshot_gets_one_more_try_at_close_and_nothing_waits_longer() -> None:
    tries: list[float] = []

    def write(snapshot: dict[str, Any]) -> bool:
        tries.append(time.monotonic())
        return False

    writer = ProgressWriter(write, min_interval=0.01, retry_initial=60, retry_max=60)
    writer.submit({"current": 1})
    while not tries:
        time.sleep(0.01)
    started = time.monotonic()
    writer.close(timeout=5)
    assert time.monotonic() - started < 2, "close does not wait out the retry backoff"
    assert len(tries) == 2, "the refused snapshot is tried once more on close"


def test_progress_writer_without_reports_starts_no_thread() -> None:
    before = threading.active_count()
    ProgressWriter(lambda _s: True).close()
    assert threading.active_count() == before


def test_the_worker_takes_its_redis_password_from_the_secret_variable() -> None:
    from bgjobs_worker.config import redis_password_from_env, redis_url_from_env

    env = {"BGJOBS_REDIS_URL": "redis://r:6379/0", "BGJOBS_REDIS_PASSWORD": "s3cret "}
    assert redis_url_from_env(env) == "redis://r:6379/0"
    assert redis_password_from_env(env) == "s3cret "
    assert redis_password_from_env({}) is None
    identity = JobIdentity(namespace="ns", job_name="j", job_uid="u", pod_name="p")
    store = RedisStore.from_url("redis://r:6379/0", identity, password="s3cret ")
    assert store._client.connection_pool.connection_kwargs["password"] == "s3cret "


def test_the_last_progress_is_kept_with_the_outcome_in_redis_and_the_termination_message(
    tmp_path: Any,
) -> None:
    """A report Redis missed (it was down then) still reaches the operator with the
    outcome: the result document and the termination message both carry it."""
    from bgjobs_worker.attempt import Outcome
    from bgjobs_worker.errors import ExitCode
    from bgjobs_worker.runner import OutcomeReporter
    from bgjobs_worker.termination import parse_termination_message

    stored: list[dict[str, Any]] = []

    class Store:
        def write_result(self, doc: dict[str, Any], ttl: int) -> bool:
            stored.append(doc)
            return True

    path = tmp_path / "termination-log"
    reporter = OutcomeReporter(Store(), str(path))  # type: ignore[arg-type]
    reporter.last_progress = build_progress(attempt=1, current=30, total=30)
    assert reporter.report(Outcome(ExitCode.SUCCESS, 1, result={"steps": 30}))
    assert stored[0]["progress"]["current"] == 30
    doc = parse_termination_message(path.read_text())
    assert doc is not None and doc["progress"]["current"] == 30
