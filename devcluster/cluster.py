"""Start and stop one devcluster: etcd, kube-apiserver, kube-controller-manager and the
process node, each a plain local process recorded in a state directory.

Every process gets ``DEVCLUSTER_ID=<state dir>`` in its environment, so ``down`` can find
and stop all of them (and every pod process the node started) even after a crash of the
process that started them. Ports are picked free at start, so several clusters (the
demo and a test session) can run side by side.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from devcluster import bins

CONTROLLERS = ",".join(
    [
        "job",
        "cronjob",
        "garbagecollector",
        "ttl-after-finished",
        "namespace",
        "podgc",
        # Pods are refused without their ServiceAccount, so namespaces need "default".
        "serviceaccount",
        "serviceaccount-token",
        "root-ca-cert-publisher",
        # The chart's operator is a Deployment (make e2e installs it).
        "deployment",
        "replicaset",
    ]
)
NODE_NAME = "process-node"
# This checkout's packages first: the virtualenv's editable install may point at another
# checkout (a git worktree), whose operator and worker must not be the ones that run.
SOURCE_PATH = bins.source_path()


@dataclass
class ClusterInfo:
    name: str
    state_dir: str
    server: str
    token: str
    kubeconfig: str
    ports: dict[str, int]
    pids: dict[str, int]

    @classmethod
    def load(cls, state_dir: Path) -> ClusterInfo | None:
        path = state_dir / "cluster.json"
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))

    def save(self) -> None:
        Path(self.state_dir, "cluster.json").write_text(json.dumps(asdict(self), indent=2))


_handed_out: set[int] = set()


def free_port() -> int:
    """A free loopback port, never one this process handed out before: the kernel may
    offer a just-released port again, and two services given one port fail oddly (one
    answers for the other)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def _make_pki(pki: Path) -> None:
    """A CA, a serving cert for 127.0.0.1/localhost, and the service-account key pair."""
    if (pki / "apiserver.crt").exists():
        return
    pki.mkdir(parents=True, exist_ok=True)
    p = str(pki)
    _run(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "3650",
        "-keyout",
        f"{p}/ca.key",
        "-out",
        f"{p}/ca.crt",
        "-subj",
        "/CN=devcluster-ca",
    )
    _run(
        "openssl",
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{p}/apiserver.key",
        "-out",
        f"{p}/apiserver.csr",
        "-subj",
        "/CN=kube-apiserver",
    )
    (pki / "san.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
    )
    _run(
        "openssl",
        "x509",
        "-req",
        "-in",
        f"{p}/apiserver.csr",
        "-CA",
        f"{p}/ca.crt",
        "-CAkey",
        f"{p}/ca.key",
        "-CAcreateserial",
        "-days",
        "3650",
        "-out",
        f"{p}/apiserver.crt",
        "-extfile",
        f"{p}/san.ext",
    )
    _run("openssl", "genrsa", "-out", f"{p}/sa.key", "2048")
    _run("openssl", "rsa", "-in", f"{p}/sa.key", "-pubout", "-out", f"{p}/sa.pub")


def _kubeconfig(server: str, ca: Path, token: str, user: str) -> str:
    ca_data = base64.b64encode(ca.read_bytes()).decode()
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "devcluster",
                    "cluster": {"server": server, "certificate-authority-data": ca_data},
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [
                {
                    "name": "devcluster",
                    "context": {"cluster": "devcluster", "user": user, "namespace": "default"},
                }
            ],
            "current-context": "devcluster",
        },
        indent=2,
    )


def _spawn(name: str, cmd: list[str], state: Path, env: dict[str, str] | None = None) -> int:
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {}), "DEVCLUSTER_ID": str(state)}
    with open(logs / f"{name}.log", "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=full_env,
            cwd=state,
        )
    return proc.pid


def _wait(what: str, check, timeout: float, state: Path, log: str) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last = exc
        time.sleep(0.2)
    tail = (state / "logs" / f"{log}.log").read_text(errors="replace")[-3000:]
    raise RuntimeError(f"{what} not ready after {timeout}s (last error: {last}); log tail:\n{tail}")


def _https_ok(url: str, token: str, ca: Path | None) -> bool:
    ctx = ssl.create_default_context(cafile=str(ca)) if ca else ssl._create_unverified_context()
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:
        return bool(resp.status == 200)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return bool(resp.status == 200)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def status(state_dir: Path) -> ClusterInfo | None:
    """The running cluster in state_dir, or None when it is not (fully) up."""
    info = ClusterInfo.load(state_dir)
    if info is None or not all(_alive(pid) for pid in info.pids.values()):
        return None
    try:
        _https_ok(f"{info.server}/readyz", info.token, Path(state_dir, "pki", "ca.crt"))
    except Exception:  # noqa: BLE001 - any failure means "not yet"
        return None
    return info


