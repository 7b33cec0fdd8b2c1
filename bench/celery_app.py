"""The Celery baseline of section 6: the same no-op task run by a long-lived Celery worker.

This module runs only in the bench's own virtualenv (celery and redis, created by
bench/worker.py), never in the project's .venv:

    celery -A bench.celery_app worker --pool=solo          # the worker
    python -m bench.celery_app 200                         # 200 timed round trips, JSON out
    python -m bench.celery_app burst 10000                 # section 7: apply_async of each,
                                                           # then every result fetched
"""

from __future__ import annotations

import json
import os
import sys
import time

import celery
from celery import Celery

URL = os.environ.get("BENCH_CELERY_URL", "redis://127.0.0.1:6379/1")
app = Celery("bench", broker=URL, backend=URL)
app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)


@app.task(name="bench.noop")
def noop() -> None:
    return None


def main(count: int) -> None:
    noop.apply_async().get(timeout=120)  # waits for the worker to be up
    first_result_at = time.time()
    for _ in range(10):  # warm-up: connections, result subscription
        noop.apply_async().get(timeout=30)
    round_trips = []
    for _ in range(count):
        start = time.perf_counter()
        noop.apply_async().get(timeout=30)
        round_trips.append(time.perf_counter() - start)
    print(
        json.dumps(
            {
                "version": celery.__version__,
                "first_result_at": first_result_at,
                "round_trips": round_trips,
            }
        )
    )


def burst(count: int) -> None:
    """Celery's answer to a batch: a message per task, every result fetched."""
    noop.apply_async().get(timeout=120)  # waits for the worker to be up
    start = time.time()
    results = [noop.apply_async() for _ in range(count)]
    submitted = time.time()
    for result in results:
        result.get(timeout=600)
    done = time.time()
    print(
        json.dumps(
            {
                "version": celery.__version__,
                "tasks": count,
                "submit_seconds": submitted - start,
                "seconds": done - start,
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "burst":
        burst(int(sys.argv[2]))
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
