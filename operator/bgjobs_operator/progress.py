"""Move worker progress from Redis into BackgroundJob status, coalesced.

Workers may report progress thousands of times a second; the API server must not see
that. Workers publish a nudge on a Redis channel; this pump collects the nudged jobs and,
once per interval, writes each one's latest snapshot, so a job costs at most one status
write per interval however fast it reports. Redis being down pauses progress only: jobs
still run and their outcome still arrives through the termination message. When Redis
returns, every active job is re-read, so progress resumes without waiting for a nudge.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis

from bgjobs_worker import redis_keys

log = logging.getLogger(__name__)
STATUS_FIELDS = ("current", "total", "percent", "stage", "message", "updatedAt")
Key = tuple[str, str]  # (namespace, name)


def progress_for_status(snapshot: dict[str, Any] | None) -> dict[str, Any] | None:
    """The status.progress block for a Redis snapshot (unset fields left out)."""
    if not snapshot:
        return None
    return {k: snapshot[k] for k in STATUS_FIELDS if snapshot.get(k) is not None} or None


class ProgressPump:
    def __init__(
        self,
        redis_url: str,
        interval: float,
        resolve: Callable[[Key], tuple[str, dict[str, Any] | None] | None],
        write: Callable[[Key, dict[str, Any]], None],
        active: Callable[[], Iterable[Key]],
    ) -> None:
        """resolve(key) -> (batch Job uid, progress now in status), or None when the job
        is unknown or finished; write(key, progress) patches status; active() lists the
        jobs still running."""
        self.url = redis_url
        self.interval = interval
        self.resolve, self.write, self.active = resolve, write, active
        self.dirty: set[Key] = set()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="progress-pump", daemon=True)
        self.connected = False
        # What this pump last wrote per job: the resolver's view of status may lag our
        # own writes by a watch event, and the same snapshot must not be written twice.
        self.last_written: dict[Key, dict[str, Any]] = {}

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)

    def _run(self) -> None:
        down_since: float | None = None
        while not self.stopping.is_set():
            try:
                client = redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=2)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(redis_keys.PROGRESS_CHANNEL)
                self.connected = True
                if down_since is not None:
                    log.info("Redis at %s is back; resuming progress", self.url)
                # Nudges published while we were away are lost: re-read every active job.
                self.dirty.update(self.active())
                down_since = None
                self._pump(client, pubsub)
            except (redis.RedisError, OSError) as exc:
                self.connected = False
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning(
                        "Redis at %s unreachable (%s): progress paused; jobs still "
                        "run and report their outcome via termination messages",
                        self.url,
                        exc,
                    )
                self.stopping.wait(1.0)
            except Exception:
                log.exception("progress pump error")
                self.stopping.wait(1.0)

    def _pump(self, client: redis.Redis, pubsub: Any) -> None:
        next_flush = time.monotonic() + self.interval
        while not self.stopping.is_set():
            timeout = max(0.0, min(0.2, next_flush - time.monotonic()))
            message = pubsub.get_message(timeout=timeout)
            while message is not None:
                key = redis_keys.parse_progress_notice(message.get("data", b""))
                if key:
                    self.dirty.add(key)
                message = pubsub.get_message(timeout=0)
            if time.monotonic() >= next_flush:
                self.flush(client)
                next_flush = time.monotonic() + self.interval

    def flush(self, client: redis.Redis) -> None:
        keys, self.dirty = self.dirty, set()
        for key in keys:
            target = self.resolve(key)
            if target is None:
                self.last_written.pop(key, None)
                continue
            job_uid, in_status = target
            snapshot = progress_for_status(redis_keys.read_progress(client, key[0], job_uid))
            if snapshot and snapshot != in_status and snapshot != self.last_written.get(key):
                try:
                    self.write(key, snapshot)
                    self.last_written[key] = snapshot
                except Exception as exc:  # noqa: BLE001 - try again on the next nudge
                    log.warning("progress write for %s/%s failed: %s", *key, exc)
