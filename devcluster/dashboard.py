"""Run the web dashboard (`python -m bgjobs.dashboard`, or any command that serves it, such
as `kubectl bgjobs dashboard`) as a subprocess and learn its address from the one line it
prints once its watch caches have synced. Used by the demo, the browser tests, `make
screenshots` and the bench."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from devcluster import bins

# The line the dashboard prints when it serves (the contract: exactly this, flushed).
READY = re.compile(r"^bgjobs dashboard: (http://\S+/)$")


class DashboardProcess:
    """One dashboard process. `start()` returns once it printed its address; `stop()`
    ends it (SIGINT, then SIGKILL) and leaves nothing behind."""

    def __init__(
        self,
        kubeconfig: str,
        *,
        actions: bool = False,
        namespace: str | None = None,
        command: Sequence[str] | None = None,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.actions = actions
        self.namespace = namespace
        self.command = list(command) if command else [sys.executable, "-m", "bgjobs.dashboard"]
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.output: list[str] = []

    def argv(self) -> list[str]:
        # Both listen on 127.0.0.1 unless told otherwise; port 0: a free one.
        argv = [*self.command, f"--kubeconfig={self.kubeconfig}", "--port", "0"]
        if self.namespace:
            argv += ["--namespace", self.namespace]
        return [*argv, "--actions"] if self.actions else argv

    def start(self, timeout: float = 90) -> str:
        env = {**os.environ, "PYTHONPATH": bins.source_path(), **(self.env or {})}
        self.proc = subprocess.Popen(
            self.argv(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,  # Ctrl-C in a terminal reaches only its parent
        )
        found = threading.Event()
        threading.Thread(target=self._read, args=(found,), daemon=True).start()
        if not found.wait(timeout) or not self.url:
            self.stop()
            tail = "".join(self.output[-30:])
            raise RuntimeError(f"the dashboard did not print its address in {timeout}s:\n{tail}")
        return self.url

    def _read(self, found: threading.Event) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        log = open(self.log_path, "a") if self.log_path else None  # noqa: SIM115
        try:
            for line in self.proc.stdout:
                self.output.append(line)
                if log:
                    log.write(line)
                    log.flush()
                match = READY.match(line.strip())
                if match and not self.url:
                    self.url = match.group(1)
                    found.set()
        finally:
            found.set()  # it exited: start() stops waiting
            if log:
                log.close()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> int | None:
        """SIGINT (what Ctrl-C sends), then SIGKILL after 15 s; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode
