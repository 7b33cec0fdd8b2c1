"""The worker's writes to Redis, none of which may ever fail the job.

Redis is an accelerator here, not a dependency: when it is down the job still runs and its
outcome still reaches the operator through the termination message. So every method swallows
Redis errors, and after one failure the store stays quiet for ``retry_interval`` seconds: a
task reporting progress a thousand times a second against a dead Redis pays for one
connection attempt per second, not a thousand timeouts.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bgjobs_worker import redis_keys
from bgjobs_worker.context import JobIdentity
from bgjobs_worker.redaction import redact

log = logging.getLogger(__name__)

T = TypeVar("T")

SOCKET_TIMEOUT_SECONDS = 0.5


class RedisStore:
    def __init__(
        self,
        client: Any,
        identity: JobIdentity,
        *,
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._identity = identity
        self._retry_interval = retry_interval
        self._clock = clock
        self._quiet_until = float("-inf")
        self._down = False

    @classmethod
    def from_url(cls, url: str, identity: JobIdentity, password: str | None = None) -> RedisStore:
        """``password`` is used when the URL has none (the Job's URL never has one)."""
        client = redis.Redis.from_url(
            url,
            password=password,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
            # redis-py retries with backoff by default; one quick failure is what we want,
            # the store's own quiet period paces the next try.
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, identity)

    def _guarded(self, what: str, op: Callable[[Any], T], *, force: bool = False) -> T | None:
        if not force and self._clock() < self._quiet_until:
            return None
        try:
            value = op(self._client)
        except Exception as exc:  # noqa: BLE001 - any Redis or socket failure
            self._quiet_until = self._clock() + self._retry_interval
            if not self._down:
                log.warning(
                    "Redis unavailable (%s: %s); %s dropped, retrying at most once per %gs",
                    type(exc).__name__,
                    redact(str(exc)),
                    what,
                    self._retry_interval,
                )
            self._down = True
            return None
        if self._down:
            log.info("Redis reachable again")
            self._down = False
        return value

    def next_attempt(self) -> int | None:
        """Count this attempt; its 1-based number, or None when Redis cannot tell."""
        key = redis_keys.attempts_key(self._identity.namespace, self._identity.job_uid)

        def incr(client: Any) -> int:
            pipe = client.pipeline(transaction=True)
            pipe.incr(key)
            pipe.expire(key, redis_keys.STATE_TTL_SECONDS)
            # At least 1: a DECR (return_attempt) of a key Redis had lost leaves -1.
            return max(1, int(pipe.execute()[0]))

        return self._guarded("attempt count", incr)

    def return_attempt(self) -> bool:
        """Uncount this attempt: it was ended by SIGTERM, which the Job does not count when
        it is a disruption (podFailurePolicy ``Ignore`` on ``DisruptionTarget``), so the
        next pod must see the same attempt number."""
        key = redis_keys.attempts_key(self._identity.namespace, self._identity.job_uid)

        def decr(client: Any) -> bool:
            pipe = client.pipeline(transaction=True)
            pipe.decr(key)
            pipe.expire(key, redis_keys.STATE_TTL_SECONDS)
            pipe.execute()
            return True

        return bool(self._guarded("attempt count", decr, force=True))

    def write_progress(self, snapshot: dict[str, Any]) -> bool:
        key = redis_keys.progress_key(self._identity.namespace, self._identity.job_uid)

        def write(client: Any) -> bool:
            pipe = client.pipeline(transaction=True)
            pipe.delete(key)  # a snapshot replaces the previous one, stale fields included
            pipe.hset(key, mapping=redis_keys.encode_progress(snapshot))
            pipe.expire(key, redis_keys.STATE_TTL_SECONDS)
            pipe.publish(redis_keys.PROGRESS_CHANNEL, self._notice())
            pipe.execute()
            return True

        return bool(self._guarded("progress", write))

    def write_result(self, document: dict[str, Any], ttl_seconds: int) -> bool:
        key = redis_keys.result_key(self._identity.namespace, self._identity.job_uid)
        payload = json.dumps(document, ensure_ascii=False)

        def write(client: Any) -> bool:
            pipe = client.pipeline(transaction=True)
            pipe.set(key, payload, ex=ttl_seconds)
            pipe.publish(redis_keys.PROGRESS_CHANNEL, self._notice())
            pipe.execute()
            return True

        # The result is written once and matters more than pacing: always try it.
        return bool(self._guarded("result", write, force=True))

    def _notice(self) -> str:
        return redis_keys.progress_notice(self._identity.namespace, self._identity.job_name)

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:
            log.debug("closing the Redis client failed", exc_info=True)
