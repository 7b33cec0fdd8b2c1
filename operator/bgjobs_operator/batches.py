"""Batches (a BackgroundJob with spec.items): seeding the items in Redis, reading what the
warm workers recorded, and the batch's part of the status and its DeadLetter.

The items are written to Redis once, before the Job is created (the SEED script does
nothing when the batch's keys exist, so a retry after a crash is harmless); the worker
pods lease them from there (worker_image/bgjobs_worker/batch_keys.py has the layout). The
operator reads counts while the batch runs (through the progress pump, coalesced) and the
failed items once, when the Job has finished.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bgjobs.api.v1alpha1 import BatchStatus, FailedItem, JobError, Progress
from bgjobs_operator.conditions import bound
from bgjobs_worker import batch_keys
from bgjobs_worker.batch_keys import BatchCounts, BatchKeys

# A DeadLetter lists this many failed items with their errors; all are replayed, and the
# full list stays in Redis.
MAX_LISTED_FAILURES = 100
MAX_ITEM_ERROR = 512
MAX_LISTED_ITEM_BYTES = 1024


@dataclass(frozen=True)
class BatchResult:
    """What the workers left in Redis when the batch's Job finished."""

    counts: BatchCounts
    failed: list[FailedItem] = field(default_factory=list)  # the first MAX_LISTED_FAILURES
    not_succeeded: list[int] = field(default_factory=list)  # failed or never run: replayed
    # Every item's result in index order: read only for a workflow step's batch (a forEach
    # step passes them on) of at most MAX_PASSED_RESULTS items.
    results: list[Any] | None = None


# A forEach step's item results are passed to the next step up to this many items (and
# --max-result-bytes of JSON); past that the next step fails with ResultTooLarge.
MAX_PASSED_RESULTS = 1000


async def read_results(client: Any, keys: BatchKeys) -> list[Any]:
    """Every item's result, in index order (a succeeded batch: every item has one)."""
    raw = await client.hgetall(keys.outcomes)
    docs = {int(k): batch_keys.decode_outcome(v) or {} for k, v in raw.items()}
    return [docs[i].get("result") for i in sorted(docs)]


def keys_of(bj: dict[str, Any]) -> BatchKeys:
    md = bj["metadata"]
    return BatchKeys.of(md["namespace"], md["uid"])


async def seed(
    client: Any, keys: BatchKeys, items: list[str], ttl: int, indexes: list[int] | None = None
) -> bool:
    """Write the items once (under `indexes`, default their positions); False when they
    were already there."""
    args = batch_keys.seed_args(ttl, items, indexes)
    return bool(await client.eval(batch_keys.SEED, 6, *keys.all(), *args))


async def seed_from_upload(
    client: Any, keys: BatchKeys, namespace: str, upload: str, ttl: int
) -> int:
    """Seed from a client's (or a replay's) upload: the item count, 0 when already seeded,
    -1 when there is no such upload (never written, or expired)."""
    up, up_indexes = batch_keys.upload_keys(namespace, upload)
    return int(await client.eval(batch_keys.SEED_UPLOAD, 8, *keys.all(), up, up_indexes, ttl))


async def open_for_producer(client: Any, keys: BatchKeys, ttl: int) -> bool:
    """Open a producer batch: no items yet, not sealed; False when already open."""
    return bool(await client.eval(batch_keys.SEED_OPEN, 1, keys.counts, ttl))


def replay_upload(bj: dict[str, Any]) -> str:
    """The upload a DeadLetter of an uploaded batch replays: its not-succeeded items."""
    return f"replay-{bj['metadata']['uid']}"


async def stage_replay(
    client: Any, keys: BatchKeys, namespace: str, upload: str, indexes: list[int], ttl: int
) -> int:
    """Copy the items of `indexes` into the upload `upload`, keeping their numbers;
    idempotent (the upload is rewritten whole)."""
    up, up_indexes = batch_keys.upload_keys(namespace, upload)
    return int(
        await client.eval(batch_keys.STAGE_REPLAY, 3, keys.items, up, up_indexes, ttl, *indexes)
    )


async def read_counts(client: Any, keys: BatchKeys) -> BatchCounts | None:
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.counts)
    pipe.zcard(keys.leases)
    raw, leased = await pipe.execute()
    return batch_keys.decode_counts(raw, leased)


