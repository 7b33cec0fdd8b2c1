"""Move worker progress from Redis into BackgroundJob status, coalesced.

Workers may report progress thousands of times a second; the API server must not see
that. Workers publish a nudge on a Redis channel; this pump (a task on the operator's
event loop, `redis.asyncio`) collects the nudged jobs and, once per interval, reads each
one's latest snapshot in one pipeline, keeps it in `Runtime.progress` and puts the job's
key on the work queue: the BackgroundJob reconciler writes it with the rest of the status,
so a job costs at most one progress write per interval however fast it reports.

Redis being down pauses progress only: jobs still run and their outcome still arrives
through the termination message. When Redis returns, every unfinished job is re-read, so
progress resumes without waiting for a nudge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bgjobs.api.v1alpha1 import is_batch
from bgjobs.redaction import redact
from bgjobs_operator import metrics
from bgjobs_operator.runtime import Key, Runtime
from bgjobs_operator.status import is_terminal, progress_of
from bgjobs_worker import batch_keys, redis_keys
from bgjobs_worker.batch_keys import BatchKeys

log = logging.getLogger(__name__)


class ProgressPump:
    def __init__(self, rt: Runtime, redis_url: str, interval: float) -> None:
        self.rt, self.url, self.interval = rt, redis_url, interval
        self.dirty: set[Key] = set()
        self.connected = False

    async def run(self) -> None:
        down_since: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            client: Any = None
            try:
                client = aioredis.Redis.from_url(
                    self.url, socket_timeout=5, socket_connect_timeout=2
                )
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(redis_keys.PROGRESS_CHANNEL)
                self.connected = True
                if down_since is not None:
                    log.info("Redis at %s is back; resuming progress", redact(self.url))
                down_since = None
                # Nudges published while we were away are lost: re-read every active job.
                self.dirty.update(self.rt.unfinished_jobs())
                await self._pump(client, pubsub)
            except (RedisError, OSError) as exc:
                self.connected = False
                if down_since is None:
                    down_since = loop.time()
                    log.warning(
                        "Redis at %s unreachable (%s): progress paused; jobs still run and "
                        "report their outcome via termination messages",
                        redact(self.url),
                        redact(str(exc)),
                    )
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("progress pump error")
                await asyncio.sleep(1.0)
            finally:
                if client is not None:
                    with contextlib.suppress(RedisError, OSError):
                        await client.aclose()

    async def _pump(self, client: Any, pubsub: Any) -> None:
        loop = asyncio.get_running_loop()
        next_flush = loop.time() + self.interval
        while True:
            timeout = max(0.0, next_flush - loop.time())
            message = await pubsub.get_message(timeout=timeout)
            while message is not None:
                key = redis_keys.parse_progress_notice(message.get("data", b""))
                if key:
                    self.dirty.add(key)
                message = await pubsub.get_message(timeout=0.0)
            if loop.time() >= next_flush:
                await self.flush(client)
                next_flush = loop.time() + self.interval

    async def flush(self, client: Any) -> None:
        keys, self.dirty = self.dirty, set()
        targets: list[tuple[Key, str]] = []
        batches: list[tuple[Key, BatchKeys]] = []
        for key in keys:
            bj, job = self.rt.backgroundjobs.get(key), self.rt.jobs.get(key)
            if bj is None or job is None or is_terminal(bj):
                self.rt.progress.pop(key, None)
                self.rt.batches.pop(key, None)
                continue
            if is_batch(bj.get("spec") or {}):
                batches.append((key, BatchKeys.of(key[0], bj["metadata"]["uid"])))
            else:
                targets.append((key, job["metadata"]["uid"]))
        if not targets and not batches:
            return
        pipe = client.pipeline(transaction=False)
        for (ns, _), uid in targets:
            pipe.hgetall(redis_keys.progress_key(ns, uid))
        for _, bkeys in batches:
            pipe.hgetall(bkeys.counts)
            pipe.zcard(bkeys.leases)
        replies = await pipe.execute()
        raws, batch_raws = replies[: len(targets)], replies[len(targets) :]
        for (key, _), raw in zip(targets, raws, strict=True):
            progress = progress_of(redis_keys.decode_progress(raw))
            if progress is not None and progress != self.rt.progress.get(key):
                self.rt.progress[key] = progress
                metrics.PROGRESS_WRITES.inc()
                self.rt.queue.add(("BackgroundJob", *key))
        # A batch's item counts travel like progress: however many pods record items,
        # the batch costs at most one status write per interval.
        for n, (key, _) in enumerate(batches):
            counts = batch_keys.decode_counts(batch_raws[2 * n], batch_raws[2 * n + 1])
            if counts is not None and counts != self.rt.batches.get(key):
                self.rt.batches[key] = counts
                metrics.PROGRESS_WRITES.inc()
                self.rt.queue.add(("BackgroundJob", *key))
