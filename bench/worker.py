"""6. Worker overhead: a per-job worker process, an in-process eager call, and a
long-lived Celery worker running the same no-op task on the same redis-server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.cluster import ROOT, Bench
from bench.report import Headline, Section
from bench.sizes import Sizes
from bench.stats import secs, summary, table
from devcluster import bins

# The [redis] extra brings what kombu's Redis transport imports beyond redis-py.
VENV_PACKAGES = ["celery[redis]", "redis"]


def bench_venv() -> Path:
    return Path(os.environ.get("BENCH_VENV") or bins.cache_dir() / "bench-venv")


def ensure_venv(venv: Path) -> None:
    """The Celery baseline's own virtualenv; celery never goes into the project's .venv."""
    marker = venv / ".installed"
    if marker.exists() and marker.read_text().split() == VENV_PACKAGES:
        return
    python = Path(sys.base_prefix) / "bin" / "python3"
    subprocess.run([str(python), "-m", "venv", str(venv)], check=True, capture_output=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", *VENV_PACKAGES],
        check=True,
        capture_output=True,
        timeout=900,
    )
    marker.write_text(" ".join(VENV_PACKAGES))


def _pod_like_env(b: Bench, home: Path) -> dict[str, str]:
    """Roughly what the process node gives a pod: the project's Python first on PATH."""
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONPATH": bins.source_path(),
        "DEVCLUSTER_ID": str(b.state),
    }


def process_start(b: Bench, runs: int) -> dict[str, Any]:
    to_body, to_exit = [], []
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        base = _pod_like_env(b, Path(tmp))
        for i in range(runs):
            stamp = Path(tmp) / f"stamp-{i}"
            env = {
                **base,
                "BGJOBS_TASK": "bench.stamp",
                "BGJOBS_TASK_MODULES": "bench.tasks",
                "BGJOBS_KWARGS": json.dumps({"path": str(stamp)}),
                "BGJOBS_REDIS_URL": b.redis.url,
                "BGJOBS_NAMESPACE": "bench-worker",
                "BGJOBS_JOB_NAME": f"w-{i}",
                "BGJOBS_JOB_UID": str(uuid.uuid4()),
                "BGJOBS_TERMINATION_LOG": str(Path(tmp) / f"termination-{i}"),
            }
            spawned = time.time()
            subprocess.run(
                [sys.executable, "-m", "bgjobs_worker", "run"],
                env=env,
                cwd=tmp,
                check=True,
                capture_output=True,
                timeout=60,
            )
            exited = time.time()
            to_body.append(float(stamp.read_text()) - spawned)
            to_exit.append(exited - spawned)
    return {"to_body": summary(to_body), "to_exit": summary(to_exit)}


def eager_calls(calls: int) -> dict[str, Any]:
    from bench.tasks import noop
    from bgjobs_worker import eager

    for _ in range(min(200, calls)):
        eager.run(noop)
    start = time.perf_counter()
    for _ in range(calls):
        eager.run(noop)
    return {"calls": calls, "per_call": (time.perf_counter() - start) / calls}


def celery_round_trips(b: Bench, tasks: int) -> dict[str, Any]:
    venv = bench_venv()
    ensure_venv(venv)
    env = {
        **os.environ,
        "PYTHONPATH": bins.source_path(),
        "DEVCLUSTER_ID": str(b.state),
        "BENCH_CELERY_URL": b.redis.url.rsplit("/", 1)[0] + "/1",  # same server, own db
    }
    log = open(b.log_dir / "bench-celery-worker.log", "wb")  # noqa: SIM115 - the child keeps it
    spawned = time.time()
    worker = subprocess.Popen(
        [
            str(venv / "bin" / "celery"),
            "-A",
            "bench.celery_app",
            "worker",
            "--pool=solo",
            "--loglevel=WARNING",
        ],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        out = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "bench.celery_app", str(tasks)],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        ).stdout
    finally:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
    data = json.loads(out.strip().splitlines()[-1])
    return {
        "version": data["version"],
        "tasks": tasks,
        "round_trip": summary(data["round_trips"]),
        "spawn_to_first_result": data["first_result_at"] - spawned,
    }


def _want_celery(s: Sizes) -> tuple[bool, str]:
    if s.celery == "0":
        return False, "skipped (BENCH_CELERY=0)"
    if s.celery == "if-present" and not (bench_venv() / ".installed").exists():
        return False, (
            f"skipped: the bench venv ({bench_venv()}) is not there yet and this run does "
            "not install it (`make bench` does)"
        )
    return True, ""


