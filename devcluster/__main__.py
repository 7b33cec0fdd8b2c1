"""devcluster command line: python -m devcluster {up,down,status,logs} [--state-dir DIR]."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devcluster import cluster

DEFAULT_STATE = Path(__file__).resolve().parent.parent / ".devcluster" / "demo"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE,
        help=f"where the cluster keeps its state (default {DEFAULT_STATE})",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="start the cluster (no-op when already running)")
    sub.add_parser("down", help="stop every process of the cluster and wipe its etcd data")
    sub.add_parser("status", help="print the kubeconfig path when running, exit 1 otherwise")
    logs = sub.add_parser("logs", help="print a pod's container output kept by the process node")
    logs.add_argument("namespace")
    logs.add_argument("pod")
    logs.add_argument("-c", "--container", default=None)
    opts = parser.parse_args()

    if opts.cmd == "up":
        info = cluster.up(opts.state_dir)
        print(f"devcluster up: {info.server}\n  export KUBECONFIG={info.kubeconfig}")
    elif opts.cmd == "down":
        cluster.down(opts.state_dir)
        print("devcluster down")
    elif opts.cmd == "status":
        running = cluster.status(opts.state_dir)
        if running is None:
            print("devcluster is not running", file=sys.stderr)
            return 1
        print(running.kubeconfig)
    elif opts.cmd == "logs":
        pod_dir = opts.state_dir.resolve() / "pods" / opts.namespace / opts.pod
        files = sorted(pod_dir.glob(f"{opts.container or '*'}.log"))
        if not files:
            print(f"no output kept for pod {opts.namespace}/{opts.pod}", file=sys.stderr)
            return 1
        for f in files:
            sys.stdout.write(f.read_text(errors="replace"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
