"""The attempt counter's floor in Redis, kept by the operator.

A worker numbers its attempt by INCR of a per-Job key in Redis (bgjobs_worker.redis_store),
so the number survives any pod but not Redis losing its data: a Redis restarted empty
would make the third attempt number itself 1 and ``ctx.is_last_attempt`` lie. The Job
controller's own count does survive: ``status.failed`` counts the failed attempts that
count towards ``backoffLimit`` (a disruption that podFailurePolicy ignores is not in it).
So when a Job has failed attempts the operator raises the key to at least that number; the
next pod's INCR then gives failed + 1 whatever Redis forgot. The Job controller waits
before a replacement pod (10 s, doubling), which leaves the operator time to do it.
"""

from __future__ import annotations

from typing import Any

from bgjobs_worker import redis_keys

# KEYS[1]: the attempts key; ARGV[1]: the floor; ARGV[2]: TTL seconds. Never lowers it.
FLOOR_SCRIPT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local floor = tonumber(ARGV[1])
if current < floor then
  redis.call('SET', KEYS[1], floor, 'EX', tonumber(ARGV[2]))
  return 1
end
return 0
"""


def counted_failures(job: dict[str, Any]) -> int:
    """The Job's failed attempts that count (the Job controller's status.failed)."""
    return int((job.get("status") or {}).get("failed") or 0)


async def keep_floor(redis: Any, namespace: str, job_uid: str, failed: int) -> bool:
    """Raise the Job's attempt counter to `failed` if it is lower; True when it was."""
    key = redis_keys.attempts_key(namespace, job_uid)
    raised = await redis.eval(FLOOR_SCRIPT, 1, key, failed, redis_keys.STATE_TTL_SECONDS)
    return bool(raised)
