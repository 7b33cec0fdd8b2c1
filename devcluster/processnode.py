"""The process node: a kubelet stand-in that runs pod containers as local processes.

It registers a Ready Node, binds every pending pod to itself, runs each container's
command (the image is ignored: the project's own environment is the "image"), and
reports Running and then Succeeded/Failed with the real exit code, so the real Job and
CronJob controllers see genuine pod lifecycles. Deleting a pod sends SIGTERM, waits the
grace period, then SIGKILL, exactly as kubelet would. It never touches pod finalizers:
the Job controller owns ``batch.kubernetes.io/job-tracking``.

Each container's output is kept in ``<state>/pods/<namespace>/<pod>/<container>.log``.
The termination message file is honoured by running each container in a private mount
namespace with a per-container file bind-mounted at ``terminationMessagePath``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devcluster.kube import ApiError, Kube

log = logging.getLogger("process-node")
MAX_TERMINATION_MESSAGE = 4096
FALLBACK_LOG_LINES = 80


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_path(pod: dict[str, Any]) -> str:
    md = pod["metadata"]
    return f"/api/v1/namespaces/{md['namespace']}/pods/{md['name']}"


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion, a port of the kubelet's (third_party/forked/golang/
    expansion): ``$(NAME)`` with NAME up to the first ``)`` is replaced when NAME is
    defined and left as written otherwise, ``$$`` is ``$``, and any other ``$`` (followed by
    another character, an unclosed ``$(``, or at the end) stays as it is."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    n = len(value)
    while cursor < n:
        if value[cursor] == "$" and cursor + 1 < n:
            out.append(value[checkpoint:cursor])
            nxt = value[cursor + 1]
            advance = 1
            if nxt == "$":
                out.append("$")
            elif nxt == "(":
                close = value.find(")", cursor + 2)
                if close == -1:
                    out.append("$(")
                else:
                    name = value[cursor + 2 : close]
                    out.append(env.get(name, f"$({name})"))
                    advance = close - cursor
            else:
                out.append("$" + nxt)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(value[checkpoint:])
    return "".join(out)


def field_ref(pod: dict[str, Any], path: str, node: str) -> str:
    md = pod["metadata"]
    simple = {
        "metadata.name": md.get("name", ""),
        "metadata.namespace": md.get("namespace", ""),
        "metadata.uid": md.get("uid", ""),
        "spec.nodeName": node,
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
    }
    if path in simple:
        return simple[path]
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str(md.get(m.group(1), {}).get(m.group(2), ""))
    raise ValueError(f"unsupported fieldRef {path!r}")


class ProcessNode:
    def __init__(self, kube: Kube, node_name: str, state_dir: Path) -> None:
        self.kube = kube
        self.node = node_name
        self.state_dir = state_dir
        self.runs: dict[str, PodRun] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    # --- node registration -------------------------------------------------------------
    def register(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node,
                "labels": {
                    "kubernetes.io/hostname": self.node,
                    "kubernetes.io/os": "linux",
                    "devcluster/process-node": "true",
                },
            },
        }
        self.kube.request("POST", "/api/v1/nodes", body, ok404=True)
        capacity = {"cpu": "64", "memory": "256Gi", "pods": "10000", "ephemeral-storage": "100Gi"}
        self.kube.patch_status(
            f"/api/v1/nodes/{self.node}",
            {
                "capacity": capacity,
                "allocatable": capacity,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "ProcessNodeReady",
                        "message": "process node is running",
                        "lastHeartbeatTime": now(),
                        "lastTransitionTime": now(),
                    }
                ],
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": self.node},
                ],
                "nodeInfo": {
                    "kubeletVersion": "process-node",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "containerRuntimeVersion": "process://",
                    "kernelVersion": "",
                    "osImage": "",
                    "kubeProxyVersion": "",
                    "machineID": "",
                    "systemUUID": "",
                    "bootID": "",
                },
            },
        )

    # --- watch loop --------------------------------------------------------------------
    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                listing = self.kube.request("GET", "/api/v1/pods") or {}
                for pod in listing.get("items", []):
                    self.handle(pod)
                rv = listing["metadata"]["resourceVersion"]
                for event in self.kube.watch("/api/v1/pods", rv):
                    if self.stopping.is_set():
                        return
                    if event["type"] == "ERROR":
                        break  # usually 410 Gone: list again
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self.handle(event["object"])
            except Exception:
                if self.stopping.is_set():
                    return
                log.exception("pod watch failed; listing again")
                time.sleep(1)

    def handle(self, pod: dict[str, Any]) -> None:
        md, spec = pod["metadata"], pod["spec"]
        phase = pod.get("status", {}).get("phase")
        uid = md["uid"]
        if md.get("deletionTimestamp"):
            with self.lock:
                run = self.runs.get(uid)
            if run is not None:
                run.terminate(md.get("deletionGracePeriodSeconds") or 0)
            elif spec.get("nodeName") in (None, self.node):
                self.finish_delete(pod)
            return
        if not spec.get("nodeName"):
            if spec.get("schedulerName", "default-scheduler") == "default-scheduler":
                self.bind(pod)
            return
        if spec["nodeName"] != self.node or phase in ("Succeeded", "Failed"):
            return
        with self.lock:
            if uid in self.runs:
                return
            run = PodRun(self, pod)
            self.runs[uid] = run
        threading.Thread(target=run.main, name=f"pod-{md['name']}", daemon=True).start()

    def bind(self, pod: dict[str, Any]) -> None:
        md = pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": md["name"], "namespace": md["namespace"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node},
        }
        self.kube.request("POST", pod_path(pod) + "/binding", body, ok404=True)

    def finish_delete(self, pod: dict[str, Any]) -> None:
        """What kubelet does last: remove the pod object once its containers are gone."""
        self.kube.request(
            "DELETE", pod_path(pod), {"gracePeriodSeconds": 0}, ok404=True, gracePeriodSeconds=0
        )

    def shutdown(self) -> None:
        self.stopping.set()
        with self.lock:
            runs = list(self.runs.values())
        for run in runs:
            run.terminate(2)
        for run in runs:
            run.done.wait(5)


class PodRun:
    """One pod's containers, from start to the final status report."""

    def __init__(self, node: ProcessNode, pod: dict[str, Any]) -> None:
        self.node = node
        self.pod = pod
        md = pod["metadata"]
        self.dir = node.state_dir / "pods" / md["namespace"] / md["name"]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.kill_after: float | None = None
        self.deleted = False
        self.deadline_exceeded = False
        self.done = threading.Event()
        self.plock = threading.Lock()
        self.restart_counts: dict[str, int] = {}

    def terminate(self, grace: int) -> None:
        with self.plock:
            if self.deleted:
                return
            self.deleted = True
            self.kill_after = time.monotonic() + grace
            for proc in self.procs.values():
                _signal_group(proc, signal.SIGTERM)

    def main(self) -> None:
        try:
            self._main()
        except Exception:
            log.exception("pod %s failed in the node", self.pod["metadata"]["name"])
        finally:
            with self.node.lock:
                self.node.runs.pop(self.pod["metadata"]["uid"], None)
            self.done.set()

    def _main(self) -> None:
        spec, md = self.pod["spec"], self.pod["metadata"]
        if self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "uid").write_text(md["uid"])
        started = now()
        deadline = spec.get("activeDeadlineSeconds")
        self.t0 = time.monotonic()
        self.deadline = self.t0 + deadline if deadline else None

        for container in spec.get("initContainers", []):
            code, _ = self.run_container(container, started, init=True)
            if code != 0 or self.deleted or self.deadline_exceeded:
                return self.report_final({container["name"]: (code, "")}, started)

        containers = spec["containers"]
        self.report_running(started, {c["name"]: started for c in containers})
        results: dict[str, tuple[int, str]] = {}
        threads = []
        for container in containers:

            def target(c: dict[str, Any] = container) -> None:
                try:
                    results[c["name"]] = self.run_container(c, started)
                except Exception as exc:  # noqa: BLE001 - a container that cannot start
                    # (a NUL byte in an env value, ...) fails, as a kubelet's StartError
                    # would; it never counts as a success
                    log.warning("container %s could not start: %s", c["name"], exc)
                    results[c["name"]] = (128, f"StartError: {exc}")

            t = threading.Thread(target=target, daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        self.report_final(results, started)

    def run_container(
        self, container: dict[str, Any], started: str, init: bool = False
    ) -> tuple[int, str]:
        """Run one container to its end (restarting per restartPolicy OnFailure)."""
        name = container["name"]
        policy = self.pod["spec"].get("restartPolicy", "Always")
        restarts = 0
        while True:
            try:
                argv, env, cwd = self.prepare(container)
            except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
                return 128, f"process node cannot start container: {exc}"
            tm_file = self.dir / f"{name}.termination-log"
            tm_file.write_text("")
            tm_path = container.get("terminationMessagePath", "/dev/termination-log")
            argv = _with_termination_file(argv, tm_file, tm_path)
            log_file = self.dir / f"{name}.log"
            with self.plock:
                if self.deleted:
                    return 137, ""
                with open(log_file, "ab") as out:
                    proc = subprocess.Popen(
                        argv,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        env=env,
                        cwd=cwd,
                        start_new_session=True,
                    )
                self.procs[name] = proc
            code = self.wait(proc)
            message = tm_file.read_text(errors="replace")[:MAX_TERMINATION_MESSAGE]
            if (
                not message
                and code != 0
                and container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
            ):
                lines = log_file.read_text(errors="replace").splitlines()[-FALLBACK_LOG_LINES:]
                message = "\n".join(lines)[-MAX_TERMINATION_MESSAGE:]
            if (
                code != 0
                and policy == "OnFailure"
                and not self.deleted
                and not self.deadline_exceeded
                and not init
            ):
                restarts += 1
                self.restart_counts[name] = restarts
                continue
            return code, message

    def wait(self, proc: subprocess.Popen[bytes]) -> int:
        while True:
            try:
                code = proc.wait(timeout=0.1)
                return code if code >= 0 else 128 - code  # killed by signal N -> 128+N
            except subprocess.TimeoutExpired:
                pass
            t = time.monotonic()
            if self.deadline and t > self.deadline and not self.deadline_exceeded:
                self.deadline_exceeded = True
                _signal_group(proc, signal.SIGKILL)
            if self.kill_after is not None and t > self.kill_after:
                _signal_group(proc, signal.SIGKILL)

    def prepare(self, container: dict[str, Any]) -> tuple[list[str], dict[str, str], str]:
        ns = self.pod["metadata"]["namespace"]
        env: dict[str, str] = {}
        for src in container.get("envFrom", []):
            data = self._lookup(ns, src, None)
            prefix = src.get("prefix", "")
            env.update({prefix + k: v for k, v in data.items()})
        for item in container.get("env", []):
            if "valueFrom" in item:
                vf = item["valueFrom"]
                if "fieldRef" in vf:
                    env[item["name"]] = field_ref(
                        self.pod, vf["fieldRef"]["fieldPath"], self.node.node
                    )
                else:
                    value = self._lookup(ns, vf, item["name"])
                    if value is not None:
                        env[item["name"]] = value
            else:
                env[item["name"]] = expand(item.get("value", ""), env)
        command = [expand(a, env) for a in container.get("command", [])]
        args = [expand(a, env) for a in container.get("args", [])]
        argv = command + args
        if not argv:
            raise ValueError("the process node needs an explicit command (images are ignored)")
        full_env = {**_base_env(self.pod, self.dir), **env}
        workdir = container.get("workingDir")
        cwd = workdir if workdir and os.path.isdir(workdir) else str(self.dir)
        return argv, full_env, cwd

    def _lookup(self, ns: str, src: dict[str, Any], key_for: str | None) -> Any:
        """Secret/ConfigMap references: a whole map (envFrom) or one key (valueFrom)."""
        import base64

        for kind, field in (
            ("secrets", "secretRef"),
            ("configmaps", "configMapRef"),
            ("secrets", "secretKeyRef"),
            ("configmaps", "configMapKeyRef"),
        ):
            ref = src.get(field)
            if ref is None:
                continue
            obj = self.node.kube.request(
                "GET", f"/api/v1/namespaces/{ns}/{kind}/{ref['name']}", ok404=True
            )
            if obj is None:
                if ref.get("optional"):
                    return {} if key_for is None else None
                raise ValueError(f"{kind[:-1]} {ref['name']!r} not found")
            data = dict(obj.get("data") or {})
            if kind == "secrets":
                data = {k: base64.b64decode(v).decode() for k, v in data.items()}
            if key_for is None:
                return data
            if ref["key"] not in data:
                if ref.get("optional"):
                    return None
                raise ValueError(f"key {ref['key']!r} not in {kind[:-1]} {ref['name']!r}")
            return data[ref["key"]]
        raise ValueError(f"unsupported env source {sorted(src)}")

    # --- status reports ----------------------------------------------------------------
    def report_running(self, started: str, container_starts: dict[str, str]) -> None:
        ts = now()
        self.node.kube.patch_status(
            pod_path(self.pod),
            {
                "phase": "Running",
                "startTime": started,
                "hostIP": "127.0.0.1",
                "podIP": "127.0.0.1",
                "podIPs": [{"ip": "127.0.0.1"}],
                "conditions": [
                    _cond(t, "True", ts)
                    for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
                ],
                "containerStatuses": [
                    {
                        "name": n,
                        "ready": True,
                        "started": True,
                        "restartCount": 0,
                        "image": _image(self.pod, n),
                        "imageID": "",
                        "containerID": f"process://{n}",
                        "state": {"running": {"startedAt": s}},
                    }
                    for n, s in container_starts.items()
                ],
            },
        )

    def report_final(self, results: dict[str, tuple[int, str]], started: str) -> None:
        ts = now()
        ok = all(code == 0 for code, _ in results.values()) and not self.deadline_exceeded
        status: dict[str, Any] = {
            "phase": "Succeeded" if ok else "Failed",
            "startTime": started,
            "conditions": [
                _cond("Ready", "False", ts, "PodCompleted"),
                _cond("ContainersReady", "False", ts, "PodCompleted"),
            ],
            "containerStatuses": [
                {
                    "name": n,
                    "ready": False,
                    "started": False,
                    "restartCount": self.restart_counts.get(n, 0),
                    "image": _image(self.pod, n),
                    "imageID": "",
                    "containerID": f"process://{n}",
                    "state": {
                        "terminated": {
                            "exitCode": code,
                            "reason": "Completed" if code == 0 else "Error",
                            "message": message,
                            "startedAt": started,
                            "finishedAt": ts,
                            "containerID": f"process://{n}",
                        }
                    },
                }
                for n, (code, message) in results.items()
            ],
        }
        if self.deadline_exceeded:
            status.update(
                reason="DeadlineExceeded",
                message="Pod was active on the node longer than the specified deadline",
            )
        self.node.kube.patch_status(pod_path(self.pod), status)
        if self.deleted:
            self.node.finish_delete(self.pod)


def _cond(type_: str, status: str, ts: str, reason: str | None = None) -> dict[str, Any]:
    cond = {"type": type_, "status": status, "lastTransitionTime": ts, "lastProbeTime": None}
    if reason:
        cond["reason"] = reason
    return cond


def _image(pod: dict[str, Any], name: str) -> str:
    for c in pod["spec"]["containers"]:
        if c["name"] == name:
            return str(c.get("image", ""))
    return ""


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _with_termination_file(argv: list[str], host_file: Path, path: str) -> list[str]:
    """Give the process its own file at `path`, as a container runtime would."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.touch()  # a mount point; each container sees only its own file over it
    script = 'mount --bind "$1" "$2" || exit 126; shift 2; exec "$@"'
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
        str(host_file),
        path,
        *argv,
    ]


def _base_env(pod: dict[str, Any], workdir: Path) -> dict[str, str]:
    """What the "image" provides: the project's Python environment first on PATH."""
    venv_bin = str(Path(sys.executable).parent)
    env = {
        "PATH": f"{venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(workdir),
        "HOSTNAME": pod["metadata"]["name"],
        "LANG": "C.UTF-8",
    }
    for passthrough in ("PYTHONPATH", "DEVCLUSTER_ID", "BGJOBS_CACHE"):
        if passthrough in os.environ:
            env[passthrough] = os.environ[passthrough]
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--node-name", default="process-node")
    opts = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    node = ProcessNode(Kube(opts.kubeconfig), opts.node_name, opts.state_dir)

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal %s: stopping pods", signum)
        node.shutdown()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        try:
            node.register()
            break
        except ApiError:
            log.exception("registering node failed; retrying")
            time.sleep(1)
    node.run()


if __name__ == "__main__":
    main()
