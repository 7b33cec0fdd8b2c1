"""Tasks of the chaos suite (BGJOBS_TASK_MODULES=bench.chaos_tasks): the behaviours of
examples.add, examples.flaky, examples.permanent and a long job with progress, each first
appending one execution record to a local file (the process node runs pods as local
processes), so executions are counted without Redis, which some scenarios empty."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from bgjobs_worker import PermanentError, TaskContext, task


def _record(ctx: TaskContext, path: str, item: int | None = None) -> None:
    line = json.dumps(
        {
            "job": ctx.job_name if item is None else f"{ctx.job_name}#{item}",
            "namespace": ctx.namespace,
            "attempt": ctx.attempt,
            "pod": ctx.pod_name,
            "at": time.time(),
        }
    )
    # One write(2) with O_APPEND: records of concurrent pods never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@task(name="chaos.add", bind=True)
def add(ctx: TaskContext, x: int, y: int, record: str) -> int:
    _record(ctx, record)
    return x + y


@task(name="chaos.flaky", bind=True, retry_on=(ConnectionError,))
def flaky(ctx: TaskContext, record: str, fail_times: int = 1) -> dict[str, int]:
    _record(ctx, record)
    if ctx.attempt <= fail_times:
        raise ConnectionError(f"upstream unavailable (attempt {ctx.attempt})")
    return {"attempt": ctx.attempt}


@task(name="chaos.permanent", bind=True)
def permanent(ctx: TaskContext, record: str) -> None:
    _record(ctx, record)
    raise PermanentError("bad input")


@task(name="chaos.long", bind=True)
def long(ctx: TaskContext, record: str, steps: int = 10, delay: float = 1.0) -> dict[str, Any]:
    _record(ctx, record)
    for step in range(1, steps + 1):
        time.sleep(delay)
        ctx.progress(current=step, total=steps, stage="working", message=f"step {step}/{steps}")
    return {"steps": steps}


@task(name="chaos.item", bind=True)
def item(ctx: TaskContext, n: int, record: str) -> int:
    """One item of a chaos batch: its record names the item, so re-runs are counted."""
    _record(ctx, record, item=n)
    return n * 2
