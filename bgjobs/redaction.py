"""Credentials in URLs (redis://:password@host) never reach a log line, Event, condition
message or CLI output: everything that prints a URL or an error that may quote one
passes it through here."""

from __future__ import annotations

import re

# scheme://userinfo@ : the userinfo (user, password or both) is what is hidden.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s]+)@")


def redact_url(url: str) -> str:
    """The URL with any credentials replaced by ***."""
    return redact(url)


def redact(text: str) -> str:
    """text with the credentials of every URL in it replaced by ***."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}***@", text)
