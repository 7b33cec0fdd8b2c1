"""Cross-site request forgery: a random token in a cookie (SameSite=Strict) that every
form repeats in a hidden field (double submit), and a same-origin check on Origin/Referer.
A POST without both matching is refused before anything is written."""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

COOKIE = "bgjobs_csrf"
FIELD = "csrf_token"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same_origin(host: str | None, origin: str | None, referer: str | None) -> bool:
    """Origin (else Referer) must name this server's host; a request with neither passes
    this check (some clients send none) and rests on the token."""
    source = origin or referer
    if not source:
        return True
    if source == "null":
        return False
    return urlsplit(source).netloc == (host or "")


def valid(
    cookie: str | None,
    submitted: str | None,
    host: str | None,
    origin: str | None,
    referer: str | None,
) -> bool:
    if not cookie or not submitted:
        return False
    if not hmac.compare_digest(cookie.encode(), submitted.encode()):
        return False
    return same_origin(host, origin, referer)