def up(
    state_dir: Path, name: str = "devcluster", timeout: float = 120, run_images: bool = False
) -> ClusterInfo:
    """Start a cluster. With run_images, the process node runs containers whose image is in
    local podman storage in that image's root filesystem (devcluster/containers.py)."""
    state_dir = state_dir.resolve()
    running = status(state_dir)
    if running:
        return running
    down(state_dir)  # leftovers of a half-started or crashed cluster
    state_dir.mkdir(parents=True, exist_ok=True)
    pki = state_dir / "pki"
    _make_pki(pki)
    ports = {
        "etcd": free_port(),
        "etcd-peer": free_port(),
        "apiserver": free_port(),
        "controller-manager": free_port(),
    }
    token = secrets.token_hex(16)
    # system:masters for the admin, the controller manager and the node: a dev cluster.
    (state_dir / "tokens.csv").write_text(f'{token},admin,admin,"system:masters"\n')
    server = f"https://127.0.0.1:{ports['apiserver']}"
    kubeconfig = state_dir / "kubeconfig"
    kubeconfig.write_text(_kubeconfig(server, pki / "ca.crt", token, "admin"))
    pids: dict[str, int] = {}

    etcd_url = f"http://127.0.0.1:{ports['etcd']}"
    peer_url = f"http://127.0.0.1:{ports['etcd-peer']}"
    shutil.rmtree(state_dir / "etcd-data", ignore_errors=True)
    pids["etcd"] = _spawn(
        "etcd",
        [
            str(bins.binary("etcd")),
            "--name=devcluster",
            f"--data-dir={state_dir / 'etcd-data'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=devcluster={peer_url}",
            "--listen-metrics-urls=",
            "--unsafe-no-fsync",
            "--log-level=warn",
            "--quota-backend-bytes=4294967296",
        ],
        state_dir,
    )
    _wait("etcd", lambda: _http_ok(f"{etcd_url}/health"), timeout, state_dir, "etcd")

    pids["kube-apiserver"] = _spawn(
        "kube-apiserver",
        [
            str(bins.binary("kube-apiserver")),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports['apiserver']}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={state_dir / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--enable-admission-plugins=PodSecurity,NamespaceLifecycle,ServiceAccount",
            "--allow-privileged=true",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--endpoint-reconciler-type=none",
            # The node registers 127.0.0.1: never resolve its name through the machine's DNS.
            "--kubelet-preferred-address-types=InternalIP",
            f"--cert-dir={pki}",
            "--profiling=false",
            f"--audit-log-path={state_dir / 'logs' / 'audit.log'}",
            f"--audit-policy-file={_audit_policy(state_dir)}",
            "--audit-log-maxsize=200",
            "--audit-log-maxbackup=1",
        ],
        state_dir,
    )
    _wait(
        "kube-apiserver",
        lambda: _https_ok(f"{server}/readyz", token, pki / "ca.crt"),
        timeout,
        state_dir,
        "kube-apiserver",
    )

    pids["kube-controller-manager"] = _spawn(
        "kube-controller-manager",
        [
            str(bins.binary("kube-controller-manager")),
            f"--kubeconfig={kubeconfig}",
            f"--controllers={CONTROLLERS}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['controller-manager']}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--use-service-account-credentials=false",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--concurrent-job-syncs=10",
            "--concurrent-cron-job-syncs=5",
            "--concurrent-gc-syncs=10",
        ],
        state_dir,
    )
    _wait(
        "kube-controller-manager",
        lambda: _https_ok(f"https://127.0.0.1:{ports['controller-manager']}/healthz", token, None),
        timeout,
        state_dir,
        "kube-controller-manager",
    )

    pids["process-node"] = _spawn(
        "process-node",
        [
            sys.executable,
            "-m",
            "devcluster.processnode",
            f"--kubeconfig={kubeconfig}",
            f"--state-dir={state_dir}",
            f"--node-name={NODE_NAME}",
            *(["--run-images"] if run_images else []),
        ],
        state_dir,
        env={"PYTHONPATH": bins.source_path()},
    )
    info = ClusterInfo(
        name=name,
        state_dir=str(state_dir),
        server=server,
        token=token,
        kubeconfig=str(kubeconfig),
        ports=ports,
        pids=pids,
    )
    info.save()
    _wait("process node", lambda: _node_ready(info), timeout, state_dir, "process-node")
    _wait(
        "default service account",
        lambda: _default_sa(info),
        timeout,
        state_dir,
        "kube-controller-manager",
    )
    return info


