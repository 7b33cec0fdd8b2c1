"""Set-up and tear-down: a devcluster of the bench's own, a redis-server, the CRDs, and the
operators under test as subprocesses. Everything started carries the cluster's
DEVCLUSTER_ID, so `devcluster.cluster.down` stops it even after a crash of the bench."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client, config

from devcluster import bins, cluster
from tests.integration.support import RedisServer, wait_for

ROOT = Path(__file__).resolve().parent.parent
USER_AGENT = "bgjobs-bench/0.1"  # the bench's own requests, told apart in the audit log
TASK_MODULES = "examples.tasks,bench.tasks"


@dataclass
class Bench:
    state: Path
    info: cluster.ClusterInfo
    redis: RedisServer
    api: client.ApiClient
    operators: list[OperatorRun] = field(default_factory=list)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @property
    def log_dir(self) -> Path:
        return self.state / "logs"

    def namespace(self, prefix: str) -> str:
        """A fresh namespace, ready for pods (its default ServiceAccount exists)."""
        name = f"{prefix}-{uuid.uuid4().hex[:5]}"
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        wait_for(
            lambda: self.core.read_namespaced_service_account("default", name),
            timeout=60,
            what=f"default ServiceAccount in {name}",
        )
        return name

    def cpu_seconds(self, extra: dict[str, int] | None = None) -> dict[str, float]:
        """CPU time (user + system) used so far by each control-plane process, the bench
        itself and any extra processes: subtract two snapshots to see where time went."""
        pids = {**self.info.pids, "bench client": os.getpid(), **(extra or {})}
        return {name: cpu_seconds(pid) for name, pid in pids.items()}

    def base_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": self.info.kubeconfig,
            "PYTHONPATH": os.pathsep.join(str(ROOT / d) for d in cluster.REPO_PACKAGES),
            "DEVCLUSTER_ID": str(self.state),
            "BGJOBS_REDIS_URL": self.redis.url,
            "BGJOBS_TASK_MODULES": TASK_MODULES,
        }

    def operator(
        self,
        label: str,
        namespaces: list[str],
        extra_env: dict[str, str] | None = None,
        module: str = "bgjobs_operator",
    ) -> OperatorRun:
        """The real bgjobs operator (python -m bgjobs_operator), watching namespaces only."""
        metrics_port, health_port = cluster.free_port(), cluster.free_port()
        env = {
            **self.base_env(),
            "BGJOBS_NAMESPACES": ",".join(namespaces),
            "BGJOBS_METRICS_PORT": str(metrics_port),
            "BGJOBS_HEALTH_PORT": str(health_port),
            **(extra_env or {}),
        }
        run = OperatorRun(
            label,
            [sys.executable, "-m", module],
            env,
            self.log_dir / f"bench-{label}.log",
            health_port,
            metrics_port,
        )
        self.operators.append(run)
        return run

    def kopf_baseline(self, label: str, namespace: str) -> OperatorRun:
        """bench/kopf_default_operator.py under `kopf run` with kopf's default settings."""
        health_port = cluster.free_port()
        argv = [
            sys.executable,
            "-m",
            "kopf",
            "run",
            f"--namespace={namespace}",
            f"--liveness=http://0.0.0.0:{health_port}/healthz",
            str(ROOT / "bench" / "kopf_default_operator.py"),
        ]
        run = OperatorRun(
            label, argv, self.base_env(), self.log_dir / f"bench-{label}.log", health_port, None
        )
        self.operators.append(run)
        return run


class OperatorRun:
    """One operator process: started, probed (/healthz, /metrics, /proc), stopped."""

    def __init__(
        self,
        label: str,
        argv: list[str],
        env: dict[str, str],
        log_path: Path,
        health_port: int,
        metrics_port: int | None,
    ) -> None:
        self.label = label
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.health_port = health_port
        self.metrics_port = metrics_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self, wait: bool = True) -> float:
        """Start the process; returns time.time() taken just before it was spawned."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.started_at = time.time()
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
        log.close()
        if wait:
            self.wait_healthy()
        return self.started_at

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait_healthy(self, timeout: float = 90) -> None:
        def healthy() -> bool:
            assert self.proc is not None and self.proc.poll() is None, (
                f"{self.label} exited; see {self.log_path}"
            )
            url = f"http://127.0.0.1:{self.health_port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as resp:
                return bool(resp.status == 200)

        wait_for(healthy, timeout=timeout, what=f"{self.label} liveness endpoint")

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())

    def memory_kib(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak RSS) from /proc/<pid>/status, in KiB."""
        values: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
        return values

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc/<pid>/stat (0.0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before.get(name, 0.0), 2) for name in after}


def _api_client(kubeconfig: str) -> client.ApiClient:
    cfg = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    cfg.connection_pool_maxsize = 32  # 16 creating threads plus watches
    api = client.ApiClient(cfg)
    api.user_agent = USER_AGENT
    return api


def _kubectl(info: cluster.ClusterInfo, *args: str) -> None:
    subprocess.run(
        [str(bins.binary("kubectl")), f"--kubeconfig={info.kubeconfig}", *args],
        check=True,
        capture_output=True,
        timeout=120,
    )


def setup(state: Path) -> Bench:
    """Start the cluster and Redis and install the CRDs; no operator runs yet."""
    info = cluster.up(state, name="bench")
    redis_dir = state / "services" / "redis"  # under services/: `down` stops it too
    redis_dir.mkdir(parents=True, exist_ok=True)
    redis = RedisServer.start(redis_dir)
    _kubectl(info, "apply", "-f", str(ROOT / "crds"))
    _kubectl(
        info,
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd",
        "-l",
        "app.kubernetes.io/part-of=bgjobs",
    )
    return Bench(state=state.resolve(), info=info, redis=redis, api=_api_client(info.kubeconfig))


def teardown(bench: Bench) -> None:
    for run in bench.operators:
        with contextlib.suppress(Exception):
            run.stop()
    with contextlib.suppress(Exception):
        bench.redis.stop()
    cluster.down(bench.state)
