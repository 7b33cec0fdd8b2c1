"""`python -m bgjobs.dashboard`: the watch cache, the app, uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from typing import Any

from bgjobs.api import names
from bgjobs.client.connection import load_api_client
from bgjobs.dashboard import present
from bgjobs.dashboard.app import Settings, create_app
from bgjobs.dashboard.cache import WatchCache
from bgjobs.redaction import redact

log = logging.getLogger(__name__)
SYNC_TIMEOUT = 120
OUTPUT_TAIL_LINES = 100  # of the newest pod's log, on a job's page


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bgjobs-dashboard", description=__doc__)
    p.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG)")
    p.add_argument("--context", default=None, help="kubeconfig context")
    p.add_argument("--in-cluster", action="store_true", help="use the pod's ServiceAccount")
    p.add_argument("--namespace", default=None, help="show only this namespace")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, help="0: a free port")
    p.add_argument("--actions", action="store_true", help="enable actions (API writes)")
    return p.parse_args(argv)


def extras_reader(api_client: Any, redis_url: str | None) -> Any:
    """Reads made for one job's page only: its Events and its pods (one list each), the
    newest pod's log tail, and the last attempt's outcome in Redis (with its traceback)."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    redis = None
    if redis_url:
        import redis as redis_lib

        redis = redis_lib.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)

    def read(ns: str, name: str, obj: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"events": [], "outcome": None, "notes": []}
        try:
            evs = core.list_namespaced_event(
                ns, field_selector=f"involvedObject.name={name},involvedObject.kind=BackgroundJob"
            )
            out["events"] = [
                {
                    "type": e.type,
                    "reason": e.reason,
                    "message": redact(e.message or ""),
                    "time": str(e.last_timestamp or e.event_time or ""),
                }
                for e in evs.items
            ]
        except Exception as exc:  # noqa: BLE001 - shown on the page, never fatal
            out["notes"].append(f"events: {redact(str(exc))[:300]}")
        job_name = (obj.get("status") or {}).get("jobName")
        if not job_name:
            return out
        pods: list[dict[str, Any]] = []
        try:
            listing = core.list_namespaced_pod(
                ns, label_selector=f"{names.JOB_NAME_LABEL}={job_name}"
            )
            pods = [api_client.sanitize_for_serialization(p) for p in listing.items]
            out["attempts"] = present.pod_attempts(pods)
        except Exception as exc:  # noqa: BLE001 - the Job and its pods go after their TTL
            out["notes"].append(f"pods: {redact(str(exc))[:300]}")
        if pods:
            newest = max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")
            try:
                log_text = core.read_namespaced_pod_log(
                    newest["metadata"]["name"], ns, tail_lines=OUTPUT_TAIL_LINES
                )
                out["output"] = redact(str(log_text))
            except Exception as exc:  # noqa: BLE001 - a pod without logs (yet, or any more)
                out["notes"].append(f"output: {redact(str(exc))[:300]}")
        if redis is not None:
            try:
                from bgjobs_worker.redis_keys import decode_result, result_key

                # The Job's uid names its Redis keys; its pods carry it as a label (pods
                # are readable with the dashboard's RBAC, Jobs are not).
                uids = {(p["metadata"].get("labels") or {}).get(names.JOB_UID_LABEL) for p in pods}
                for uid in sorted(u for u in uids if u):
                    out["outcome"] = decode_result(redis.get(result_key(ns, uid)))
            except Exception as exc:  # noqa: BLE001 - Redis away: the page still renders
                out["notes"].append(f"outcome: {redact(str(exc))[:300]}")
        return out

    return read


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    opts = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    api_client = load_api_client(None if opts.in_cluster else opts.kubeconfig, opts.context)
    cache = WatchCache(api_client, opts.namespace)
    cache.start()
    if not cache.synced.wait(SYNC_TIMEOUT):
        print(
            f"the watch caches did not sync in {SYNC_TIMEOUT}s (see the log above)", file=sys.stderr
        )
        return 1
    redis_url = os.environ.get("BGJOBS_REDIS_URL") or None
    settings = Settings(
        actions=opts.actions,
        api_client=api_client,
        extras=extras_reader(api_client, redis_url),
    )
    app = create_app(settings, cache)
    # Bound and listening before the address is printed: whoever reads it can connect.
    family = socket.AF_INET6 if ":" in opts.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((opts.host, opts.port))
    sock.listen(128)
    port = sock.getsockname()[1]
    host = f"[{opts.host}]" if ":" in opts.host else opts.host
    print(f"bgjobs dashboard: http://{host}:{port}/", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    try:
        server.run(sockets=[sock])
    finally:
        cache.stop()
    return 0
