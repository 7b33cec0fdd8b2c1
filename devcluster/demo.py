"""`make demo`: the main job on the embedded local cluster.

Starts (or reuses) the demo devcluster, a redis-server and the operator, serves the web
dashboard on a free local port (its address is printed), applies the examples (jobs, a
schedule and the seed's workflow), shows live progress, and ends with `kubectl get bgjobs`
(every kind). The dashboard lives as long as the demo runs and stops with it; the cluster,
Redis and the operator stay up. Everything it starts carries the cluster's DEVCLUSTER_ID,
so `make cluster-down` stops it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from devcluster import bins, cluster
from devcluster.dashboard import DashboardProcess

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = [
    "backgroundjob-progress.yaml",
    "backgroundjob-flaky.yaml",
    "backgroundjob-deadletter.yaml",
    "backgroundjob-batch.yaml",
    "jobschedule.yaml",
    "jobworkflow-seed.yaml",
]
WORKFLOW = "analyze-file-42"
TERMINAL = {"Succeeded", "Failed", "Cancelled"}


def say(msg: str) -> None:
    print(f"\n==> {msg}", flush=True)


class Demo:
    def __init__(self, state: Path, redis_port: int, metrics_port: int) -> None:
        self.state = state.resolve()
        self.redis_port = redis_port
        self.metrics_port = metrics_port
        self.env = {
            **os.environ,
            "DEVCLUSTER_ID": str(self.state),
            "PYTHONPATH": bins.source_path(),
            "PATH": os.pathsep.join(
                [
                    str(Path(sys.executable).parent),
                    *map(str, bins.bin_dirs()),
                    os.environ.get("PATH", ""),
                ]
            ),
        }

    def kubectl(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(
            [str(bins.binary("kubectl")), *args],
            env=self.env,
            text=True,
            capture_output=True,
            check=False,
        )
        if check and proc.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)} failed:\n{proc.stderr}")
        return proc.stdout

    def start_cluster(self) -> None:
        say("starting devcluster (etcd, kube-apiserver, kube-controller-manager, process node)")
        info = cluster.up(self.state, name="demo")
        self.env["KUBECONFIG"] = info.kubeconfig
        print(f"    API server {info.server}; kubeconfig {info.kubeconfig}")

    def start_redis(self) -> None:
        say(f"starting redis-server on 127.0.0.1:{self.redis_port}")
        workdir = self.state / "services" / "redis"
        workdir.mkdir(parents=True, exist_ok=True)
        pidfile = workdir / "redis.pid"
        if pidfile.exists() and Path(f"/proc/{pidfile.read_text().strip()}").exists():
            print("    already running")
            return
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        subprocess.run(
            [
                exe,
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "yes",
                "--pidfile",
                str(pidfile),
                "--dir",
                str(workdir),
                "--logfile",
                str(workdir / "redis.log"),
            ],
            env=self.env,
            check=True,
        )

    def start_operator(self) -> None:
        say("installing the CRDs and starting the operator")
        self.kubectl("apply", "-f", str(ROOT / "crds"))
        self.kubectl(
            "wait",
            "--for=condition=Established",
            "crd",
            "-l",
            "app.kubernetes.io/part-of=bgjobs",
            "--timeout=60s",
        )
        pidfile = self.state / "operator.pid"
        if pidfile.exists() and Path(f"/proc/{pidfile.read_text().strip()}").exists():
            print("    already running")
            return
        env = {
            **self.env,
            "BGJOBS_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "BGJOBS_TASK_MODULES": "examples.tasks",
            "BGJOBS_METRICS_PORT": str(self.metrics_port),
            "BGJOBS_HEALTH_PORT": str(self.metrics_port + 1),
        }
        log = open(self.state / "logs" / "operator.log", "ab")  # noqa: SIM115 - outlives us
        proc = subprocess.Popen(
            [sys.executable, "-m", "bgjobs_operator"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        pidfile.write_text(str(proc.pid))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(
                    f"http://127.0.0.1:{self.metrics_port + 1}/healthz", timeout=1
                ).close()
                print(f"    operator pid {proc.pid}, metrics on :{self.metrics_port}/metrics")
                return
            except OSError:
                time.sleep(0.3)
        raise SystemExit(f"the operator did not become healthy; see {self.state}/logs")

    def start_dashboard(self) -> DashboardProcess | None:
        say("starting the web dashboard (python -m bgjobs.dashboard, read-only)")
        if importlib.util.find_spec("bgjobs.dashboard") is None:
            print("    not installed (pip install 'bgjobs[dashboard]'): skipped")
            return None
        dash = DashboardProcess(
            self.env["KUBECONFIG"], log_path=self.state / "logs" / "dashboard.log", env=self.env
        )
        url = dash.start()
        print(f"bgjobs dashboard: {url}", flush=True)
        return dash

    def apply_examples(self) -> None:
        say("applying examples/: " + ", ".join(EXAMPLES))
        for name in ("export-report", "flaky-sync", "bad-input", "monthly-invoices"):
            self.kubectl("delete", "backgroundjob", name, "--ignore-not-found", "--wait=true")
        self.kubectl("delete", "jobworkflow", WORKFLOW, "--ignore-not-found", "--wait=true")
        for name in EXAMPLES:
            print("    " + self.kubectl("apply", "-f", str(ROOT / "examples" / name)).strip())
        # Don't wait 15 minutes for the schedule: start one run now, as an operator would.
        self.kubectl("delete", "job", "cleanup-now", "--ignore-not-found")
        self.kubectl("delete", "backgroundjob", "cleanup-now", "--ignore-not-found")
        for _ in range(50):
            if self.kubectl("get", "cronjob", "cleanup", check=False).strip():
                break
            time.sleep(0.2)
        self.kubectl("create", "job", "cleanup-now", "--from=cronjob/cleanup")
        print("    triggered one run of the schedule: job.batch/cleanup-now")

    def watch(self, timeout: float = 180) -> None:
        say("live progress (kubectl get backgroundjobs, every second)")
        names = ["export-report", "flaky-sync", "bad-input", "monthly-invoices", "cleanup-now"]
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            items = json.loads(self.kubectl("get", "backgroundjobs", "-o", "json"))["items"]
            phases = {i["metadata"]["name"]: i.get("status") or {} for i in items}
            wf = json.loads(self.kubectl("get", "jobworkflow", WORKFLOW, "-o", "json"))
            wf_status = wf.get("status") or {}
            line = "  ".join(_summary(n, phases.get(n, {})) for n in names)
            line += f"  {WORKFLOW}={wf_status.get('phase', '-')}({wf_status.get('stepsDone', '')})"
            if line != last:
                print("    " + line, flush=True)
                last = line
            if all(phases.get(n, {}).get("phase") in TERMINAL for n in names) and (
                wf_status.get("completionTime")
            ):
                return
            time.sleep(1)
        raise SystemExit("the demo jobs did not finish in time; see `kubectl describe bgj`")

    def show(self) -> None:
        say("kubectl get bgjobs   (the category lists every kind)")
        print(self.kubectl("get", "bgjobs"))
        report = json.loads(self.kubectl("get", "backgroundjob", "export-report", "-o", "json"))
        print("export-report result:", json.dumps(report["status"].get("result")))
        wf = json.loads(self.kubectl("get", "jobworkflow", WORKFLOW, "-o", "json"))
        print(
            f"{WORKFLOW} (the seed's chain -> group -> chord) result:",
            json.dumps(wf["status"].get("result")),
        )
        say("done. Try:")
        print(
            f"    export KUBECONFIG={self.env['KUBECONFIG']} "
            f"PATH={Path(sys.executable).parent}:{bins.binary('kubectl').parent}:$PATH"
        )
        print("    kubectl get backgroundjobs,deadletters,jobschedules")
        print("    kubectl bgjobs list; kubectl bgjobs describe flaky-sync")
        print(f"    kubectl bgjobs workflow describe {WORKFLOW}")
        print("Stop everything (cluster, Redis, operator) with: make cluster-down")


def _summary(name: str, status: dict[str, Any]) -> str:
    phase = status.get("phase", "-")
    batch = status.get("batch")
    if batch:  # a batch: its live item count
        done = int(batch.get("succeeded") or 0) + int(batch.get("failed") or 0)
        return f"{name}={phase}({done}/{batch.get('total')} items)"
    pct = (status.get("progress") or {}).get("percent")
    return f"{name}={phase}" + (f"({pct:.0f}%)" if pct is not None and phase != "Failed" else "")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devcluster.demo")
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".devcluster" / "demo")
    parser.add_argument("--redis-port", type=int, default=16379)
    parser.add_argument("--metrics-port", type=int, default=18080)
    opts = parser.parse_args()
    demo = Demo(opts.state_dir, opts.redis_port, opts.metrics_port)
    demo.start_cluster()
    demo.start_redis()
    demo.start_operator()
    dashboard = demo.start_dashboard()
    try:
        demo.apply_examples()
        demo.watch()
        demo.show()
        if dashboard is not None:
            print("The dashboard stops with the demo; serve it again (exports above) with:")
            print("    kubectl bgjobs dashboard --open")
    finally:
        if dashboard is not None:
            dashboard.stop()


if __name__ == "__main__":
    main()