def run(b: Bench, s: Sizes) -> dict[str, Any]:
    result: dict[str, Any] = {
        "process": process_start(b, s.worker_runs),
        "runs": s.worker_runs,
        "eager": eager_calls(s.eager_calls),
    }
    wanted, why = _want_celery(s)
    if not wanted:
        result["celery_skipped"] = why
        return result
    try:
        result["celery"] = celery_round_trips(b, s.celery_tasks)
    except subprocess.CalledProcessError as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        tail = (err or "").strip().splitlines()[-3:]
        result["celery_skipped"] = f"failed: {exc.cmd[0]} exited {exc.returncode}: " + " / ".join(
            tail
        )
    except (OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
        result["celery_skipped"] = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
    return result


def render(r: dict[str, Any]) -> Section:
    proc, eager, cel = r["process"], r["eager"], r.get("celery")
    rows = [
        [
            "bgjobs worker process: `python -m bgjobs_worker run` spawned → task body runs",
            secs(proc["to_body"]["mean"]),
            secs(proc["to_body"]["p50"]),
            f"per job: a new process per attempt ({r['runs']} runs)",
        ],
        [
            "bgjobs worker process: spawned → exited (result in Redis)",
            secs(proc["to_exit"]["mean"]),
            secs(proc["to_exit"]["p50"]),
            "per job",
        ],
        [
            "`bgjobs_worker.eager.run(noop)`",
            secs(eager["per_call"]),
            "-",
            f"in-process call, no I/O ({eager['calls']} calls)",
        ],
    ]
    if cel:
        rows.append(
            [
                f"Celery {cel['version']} `noop.apply_async().get()`, worker `--pool=solo`",
                secs(cel["round_trip"]["mean"]),
                secs(cel["round_trip"]["p50"]),
                f"per task, long-lived worker, Redis broker and backend ({cel['tasks']} tasks)",
            ]
        )
        rows.append(
            [
                "Celery worker spawned → first task result",
                secs(cel["spawn_to_first_result"]),
                "-",
                "once per worker start",
            ]
        )
    else:
        rows.append(["Celery round trip", "-", "-", r.get("celery_skipped", "not measured")])
    body = table(["no-op task", "mean", "p50", "what it is"], rows)
    how = (
        "Three different things, side by side. **Worker process**: what every bgjobs job "
        "attempt pays before its task runs: the bench spawns `python -m bgjobs_worker run` "
        "with the environment the operator would set (task `bench.stamp`, Redis, job "
        "identity) and a pod-like minimal environment, "
        f"{r['runs']} times one after another; the task body writes `time.time()` to a file, "
        "compared with the time taken just before the spawn. It includes interpreter start-up, "
        'imports, the attempt counter in Redis, and (for "exited") the result write. The '
        "process node adds its own `unshare`/`sh` wrapper and the pod's API round trips, "
        "which are not included here. **Eager**: `bgjobs_worker.eager.run` of a no-op task "
        "in the bench process, the per-call time over many calls: the in-process overhead "
        "of the task runtime (context, retry classification, JSON round trip of the "
        "result), with no process, no Redis. **Celery**: a `celery -A bench.celery_app "
        "worker --pool=solo` started once, in the bench's own virtualenv "
        "(`~/.cache/bgjobs/bench-venv`, created by the bench with `python3 -m venv` and "
        f"`pip install {' '.join(VENV_PACKAGES)}`, never the project's .venv), on the "
        "same redis-server "
        "(database 1) as broker and result backend; a client times `apply_async().get()` "
        "one after another after 10 warm-up calls: the per-task cost of a long-lived "
        "worker (publish, fetch, ack, store result, result delivered)."
    )
    body_mean = proc["to_body"]["mean"]
    targets = (
        "No targets. A bgjobs job pays a process start per attempt "
        f"({secs(body_mean)} before the task body runs, on top of the pod's scheduling); a "
        "Celery task reuses a warm worker and pays a broker round trip "
        + (f"({secs(cel['round_trip']['mean'])})" if cel else "(not measured in this run)")
        + ". That is the price of per-job isolation, per-job resources and retries by the "
        "Job controller: bgjobs suits tasks that run for seconds or more, not thousands of "
        "millisecond tasks a second. In tests, `eager.run` costs "
        f"{secs(eager['per_call'])} per call."
    )
    headlines = [
        Headline("worker process spawn → task body (mean)", secs(body_mean)),
        Headline("eager no-op call", secs(eager["per_call"])),
    ]
    if cel:
        headlines.append(
            Headline("Celery round trip, warm solo worker (mean)", secs(cel["round_trip"]["mean"]))
        )
    return Section("6. Worker overhead", body, how, targets, headlines)
