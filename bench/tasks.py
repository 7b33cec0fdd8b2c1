"""Tasks the benchmarks run in worker pods and in-process (BGJOBS_TASK_MODULES=bench.tasks)."""

from __future__ import annotations

import os
import time
from typing import Any

from bgjobs_worker import TaskContext, task


@task(name="bench.noop")
def noop() -> None:
    return None


@task(name="bench.stamp")
def stamp(path: str) -> None:
    """Record when the task body started running (time.time()) into `path`."""
    started = time.time()
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(repr(started))
    os.replace(tmp, path)


@task(name="bench.hammer", bind=True)
def hammer(
    ctx: TaskContext, rate: float = 1000.0, seconds: float = 10.0, hold: float = 3.0
) -> dict[str, Any]:
    """Report progress `rate` times a second for `seconds`, paced, then stay running for
    `hold` seconds so the final progress reaches status through the progress pump rather
    than with the job's final status write. The last report's message carries its time."""
    total = max(1, int(rate * seconds))
    start = time.monotonic()
    for i in range(1, total):
        pause = start + i / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        ctx.progress(current=i, total=total, stage="hammering")
    last = time.time()
    ctx.progress(current=total, total=total, stage="hammering", message=f"last report {last:.6f}")
    elapsed = time.monotonic() - start
    time.sleep(hold)
    return {"reports": total, "seconds": round(elapsed, 6), "lastReport": last}
