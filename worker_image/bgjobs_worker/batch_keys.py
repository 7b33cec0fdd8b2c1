"""A batch's Redis keys, the Lua scripts that change them, and how to read them back.

A batch (a BackgroundJob with ``spec.items``) runs as one Indexed Job whose pods lease
items from Redis. The operator seeds the keys once, before it creates the Job; workers
lease, run and record; the operator reads the counts (through the progress pump) and, at
the end, the failed items. Keys are per *BackgroundJob* uid, so the Job's pods, the
operator and any client agree on them, and a BackgroundJob re-created under the same name
starts clean.

===============================  ======  ==================================================
key (prefix ``bgjobs:{ns}:{bj_uid}:batch:``)  content
===============================  ======  ==================================================
``items``                        hash    index -> the item's JSON (args list or kwargs)
``pending``                      list    indexes not yet leased, in order
``leases``                       zset    index -> lease deadline (Redis server time, ms);
                                         an expired lease goes back to any pod
``outcomes``                     hash    index -> JSON outcome, written once (HSETNX):
                                         ``{"status": "SUCCESS", "result": ..., "attempts": n}``
                                         or ``{"status": "FAILURE", "error": {"type",
                                         "message"}, "attempts": n}``
``failed``                       list    indexes of failed items, in the order recorded
``counts``                       hash    ``total``, ``succeeded``, ``failed`` (outcomes
                                         recorded), ``executions`` (calls made, re-runs
                                         included), ``updatedAt`` (Redis server time of
                                         the last recording, ms since the epoch),
                                         ``startedAt`` (of the first lease)
===============================  ======  ==================================================

Every key expires ``batch_ttl(result_ttl)`` seconds after the last write to it (at least
seven days, so a batch outlives an operator outage; longer when the result TTL is).
Workers publish ``"{ns}/{job_name}"`` on ``redis_keys.PROGRESS_CHANNEL`` after recording a
chunk, like a progress report: the operator's pump coalesces the nudges.

Exactly once: an outcome is recorded by HSETNX, and only a recording that created the
field counts, so an item run twice (its lease expired while it ran) is counted once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bgjobs_worker.redis_keys import STATE_TTL_SECONDS

# Lease reply codes (the first element of the lease script's reply).
DRAINED, WAIT, LEASED, TOO_MANY_FAILED = 0, 1, 2, 3


def prefix(namespace: str, bj_uid: str) -> str:
    return f"bgjobs:{namespace}:{bj_uid}:batch:"


@dataclass(frozen=True)
class BatchKeys:
    items: str
    pending: str
    leases: str
    outcomes: str
    failed: str
    counts: str

    @classmethod
    def of(cls, namespace: str, bj_uid: str) -> BatchKeys:
        p = prefix(namespace, bj_uid)
        names = ("items", "pending", "leases", "outcomes", "failed", "counts")
        return cls(*(p + name for name in names))

    def all(self) -> list[str]:
        return [self.items, self.pending, self.leases, self.outcomes, self.failed, self.counts]


def batch_ttl(result_ttl: int) -> int:
    return max(STATE_TTL_SECONDS, result_ttl)


# KEYS: items pending leases outcomes failed counts. ARGV: ttl, item JSON...
# Idempotent: a second seeding (an operator retrying after a crash) changes nothing.
SEED = """
if redis.call('EXISTS', KEYS[6]) == 1 then return 0 end
local n = tonumber(ARGV[2])
for start = 1, n, 1000 do
  local fields, indexes = {}, {}
  for k = start, math.min(start + 999, n) do
    local index = ARGV[2 + k]
    fields[#fields + 1] = index
    fields[#fields + 1] = ARGV[2 + n + k]
    indexes[#indexes + 1] = index
  end
  redis.call('HSET', KEYS[1], unpack(fields))
  redis.call('RPUSH', KEYS[2], unpack(indexes))
end
redis.call('HSET', KEYS[6], 'total', n, 'succeeded', 0, 'failed', 0, 'executions', 0)
for k = 1, 6 do redis.call('EXPIRE', KEYS[k], ARGV[1]) end
return 1
"""


def seed_args(ttl: int, items: Sequence[str], indexes: Sequence[int] | None = None) -> list[Any]:
    """SEED's ARGV: the TTL, the count, each item's index (its position unless given: a
    replay keeps the original batch's numbering), then each item's JSON."""
    numbers = list(range(len(items))) if indexes is None else list(indexes)
    if len(numbers) != len(items):
        raise ValueError(f"{len(numbers)} indexes for {len(items)} items")
    return [ttl, len(items), *numbers, *items]


# KEYS: items pending leases outcomes failed counts upload upload-indexes. ARGV: ttl.
# Seeds the batch from an upload (a list of item JSON, and optionally a parallel list of
# their indexes); the upload stays until it expires, so a DeadLetter's replays can each
# seed from it. Reply: the item count, 0 when already seeded, -1 when there is no upload.
# Redis runs it in one go: about 1 s per 100,000 items on the bench machine (README).
SEED_UPLOAD = """
if redis.call('EXISTS', KEYS[6]) == 1 then return 0 end
local n = redis.call('LLEN', KEYS[7])
if n == 0 then return -1 end
local numbered = redis.call('LLEN', KEYS[8]) == n
for start = 0, n - 1, 1000 do
  local stop = math.min(start + 999, n - 1)
  local items = redis.call('LRANGE', KEYS[7], start, stop)
  local given = numbered and redis.call('LRANGE', KEYS[8], start, stop) or nil
  local fields, indexes = {}, {}
  for k, item in ipairs(items) do
    local index = given and given[k] or tostring(start + k - 1)
    fields[#fields + 1] = index
    fields[#fields + 1] = item
    indexes[#indexes + 1] = index
  end
  redis.call('HSET', KEYS[1], unpack(fields))
  redis.call('RPUSH', KEYS[2], unpack(indexes))
end
redis.call('HSET', KEYS[6], 'total', n, 'succeeded', 0, 'failed', 0, 'executions', 0)
for k = 1, 6 do redis.call('EXPIRE', KEYS[k], ARGV[1]) end
return n
"""

# KEYS: items upload upload-indexes. ARGV: ttl, index... The items of these indexes as an
# upload keeping their numbers: what a DeadLetter of an uploaded batch replays.
STAGE_REPLAY = """
redis.call('DEL', KEYS[2], KEYS[3])
for start = 2, #ARGV, 1000 do
  local indexes = {}
  for k = start, math.min(start + 999, #ARGV) do indexes[#indexes + 1] = ARGV[k] end
  local items = redis.call('HMGET', KEYS[1], unpack(indexes))
  for k, item in ipairs(items) do
    if item then
      redis.call('RPUSH', KEYS[2], item)
      redis.call('RPUSH', KEYS[3], indexes[k])
    end
  end
end
redis.call('EXPIRE', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[1])
return redis.call('LLEN', KEYS[2])
"""

# --- a producer task streaming items into its batch (spec.itemsFrom.task) ----------------
# counts gains ``produced`` (items appended so far) and ``sealed`` ("0" while producing,
# "1" once done; absent for inline and uploaded batches, which are sealed from the start),
# and ``producerError`` (JSON) when the producer raised.

# KEYS: counts. ARGV: ttl. Opens a producer batch: no items yet. Reply 1, 0 when open.
SEED_OPEN = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'total', 0, 'succeeded', 0, 'failed', 0, 'executions', 0,
           'produced', 0, 'sealed', 0)
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

# KEYS: items pending counts lock. ARGV: ttl, token, lock ms, offset, item JSON...
# Appends items numbered from offset, only if offset is what was produced so far (a
# producer that took over skips what its predecessor appended) and the caller still holds
# the producer lock (refreshed here). Reply: items produced after this call; -1 when the
# lock was lost (another pod produces now).
APPEND = """
if redis.call('GET', KEYS[4]) ~= ARGV[2] then return -1 end
redis.call('PEXPIRE', KEYS[4], ARGV[3])
local produced = tonumber(redis.call('HGET', KEYS[3], 'produced') or '0')
local offset = tonumber(ARGV[4])
if produced ~= offset or #ARGV == 4 then return produced end
local fields, indexes = {}, {}
for k = 5, #ARGV do
  local index = tostring(offset + k - 5)
  fields[#fields + 1] = index
  fields[#fields + 1] = ARGV[k]
  indexes[#indexes + 1] = index
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('RPUSH', KEYS[2], unpack(indexes))
redis.call('HINCRBY', KEYS[3], 'total', #indexes)
produced = redis.call('HINCRBY', KEYS[3], 'produced', #indexes)
for k = 1, 3 do redis.call('EXPIRE', KEYS[k], ARGV[1]) end
return produced
"""

# KEYS: counts lock. ARGV: token, error JSON or "". Seals the batch (the producer is done,
# or failed with that error) if the caller holds the lock. Reply 1, or 0 (lock lost).
SEAL = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'producerError', ARGV[2]) end
redis.call('HSET', KEYS[1], 'sealed', 1)
redis.call('DEL', KEYS[2])
return 1
"""


def as_item(item: Any) -> Any:
    """A batch item as a call's arguments: a list or tuple is positional arguments, a
    mapping keyword arguments, anything else the one argument (Celery's map)."""
    if isinstance(item, Mapping):
        return dict(item)
    if isinstance(item, list | tuple):
        return list(item)
    return [item]


def producer_lock(keys: BatchKeys) -> str:
    """Held (SET NX PX) by the one pod running the producer; expires if that pod dies."""
    return keys.counts.removesuffix("counts") + "producer"


UPLOAD_TTL_SECONDS = 86400  # a client's upload waits this long for its batch


def upload_keys(namespace: str, upload: str) -> tuple[str, str]:
    """The list of item JSON of an upload, and the optional list of their indexes."""
    base = f"bgjobs:{namespace}:upload:{upload}"
    return base, base + ":indexes"


def write_upload(
    client: Any,
    namespace: str,
    upload: str,
    items: Sequence[str],
    indexes: Sequence[int] | None = None,
    ttl: int = UPLOAD_TTL_SECONDS,
) -> None:
    """Write an upload (replacing one of that name) in pipelined pages, in one MULTI so a
    batch seeding from it never sees half of it."""
    key, index_key = upload_keys(namespace, upload)
    pipe = client.pipeline(transaction=True)
    pipe.delete(key, index_key)
    for start in range(0, len(items), 1000):
        pipe.rpush(key, *items[start : start + 1000])
        if indexes is not None:
            pipe.rpush(index_key, *indexes[start : start + 1000])
    pipe.expire(key, ttl)
    if indexes is not None:
        pipe.expire(index_key, ttl)
    pipe.execute()


# KEYS: items pending leases counts. ARGV: count, lease ms, max failed items (-1: none).
# Reply: {LEASED, index, item, index, item...} | {WAIT, ms until the first lease expires}
#      | {DRAINED} | {TOO_MANY_FAILED}. Expired leases are taken first: their pod is gone.
LEASE = """
local max_failed = tonumber(ARGV[3])
if max_failed >= 0 and tonumber(redis.call('HGET', KEYS[4], 'failed') or '0') > max_failed then
  return {3}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local want = tonumber(ARGV[1])
local got = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, want)
if #got < want then
  local popped = redis.call('LPOP', KEYS[2], want - #got)
  if popped then for _, i in ipairs(popped) do got[#got + 1] = i end end
end
if #got == 0 then
  local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if #first == 0 then
    -- A producer still streaming items in: not drained yet, look again shortly.
    if redis.call('HGET', KEYS[4], 'sealed') == '0' then return {1, 200} end
    return {0}
  end
  return {1, tonumber(first[2]) - now}
end
local deadline = now + tonumber(ARGV[2])
redis.call('HSETNX', KEYS[4], 'startedAt', now)
local reply = {2}
local items = redis.call('HMGET', KEYS[1], unpack(got))
for k, i in ipairs(got) do
  redis.call('ZADD', KEYS[3], deadline, i)
  reply[#reply + 1] = i
  reply[#reply + 1] = items[k]
end
return reply
"""

# KEYS: outcomes leases failed counts. ARGV: ttl, executions, then (index, ok|fail, doc)...
# Reply: {succeeded, failed} after this recording.
RECORD = """
local ok, bad = 0, 0
for k = 3, #ARGV, 3 do
  local i = ARGV[k]
  redis.call('ZREM', KEYS[2], i)
  if redis.call('HSETNX', KEYS[1], i, ARGV[k + 2]) == 1 then
    if ARGV[k + 1] == 'ok' then ok = ok + 1 else
      bad = bad + 1
      redis.call('RPUSH', KEYS[3], i)
    end
  end
end
local s = redis.call('HINCRBY', KEYS[4], 'succeeded', ok)
local f = redis.call('HINCRBY', KEYS[4], 'failed', bad)
redis.call('HINCRBY', KEYS[4], 'executions', tonumber(ARGV[2]))
local t = redis.call('TIME')
redis.call('HSET', KEYS[4], 'updatedAt', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
for k = 1, 4 do redis.call('EXPIRE', KEYS[k], ARGV[1]) end
return {s, f}
"""

# KEYS: pending leases. ARGV: index... Leased items given back unrun (a stopping worker).
RELEASE = """
for k = #ARGV, 1, -1 do
  if redis.call('ZREM', KEYS[2], ARGV[k]) == 1 then redis.call('LPUSH', KEYS[1], ARGV[k]) end
end
return #ARGV
"""


@dataclass(frozen=True)
class BatchCounts:
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    executions: int = 0
    running: int = 0
    updated_at_ms: int = 0  # the last recording, Redis server time
    started_at_ms: int = 0  # the first lease, Redis server time
    producing: bool = False  # a producer task is still adding items (total grows)
    producer_error: dict[str, Any] | None = None  # {"type", "message"} when it raised

    @property
    def done(self) -> int:
        return self.succeeded + self.failed


def as_text(value: str | bytes) -> str:
    """A Redis reply as text, whether the client decodes responses or not."""
    return _text(value)


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _int(value: Any) -> int:
    try:
        return int(_text(value)) if value is not None else 0
    except ValueError:
        return 0


def decode_counts(raw: Mapping[Any, Any] | None, leased: Any = 0) -> BatchCounts | None:
    """The reply of ``HGETALL counts`` (and ``ZCARD leases``); None before seeding."""
    if not raw:
        return None
    fields = {_text(k): v for k, v in raw.items()}
    return BatchCounts(
        total=_int(fields.get("total")),
        succeeded=_int(fields.get("succeeded")),
        failed=_int(fields.get("failed")),
        executions=_int(fields.get("executions")),
        running=_int(leased),
        updated_at_ms=_int(fields.get("updatedAt")),
        started_at_ms=_int(fields.get("startedAt")),
        producing=_text(fields.get("sealed") or "1") == "0",
        producer_error=_json_object(fields.get("producerError")),
    )


def _json_object(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(_text(raw))
    except ValueError:
        return {"type": "Unknown", "message": _text(raw)[:1024]}
    return value if isinstance(value, dict) else None


def decode_outcome(raw: str | bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        doc = json.loads(_text(raw))
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def decode_item(raw: str | bytes | None) -> Any:
    return None if raw is None else json.loads(_text(raw))


def read_counts(client: Any, namespace: str, bj_uid: str) -> BatchCounts | None:
    keys = BatchKeys.of(namespace, bj_uid)
    return decode_counts(client.hgetall(keys.counts), client.zcard(keys.leases))


def read_outcome(client: Any, namespace: str, bj_uid: str, index: int) -> dict[str, Any] | None:
    """One item's outcome by its index in spec.items (None: not recorded, or expired)."""
    return decode_outcome(client.hget(BatchKeys.of(namespace, bj_uid).outcomes, str(index)))


def read_outcomes(client: Any, namespace: str, bj_uid: str) -> dict[int, dict[str, Any]]:
    """Every recorded outcome of a batch by item index (HSCAN: a 100,000-item batch is
    read in pages, not one reply)."""
    found: dict[int, dict[str, Any]] = {}
    key = BatchKeys.of(namespace, bj_uid).outcomes
    for index, raw in client.hscan_iter(key, count=1000):
        doc = decode_outcome(raw)
        if doc is not None:
            found[int(_text(index))] = doc
    return found
