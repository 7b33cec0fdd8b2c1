"""Small helpers shared by the integration tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from devcluster import bins
from devcluster.cluster import free_port

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]


def wait_for(check: Callable[[], T], *, timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll until check() returns something truthy without raising; return it."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
            last = result
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def processes_with(marker: str) -> list[int]:
    """PIDs whose command line contains marker."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if marker in cmdline and ") Z" not in stat:
            found.append(int(entry.name))
    return found


@dataclass
class RedisServer:
    """A real Debian redis-server on a free loopback port, no persistence unless asked."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    # requirepass: clients must AUTH (url_with_password) when set
    password: str | None = None
    # persist: RDB snapshots and an append-only file fsynced on every write, in workdir
    persist: bool = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def url_with_password(self) -> str:
        return f"redis://:{quote(self.password or '', safe='')}@127.0.0.1:{self.port}/0"

    @classmethod
    def start(
        cls,
        workdir: Path,
        port: int | None = None,
        password: str | None = None,
        persist: bool = False,
    ) -> RedisServer:
        server = cls(port=port or free_port(), workdir=workdir, password=password, persist=persist)
        server.resume()
        return server

    def resume(self) -> None:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                *(
                    ["--save", "60 1", "--appendonly", "yes", "--appendfsync", "always"]
                    if self.persist
                    else ["--save", "", "--appendonly", "no"]
                ),
                "--dir",
                str(self.workdir),
                *(["--requirepass", self.password] if self.password else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.workdir,
        )

        def ping() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                # With requirepass, an unauthenticated PING is refused: the server is up.
                return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))

        wait_for(ping, timeout=20, what="redis-server")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)


class OperatorProcess:
    """The real operator as a subprocess (python -m bgjobs_operator), killable at will."""

    def __init__(
        self,
        kubeconfig: str,
        redis_url: str,
        log_dir: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.redis_url = redis_url
        self.log_dir = log_dir
        self.extra_env = extra_env or {}
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        import sys

        self.starts += 1
        env = {
            **os.environ,
            "KUBECONFIG": self.kubeconfig,
            "BGJOBS_REDIS_URL": self.redis_url,
            "BGJOBS_TASK_MODULES": "examples.tasks",
            "BGJOBS_METRICS_PORT": str(self.metrics_port),
            "BGJOBS_HEALTH_PORT": str(self.health_port),
            "PYTHONPATH": bins.source_path(),
            **self.extra_env,
        }
        log = open(self.log_dir / f"operator-{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bgjobs_operator"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        import urllib.request

        def healthy() -> bool:
            assert self.proc is not None and self.proc.poll() is None, "operator exited"
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.health_port}/healthz", timeout=2
            ) as resp:
                return bool(resp.status == 200)

        wait_for(healthy, timeout=60, what="operator liveness endpoint")

    def kill(self) -> None:
        """SIGKILL: no clean-up, as when a node dies."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as resp:
            return str(resp.read().decode())

    def log_text(self) -> str:
        return "".join(
            p.read_text(errors="replace") for p in sorted(self.log_dir.glob("operator-*.log"))
        )


TERMINAL = ("Succeeded", "Failed", "Cancelled")


class BgJobs:
    """bgjobs custom resources in one namespace, through the real API server."""

    group, version = "bgjobs.dev", "v1alpha1"

    def __init__(self, custom: Any, namespace: str) -> None:
        self.custom = custom
        self.namespace = namespace

    def submit(
        self,
        name: str,
        task: str,
        *,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **spec: Any,
    ) -> dict[str, Any]:
        body = {
            "apiVersion": "bgjobs.dev/v1alpha1",
            "kind": "BackgroundJob",
            "metadata": {"name": name},
            "spec": {"task": task, "args": args or [], "kwargs": kwargs or {}, **spec},
        }
        return self.create("backgroundjobs", body)

    def create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.custom.create_namespaced_custom_object(
                self.group, self.version, self.namespace, plural, body
            )
        )

    def get(self, name: str, plural: str = "backgroundjobs") -> dict[str, Any]:
        return dict(
            self.custom.get_namespaced_custom_object(
                self.group, self.version, self.namespace, plural, name
            )
        )

    def list(self, plural: str) -> list[dict[str, Any]]:
        return list(
            self.custom.list_namespaced_custom_object(
                self.group, self.version, self.namespace, plural
            )["items"]
        )

    def patch(self, name: str, patch: dict[str, Any], plural: str = "backgroundjobs") -> None:
        self.custom.patch_namespaced_custom_object(
            self.group, self.version, self.namespace, plural, name, patch
        )

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def wait_phase(self, name: str, *phases: str, timeout: float = 120) -> dict[str, Any]:
        wanted = phases or TERMINAL

        def reached() -> dict[str, Any] | None:
            st = self.status(name)
            return st if st.get("phase") in wanted else None

        return wait_for(reached, timeout=timeout, what=f"{name} to reach {wanted}")


class AlertSink:
    """Collects JSON POSTs (the operator's critical-failure webhook) on a loopback port."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.received: list[dict[str, Any]] = []
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                import json

                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/alerts"

    @classmethod
    def start(cls) -> AlertSink:
        sink = cls()
        sink.thread.start()
        return sink

    def stop(self) -> None:
        self.server.shutdown()
