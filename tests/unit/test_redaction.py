"""Credentials never reach a log line, Event, condition, metric label or CLI output."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgjobs.redaction import redact, redact_url
from bgjobs_worker import redaction as worker_redaction


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:s3cret@redis.infra:6379/0", "redis://:***@redis.infra:6379/0"),
        ("rediss://bgjobs:s3cret@redis:6380/2", "rediss://bgjobs:***@redis:6380/2"),
        ("redis://token@redis:6379", "redis://***@redis:6379"),
        ("redis://:p%40ss%3Aw@host/0", "redis://:***@host/0"),
        ("redis://:p@ss@host:1/0", "redis://:***@host:1/0"),
        ("unix://:pw@/run/redis.sock?db=1", "unix://:***@/run/redis.sock?db=1"),
        ("redis://host:6379/0?password=pw&db=1", "redis://host:6379/0?password=***&db=1"),
        ("redis://redis:6379/0", "redis://redis:6379/0"),
        ("redis://:@host", "redis://:***@host"),
        ("", ""),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert worker_redaction.redact(url) == expected


def test_redact_free_text() -> None:
    line = (
        "Redis at redis://:hunter2@10.0.0.5:6379/0 unreachable (Error 111 connecting to "
        "10.0.0.5:6379.); fallback 'rediss://u:pw2@backup:6380?db=0', mail ops@example.com"
    )
    assert redact(line) == (
        "Redis at redis://:***@10.0.0.5:6379/0 unreachable (Error 111 connecting to "
        "10.0.0.5:6379.); fallback 'rediss://u:***@backup:6380?db=0', mail ops@example.com"
    )
    assert worker_redaction.redact(line) == redact(line)


passwords = st.text(min_size=1, max_size=40).filter(lambda p: p.strip())


@given(
    password=passwords,
    user=st.sampled_from(["", "bgjobs"]),
    prefix=st.text(max_size=20).filter(lambda t: "@" not in t and "=" not in t),
)
def test_no_password_survives(password: str, user: str, prefix: str) -> None:
    url = f"redis://{user}:{quote(password, safe='')}@redis.example:6379/0"
    shown = f"redis://{user}:***@redis.example:6379/0"
    assert redact_url(url) == shown
    assert redact(f"{prefix} {url} and more") == f"{prefix} {shown} and more"
    assert worker_redaction.redact(f"{prefix} {url}") == f"{prefix} {shown}"
