"""Credentials out of the worker's log lines: a copy of ``bgjobs.redaction.redact``.

The worker runtime may not import ``bgjobs`` (it is installed alone in task images), so it
keeps this copy; tests/unit/test_redaction.py holds the two to the same cases.
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://userinfo@ -- the userinfo runs to the last '@' before the path, query,
# fragment or whitespace, as urllib.parse.urlsplit reads it.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s/?#]*)@")
_SECRET_PARAM = re.compile(
    r"(?P<key>[?&](?:password|passwd|pass|pwd|secret|token|auth)=)(?P<value>[^&#\s'\"]*)",
    re.IGNORECASE,
)


def _userinfo(userinfo: str) -> str:
    user, sep, _password = userinfo.partition(":")
    return f"{user}:{MASK}" if sep else MASK


def _redact_userinfo(m: re.Match[str]) -> str:
    return f"{m['scheme']}{_userinfo(m['userinfo'])}@"


def _redact_param(m: re.Match[str]) -> str:
    return m["key"] + (MASK if m["value"] else "")


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it masked."""
    return _SECRET_PARAM.sub(_redact_param, _USERINFO.sub(_redact_userinfo, text))
