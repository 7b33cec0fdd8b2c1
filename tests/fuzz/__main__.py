"""`python -m tests.fuzz` (make fuzz): fuzzed manifests against a devcluster of its own.

    python -m tests.fuzz                         # 1,000 manifests, seed 1, docs/reliability.md
    python -m tests.fuzz --count 200 --seed 7 --output /tmp/r.md

Starts a devcluster, a redis-server and the real operator (every process carries the
cluster's DEVCLUSTER_ID, so `devcluster down` stops them all even after a crash), submits the
manifests, judges each, writes the "Fuzzed manifests" section of the report (only that
section: the rest of the file is left as it is) and exits 1 if any manifest failed its
property, the operator logged a traceback or restarted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubernetes import config

from devcluster import bins, cluster
from tests.fuzz import report
from tests.fuzz.manifests import generate
from tests.fuzz.runner import Runner
from tests.integration.support import OperatorProcess, RedisServer

ROOT = Path(__file__).resolve().parents[2]


def say(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz")
    parser.add_argument("--count", type=int, default=int(os.environ.get("FUZZ_COUNT", 1000)))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("FUZZ_SEED", 1)))
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "reliability.md")
    parser.add_argument("--failures", type=Path, default=None, help="write failing manifests")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to settle")
    opts = parser.parse_args()

    t0 = time.monotonic()
    say(f"generating {opts.count} manifests (seed {opts.seed})")
    cases = generate(opts.count, opts.seed)
    generated = time.monotonic() - t0

    state = Path(tempfile.mkdtemp(prefix="bgjobs-fuzz-"))
    os.environ["DEVCLUSTER_ID"] = str(state)
    operator: OperatorProcess | None = None
    redis: RedisServer | None = None
    try:
        say(f"starting a devcluster in {state}")
        info = cluster.up(state, name="fuzz")
        redis_dir = state / "services" / "redis"
        redis_dir.mkdir(parents=True, exist_ok=True)
        redis = RedisServer.start(redis_dir)
        kubectl = [str(bins.binary("kubectl")), f"--kubeconfig={info.kubeconfig}"]
        subprocess.run(
            [*kubectl, "apply", "-f", str(ROOT / "crds")], check=True, capture_output=True
        )
        subprocess.run(
            [
                *kubectl,
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd",
                "-l",
                "app.kubernetes.io/part-of=bgjobs",
            ],
            check=True,
            capture_output=True,
        )
        log_dir = state / "logs"
        log_dir.mkdir(exist_ok=True)
        operator = OperatorProcess(info.kubeconfig, redis.url, log_dir)
        operator.start()
        op = operator
        runner = Runner(
            config.new_client_from_config(config_file=info.kubeconfig),
            operator_log=op.log_text,
            operator_alive=op.alive,
            operator_starts=lambda: op.starts,
            redis_url=redis.url,
            settle_timeout=opts.timeout,
            say=say,
        )
        result = runner.run(cases)
    finally:
        if operator is not None:
            operator.stop()
        if redis is not None:
            redis.stop()
        cluster.down(state)
    section = report.render(result, seed=opts.seed, generated_seconds=generated)
    report.write_section(opts.output, section)
    say(f"wrote the Fuzzed manifests section of {opts.output}")
    if opts.failures is not None or result.failures:
        path = opts.failures or state / "failures.json"
        path.write_text(
            json.dumps(
                [
                    {
                        "name": c.name,
                        "kind": c.kind,
                        "category": c.category,
                        "expect": c.expect,
                        "outcome": c.outcome,
                        "detail": c.detail,
                        "manifest": c.manifest,
                    }
                    for c in result.failures
                ],
                indent=1,
            )
        )
        say(f"{len(result.failures)} failing manifests in {path}")
    if not os.environ.get("BGJOBS_KEEP_TEST_STATE") and not result.failures:
        shutil.rmtree(state, ignore_errors=True)
    print(report.headline(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
