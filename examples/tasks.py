"""Example tasks for the demo and the integration tests.

A worker image picks them up with ``BGJOBS_TASK_MODULES=examples.tasks``; each task is
looked up by the name given in its decorator.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from bgjobs_worker import PermanentError, TaskContext, WorkerShutdown, task

log = logging.getLogger(__name__)


@task(name="examples.noop")
def noop() -> None:
    return None


@task(name="examples.add")
def add(x: float, y: float) -> float:
    return x + y


@task(name="examples.echo")
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Returns its arguments: what the task received, for the user to read back."""
    return {"args": list(args), "kwargs": kwargs}


@task(name="examples.progress", bind=True)
def progress(ctx: TaskContext, steps: int = 10, delay: float = 0.2) -> dict[str, int]:
    for step in range(1, steps + 1):
        time.sleep(delay)
        ctx.progress(current=step, total=steps, stage="working", message=f"step {step}/{steps}")
    return {"steps": steps}


@task(name="examples.stages", bind=True)
def stages(ctx: TaskContext, names: list[str], seconds: float = 1.0) -> list[str]:
    """Reports each stage once, then works on it for ``seconds``: progress that changes
    rarely, as in a long export."""
    for i, name in enumerate(names, start=1):
        ctx.progress(current=i, total=len(names), stage=name)
        time.sleep(seconds)
    return names


@task(name="examples.ids")
def ids(count: int) -> list[int]:
    """0 .. count-1: a list a forEach workflow step runs over."""
    return list(range(count))


@task(name="examples.numbers")
def numbers(count: int, fail_at: int | None = None, delay: float = 0.0) -> Iterator[dict[str, Any]]:
    """A producer for batches (spec.itemsFrom.task): yields ``{"n": i}`` for each i below
    ``count``, in order (so a re-run can skip what was produced); raises at ``fail_at``."""
    for i in range(count):
        if i == fail_at:
            raise LookupError(f"source gone at {i}")
        if delay:
            time.sleep(delay)
        yield {"n": i}


@task(name="examples.flaky", bind=True, retry_on=(ConnectionError,))
def flaky(ctx: TaskContext, fail_times: int = 1) -> dict[str, int]:
    """Fails with a retryable error on its first ``fail_times`` attempts."""
    if ctx.attempt <= fail_times:
        raise ConnectionError(f"upstream unavailable (attempt {ctx.attempt})")
    return {"attempt": ctx.attempt}


@task(name="examples.permanent")
def permanent() -> None:
    raise PermanentError("bad input")


@task(name="examples.always_fails")
def always_fails() -> None:
    raise RuntimeError("boom")


@task(name="examples.sleep")
def sleep(seconds: float = 30.0) -> dict[str, float]:
    """Sleeps in small steps; a stand-in for long work that can be cancelled."""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
    except WorkerShutdown:
        # Nothing half-written to undo here; a real task would release locks or roll back,
        # then let the shutdown continue so the pod reports exit 143.
        log.info("sleep interrupted by shutdown")
        raise
    return {"slept": seconds}


@task(name="examples.sleep_then_attempt", bind=True)
def sleep_then_attempt(ctx: TaskContext, seconds: float = 5.0) -> dict[str, Any]:
    """Sleeps (SIGTERM ends it with exit 143), then reports the attempt number it saw."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
    return {"attempt": ctx.attempt, "isLastAttempt": ctx.is_last_attempt}


@task(name="examples.soft_limit", soft_time_limit=0.5)
def soft_limit(seconds: float = 5.0) -> None:
    """Sleeps past its soft time limit without catching SoftTimeLimitExceeded (exit 4)."""
    time.sleep(seconds)


@task(name="examples.fallback", bind=True, retry_on=(ConnectionError,))
def fallback(ctx: TaskContext) -> dict[str, bool]:
    """The seed's "final retry uses fallback": the primary path fails until the last attempt."""
    if not ctx.is_last_attempt:
        raise ConnectionError("primary processor unavailable")
    log.warning("primary processor failed on every attempt, using fallback")
    return {"fallback": True}


@task(name="examples.export", bind=True, permanent_on=(ValueError,))
def export(
    ctx: TaskContext, total_records: int = 5000, batch_size: int = 1000, delay: float = 0.05
) -> dict[str, Any]:
    """Batch export like the seed's ``process_batch_export``: one progress report per chunk."""
    if total_records < 0 or batch_size <= 0:
        raise ValueError("total_records must be >= 0 and batch_size > 0")
    exported = 0
    parts = 0
    ctx.progress(current=0, total=total_records, stage="exporting")
    while exported < total_records:
        chunk = min(batch_size, total_records - exported)
        time.sleep(delay)  # stands in for fetching and converting a batch of records
        exported += chunk
        parts += 1
        ctx.progress(
            current=exported,
            total=total_records,
            stage="exporting",
            message=f"{exported}/{total_records} records",
        )
    ctx.progress(current=total_records, total=total_records, stage="uploading")
    return {
        "records": exported,
        "parts": parts,
        "url": f"s3://exports/{ctx.namespace or 'local'}/{ctx.job_name or 'export'}.csv",
    }


# --- the seed's workflow: chain(extract_text, group(analyze, summarize), save_analysis) ---
# Ported as a JobWorkflow (examples/jobworkflow-seed.yaml) or with bgjobs.canvas. Each step
# receives its dependencies' results as its first argument, as in Celery.


@task(name="examples.extract_text")
def extract_text(file_id: str) -> str:
    return f"text of {file_id}: the service was great and fast"


@task(name="examples.analyze_sentiment")
def analyze_sentiment(text: str) -> dict[str, Any]:
    positive = sum(text.count(w) for w in ("great", "good", "fast"))
    return {"sentiment": "positive" if positive else "neutral", "score": positive}


@task(name="examples.generate_summary")
def generate_summary(text: str, words: int = 4) -> str:
    return " ".join(text.split()[:words])


@task(name="examples.save_analysis")
def save_analysis(results: list[Any], file_id: str) -> dict[str, Any]:
    sentiment, summary = results
    return {"file": file_id, "sentiment": sentiment["sentiment"], "summary": summary}


@task(name="examples.needs_file", permanent_on=(FileNotFoundError,))
def needs_file(value: Any, path: str) -> Any:
    """Fails (permanently) until ``path`` exists: a bug fixed between a failure and a resume."""
    with open(path) as f:
        return {"got": value, "flag": f.read().strip()}


@task(name="examples.total")
def total(numbers: list[float]) -> float:
    """A chord body: the sum of its header's results (Celery's ``tsum``)."""
    return sum(numbers)


@task(name="examples.on_failure")
def on_failure(failure: dict[str, Any], channel: str = "ops") -> str:
    """A workflow's onFailure task (Celery's link_error): told which step failed and why."""
    error = failure.get("error") or {}
    message = (
        f"[{channel}] {failure['workflow']}: step {failure['step']} failed ({error.get('type')})"
    )
    log.error(message)
    return message


@task(name="examples.item")
def item(n: int, fail: bool = False, delay: float = 0.0) -> int:
    """One item of a batch (an invoice, an email): refuses permanently when told to."""
    if delay:
        time.sleep(delay)
    if fail:
        raise PermanentError(f"item {n} refused")
    return n * 2
