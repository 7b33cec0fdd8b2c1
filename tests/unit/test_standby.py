"""A standby replica's workers reconcile nothing while kopf peering pauses it, and a
takeover empties the stores before kopf lists again (operator/bgjobs_operator/standby.py)."""

from __future__ import annotations

import asyncio

from kopf._cogs.aiokits.aiotoggles import ToggleSet

from bgjobs_operator.standby import Standby, observe_kopf_peering
from bgjobs_operator.workqueue import WorkQueue, worker


def test_workers_hold_keys_while_paused_and_drain_them_on_takeover() -> None:
    async def run() -> tuple[list[str], list[str], list[str]]:
        events: list[str] = []
        kopf_paused = ToggleSet(any)  # kopf's operator_paused
        raw = await kopf_paused.make_toggle(False, name="bgjobs@ns")
        gate = Standby(lambda: events.append("takeover"))
        toggle = gate.observe(raw)
        q: WorkQueue[str] = WorkQueue()
        seen: list[str] = []

        async def reconcile(key: str) -> None:
            seen.append(key)

        workers = [
            asyncio.create_task(worker(q, reconcile, lambda *a: None, gate)) for _ in range(3)
        ]
        q.add("before")
        await asyncio.sleep(0.05)
        await toggle.turn_to(True)  # a peer of higher priority appeared
        assert kopf_paused.is_on(), "kopf's own pause still happens"
        for key in ("a", "b", "a"):
            q.add(key)
        await asyncio.sleep(0.1)
        during = list(seen)
        await toggle.turn_to(False)  # it is gone: take over
        await asyncio.sleep(0.1)
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        return during, seen, events

    during, seen, events = asyncio.run(run())
    assert during == ["before"], "nothing reconciled while standing by"
    assert sorted(seen) == ["a", "b", "before"], "held keys run once each after takeover"
    assert events == ["takeover"]


def test_takeover_happens_before_kopf_resumes_and_only_when_every_toggle_is_off() -> None:
    async def run() -> list[str]:
        order: list[str] = []
        kopf_paused = ToggleSet(any)
        gate = Standby(lambda: order.append(f"forget (kopf paused: {kopf_paused.is_on()})"))
        ns1 = gate.observe(await kopf_paused.make_toggle(True, name="bgjobs@ns1"))
        ns2 = gate.observe(await kopf_paused.make_toggle(True, name="bgjobs@ns2"))
        assert not gate.is_open(), "preactivated toggles close the gate when first seen"
        await ns1.turn_to(False)
        assert not gate.is_open(), "another namespace's peering still pauses"
        await ns2.turn_to(False)
        order.append(f"open: {gate.is_open()}")
        return order

    # The stores are emptied while kopf is still paused, so its fresh listing lands in
    # empty stores and never races with the clean-up.
    assert asyncio.run(run()) == ["forget (kopf paused: True)", "open: True"]


def test_the_peering_hook_passes_an_observing_toggle_to_kopf(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from kopf._core.engines import peering

    got: list[object] = []

    async def fake_process(**kwargs: object) -> None:
        got.append(kwargs["conflicts_found"])

    monkeypatch.setattr(peering, "process_peering_event", fake_process)

    async def run() -> bool:
        gate = Standby(lambda: None)
        observe_kopf_peering(gate)
        observe_kopf_peering(gate)  # idempotent: one wrapper
        raw = await ToggleSet(any).make_toggle(False)
        await peering.process_peering_event(conflicts_found=raw, namespace=None)
        await got[0].turn_to(True)  # type: ignore[attr-defined]
        return gate.is_open()

    assert asyncio.run(run()) is False
    assert len(got) == 1 and got[0] is not None
