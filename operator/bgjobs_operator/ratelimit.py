"""Cluster-wide admission rate of a JobQueue: GCRA (the generic cell rate algorithm) with a
sliding-window cap.

A rate of N per period P gives an emission interval T = P / N. The limiter keeps one
number per queue, the theoretical arrival time (TAT) of the next admission; an admission
is allowed when TAT - now <= (burst - 1) * T, and moves TAT to max(TAT, now) + T.

Burst is 2, so the schedule does not drift: an operator that comes back for the next token
a few milliseconds late (a reconcile, a Redis round trip, a list of the queue's Jobs) still
admits on the grid of T, and a backlogged queue gets the full rate (with burst 1 every late
millisecond was lost, and a loaded machine admitted 89 % of the rate). A burst of 2 alone
would let one window of P hold N + 1 admissions, so each grant is also logged for one P
(a sorted set) and none is given while N are in the last P (and a margin, window()): no
window of P ever holds more than N admissions. The state lives in Redis and is updated by
one Lua script, so it holds across operator restarts and for every replica, and the clock
is Redis' own (TIME), so replicas with skewed clocks agree. Without Redis the same
algorithm runs in memory, per operator process (logged once).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

BURST = 2
_PERIOD_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Rate:
    count: int
    period: float  # seconds

    @property
    def interval(self) -> float:
        """Seconds between admissions (GCRA's emission interval)."""
        return self.period / self.count


def parse_rate(text: str) -> Rate:
    """ "10/m" -> Rate(10, 60.0). The CRD's pattern and CEL rule refuse anything else."""
    number, _, unit = text.strip().partition("/")
    if not number.isdigit() or int(number) < 1 or unit not in _PERIOD_SECONDS:
        raise ValueError(f"rateLimit {text!r} is not N/s, N/m or N/h")
    return Rate(int(number), _PERIOD_SECONDS[unit])


def gcra(tat: float | None, now: float, interval: float, burst: int = BURST) -> tuple[float, float]:
    """One admission attempt. Returns (wait, new_tat): wait 0 means admitted (new_tat is
    the state to store); otherwise the seconds until a token is due (state unchanged)."""
    tat = now if tat is None or tat < now else tat
    allow_at = tat - (burst - 1) * interval
    if now < allow_at:
        return allow_at - now, tat
    return 0.0, tat + interval


def window(rate: Rate) -> float:
    """The span the cap counts grants over: one period and a margin (1 %, at most 1 s).
    A grant is a token; the admission is the Job patch right after it, and that patch's
    latency varies by milliseconds, so two grants exactly one period apart could become
    two admissions inside one period. The margin costs at most 1 % of the rate."""
    return rate.period + min(1.0, rate.period / 100)


def window_wait(grants: Sequence[float], now: float, rate: Rate) -> float:
    """Seconds until fewer than N grants (oldest first) fall in the last window; 0: now."""
    span = window(rate)
    recent = [g for g in grants if g > now - span]
    if len(recent) < rate.count:
        return 0.0
    return recent[len(recent) - rate.count] + span - now


class Limiter(Protocol):
    async def take(self, key: str, rate: Rate) -> float:
        """Take one admission token for `key`: 0 when granted, else seconds to wait."""
        ...


class MemoryLimiter:
    """The same limiter in this process only: for tests and operators without Redis."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._tat: dict[str, float] = {}
        self._grants: dict[str, deque[float]] = {}

    async def take(self, key: str, rate: Rate) -> float:
        now = self.clock()
        grants = self._grants.setdefault(key, deque())
        while grants and grants[0] <= now - window(rate):
            grants.popleft()
        wait, tat = gcra(self._tat.get(key), now, rate.interval)
        wait = max(wait, window_wait(grants, now, rate))
        if wait == 0:
            self._tat[key] = tat
            grants.append(now)
        return wait


# KEYS[1]: the queue's TAT in microseconds; KEYS[2]: its grants of the last period (a
# sorted set, score = grant time). ARGV: interval us, burst, count N, window us (window()).
# Returns the microseconds to wait, 0 when the token was taken.
GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local count = tonumber(ARGV[3])
local period = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - (burst - 1) * interval
if now < allow_at then return allow_at - now end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - period)
if redis.call('ZCARD', KEYS[2]) >= count then
  local nth = redis.call('ZRANGE', KEYS[2], -count, -count, 'WITHSCORES')
  return math.max(1, tonumber(nth[2]) + period - now)
end
tat = tat + interval
local keep = math.ceil((math.max(tat - now, period)) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', keep)
-- The new TAT is unique per grant: a member no other grant of this queue has.
redis.call('ZADD', KEYS[2], now, string.format('%.0f', tat))
redis.call('PEXPIRE', KEYS[2], keep)
return 0
"""


def rate_key(namespace: str, queue: str) -> str:
    return f"bgjobs:{namespace}:queue:{queue}:tat"


def grants_key(tat_key: str) -> str:
    return tat_key.removesuffix(":tat") + ":grants"


class RedisLimiter:
    """GCRA in Redis, atomic per queue through one Lua script."""

    def __init__(self, redis: Any) -> None:
        self._script = redis.register_script(GCRA_SCRIPT)

    async def take(self, key: str, rate: Rate) -> float:
        args = [round(rate.interval * 1e6), BURST, rate.count, round(window(rate) * 1e6)]
        wait_us = await self._script(keys=[key, grants_key(key)], args=args)
        return int(wait_us) / 1e6
