"""Operator configuration: command-line flags, each defaulting to an environment variable."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from urllib.parse import SplitResult, quote, unquote, urlsplit

from bgjobs.redaction import redact_url


def _csv(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: list[str] = field(default_factory=list)
    default_image: str = "bgjobs/worker:0.1.0"
    worker_command: list[str] = field(default_factory=lambda: ["bgjobs-worker", "run"])
    task_modules: list[str] = field(default_factory=list)
    # The operator's own connection, password included: never logged (redis_url_redacted),
    # never written into a Job (jobspec uses worker_redis_url and redis_secret).
    redis_url: str | None = field(default=None, repr=False)
    # (Secret name, key) holding the Redis password, in every namespace jobs run in: pods
    # get it through secretKeyRef; the operator never reads it.
    redis_secret: tuple[str, str] | None = None
    webhook_url: str | None = None
    metrics_port: int = 8080
    health_port: int = 8081
    progress_interval: float = 1.0
    peering: str | None = None
    # kopf peering priority: the highest live one is active. None: drawn at random per
    # process, so two replicas of one Deployment never tie (kopf pauses all on a tie).
    peering_priority: int | None = None
    # queue -> most Jobs of that queue running at once in one namespace (unlisted: no limit)
    queue_limits: dict[str, int] = field(default_factory=dict)
    max_result_bytes: int = 8192
    max_input_bytes: int = 32768
    # A batch's inline items, in JSON (they are in etcd already, with the BackgroundJob).
    max_items_bytes: int = 1024 * 1024

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    @property
    def redis_url_redacted(self) -> str | None:
        """The Redis URL as logs, Events, conditions and metrics may show it."""
        return redact_url(self.redis_url) if self.redis_url else None

    @property
    def worker_redis_url(self) -> str | None:
        """The Redis URL written into Jobs: without its password, whatever the config."""
        return split_password(self.redis_url)[0] if self.redis_url else None


def _unsplit(parts: SplitResult, netloc: str) -> str:
    """urlunsplit, keeping ``//`` before an empty host (``unix:///path``)."""
    query = f"?{parts.query}" if parts.query else ""
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    return f"{parts.scheme}://{netloc}{parts.path}{query}{fragment}"


