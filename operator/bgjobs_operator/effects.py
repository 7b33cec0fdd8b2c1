"""The act step's executor: performs the actions a decide step chose, in order.

Shared by every reconciler, so "how a create-or-adopt, an Event or an alert is done" has
one place. Errors propagate to the reconciler (which knows what a refusal means for its
object), except for Events and alerts, which are courtesies and never fail a reconcile.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from bgjobs.redaction import redact
from bgjobs_operator import metrics
from bgjobs_operator.actions import (
    Action,
    Alert,
    CreateObject,
    DeleteObject,
    PatchObject,
    PostEvent,
)
from bgjobs_operator.kubeapi import Api

log = logging.getLogger(__name__)

# Alerts in flight: held so the loop does not drop the task before it finishes.
_alerts: set[asyncio.Task[None]] = set()


async def perform(
    api: Api, action: Action, webhook_url: str | None = None
) -> tuple[dict[str, Any], bool] | None:
    """Perform one action. A CreateObject returns (object, created) and runs its `then`
    actions only when it created the object."""
    if isinstance(action, CreateObject):
        obj, created = await api.create(action.manifest)
        if created:
            for follow in action.then:
                await perform(api, follow, webhook_url)
        return obj, created
    if isinstance(action, DeleteObject):
        await api.delete(action.kind, action.namespace, action.name)
    elif isinstance(action, PatchObject):
        await api.patch(action.kind, action.namespace, action.name, action.patch)
    elif isinstance(action, PostEvent):
        await api.post_event(action.involved, action.type, action.reason, action.message)
    elif isinstance(action, Alert) and webhook_url:
        task = asyncio.create_task(_post_alert(webhook_url, action.payload))
        _alerts.add(task)
        task.add_done_callback(_alerts.discard)
    return None


async def _post_alert(url: str, payload: dict[str, Any]) -> None:
    """POST a critical failure to the webhook; a failure is counted and logged, never
    retried forever and never allowed to fail the job."""
    try:
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(url, json=payload) as resp,
        ):
            resp.raise_for_status()
    except Exception as exc:  # noqa: BLE001 - an alert failure must not fail the job
        metrics.WEBHOOK_FAILURES.inc()
        log.warning("alert webhook %s failed: %s", redact(url), redact(str(exc)))
