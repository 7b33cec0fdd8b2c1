"""JSON for the operator's hot path: orjson where it can, the standard library where not.

Parsing watch events was the single largest CPU cost of the operator in a burst (26 % of
its busy time, all of it in kopf's watch stream's `json.loads`; docs/benchmarks.md, the
profile in section 1). orjson parses the same documents several times faster. It refuses
a few things the standard library accepts (integers beyond 64 bits, lone surrogates), which
a user's task arguments may contain, and reads integers beyond 64 bits as floats; those
documents go to `json`, so what users submit still arrives exactly as the standard parser
reads it (tests/unit/test_fastjson.py).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import orjson

log = logging.getLogger(__name__)


# 19 digits in a row may be an integer beyond 64 bits, which orjson reads as a float
# (silently: 2**70 would reach the task as 1.1805916207174113e+21). Such documents go to the
# standard library, which keeps every integer exact. A regex scan costs a fraction of a parse.
_LONG_DIGITS = re.compile(rb"[0-9]{19,}")
_LONG_DIGITS_TEXT = re.compile(r"[0-9]{19,}")


def loads(data: str | bytes | bytearray | memoryview) -> Any:
    if isinstance(data, memoryview):
        data = bytes(data)
    long_digits = (
        _LONG_DIGITS_TEXT.search(data) if isinstance(data, str) else _LONG_DIGITS.search(data)
    )
    if long_digits is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def dumps(obj: Any) -> str:
    """Compact JSON text; the standard library's for what orjson refuses (big integers)."""
    try:
        return orjson.dumps(obj).decode()
    except TypeError:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class _StdlibWithFastLoads:
    """Stands in for the `json` module inside kopf's API client: fast `loads`, the rest
    from the standard library."""

    def __getattr__(self, name: str) -> Any:
        return getattr(json, name)

    @staticmethod
    def loads(s: Any, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:
            return json.loads(s, *args, **kwargs)
        return loads(s)


def speed_up_kopf_watch_parsing() -> bool:
    """Point kopf's watch-stream parser at `loads`. kopf reads `json.loads` from its API
    client module's globals (`kopf/_cogs/clients/api.py`, kopf 1.37-1.45); if a future
    kopf moves it, nothing is patched and the operator runs as before, only slower."""
    try:
        from kopf._cogs.clients import api
    except ImportError:
        return False
    if getattr(api, "json", None) is not json:
        log.info("kopf's watch parser is not where expected; keeping its own json")
        return False
    api.json = _StdlibWithFastLoads()  # type: ignore[assignment]
    return True
