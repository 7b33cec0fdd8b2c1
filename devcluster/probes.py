"""Liveness and readiness probes, as the kubelet runs them: HTTP GET and exec.

A :class:`Prober` thread watches one running container. Readiness starts false when the
container has a readiness probe (true otherwise) and follows successThreshold /
failureThreshold; liveness, after initialDelaySeconds, kills the container after
failureThreshold consecutive failures, and the pod's restartPolicy decides what follows.
Exec probes run inside the container (``nsenter`` into its mount, PID and UTS namespaces
and its root, as its user) when it runs in an image, else as a host process.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devcluster.sandbox import Sandbox

log = logging.getLogger("process-node")


def _port(value: Any, container: dict[str, Any]) -> int:
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    for port in container.get("ports") or []:
        if port.get("name") == value:
            return int(port["containerPort"])
    raise ValueError(f"no container port named {value!r}")


def http_get(probe: dict[str, Any], container: dict[str, Any], timeout: float) -> bool:
    """Success is a status from 200 to 399, as the kubelet counts it."""
    spec = probe["httpGet"]
    port = _port(spec["port"], container)
    host = spec.get("host") or "127.0.0.1"  # the pod's IP on this node
    conn_cls = (
        http.client.HTTPSConnection if spec.get("scheme") == "HTTPS" else http.client.HTTPConnection
    )
    conn = conn_cls(host, port, timeout=timeout)
    try:
        headers = {h["name"]: h["value"] for h in spec.get("httpHeaders") or []}
        conn.request("GET", spec.get("path") or "/", headers=headers)
        return 200 <= conn.getresponse().status < 400
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def container_init(pid: int) -> int | None:
    """The sandbox's PID 1 (as the host sees it): the only child of its unshare process."""
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
    return None


def exec_command(
    probe: dict[str, Any], pid: int, box: Sandbox | None, env: dict[str, str], timeout: float
) -> bool:
    argv = list(probe["exec"]["command"])
    if box is not None:
        init = container_init(pid)
        if init is None:
            return False
        argv = [
            "nsenter",
            f"--target={init}",
            "--mount",
            "--pid",
            "--uts",
            "--root",
            "--wd",
            f"--setuid={box.uid}",
            f"--setgid={box.gid}",
            *argv,
        ]
        env = box.env
    try:
        done = subprocess.run(
            argv, env=env, capture_output=True, timeout=timeout, check=False, cwd="/"
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


class Prober:
    """Runs a container's probes while its process lives."""

    def __init__(
        self,
        container: dict[str, Any],
        pid: int,
        box: Sandbox | None,
        env: dict[str, str],
        set_ready: Callable[[bool], None],
        kill: Callable[[], None],
    ) -> None:
        self.container = container
        self.pid = pid
        self.box = box
        self.env = env
        self.set_ready = set_ready
        self.kill = kill
        self.stopped = threading.Event()

    def start(self) -> None:
        readiness = self.container.get("readinessProbe")
        self.set_ready(readiness is None)
        for kind, probe in (
            ("readiness", readiness),
            ("liveness", self.container.get("livenessProbe")),
        ):
            if probe:
                threading.Thread(
                    target=self._loop, args=(kind, probe), daemon=True, name=f"{kind}-probe"
                ).start()

    def stop(self) -> None:
        self.stopped.set()

    def check(self, probe: dict[str, Any]) -> bool:
        timeout = float(probe.get("timeoutSeconds", 1))
        if "httpGet" in probe:
            return http_get(probe, self.container, timeout)
        if "exec" in probe:
            return exec_command(probe, self.pid, self.box, self.env, timeout)
        if "tcpSocket" in probe:
            import socket

            try:
                port = _port(probe["tcpSocket"]["port"], self.container)
                with socket.create_connection(("127.0.0.1", port), timeout=timeout):
                    return True
            except (OSError, ValueError):
                return False
        return True  # grpc: not supported, counted as passing

    def _loop(self, kind: str, probe: dict[str, Any]) -> None:
        if self.stopped.wait(float(probe.get("initialDelaySeconds", 0))):
            return
        period = float(probe.get("periodSeconds", 10))
        failures_allowed = int(probe.get("failureThreshold", 3))
        successes_needed = int(probe.get("successThreshold", 1))
        failures = successes = 0
        ready = False
        while not self.stopped.is_set():
            ok = self.check(probe)
            failures, successes = (0, successes + 1) if ok else (failures + 1, 0)
            if kind == "readiness":
                if not ready and successes >= successes_needed:
                    ready = True
                    self.set_ready(True)
                elif ready and failures >= failures_allowed:
                    ready = False
                    self.set_ready(False)
            elif failures >= failures_allowed:
                log.info(
                    "container %s failed its liveness probe %d times: killing it",
                    self.container["name"],
                    failures,
                )
                self.kill()
                return
            if self.stopped.wait(period):
                return
