"""Stand by while a kopf peer of higher priority is active; take over cleanly when it goes.

kopf peering pauses a replica by closing its watch streams, and nothing else: this
operator's work-queue workers, delayed keys (deadlines, rate tokens, resyncs) and progress
pump would go on reconciling from stores that no longer follow the cluster, writing next to
the active replica. So the workers wait on a gate that closes when kopf pauses and opens
when it resumes, and on resume the stores are emptied first: kopf (and the informers,
informer.py, which watch only while the gate is open) then list everything
again into empty stores, exactly as at a fresh start (which the restart tests cover), and
nothing deleted while this replica stood by survives as a ghost.

kopf has no public hook for its pause, so this wraps the function kopf calls for every
event of the peering object and sees the toggle it flips (`kopf._core.engines.peering`;
`observe_kopf_peering` fails loudly at start-up if that moves). The hook runs before the
toggle flips: the gate is closed before a peer could see this replica as paused, and the
stores are emptied before kopf's watches restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Toggle(Protocol):
    """What kopf's conflict toggle offers (kopf._cogs.aiokits.aiotoggles.Toggle)."""

    def is_on(self) -> bool: ...
    def is_off(self) -> bool: ...
    async def turn_to(self, state: bool, /) -> None: ...


class Standby:
    """Open when no kopf conflict toggle is on. Without peering no toggle ever exists and
    the gate stays open."""

    def __init__(self, on_takeover: Callable[[], None]) -> None:
        self._on_takeover = on_takeover
        self._paused: dict[int, bool] = {}  # id(kopf toggle) -> its state
        self._proxies: dict[int, _ObservedToggle] = {}
        self._open = asyncio.Event()
        self._open.set()
        self._closed = asyncio.Event()  # the opposite, for the informers (informer.py)

    def is_open(self) -> bool:
        return self._open.is_set()

    async def wait_open(self) -> None:
        await self._open.wait()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def observe(self, toggle: Toggle) -> Toggle:
        """The toggle as kopf should use it from now on: same state, flips reported here."""
        proxy = self._proxies.get(id(toggle))
        if proxy is None:
            proxy = self._proxies[id(toggle)] = _ObservedToggle(toggle, self)
            self.changed(id(toggle), toggle.is_on())
        return proxy

    def changed(self, toggle_id: int, paused: bool) -> None:
        was_open = self.is_open()
        self._paused[toggle_id] = paused
        now_open = not any(self._paused.values())
        if was_open and not now_open:
            log.info("standing by: a kopf peer of higher priority is active")
            self._open.clear()
            self._closed.set()
        elif now_open and not was_open:
            log.info("taking over: re-listing everything into empty stores")
            self._on_takeover()
            self._closed.clear()
            self._open.set()


class _ObservedToggle:
    def __init__(self, toggle: Toggle, standby: Standby) -> None:
        self._toggle, self._standby = toggle, standby

    def __bool__(self) -> bool:
        return self._toggle.is_on()

    def is_on(self) -> bool:
        return self._toggle.is_on()

    def is_off(self) -> bool:
        return self._toggle.is_off()

    async def turn_to(self, state: bool, /) -> None:
        self._standby.changed(id(self._toggle), bool(state))
        await self._toggle.turn_to(state)


def observe_kopf_peering(standby: Standby) -> None:
    """Route every peering event's conflict toggle through `standby`."""
    from kopf._core.engines import peering  # private: see the module docstring

    original: Callable[..., Awaitable[None]] = peering.process_peering_event
    if getattr(original, "bgjobs_standby", False):
        return

    async def process_peering_event(*args: Any, **kwargs: Any) -> None:
        toggle = kwargs.get("conflicts_found")
        if toggle is not None:
            kwargs["conflicts_found"] = standby.observe(toggle)
        await original(*args, **kwargs)

    process_peering_event.bgjobs_standby = True  # type: ignore[attr-defined]
    peering.process_peering_event = process_peering_event
