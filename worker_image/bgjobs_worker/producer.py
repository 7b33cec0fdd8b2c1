"""A batch's producer task (``spec.itemsFrom.task``): one pod streams what it yields into
the batch while every pod, itself included, runs the items already there.

The producer runs in a thread of one pod, the holder of the batch's producer lock in
Redis. It appends items in chunks with one Lua script that checks both the lock and the
offset (how many items were produced so far), so an item is never appended twice: a pod
that dies while producing lets its lock expire, and the next pod that finds the batch
unsealed takes the lock, calls the producer again and skips, by count, what was already
appended (hence: a producer's order must be deterministic). When the producer returns, the
batch is sealed and drains like any other; when it raises, the batch is sealed with the
error, the items produced still run, and the batch ends Failed saying why.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bgjobs_worker import batch_keys
from bgjobs_worker.context import JobIdentity, TaskContext, activated
from bgjobs_worker.errors import ConfigError
from bgjobs_worker.redis_keys import PROGRESS_CHANNEL, progress_notice
from bgjobs_worker.registry import get_task
from bgjobs_worker.retry_policy import qualified_name

log = logging.getLogger(__name__)

CHUNK = 500  # items per append, at most
FLUSH_SECONDS = 0.5  # and at least this often while items come


class LostLock(Exception):
    """Another pod holds the producer lock now: this one stops producing."""


@dataclass(frozen=True)
class ProducerSpec:
    task: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ProducerSpec | None:
        raw = env.get("BGJOBS_PRODUCER", "").strip()
        if not raw:
            return None
        try:
            doc = json.loads(raw)
            return cls(str(doc["task"]), list(doc.get("args") or []), dict(doc.get("kwargs") or {}))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"BGJOBS_PRODUCER is not a producer spec: {exc}") from None


class Producer:
    def __init__(
        self,
        client: Any,
        keys: batch_keys.BatchKeys,
        spec: ProducerSpec,
        identity: JobIdentity,
        ttl: int,
        lock_seconds: float = 60.0,
    ) -> None:
        self.client, self.keys, self.spec, self.identity, self.ttl = (
            client,
            keys,
            spec,
            identity,
            ttl,
        )
        # A producer that appends nothing for this long loses its lock to another pod.
        self.lock_ms = int(lock_seconds * 1000)
        self.lock = batch_keys.producer_lock(keys)
        self.token = secrets.token_hex(8)
        self.append_script = client.register_script(batch_keys.APPEND)
        self.seal_script = client.register_script(batch_keys.SEAL)
        self.thread: threading.Thread | None = None

    def try_start(self) -> bool:
        """Become the producer if none is (first pod, or its pod died); True if running here."""
        if self.thread is not None and self.thread.is_alive():
            return True
        sealed = self.client.hget(self.keys.counts, "sealed")
        if sealed is None or batch_keys.as_text(sealed) != "0":
            return False  # done (or not a producer batch)
        if not self.client.set(self.lock, self.token, nx=True, px=self.lock_ms):
            return False
        self.thread = threading.Thread(target=self._run, name="bgjobs-producer", daemon=True)
        self.thread.start()
        return True

    def _run(self) -> None:
        try:
            produced = self._produce()
        except LostLock:
            log.warning("producer lock lost: another pod produces now")
            return
        except Exception as exc:  # noqa: BLE001 - the producer's failure is the batch's
            log.error("producer %s failed: %s: %s", self.spec.task, type(exc).__name__, exc)
            error = {"type": qualified_name(type(exc)), "message": str(exc)[:1024]}
            self._seal(json.dumps(error, ensure_ascii=False))
            return
        log.info("producer %s done: %d items", self.spec.task, produced)
        self._seal("")

    def _produce(self) -> int:
        task = get_task(self.spec.task)
        args, kwargs = self.spec.args, self.spec.kwargs
        ctx = TaskContext(
            task_name=task.name,
            args=args,
            kwargs=kwargs,
            attempt=1,
            max_retries=0,
            identity=self.identity,
        )
        skip = int(self.client.hget(self.keys.counts, "produced") or 0)
        produced, chunk, flushed = skip, [], time.monotonic()
        bound = task.bind_arguments(ctx, args, kwargs)
        try:
            with activated(ctx):  # a generator's body runs while it is iterated
                result = task.fn(*bound.args, **bound.kwargs)
                for n, item in enumerate(_iterate(result)):
                    if n < skip:
                        continue  # appended by a producer before this one
                    chunk.append(_encode(item))
                    # Full, or a slow producer's first items waiting: pods start on them.
                    if len(chunk) >= CHUNK or time.monotonic() - flushed >= FLUSH_SECONDS:
                        produced, chunk = self._append(produced, chunk), []
                        flushed = time.monotonic()
        except LostLock:
            raise
        except Exception:
            self._append(produced, chunk)  # what it yielded before failing still runs
            raise
        return self._append(produced, chunk)

    def _append(self, offset: int, chunk: list[str]) -> int:
        args = [self.ttl, self.token, self.lock_ms, offset, *chunk]
        keys = [self.keys.items, self.keys.pending, self.keys.counts, self.lock]
        reply = int(self.append_script(keys=keys, args=args))
        if reply != offset + len(chunk):
            raise LostLock
        if chunk:
            notice = progress_notice(self.identity.namespace, self.identity.job_name)
            self.client.publish(PROGRESS_CHANNEL, notice)
        return reply

    def _seal(self, error: str) -> None:
        try:
            self.seal_script(keys=[self.keys.counts, self.lock], args=[self.token, error])
        except Exception as exc:  # noqa: BLE001 - the lock expires; another pod seals
            log.warning("could not seal the batch: %s", exc)


def _encode(item: Any) -> str:
    return json.dumps(batch_keys.as_item(item), ensure_ascii=False, allow_nan=False)


def _iterate(result: Any) -> Iterable[Any]:
    if isinstance(result, str | bytes | Mapping) or not isinstance(result, Iterable):
        raise TypeError(
            f"a producer returns or yields the items (a list or a generator), not "
            f"{type(result).__name__}"
        )
    return result
