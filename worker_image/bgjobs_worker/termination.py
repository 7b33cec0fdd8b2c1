"""The termination message: the attempt's outcome in ≤ 4 KiB, readable from the pod status.

Kubernetes copies ``terminationMessagePath`` into
``status.containerStatuses[].state.terminated.message`` and cuts it at 4096 bytes, so the
outcome reaches the operator even when Redis is down. Documents:

* ``{"status": "SUCCESS", "attempt": n, "result": <json>}``; when the result does not fit,
  ``"result": null, "resultTruncated": true`` (the full result is in Redis, if it was up);
* ``{"status": "FAILURE", "attempt": n, "exitCode": c, "error": {"type": t, "message": m}}``
  with ``m`` shortened to fit.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from bgjobs_worker.attempt import Outcome

log = logging.getLogger(__name__)

MAX_BYTES = 4096
MAX_TYPE_CHARS = 256
ELLIPSIS = "..."


def _dumps(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def _size(doc: Any) -> int:
    return len(_dumps(doc).encode())


def _shorten(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max(0, max_chars - 3)] + ELLIPSIS


def build_termination_message(outcome: Outcome, progress: dict[str, Any] | None = None) -> str:
    """The outcome, and the last progress report when it fits: with Redis down or emptied
    while the task ran, this is where the operator still finds the progress (it rides
    along only if the outcome leaves room, the outcome never gives way to it)."""
    return _with_progress(_outcome_message(outcome), progress)


def _with_progress(text: str, progress: dict[str, Any] | None) -> str:
    if not progress:
        return text
    doc = json.loads(text)
    doc["progress"] = progress
    return _dumps(doc) if _size(doc) <= MAX_BYTES else text


def _outcome_message(outcome: Outcome) -> str:
    if outcome.error is None:
        doc: dict[str, Any] = {
            "status": "SUCCESS",
            "attempt": outcome.attempt,
            "result": outcome.result,
        }
        if _size(doc) > MAX_BYTES:
            doc["result"] = None
            doc["resultTruncated"] = True
        return _dumps(doc)

    error = {"type": _shorten(outcome.error.type, MAX_TYPE_CHARS), "message": ""}
    doc = {
        "status": "FAILURE",
        "attempt": outcome.attempt,
        "exitCode": int(outcome.exit_code),
        "error": error,
    }
    message = outcome.error.message
    # Longest prefix that fits: escaping and UTF-8 make bytes-per-character vary, so search.
    low, high = 0, len(message)
    while low < high:
        mid = (low + high + 1) // 2
        error["message"] = _shorten(message, mid)
        if _size(doc) <= MAX_BYTES:
            low = mid
        else:
            high = mid - 1
    error["message"] = _shorten(message, low)
    return _dumps(doc)


def parse_termination_message(text: str | bytes | None) -> dict[str, Any] | None:
    """The document written by the worker, or None (empty, cut short, or not ours)."""
    if not text:
        return None
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("status") not in ("SUCCESS", "FAILURE"):
        return None
    return doc


def write_termination_message(path: str, text: str) -> None:
    """Best effort: outside a pod the path usually does not exist, and that is fine."""
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        log.debug("termination message not written to %s: %s", path, exc)
