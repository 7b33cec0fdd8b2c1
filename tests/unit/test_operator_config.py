"""Operator settings: the Redis password reaches the operator from its environment and the
workers through a Secret reference, and is refused anywhere it would be written down."""

from __future__ import annotations

import pytest

from bgjobs_operator.config import parse, split_password, with_password


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("BGJOBS_REDIS_URL", "BGJOBS_REDIS_SECRET", "BGJOBS_REDIS_PASSWORD"):
        monkeypatch.delenv(var, raising=False)


def test_password_from_the_environment_goes_into_the_operators_url_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BGJOBS_REDIS_PASSWORD", "p@ss:w/rd")
    cfg = parse(["--redis-url", "redis://redis:6379/0", "--redis-secret", "redis-auth/password"])
    assert cfg.redis_url == "redis://:p%40ss%3Aw%2Frd@redis:6379/0"
    assert cfg.redis_secret == ("redis-auth", "password")
    assert cfg.worker_redis_url == "redis://redis:6379/0"
    assert cfg.redis_url_redacted == "redis://:***@redis:6379/0"
    assert split_password(cfg.redis_url) == ("redis://redis:6379/0", "p@ss:w/rd")


def test_a_password_without_a_secret_for_the_workers_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as url_pw:
        parse(["--redis-url", "redis://:hunter2@redis:6379/0"])
    assert "hunter2" not in str(url_pw.value) and "--redis-secret" in str(url_pw.value)
    monkeypatch.setenv("BGJOBS_REDIS_PASSWORD", "hunter2")
    with pytest.raises(SystemExit) as env_pw:
        parse(["--redis-url", "redis://redis:6379/0"])
    assert "hunter2" not in str(env_pw.value)


@pytest.mark.parametrize("bad", ["redis-auth", "/key", "name/", "a/b/c"])
def test_redis_secret_is_name_slash_key(bad: str) -> None:
    with pytest.raises(SystemExit, match="SECRET/KEY"):
        parse(["--redis-url", "redis://r:6379/0", "--redis-secret", bad])


def test_without_password_nothing_changes() -> None:
    cfg = parse(["--redis-url", "redis://redis:6379/0"])
    assert cfg.redis_url == cfg.worker_redis_url == "redis://redis:6379/0"
    assert cfg.redis_secret is None


@pytest.mark.parametrize(
    ("url", "bare", "password"),
    [
        ("redis://:pw@h:1/0", "redis://h:1/0", "pw"),
        ("rediss://u:pw@h:1/0?ssl_cert_reqs=none", "rediss://u@h:1/0?ssl_cert_reqs=none", "pw"),
        ("redis://u@h:1", "redis://u@h:1", None),
        ("redis://h", "redis://h", None),
        ("unix://:pw@/run/r.sock?db=2", "unix:///run/r.sock?db=2", "pw"),
    ],
)
def test_split_and_add_password(url: str, bare: str, password: str | None) -> None:
    assert split_password(url) == (bare, password)
    if password:
        assert split_password(with_password(bare, password)) == (bare, password)