async def read_result(client: Any, keys: BatchKeys) -> BatchResult | None:
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.counts)
    pipe.zcard(keys.leases)
    pipe.lrange(keys.failed, 0, -1)
    pipe.lrange(keys.pending, 0, -1)
    pipe.zrange(keys.leases, 0, -1)
    raw, leased, failed, pending, held = await pipe.execute()
    counts = batch_keys.decode_counts(raw, leased)
    if counts is None:
        return None
    failed_idx = [int(i) for i in failed]
    listed = failed_idx[:MAX_LISTED_FAILURES]
    failures: list[FailedItem] = []
    if listed:
        pipe = client.pipeline(transaction=False)
        pipe.hmget(keys.outcomes, listed)
        pipe.hmget(keys.items, listed)
        outcomes, items = await pipe.execute()
        for index, outcome, item in zip(listed, outcomes, items, strict=True):
            failures.append(_failed_item(index, outcome, item))
    rest = {int(i) for i in pending} | {int(i) for i in held}
    return BatchResult(counts, failures, sorted(set(failed_idx) | rest))


def _failed_item(index: int, raw_outcome: Any, raw_item: Any) -> FailedItem:
    doc = batch_keys.decode_outcome(raw_outcome) or {}
    err = doc.get("error") or {}
    item = batch_keys.decode_item(raw_item) if raw_item is not None else None
    if raw_item is not None and len(raw_item) > MAX_LISTED_ITEM_BYTES:
        item = None  # still replayed in full; only this listing leaves it out
    return FailedItem(
        index=index,
        item=item,
        error=JobError(
            type=bound(str(err.get("type") or "Unknown"), 256),
            message=bound(str(err.get("message") or ""), MAX_ITEM_ERROR),
        ),
        attempts=doc.get("attempts") if isinstance(doc.get("attempts"), int) else None,
    )


def _seconds(start: str | None, end: datetime) -> float | None:
    if not start:
        return None
    try:
        began = datetime.strptime(start, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=end.tzinfo)
    except ValueError:
        return None
    return (end - began).total_seconds()


def batch_status(counts: BatchCounts, outcomes_key: str, start: str | None) -> BatchStatus:
    """The rate is items done over the time from the first lease to the last recording,
    both Redis' clock in milliseconds: a function of what was observed, never of the clock,
    so re-deriving the status without new counts writes nothing. (From the Job's start,
    whole seconds and later than the first items of a short batch, it read several times
    too high.) Counts without startedAt (seeded by an older operator) use the Job's start."""
    last = (
        datetime.fromtimestamp(counts.updated_at_ms / 1000, UTC) if counts.updated_at_ms else None
    )
    if counts.started_at_ms and counts.updated_at_ms:
        elapsed: float | None = (counts.updated_at_ms - counts.started_at_ms) / 1000
    else:
        elapsed = _seconds(start, last) if last else None
    rate = round(counts.done / elapsed, 1) if elapsed and elapsed > 0 else None
    return BatchStatus(
        total=counts.total,
        succeeded=counts.succeeded,
        failed=counts.failed,
        running=counts.running,
        executions=counts.executions,
        ratePerSecond=rate,
        outcomesKey=outcomes_key,
        producing=True if counts.producing else None,
    )


def items_progress(counts: BatchCounts) -> Progress:
    total = counts.total
    return Progress(
        current=float(counts.done),
        total=float(total),
        percent=round(100.0 * counts.done / total, 1) if total else None,
        stage="items",
        message=f"{counts.succeeded} succeeded, {counts.failed} failed of {total}",
    )


def all_succeeded(counts: BatchCounts) -> bool:
    return counts.failed == 0 and counts.succeeded >= counts.total and counts.producer_error is None


def failure_error(result: BatchResult, job_reason: str | None) -> JobError:
    c = result.counts
    unrun = max(0, c.total - c.done)
    message = f"{c.failed} of {c.total} items failed"
    if unrun:
        message += f", {unrun} not run"
    if c.producer_error is not None:  # the items it did produce ran; the rest never existed
        err = c.producer_error
        message = (
            f"the producer failed after {c.total} items: {err.get('type')}: "
            f"{err.get('message')}; " + message
        )
        return JobError(
            type="ProducerFailed",
            reason="ProducerFailed",
            message=bound(message, 2048),
        )
    if result.failed and result.failed[0].error is not None:
        first = result.failed[0]
        assert first.error is not None
        message += f"; first: item {first.index}: {first.error.type}: {first.error.message}"
    return JobError(
        type="ItemsFailed",
        reason=job_reason or "ItemsFailed",
        message=bound(message, 2048),
    )


def replay_items(
    items: list[Any], indexes: list[int] | None, result: BatchResult
) -> tuple[list[Any], list[int]]:
    """The items a replay runs (those that failed or never ran, in their original order)
    and their indexes in the original batch, which the replay keeps (spec.itemIndexes):
    item 7 that failed is item 7 of the replay too, in its outcomes and DeadLetter."""
    position = {index: k for k, index in enumerate(indexes or range(len(items)))}
    kept = [i for i in result.not_succeeded if i in position]
    return [items[position[i]] for i in kept], kept
