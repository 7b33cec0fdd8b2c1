"""Cluster-wide admission rate of a JobQueue: GCRA (the generic cell rate algorithm).

A rate of N per period gives an emission interval T = period / N. The limiter keeps one
number per queue, the theoretical arrival time (TAT) of the next admission; an admission
is allowed when TAT - now <= (burst - 1) * T, and moves TAT to max(TAT, now) + T.

Burst is 1: admissions are spaced evenly T apart, so every window of one period holds at
most N of them (a larger burst would let a window hold N + burst - 1), and a backlogged
queue gets the full rate. The state lives in Redis and is updated by one Lua script, so it
holds across operator restarts and for every replica, and the clock is Redis' own (TIME),
so replicas with skewed clocks agree. Without Redis the same algorithm runs in memory, per
operator process (logged once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

BURST = 1
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


class Limiter(Protocol):
    async def take(self, key: str, rate: Rate) -> float:
        """Take one admission token for `key`: 0 when granted, else seconds to wait."""
        ...


class MemoryLimiter:
    """GCRA in this process only: for tests and operators without Redis."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._tat: dict[str, float] = {}

    async def take(self, key: str, rate: Rate) -> float:
        wait, tat = gcra(self._tat.get(key), self.clock(), rate.interval)
        if wait == 0:
            self._tat[key] = tat
        return wait


# KEYS[1]: the queue's TAT in microseconds; ARGV[1]: interval in microseconds, ARGV[2]: burst.
# Returns the microseconds to wait, 0 when the token was taken.
GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - (burst - 1) * interval
if now < allow_at then return allow_at - now end
tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return 0
"""


def rate_key(namespace: str, queue: str) -> str:
    return f"bgjobs:{namespace}:queue:{queue}:tat"


class RedisLimiter:
    """GCRA in Redis, atomic per queue through one Lua script."""

    def __init__(self, redis: Any) -> None:
        self._script = redis.register_script(GCRA_SCRIPT)

    async def take(self, key: str, rate: Rate) -> float:
        wait_us = await self._script(keys=[key], args=[round(rate.interval * 1e6), BURST])
        return int(wait_us) / 1e6
