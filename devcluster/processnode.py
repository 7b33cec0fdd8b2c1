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
import functools
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
from urllib.parse import urlsplit

from devcluster import containers, images, probes, sandbox
from devcluster.kube import ApiError, Kube
from devcluster.kubeletapi import KubeletApi

log = logging.getLogger("process-node")
MAX_TERMINATION_MESSAGE = 4096
REFUSED_RETRY_SECONDS = 5
# Back-off between restarts of a container: doubles from this, up to the cap (the kubelet's
# CrashLoopBackOff starts at 10 s and caps at 5 min; shorter here, for tests).
RESTART_BACKOFF_SECONDS = 1.0
RESTART_BACKOFF_CAP_SECONDS = 30.0
FALLBACK_LOG_LINES = 80
STATUS_RETRY_SECONDS = 600


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
    def __init__(
        self, kube: Kube, node_name: str, state_dir: Path, run_images: bool = False
    ) -> None:
        self.kube = kube
        self.node = node_name
        self.state_dir = state_dir
        # Run containers in their image's root filesystem when the image is in local
        # podman storage (devcluster/containers.py); host processes otherwise.
        self.run_images = run_images
        self.api = urlsplit(kube.server)
        self.runs: dict[str, PodRun] = {}
        # Every pod uid this node process started: a stale watch event (the pod's own
        # Running report, delivered after the run ended) must never start it a second time.
        self.started: set[str] = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.kubelet_api: KubeletApi | None = None
        pki = state_dir / "pki"
        if (pki / "apiserver.crt").exists():
            self.kubelet_api = KubeletApi(
                state_dir, pki / "apiserver.crt", pki / "apiserver.key", self.running
            )
            self.kubelet_api.start()

    def running(self, namespace: str, name: str) -> bool:
        with self.lock:
            return any(
                r.pod["metadata"]["namespace"] == namespace and r.pod["metadata"]["name"] == name
                for r in self.runs.values()
            )

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
                # Where the API server reaches the node's containerLogs (kubectl logs).
                **(
                    {"daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_api.port}}}
                    if self.kubelet_api
                    else {}
                ),
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
            if uid in self.started:
                return
            self.started.add(uid)
            # Reported running by an earlier node process that died: its containers are
            # gone (or orphaned). Like kubelet after a reboot, report them lost rather than
            # run the pod a second time.
            run = None if phase == "Running" else PodRun(self, pod)
            if run is not None:
                self.runs[uid] = run
        if run is None:
            self.report_lost(pod)
            return
        threading.Thread(target=run.main, name=f"pod-{md['name']}", daemon=True).start()

    def report_lost(self, pod: dict[str, Any]) -> None:
        """A pod a previous node process ran: kill what is left of it, report it Failed
        with kubelet's ContainerStatusUnknown (exit 137)."""
        md = pod["metadata"]
        pod_dir = self.state_dir / "pods" / md["namespace"] / md["name"]
        for pid in _pids_in(pod_dir):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        ts = now()
        self.patch_status(
            pod_path(pod),
            {
                "phase": "Failed",
                "conditions": [
                    _cond("Ready", "False", ts, "PodCompleted"),
                    _cond("ContainersReady", "False", ts, "PodCompleted"),
                ],
                "containerStatuses": [
                    {
                        "name": c["name"],
                        "ready": False,
                        "started": False,
                        "restartCount": 0,
                        "image": _image(pod, c["name"]),
                        "imageID": "",
                        "containerID": f"process://{c['name']}",
                        "state": {
                            "terminated": {
                                "exitCode": 137,
                                "reason": "ContainerStatusUnknown",
                                "message": "The container could not be located when the pod "
                                "was terminated",
                                "finishedAt": ts,
                            }
                        },
                    }
                    for c in pod["spec"]["containers"]
                ],
            },
        )
        log.info("pod %s/%s was lost with an earlier node process", md["namespace"], md["name"])

    def patch_status(self, path: str, status: dict[str, Any]) -> None:
        """A pod status report, retried while the API server is unreachable (kubelet keeps
        syncing a pod's status until it gets through): a report lost during an API server
        restart would leave the pod Running for good."""
        deadline = time.monotonic() + STATUS_RETRY_SECONDS
        while True:
            try:
                self.kube.patch_status(path, status)
                return
            except ApiError as exc:
                if exc.status < 500 and exc.status != 429:
                    raise
                failure: Exception = exc
            except Exception as exc:  # noqa: BLE001 - connection refused, reset, timeout
                failure = exc
            if self.stopping.is_set() or time.monotonic() > deadline:
                raise failure
            log.warning("status report for %s failed (%s); retrying", path, failure)
            time.sleep(1)

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
        self.volumes: containers.PodVolumes | None = None
        self.refusals: dict[str, str] = {}
        self.boxes: dict[str, sandbox.Sandbox] = {}
        # What a Running report says of each container: start, readiness, last termination.
        self.slock = threading.Lock()
        self.started_at = now()
        self.container_starts: dict[str, str] = {}
        self.ready: dict[str, bool] = {}
        self.last_states: dict[str, dict[str, Any]] = {}
        self.finished = False

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
        for container in containers:
            if not self.preflight(container):
                return self.report_final({container["name"]: (137, "")}, started)
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
            tm_file = self.dir / f"{name}.termination-log"
            tm_file.write_text("")
            tm_file.chmod(0o666)  # the container's user writes it
            tm_path = container.get("terminationMessagePath", "/dev/termination-log")
            box_name = ""
            try:
                if self.in_image(container):
                    box_name = self.container_name(name)
                    argv = self.prepare_image(container, box_name, tm_file, tm_path)
                    env, cwd = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, str(self.dir)
                else:
                    argv, env, cwd = self.prepare(container)
                    argv = _with_termination_file(argv, tm_file, tm_path)
            except containers.ContainerError as exc:
                if box_name:
                    images.remove(box_name)
                if not self.wait_refused(container, exc):
                    return 137, ""
                continue
            except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
                if box_name:
                    images.remove(box_name)
                return 128, f"process node cannot start container: {exc}"
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
            prober = None
            if not init:
                prober = probes.Prober(
                    container,
                    proc.pid,
                    self.boxes.get(name) if box_name else None,
                    env,
                    functools.partial(self.set_ready, name),
                    functools.partial(self.kill_container, proc),
                )
                prober.start()
            code = self.wait(proc)
            if prober is not None:
                prober.stop()
            if box_name:
                images.remove(box_name)
            message = tm_file.read_text(errors="replace")[:MAX_TERMINATION_MESSAGE]
            if (
                not message
                and code != 0
                and container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
            ):
                lines = log_file.read_text(errors="replace").splitlines()[-FALLBACK_LOG_LINES:]
                message = "\n".join(lines)[-MAX_TERMINATION_MESSAGE:]
            restart = policy == "Always" or (policy == "OnFailure" and code != 0)
            if restart and not self.deleted and not self.deadline_exceeded and not init:
                restarts += 1
                self.restart_counts[name] = restarts
                if policy == "Always" and not self.backoff(restarts):
                    return code, message
                self.restarted(container, code, message)
                continue
            return code, message

    def backoff(self, restarts: int) -> bool:
        """Wait before a restart; False when the pod is deleted meanwhile."""
        delay = min(RESTART_BACKOFF_SECONDS * 2 ** (restarts - 1), RESTART_BACKOFF_CAP_SECONDS)
        until = time.monotonic() + delay
        while time.monotonic() < until:
            if self.deleted:
                return False
            time.sleep(0.1)
        return not self.deleted

    def restarted(self, container: dict[str, Any], code: int, message: str) -> None:
        """Report a container running again, with its restart count and last termination."""
        name = container["name"]
        with self.slock:
            self.last_states[name] = {
                "terminated": {
                    "exitCode": code,
                    "reason": "Completed" if code == 0 else "Error",
                    "message": message,
                    "startedAt": self.container_starts.get(name, now()),
                    "finishedAt": now(),
                    "containerID": f"process://{name}",
                }
            }
            self.container_starts[name] = now()
            self.ready[name] = "readinessProbe" not in container
        self.publish_running()

    def set_ready(self, name: str, ready: bool) -> None:
        with self.slock:
            if self.ready.get(name) == ready:
                return
            self.ready[name] = ready
        self.publish_running()

    def kill_container(self, proc: subprocess.Popen[bytes]) -> None:
        """What a failed liveness probe does: SIGTERM, SIGKILL after the grace period."""
        grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        _signal_group(proc, signal.SIGTERM)

        def kill() -> None:
            if proc.poll() is None:
                _signal_group(proc, signal.SIGKILL)

        timer = threading.Timer(grace, kill)
        timer.daemon = True
        timer.start()

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

    # --- containers in images ------------------------------------------------------------
    def in_image(self, container: dict[str, Any]) -> bool:
        """Run in the image when the node runs images and the image is in local storage.
        Otherwise a container with a command runs as a host process, as ever; one without
        has nothing to run: its image cannot be pulled."""
        if not self.node.run_images:
            return False
        image = container.get("image", "")
        if image and images.exists(image):
            return True
        if not container.get("command"):
            raise containers.ContainerError(
                "ErrImagePull",
                f'failed to pull image "{image}": not in the node\'s local storage '
                "(the process node pulls from no registry)",
            )
        return False

    def preflight(self, container: dict[str, Any]) -> bool:
        """What the kubelet checks before it reports a container running: the image is
        there and the user is allowed. Waits (reporting why) until then; False once the
        pod is being deleted."""
        while True:
            try:
                if self.in_image(container):
                    image = container["image"]
                    containers.identity(
                        self.pod, container, images.config(image), images.mount(image)
                    )
                return True
            except containers.ContainerError as exc:
                if not self.wait_refused(container, exc):
                    return False

    def container_name(self, name: str) -> str:
        return f"bgjobs-node-{self.pod['metadata']['uid'][:13]}-{name}"[:63]

    def prepare_image(
        self, container: dict[str, Any], box_name: str, tm_file: Path, tm_path: str
    ) -> list[str]:
        if self.volumes is None:
            volumes = containers.PodVolumes(
                self.pod,
                self.dir,
                self._object,
                self._token,
                lambda path: field_ref(self.pod, path, self.node.node),
            )
            volumes.prepare()
            self.volumes = volumes
        image = container["image"]
        cfg = images.config(image)
        container_env = self.container_env(container)
        # $(VAR) references in command and args, never in the image's entrypoint and cmd.
        container = {
            **container,
            **{
                key: [expand(a, container_env) for a in container[key]]
                for key in ("command", "args")
                if container.get(key)
            },
        }
        root = images.create(image, box_name)
        env = containers.environment(
            cfg,
            container_env,
            self.node.api.hostname or "127.0.0.1",
            self.node.api.port or 443,
            self.pod["metadata"]["name"],
        )
        listing = self.node.kube.request("GET", "/api/v1/services") or {}
        services = [
            (i["metadata"]["name"], i["metadata"]["namespace"]) for i in listing.get("items", [])
        ]
        mounts = [
            *containers.pod_files(self.pod, self.dir, services),
            *self.volumes.mounts(container),
            sandbox.Mount(str(tm_file), tm_path),
        ]
        box = containers.sandbox(self.pod, container, cfg, root, env, mounts)
        self.boxes[container["name"]] = box
        spec = self.dir / f"{container['name']}.sandbox.json"
        box.write(spec)
        return sandbox.command(spec)

    def _object(self, kind: str, name: str) -> dict[str, Any] | None:
        ns = self.pod["metadata"]["namespace"]
        return self.node.kube.request("GET", f"/api/v1/namespaces/{ns}/{kind}/{name}", ok404=True)

    def _token(self, source: dict[str, Any]) -> str:
        """A bound service-account token, as the kubelet asks for one (TokenRequest)."""
        md = self.pod["metadata"]
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        spec: dict[str, Any] = {
            "expirationSeconds": source.get("expirationSeconds", 3607),
            "boundObjectRef": {
                "kind": "Pod",
                "apiVersion": "v1",
                "name": md["name"],
                "uid": md["uid"],
            },
        }
        if source.get("audience"):
            spec["audiences"] = [source["audience"]]
        answer = self.node.kube.request(
            "POST",
            f"/api/v1/namespaces/{md['namespace']}/serviceaccounts/{sa}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        return str((answer or {})["status"]["token"])

    def wait_refused(self, container: dict[str, Any], exc: containers.ContainerError) -> bool:
        """Report the container waiting (e.g. CreateContainerConfigError, ImagePullBackOff)
        and retry later, as the kubelet does; False once the pod is being deleted."""
        log.info("pod %s: %s: %s", self.pod["metadata"]["name"], exc.reason, exc.message)
        if exc.reason == "ErrImagePull" and self.refusals.get(container["name"]) == exc.reason:
            exc = containers.ContainerError(
                "ImagePullBackOff", f"Back-off pulling image: {exc.message}"
            )
        self.refusals[container["name"]] = exc.reason
        self.node.kube.patch_status(
            pod_path(self.pod),
            {
                "phase": "Pending",
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "ready": False,
                        "started": False,
                        "restartCount": 0,
                        "image": container.get("image", ""),
                        "imageID": "",
                        "state": {"waiting": {"reason": exc.reason, "message": exc.message}},
                    }
                ],
            },
        )
        until = time.monotonic() + REFUSED_RETRY_SECONDS
        while time.monotonic() < until:
            if self.deleted:
                return False
            time.sleep(0.2)
        return not self.deleted

    def container_env(self, container: dict[str, Any]) -> dict[str, str]:
        """The container's env and envFrom, with fieldRefs and $(VAR) references resolved."""
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
        return env

    def prepare(self, container: dict[str, Any]) -> tuple[list[str], dict[str, str], str]:
        env = self.container_env(container)
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
        spec_containers = {c["name"]: c for c in self.pod["spec"]["containers"]}
        with self.slock:
            self.started_at = started
            self.container_starts = dict(container_starts)
            # Ready at once without a readiness probe; with one, when it first passes.
            self.ready = {
                n: "readinessProbe" not in spec_containers.get(n, {}) for n in container_starts
            }
        self.publish_running()

    def publish_running(self) -> None:
        with self.slock:
            if self.finished or self.deleted:
                return
            ts = now()
            ready = "True" if all(self.ready.values()) else "False"
            status = {
                "phase": "Running",
                "startTime": self.started_at,
                "hostIP": "127.0.0.1",
                "podIP": "127.0.0.1",
                "podIPs": [{"ip": "127.0.0.1"}],
                "conditions": [
                    *(_cond(t, "True", ts) for t in ("PodScheduled", "Initialized")),
                    *(_cond(t, ready, ts) for t in ("ContainersReady", "Ready")),
                ],
                "containerStatuses": [
                    {
                        "name": n,
                        "ready": self.ready.get(n, False),
                        "started": True,
                        "restartCount": self.restart_counts.get(n, 0),
                        "image": _image(self.pod, n),
                        "imageID": "",
                        "containerID": f"process://{n}",
                        "state": {"running": {"startedAt": s}},
                        **({"lastState": self.last_states[n]} if n in self.last_states else {}),
                    }
                    for n, s in self.container_starts.items()
                ],
            }
        self.node.patch_status(pod_path(self.pod), status)

    def report_final(self, results: dict[str, tuple[int, str]], started: str) -> None:
        with self.slock:
            self.finished = True
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
        self.node.patch_status(pod_path(self.pod), status)
        if self.deleted:
            self.node.finish_delete(self.pod)


def _pids_in(directory: Path) -> list[int]:
    """Processes working in directory (a pod's containers run in their pod's directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd == directory or directory in cwd.parents:
            found.append(int(entry.name))
    return found


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
    """A host process: its whole process group. A container in an image: SIGTERM to its PID 1
    only, as a container runtime does (PID 1 gets it only if it handles it; its children
    never do); SIGKILL to everything, which ends the PID namespace."""
    if sig != signal.SIGKILL and sandbox.is_command(proc.args):
        init = probes.container_init(proc.pid)
        if init is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(init, sig)
            return
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
    parser.add_argument(
        "--run-images",
        action="store_true",
        help="run containers in their image's root filesystem when it is in podman storage",
    )
    opts = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    node = ProcessNode(Kube(opts.kubeconfig), opts.node_name, opts.state_dir, opts.run_images)

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
