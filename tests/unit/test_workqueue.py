"""The work queue: dedupe, one reconcile per key at a time, backoff, delayed requeue."""

from __future__ import annotations

import asyncio

from bgjobs_operator.workqueue import WorkQueue, worker


def test_a_waiting_key_is_queued_once() -> None:
    async def run() -> list[str]:
        q: WorkQueue[str] = WorkQueue()
        for key in ("a", "b", "a", "a"):
            q.add(key)
        got = [await q.get(), await q.get()]
        assert q._ready.empty()
        return got

    assert asyncio.run(run()) == ["a", "b"]


def test_a_key_added_while_processing_runs_again_after_not_during() -> None:
    async def run() -> None:
        q: WorkQueue[str] = WorkQueue()
        q.add("a")
        key = await q.get()
        q.add("a")  # an event arrives while "a" is being reconciled
        assert q._ready.empty(), "never handed to a second worker meanwhile"
        q.done(key)
        assert await asyncio.wait_for(q.get(), 1) == "a"

    asyncio.run(run())


def test_failures_back_off_exponentially_to_a_minute_and_success_forgets() -> None:
    now = [0.0]
    q: WorkQueue[str] = WorkQueue(clock=lambda: now[0])
    delays = [q.add_rate_limited("k") for _ in range(9)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    q.forget("k")
    assert q.add_rate_limited("k") == 1


def test_worker_retries_a_failing_key_and_requeues_when_asked() -> None:
    async def run() -> tuple[list[str], list[tuple[str, float]]]:
        q: WorkQueue[str] = WorkQueue(base_delay=0.01)
        calls: list[str] = []
        errors: list[tuple[str, float]] = []

        async def reconcile(key: str) -> float | None:
            calls.append(key)
            if len(calls) <= 2:
                raise RuntimeError("transient")
            return 0.01 if len(calls) == 3 else None  # ask once to be seen again

        tasks = [
            asyncio.create_task(q.run_timer()),
            asyncio.create_task(worker(q, reconcile, lambda k, e, d: errors.append((k, d)))),
        ]
        q.add("k")
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(calls) >= 4:
                break
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return calls, errors

    calls, errors = asyncio.run(run())
    assert calls == ["k"] * 4
    assert [d for _, d in errors] == [0.01, 0.02]


def test_delayed_add_keeps_the_earliest_due_time() -> None:
    now = [0.0]
    q: WorkQueue[str] = WorkQueue(clock=lambda: now[0])
    q.add_after("k", 30)
    q.add_after("k", 5)
    q.add_after("k", 60)
    assert q._due["k"] == 5
