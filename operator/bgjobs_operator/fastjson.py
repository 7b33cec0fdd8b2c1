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
from typing import Any

import orjson

log = logging.getLogger(__name__)


# 19 digits in a row may be an integer beyond 64 bits, which orjson reads as a float
# (silently: 2**70 would reach the task as 1.1805916207174113e+21). Such documents go to the
# standard library, which keeps every integer exact. The scan maps every digit to "0" and
# looks for nineteen of them: two passes in C, a third of orjson's own parse, where a regex
# search took three times as long as the parse (a profile of a 1,000-job burst).
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_NINETEEN_DIGITS = b"0" * 19


def has_long_digit_run(data: bytes) -> bool:
    return _NINETEEN_DIGITS in data.translate(_DIGITS_TO_ZERO)


def loads(data: str | bytes | bytearray | memoryview) -> Any:
    if isinstance(data, str):
        try:
            raw = data.encode()
        except UnicodeEncodeError:  # a lone surrogate in the text itself: orjson refuses it
            return json.loads(data)
    else:
        raw = bytes(data)
    if not has_long_digit_run(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data if not isinstance(data, memoryview) else raw)


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
