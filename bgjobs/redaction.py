"""Credentials out of anything a person may read: logs, Events, conditions, metrics, CLI.

``redact_url`` for a URL known to be one (the operator's Redis URL); ``redact`` for free
text that may contain URLs anywhere (an exception message, a log line). A password in a
URL's userinfo becomes ``***`` (the user name stays: it says which account is used); a lone
userinfo (``redis://token@host``, which some clients read as a password) is redacted
whole, and so are query parameters that carry secrets (``?password=...``).

Standard library only: the operator, the client and the kubectl plugin all use it. The
worker has its own copy (``bgjobs_worker.redaction``): it may not import ``bgjobs``.
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


def redact_url(url: str) -> str:
    """``redis://:secret@host:6379/0`` -> ``redis://:***@host:6379/0``; a URL without
    credentials is returned unchanged."""
    return redact(url)
