"""JSON-lines logging on stdout with the job's identity on every line.

Cluster log pipelines (Loki, Fluent Bit, Cloud Logging) parse one JSON object per line, and a
job's lines must be findable by namespace/job/uid/attempt without guessing. The identity is
attached by the root handler, so a task's own ``logging`` calls carry it too.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from bgjobs_worker.timestamps import rfc3339

# Attributes every LogRecord has; anything else came from ``extra=`` and is worth keeping.
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    def __init__(self, fields: dict[str, Any]) -> None:
        super().__init__()
        self.fields = fields  # shared, so bind() updates lines already being formatted

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": rfc3339(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname,
            "msg": record.getMessage(),
            "logger": record.name,
            **self.fields,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key not in doc:
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


_fields: dict[str, Any] = {"namespace": "", "job": "", "uid": "", "task": "", "attempt": None}


def bind(**fields: Any) -> None:
    """Set identity fields shown on every following line (namespace, job, uid, task, attempt)."""
    _fields.update(fields)


def configure(level: str = "INFO", stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter(_fields))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(logging.getLevelName(level.upper()), int) else "INFO")
    logging.captureWarnings(True)