def split_password(url: str) -> tuple[str, str | None]:
    """``redis://user:pw@host/0`` -> (``redis://user@host/0``, ``pw``); the password is
    unquoted, the user name kept. A URL without a password comes back unchanged."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        return url, None
    user, colon, password = userinfo.partition(":")
    if not colon:
        return url, None
    netloc = f"{user}@{hostport}" if user else hostport
    return _unsplit(parts, netloc), unquote(password)


def with_password(url: str, password: str) -> str:
    """The URL with ``password`` in its userinfo (replacing any there)."""
    bare, _ = split_password(url)
    parts = urlsplit(bare)
    user, at, hostport = parts.netloc.rpartition("@")
    netloc = f"{user if at else ''}:{quote(password, safe='')}@{hostport}"
    return _unsplit(parts, netloc)


def parse_redis_secret(text: str | None) -> tuple[str, str] | None:
    """'redis-auth/password' -> ('redis-auth', 'password')."""
    if not text or not text.strip():
        return None
    name, sep, key = text.strip().partition("/")
    if not sep or not name or not key or "/" in key:
        raise SystemExit(f"--redis-secret: {text!r} is not SECRET/KEY (e.g. redis-auth/password)")
    return name, key


def redis_settings(
    url: str | None, secret: str | None, password: str | None
) -> tuple[str | None, tuple[str, str] | None]:
    """The operator's Redis URL (with ``password``, from $BGJOBS_REDIS_PASSWORD, when given)
    and the Secret reference for pods. A password with no Secret for the pods is refused:
    it would be written into every Job."""
    ref = parse_redis_secret(secret)
    if not url:
        return None, ref
    if password:
        url = with_password(url, password)
    if split_password(url)[1] is not None and ref is None:
        raise SystemExit(
            f"the Redis URL {redact_url(url)} has a password but --redis-secret "
            "($BGJOBS_REDIS_SECRET) names no Secret for the workers: create a Secret holding "
            "the password in every namespace jobs run in and pass --redis-secret SECRET/KEY "
            "(the password is never written into a Job)"
        )
    return url, ref


ENV_FLAGS: list[tuple[str, str, str]] = [
    # (flag, environment variable, help)
    (
        "--namespaces",
        "BGJOBS_NAMESPACES",
        "comma-separated namespaces to watch; empty: the whole cluster",
    ),
    (
        "--default-image",
        "BGJOBS_DEFAULT_IMAGE",
        "worker image for jobs that do not name one (default bgjobs/worker:0.1.0)",
    ),
    (
        "--worker-command",
        "BGJOBS_WORKER_COMMAND",
        "command that starts the worker runtime in the image (default 'bgjobs-worker run')",
    ),
    (
        "--task-modules",
        "BGJOBS_TASK_MODULES",
        "comma-separated modules the worker imports to register tasks",
    ),
    (
        "--redis-url",
        "BGJOBS_REDIS_URL",
        "Redis for progress and results, e.g. redis://redis:6379/0; empty: no progress. "
        "A password here (or in $BGJOBS_REDIS_PASSWORD, which is added to the URL) needs "
        "--redis-secret",
    ),
    (
        "--redis-secret",
        "BGJOBS_REDIS_SECRET",
        "SECRET/KEY of a Secret holding the Redis password, present in every namespace jobs "
        "run in: workers get it through secretKeyRef (the operator never reads it)",
    ),
    (
        "--webhook-url",
        "BGJOBS_WEBHOOK_URL",
        "POSTed a JSON alert when a critical job is dead-lettered",
    ),
    ("--metrics-port", "BGJOBS_METRICS_PORT", "Prometheus metrics port (default 8080; 0: off)"),
    ("--health-port", "BGJOBS_HEALTH_PORT", "liveness endpoint port (default 8081; 0: off)"),
    (
        "--progress-interval",
        "BGJOBS_PROGRESS_INTERVAL",
        "seconds between progress writes to one job's status (default 1.0)",
    ),
    (
        "--queue-limits",
        "BGJOBS_QUEUE_LIMITS",
        "per-queue concurrency, e.g. 'exports=2,default=50': at most N running Jobs of a queue "
        "per namespace; the rest wait suspended",
    ),
    ("--peering", "BGJOBS_PEERING", "kopf peering name for several replicas; empty: standalone"),
    (
        "--peering-priority",
        "BGJOBS_PEERING_PRIORITY",
        "this replica's peering priority, >= 1 (the highest live replica is active; "
        "default: random per process)",
    ),
]


def parse(argv: list[str] | None = None) -> OperatorConfig:
    parser = argparse.ArgumentParser(
        prog="bgjobs-operator",
        description="Run the bgjobs operator. Every flag defaults to its environment variable.",
    )
    for flag, env, help_ in ENV_FLAGS:
        parser.add_argument(flag, default=os.environ.get(env), help=f"{help_} [${env}]")
    opts = parser.parse_args(argv)
    defaults = OperatorConfig()
    # The operator's own password comes from the environment only: a command line is
    # visible to every process on the node.
    redis_url, redis_secret = redis_settings(
        opts.redis_url, opts.redis_secret, os.environ.get("BGJOBS_REDIS_PASSWORD")
    )
    return OperatorConfig(
        namespaces=_csv(opts.namespaces),
        default_image=opts.default_image or defaults.default_image,
        worker_command=(
            opts.worker_command.split() if opts.worker_command else defaults.worker_command
        ),
        task_modules=_csv(opts.task_modules),
        redis_url=redis_url,
        redis_secret=redis_secret,
        webhook_url=opts.webhook_url or None,
        metrics_port=int(opts.metrics_port) if opts.metrics_port else defaults.metrics_port,
        health_port=int(opts.health_port) if opts.health_port else defaults.health_port,
        progress_interval=(
            float(opts.progress_interval) if opts.progress_interval else defaults.progress_interval
        ),
        peering=opts.peering or None,
        peering_priority=_positive("--peering-priority", opts.peering_priority),
        queue_limits=parse_queue_limits(opts.queue_limits),
    )


def _positive(flag: str, text: str | None) -> int | None:
    if not text:
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise SystemExit(f"{flag}: {text!r} is not an integer >= 1")
    return int(text)


def parse_queue_limits(text: str | None) -> dict[str, int]:
    """'exports=2,default=50' -> {'exports': 2, 'default': 50}; refuses anything else."""
    limits: dict[str, int] = {}
    for item in _csv(text):
        queue, sep, number = item.partition("=")
        if not sep or not queue.strip() or not number.strip().isdigit() or int(number) < 1:
            raise SystemExit(f"--queue-limits: {item!r} is not QUEUE=N with N >= 1")
        limits[queue.strip()] = int(number)
    return limits
