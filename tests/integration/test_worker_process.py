"""The worker as a real process (``python -m bgjobs_worker run``) against a real redis-server.

Checks the contract the Job and the operator rely on: exit codes, the attempt counter,
progress and result keys, pub/sub notices, the termination message, and that a Redis outage
never fails a job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from bgjobs_worker import redis_keys
from bgjobs_worker.termination import parse_termination_message
from tests.integration.support import RedisServer, wait_for

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "worker-it"


@dataclass
class Run:
    code: int
    stdout: str
    termination: dict[str, Any] | None

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]


@dataclass
class Job:
    """One BackgroundJob's worth of environment; every run with it shares the uid."""

    tmp: Path
    redis_url: str | None
    name: str = ""
    uid: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or f"job-{uuid.uuid4().hex[:6]}"
        self.uid = self.uid or str(uuid.uuid4())

    @property
    def termination_log(self) -> Path:
        return self.tmp / f"{self.uid}.termination-log"

    def env(self, task: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BGJOBS_")} | {
            "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "worker_image")]),
            "BGJOBS_TASK": task,
            "BGJOBS_TASK_MODULES": "examples.tasks",
            "BGJOBS_NAMESPACE": NAMESPACE,
            "BGJOBS_JOB_NAME": self.name,
            "BGJOBS_JOB_UID": self.uid,
            "BGJOBS_POD_NAME": f"{self.name}-pod",
            "BGJOBS_TERMINATION_LOG": str(self.termination_log),
            "BGJOBS_RESULT_TTL": "600",
        }
        if self.redis_url:
            env["BGJOBS_REDIS_URL"] = self.redis_url
        return env | extra

    def start(self, task: str, **extra: str) -> subprocess.Popen[str]:
        self.termination_log.unlink(missing_ok=True)
        return subprocess.Popen(
            [sys.executable, "-m", "bgjobs_worker", "run"],
            env=self.env(task, **extra),
            cwd=self.tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def finish(self, proc: subprocess.Popen[str], timeout: float = 30) -> Run:
        stdout, _ = proc.communicate(timeout=timeout)
        text = self.termination_log.read_text() if self.termination_log.exists() else ""
        return Run(proc.returncode, stdout, parse_termination_message(text))

    def run(self, task: str, **extra: str) -> Run:
        return self.finish(self.start(task, **extra))


@pytest.fixture
def rds(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def job(tmp_path: Path, redis_server: RedisServer) -> Job:
    return Job(tmp_path, redis_server.url)


@pytest.mark.parametrize(
    ("task", "extra", "code", "error_type"),
    [
        ("examples.noop", {}, 0, None),
        ("examples.always_fails", {}, 1, "RuntimeError"),
        ("examples.permanent", {}, 3, "bgjobs_worker.errors.PermanentError"),
        ("examples.no_such_task", {}, 3, "bgjobs_worker.errors.TaskNotRegistered"),
        ("examples.add", {"BGJOBS_ARGS": "[1"}, 3, "bgjobs_worker.errors.InvalidArguments"),
        ("examples.add", {"BGJOBS_ARGS": "[1]"}, 3, "bgjobs_worker.errors.InvalidArguments"),
        (
            "examples.noop",
            {"BGJOBS_TASK_MODULES": "examples.tasks,no_such_module"},
            3,
            "bgjobs_worker.errors.TaskImportError",
        ),
        # The spec narrows retry_on: RuntimeError is no longer retryable.
        ("examples.always_fails", {"BGJOBS_RETRY_ON": "ConnectionError"}, 3, "RuntimeError"),
        ("examples.soft_limit", {}, 4, "bgjobs_worker.errors.SoftTimeLimitExceeded"),
        (
            "examples.sleep",
            {"BGJOBS_KWARGS": '{"seconds": 20}', "BGJOBS_TIME_LIMIT": "0.5"},
            4,
            "bgjobs_worker.errors.TimeLimitExceeded",
        ),
    ],
)
def test_exit_codes_and_termination_message(
    job: Job, rds: redis.Redis, task: str, extra: dict[str, str], code: int, error_type: str | None
) -> None:
    run = job.run(task, **extra)
    assert run.code == code, run.stdout
    assert run.termination is not None
    assert run.termination["attempt"] == 1
    stored = redis_keys.read_result(rds, NAMESPACE, job.uid)
    assert stored is not None
    if code == 0:
        assert run.termination == {"status": "SUCCESS", "attempt": 1, "result": None}
        assert stored["status"] == "SUCCESS"
    else:
        assert run.termination["status"] == "FAILURE"
        assert run.termination["exitCode"] == code
        assert run.termination["error"]["type"] == error_type
        assert (stored["status"], stored["exitCode"]) == ("FAILURE", code)
        assert stored["error"]["type"] == error_type
        assert stored["error"]["traceback"]


def test_every_log_line_is_json_with_the_job_identity(job: Job) -> None:
    run = job.run("examples.fallback")
    lines = run.log_lines()
    assert lines
    assert len(lines) == len(run.stdout.splitlines()), run.stdout
    for line in lines:
        assert {"ts", "level", "msg", "logger"} <= line.keys()
        assert (line["namespace"], line["job"], line["uid"]) == (NAMESPACE, job.name, job.uid)
        assert (line["task"], line["attempt"]) == ("examples.fallback", 1)
    assert any(line["logger"] == "examples.tasks" for line in lines)  # the task's own logging


def test_sigterm_raises_worker_shutdown_and_exits_143(job: Job, rds: redis.Redis) -> None:
    proc = job.start("examples.sleep", BGJOBS_KWARGS='{"seconds": 30}')
    try:
        wait_for(
            lambda: redis_keys.read_attempts(rds, NAMESPACE, job.uid) == 1,
            timeout=20,
            what="the attempt to start",
        )
        time.sleep(0.5)  # past the attempt counter, into the task's sleep
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        run = job.finish(proc, timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert run.code == 143, run.stdout
    assert time.monotonic() - started < 5  # cancelled, not slept out
    assert run.termination is not None
    assert run.termination["error"]["type"] == "bgjobs_worker.errors.WorkerShutdown"
    assert any(line["msg"] == "sleep interrupted by shutdown" for line in run.log_lines())
    stored = redis_keys.read_result(rds, NAMESPACE, job.uid)
    assert stored is not None
    assert stored["exitCode"] == 143
    # A SIGTERM is a disruption the Job does not count: the attempt number is given back.
    assert redis_keys.read_attempts(rds, NAMESPACE, job.uid) == 0


def test_attempts_count_across_pods_of_one_job(job: Job, rds: redis.Redis) -> None:
    first = job.run("examples.flaky", BGJOBS_KWARGS='{"fail_times": 1}', BGJOBS_MAX_RETRIES="1")
    assert first.code == 1, first.stdout
    assert first.termination is not None
    assert first.termination["attempt"] == 1
    second = job.run("examples.flaky", BGJOBS_KWARGS='{"fail_times": 1}', BGJOBS_MAX_RETRIES="1")
    assert second.code == 0, second.stdout
    assert second.termination == {"status": "SUCCESS", "attempt": 2, "result": {"attempt": 2}}
    assert redis_keys.read_attempts(rds, NAMESPACE, job.uid) == 2
    assert 0 < rds.ttl(redis_keys.attempts_key(NAMESPACE, job.uid)) <= 7 * 24 * 3600
    # The last attempt knows it is last: examples.fallback gives up on its primary path.
    fallback = Job(job.tmp, job.redis_url)
    assert fallback.run("examples.fallback", BGJOBS_MAX_RETRIES="1").code == 1
    last = fallback.run("examples.fallback", BGJOBS_MAX_RETRIES="1")
    assert last.termination == {"status": "SUCCESS", "attempt": 2, "result": {"fallback": True}}


def test_progress_hash_notice_and_result_with_ttl(job: Job, rds: redis.Redis) -> None:
    pubsub = rds.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(redis_keys.PROGRESS_CHANNEL)
    try:
        run = job.run("examples.progress", BGJOBS_KWARGS='{"steps": 3, "delay": 0.05}')
        notices: list[str] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.2)
            if message is None:
                if notices:
                    break
                continue
            notices.append(message["data"])
    finally:
        pubsub.close()
    assert run.code == 0, run.stdout

    progress = redis_keys.read_progress(rds, NAMESPACE, job.uid)
    assert progress is not None
    assert {k: progress[k] for k in ("current", "total", "percent", "stage", "attempt")} == {
        "current": 3,
        "total": 3,
        "percent": 100.0,
        "stage": "working",
        "attempt": 1,
    }
    assert progress["message"] == "step 3/3"
    assert progress["updatedAt"].endswith("Z")
    assert 0 < rds.ttl(redis_keys.progress_key(NAMESPACE, job.uid)) <= 7 * 24 * 3600

    # Progress notices, then the result's; all name the job, none carries data.
    ours = [n for n in notices if n == f"{NAMESPACE}/{job.name}"]
    assert len(ours) >= 2, notices

    result = redis_keys.read_result(rds, NAMESPACE, job.uid)
    assert result is not None
    assert (result["status"], result["result"], result["attempt"]) == ("SUCCESS", {"steps": 3}, 1)
    assert result["finishedAt"].endswith("Z")
    assert 0 < rds.ttl(redis_keys.result_key(NAMESPACE, job.uid)) <= 600
    assert result["progress"]["current"] == 3, "the last report rides with the outcome"
    assert run.termination is not None
    assert run.termination.pop("progress")["current"] == 3
    assert run.termination == {"status": "SUCCESS", "attempt": 1, "result": {"steps": 3}}


def test_big_result_is_truncated_in_the_termination_message_only(
    job: Job, rds: redis.Redis
) -> None:
    run = job.run("examples.add", BGJOBS_ARGS=json.dumps(["a" * 3000, "b" * 3000]))
    assert run.code == 0, run.stdout
    assert run.termination == {
        "status": "SUCCESS",
        "attempt": 1,
        "result": None,
        "resultTruncated": True,
    }
    assert len(job.termination_log.read_bytes()) <= 4096
    stored = redis_keys.read_result(rds, NAMESPACE, job.uid)
    assert stored is not None
    assert stored["result"] == "a" * 3000 + "b" * 3000


def test_redis_down_never_fails_the_job(job: Job, redis_server: RedisServer) -> None:
    redis_server.stop()
    try:
        started = time.monotonic()
        added = job.run("examples.add", BGJOBS_ARGS="[2, 3]")
        # A thousand progress reports against the dead Redis are not slowed down by it.
        progressed = Job(job.tmp, job.redis_url).run(
            "examples.progress", BGJOBS_KWARGS='{"steps": 1000, "delay": 0}'
        )
        elapsed = time.monotonic() - started
    finally:
        redis_server.resume()
    assert added.code == 0, added.stdout
    assert added.termination == {"status": "SUCCESS", "attempt": 1, "result": 5}
    assert progressed.code == 0, progressed.stdout
    assert progressed.termination is not None
    assert progressed.termination["result"] == {"steps": 1000}
    assert elapsed < 15
    assert any("Redis unavailable" in line["msg"] for line in added.log_lines())


def test_without_redis_configured_the_job_still_runs(tmp_path: Path) -> None:
    run = Job(tmp_path, None).run("examples.fallback")
    assert run.code == 0, run.stdout  # no retries: the only attempt is the last one
    assert run.termination == {"status": "SUCCESS", "attempt": 1, "result": {"fallback": True}}
    flaky = Job(tmp_path, None).run("examples.fallback", BGJOBS_MAX_RETRIES="2")
    assert flaky.code == 1  # attempt unknown: retries remain, so no fallback yet