# ServiceAccounts of this namespace have every request audited, reads included: the bench
# counts the dashboard's API requests (bench/dashboard.py) by running it as one of them.
AUDITED_NAMESPACE = "bgjobs-audited"


def _audit_policy(state_dir: Path) -> Path:
    """Audit every write at Metadata level: the benchmarks count API writes from it. And
    every request of AUDITED_NAMESPACE's ServiceAccounts (nothing else runs as them)."""
    path = state_dir / "audit-policy.yaml"
    path.write_text(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n"
        f"- level: Metadata\n  userGroups: [system:serviceaccounts:{AUDITED_NAMESPACE}]\n"
        "- level: Metadata\n  verbs: [create, update, patch, delete, deletecollection]\n"
        "- level: None\n"
    )
    return path


def _get_json(info: ClusterInfo, path: str) -> dict:
    ctx = ssl.create_default_context(cafile=str(Path(info.state_dir, "pki", "ca.crt")))
    req = urllib.request.Request(
        info.server + path, headers={"Authorization": f"Bearer {info.token}"}
    )
    with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:
        return json.loads(resp.read())


def _node_ready(info: ClusterInfo) -> bool:
    node = _get_json(info, f"/api/v1/nodes/{NODE_NAME}")
    conds = node.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def _default_sa(info: ClusterInfo) -> bool:
    _get_json(info, "/api/v1/namespaces/default/serviceaccounts/default")
    return True


def _pids_of(state_dir: Path) -> list[int]:
    """Every process carrying this cluster's DEVCLUSTER_ID, pod processes included."""
    marker = f"DEVCLUSTER_ID={state_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in env.split(b"\0") or _cwd_inside(entry, state_dir):
            found.append(int(entry.name))
    return found


def _cwd_inside(proc: Path, state_dir: Path) -> bool:
    """Some servers (redis-server) overwrite their environment block with their process
    title, so a process working in the state directory's services/ counts as ours too."""
    try:
        cwd = Path(os.readlink(proc / "cwd"))
    except OSError:
        return False
    services = state_dir / "services"
    return cwd == services or services in cwd.parents


def _stop(pids: list[int], grace: float) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def down(state_dir: Path) -> None:
    """Stop everything this cluster started, node first so it can stop its pods."""
    state_dir = state_dir.resolve()
    info = ClusterInfo.load(state_dir)
    if info:
        for name in ("process-node", "kube-controller-manager", "kube-apiserver", "etcd"):
            if name in info.pids:
                _stop([info.pids[name]], grace=10)
    leftovers = _pids_of(state_dir)
    if leftovers:
        _stop(leftovers, grace=5)
    (state_dir / "cluster.json").unlink(missing_ok=True)
    shutil.rmtree(state_dir / "etcd-data", ignore_errors=True)


def _readiness(info: ClusterInfo, name: str):
    ca = Path(info.state_dir, "pki", "ca.crt")
    if name == "etcd":
        return lambda: _http_ok(f"http://127.0.0.1:{info.ports['etcd']}/health")
    if name == "kube-apiserver":
        return lambda: _https_ok(f"{info.server}/readyz", info.token, ca)
    if name == "kube-controller-manager":
        port = info.ports["controller-manager"]
        return lambda: _https_ok(f"https://127.0.0.1:{port}/healthz", info.token, None)
    return lambda: _node_ready(info)


def pod_processes(state_dir: Path) -> list[int]:
    """The pod containers the process node runs (they work in <state>/pods/...)."""
    pods = state_dir.resolve() / "pods"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if pods in cwd.parents:
            found.append(int(entry.name))
    return found


def restart(
    state_dir: Path,
    name: str,
    *,
    down_for: float = 0.0,
    sig: int = signal.SIGKILL,
    with_pods: bool = False,
    timeout: float = 120,
) -> ClusterInfo:
    """Stop one of the cluster's processes (etcd, kube-apiserver, kube-controller-manager,
    process-node) with sig, keep its state (etcd's data directory stays), wait down_for
    seconds and start it again with the same command line; returns once it is ready.
    with_pods (process-node only): the pod processes die with it, as when a machine dies."""
    state_dir = state_dir.resolve()
    info = ClusterInfo.load(state_dir)
    if info is None or name not in info.pids:
        raise ValueError(f"no {name} in the cluster at {state_dir}")
    pid = info.pids[name]
    argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    if with_pods:
        for child in pod_processes(state_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(down_for)
    env = {"PYTHONPATH": bins.source_path()} if name == "process-node" else None
    info.pids[name] = _spawn(name, argv, state_dir, env=env)
    info.save()
    _wait(f"{name} after a restart", _readiness(info, name), timeout, state_dir, name)
    return info
