"""`python -m bench.chaos` (make chaos): failure injection on a devcluster of its own, with
real Redis, each scenario during a burst of jobs; writes docs/reliability.md.

python -m bench.chaos                          # every scenario, 500 jobs each
python -m bench.chaos --smoke --output x.md    # 30 jobs, short outages, 3 operator kills
python -m bench.chaos --only operator-kill,node-restart
python -m bench.chaos --render raw.json        # re-render a document from saved results

Sizes: CHAOS_N (jobs per scenario), CHAOS_OUTAGE (seconds of a SIGSTOP or Redis outage),
CHAOS_KILLS (operator SIGKILLs), CHAOS_DEADLINE (seconds for every job to end), CHAOS_SEED.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from kubernetes import client

from bench import audit, report
from bench.cluster import ROOT, Bench, OperatorRun, setup, teardown
from devcluster import cluster
from devcluster.peering import ensure_peering
from tests.integration.support import RedisServer

TERMINAL = ("Succeeded", "Failed", "Cancelled")
GROUP, VERSION = "bgjobs.dev", "v1alpha1"
OPERATOR_AGENT = "bgjobs-operator/"
COLUMNS = [
    ("lost", "jobs lost"),
    ("wrong_outcome", "wrong outcome"),
    ("jobs_created_twice", "Jobs created twice"),
    ("deadletters_created_twice", "DeadLetters created twice"),
    ("deadletters_missing", "DeadLetters missing"),
    ("executions_beyond_attempts", "executions beyond attempts"),
    ("results_lost", "results lost"),
    ("progress_lost", "progress lost"),
]


def say(msg: str) -> None:
    print(f"==> {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


@dataclass
class Sizes:
    jobs: int
    outage: float
    kills: int
    deadline: float
    long_steps: int
    seed: int
    load_rate: float = 50.0
    load_seconds: float = 300.0

    @classmethod
    def from_env(cls, smoke: bool) -> Sizes:
        env = os.environ
        return cls(
            jobs=int(env.get("CHAOS_N", 30 if smoke else 500)),
            outage=float(env.get("CHAOS_OUTAGE", 10 if smoke else 60)),
            kills=int(env.get("CHAOS_KILLS", 3 if smoke else 10)),
            deadline=float(env.get("CHAOS_DEADLINE", 240 if smoke else 1800)),
            long_steps=int(env.get("CHAOS_LONG_STEPS", 8 if smoke else 30)),
            seed=int(env.get("CHAOS_SEED", 15)),
            load_rate=float(env.get("CHAOS_LOAD_RATE", 50)),
            load_seconds=float(env.get("CHAOS_LOAD_SECONDS", 10 if smoke else 300)),
        )


@dataclass
class Planned:
    name: str
    task: str
    kwargs: dict[str, Any]
    retry: dict[str, Any]
    phase: str  # the terminal phase it must reach
    result: Any  # what status.result must hold when it succeeds (None: not checked)
    queue: str | None = None  # waits in this JobQueue


def plan(n: int, record: str, long_steps: int) -> list[Planned]:
    """The burst: 55% successes, 15% retries (one retryable failure each), 15% permanent
    failures (dead-lettered), 15% long jobs reporting progress once a second."""
    jobs = []
    for i in range(n):
        name = f"c{i:04d}"
        slot = i % 20
        if slot < 3:
            jobs.append(
                Planned(
                    name,
                    "chaos.flaky",
                    {"record": record, "fail_times": 1},
                    {"maxRetries": 3, "retryOn": ["ConnectionError"]},
                    "Succeeded",
                    None,
                )
            )
        elif slot < 6:
            jobs.append(Planned(name, "chaos.permanent", {"record": record}, {}, "Failed", None))
        elif slot < 9:
            jobs.append(
                Planned(
                    name,
                    "chaos.long",
                    {"record": record, "steps": long_steps, "delay": 1.0},
                    {},
                    "Succeeded",
                    {"steps": long_steps},
                )
            )
        else:
            # Every fourth of these waits in the burst's JobQueue (concurrency-capped).
            queue = QUEUE if slot % 4 == 0 else None
            jobs.append(
                Planned(
                    name,
                    "chaos.add",
                    {"record": record, "x": i, "y": 1},
                    {},
                    "Succeeded",
                    i + 1,
                    queue,
                )
            )
    return jobs


QUEUE, QUEUE_CONCURRENCY = "chaos-q", 10
WORKFLOW_RESULT = 113  # a = add(1, 2); b = add(a, 10); c = add(b, 100)
BATCH_ITEMS = 40


def workflow_body(name: str, record: str) -> dict[str, Any]:
    """A chain of three chaos.add steps: each step's result is the next one's x."""
    rec = {"record": record}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "JobWorkflow",
        "metadata": {"name": name},
        "spec": {
            "steps": [
                {"name": "a", "task": "chaos.add", "args": [1, 2], "kwargs": rec},
                {"name": "b", "task": "chaos.add", "args": [10], "kwargs": rec, "dependsOn": ["a"]},
                {
                    "name": "c",
                    "task": "chaos.add",
                    "args": [100],
                    "kwargs": rec,
                    "dependsOn": ["b"],
                },
            ]
        },
    }


def batch_body(name: str, record: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "BackgroundJob",
        "metadata": {"name": name},
        "spec": {
            "task": "chaos.item",
            "items": [{"n": i, "record": record} for i in range(BATCH_ITEMS)],
            "parallelism": 2,
            "chunkSize": 4,
        },
    }


@dataclass
class Outcome:
    scenario: str
    injected: str
    jobs: int
    lost: int = 0
    wrong_outcome: int = 0
    jobs_created_twice: int = 0
    deadletters_created_twice: int = 0
    deadletters_missing: int = 0
    executions_beyond_attempts: int = 0
    results_lost: int = 0
    progress_lost: int = 0
    seconds_to_terminal: float | None = None
    executions: int = 0
    attempts: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    details: list[str] = field(default_factory=list)


class Run:
    """One scenario's namespace, Redis, operator(s), burst and counters."""

    def __init__(self, bench: Bench, scenario: str, sizes: Sizes, persist: bool = False) -> None:
        self.bench = bench
        self.scenario = scenario
        self.sizes = sizes
        self.rng = random.Random(f"{sizes.seed}-{scenario}")
        self.ns = bench.namespace(f"chaos-{scenario}"[:40])
        redis_dir = bench.state / "services" / f"redis-{scenario}"
        redis_dir.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer.start(redis_dir, persist=persist)
        self.record = str(bench.state / f"executions-{scenario}.jsonl")
        Path(self.record).touch()
        self.jobs = plan(sizes.jobs, self.record, sizes.long_steps)
        # Besides the jobs: chains of three steps and batches of BATCH_ITEMS items.
        self.workflows = [f"w{k:03d}" for k in range(max(1, sizes.jobs // 50))]
        self.batches = [f"b{k:03d}" for k in range(max(1, sizes.jobs // 100))]
        self.operators: list[OperatorRun] = []
        self.submitted = threading.Event()
        self.started = 0.0
        self.custom = client.CustomObjectsApi(bench.api)

    def operator(self, label: str, extra_env: dict[str, str] | None = None) -> OperatorRun:
        run = self.bench.operator(
            f"chaos-{self.scenario}-{label}",
            [self.ns],
            {
                "BGJOBS_REDIS_URL": self.redis.url,
                "BGJOBS_TASK_MODULES": "bench.chaos_tasks",
                **(extra_env or {}),
            },
        )
        self.operators.append(run)
        return run

    # --- the burst ------------------------------------------------------------------------
    def _submit_one(self, job: Planned) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "BackgroundJob",
            "metadata": {"name": job.name},
            "spec": {"task": job.task, "args": [], "kwargs": job.kwargs},
        }
        if job.retry:
            body["spec"]["retry"] = job.retry
        if job.queue:
            body["spec"]["queue"] = job.queue
        self._create("backgroundjobs", body)

    def _create(self, plural: str, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        for _ in range(600):  # the API server may be down for a while: keep trying
            try:
                self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, plural, body)
                return
            except client.ApiException as exc:
                if exc.status == 409:
                    return  # an earlier try got through
                time.sleep(1)
            except Exception:  # noqa: BLE001 - connection refused while it restarts
                time.sleep(1)
        raise RuntimeError(f"could not submit {name}")

    def _submissions(self) -> list[Callable[[], None]]:
        """The burst's creates, workflows and batches spread among the jobs."""
        calls: list[Callable[[], None]] = [partial(self._submit_one, job) for job in self.jobs]
        extra: list[Callable[[], None]] = [
            *(
                partial(self._create, "jobworkflows", workflow_body(w, self.record))
                for w in self.workflows
            ),
            *(
                partial(self._create, "backgroundjobs", batch_body(b, self.record))
                for b in self.batches
            ),
        ]
        step = max(1, len(calls) // (len(extra) + 1))
        for k, call in enumerate(extra):
            calls.insert(min(len(calls), (k + 1) * step + k), call)
        return calls

    def submit_all(self) -> threading.Thread:
        """Submit the burst (jobs, some queued, workflows and batches) from 8 threads in
        the background."""
        self.started = time.time()
        queue = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "JobQueue",
            "metadata": {"name": QUEUE},
            "spec": {"concurrency": QUEUE_CONCURRENCY},
        }
        self._create("jobqueues", queue)

        def burst() -> None:
            try:
                with ThreadPoolExecutor(8) as pool:
                    list(pool.map(lambda call: call(), self._submissions()))
            finally:
                self.submitted.set()

        t = threading.Thread(target=burst, daemon=True)
        t.start()
        return t

    def phases(self) -> dict[str, dict[str, Any]]:
        items = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.ns, "backgroundjobs"
        )["items"]
        return {j["metadata"]["name"]: j for j in items}

    def workflow_phases(self) -> dict[str, dict[str, Any]]:
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, "jobworkflows")[
            "items"
        ]
        return {w["metadata"]["name"]: w for w in items}

    @property
    def expected(self) -> int:
        return len(self.jobs) + len(self.workflows) + len(self.batches)

    def terminal_count(self) -> int:
        try:
            found, flows = self.phases(), self.workflow_phases()
        except Exception:  # noqa: BLE001 - the API server may be restarting
            return -1

        def ended(objs: dict[str, dict[str, Any]], name: str) -> bool:
            return ((objs.get(name) or {}).get("status") or {}).get("phase") in TERMINAL

        return (
            sum(ended(found, j.name) for j in self.jobs)
            + sum(ended(found, b) for b in self.batches)
            + sum(ended(flows, w) for w in self.workflows)
        )

    def wait_submitted_fraction(self, fraction: float, timeout: float = 300) -> None:
        want = int(len(self.jobs) * fraction)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.submitted.is_set():
            try:
                have = len(self.phases())
            except Exception:  # noqa: BLE001
                have = 0
            if have >= want:
                return
            time.sleep(0.5)

    def wait_terminal(self) -> float | None:
        """Seconds from the first submission until every job is terminal (None: not by the
        deadline)."""
        self.submitted.wait(self.sizes.deadline)
        deadline = self.started + self.sizes.deadline
        last_log = 0.0
        while time.time() < deadline:
            done = self.terminal_count()
            if done == self.expected:
                return round(time.time() - self.started, 1)
            if time.monotonic() - last_log > 30:
                say(f"{self.scenario}: {max(done, 0)}/{self.expected} terminal")
                last_log = time.monotonic()
            time.sleep(1)
        return None

    # --- counting ----------------------------------------------------------------------
    def count(self, injected: str, seconds: float | None) -> Outcome:
        out = Outcome(self.scenario, injected, len(self.jobs), seconds_to_terminal=seconds)
        time.sleep(3)  # dead letters follow the Failed status write
        found = self.phases()
        planned = {j.name: j for j in self.jobs}
        records: dict[str, list[dict[str, Any]]] = {}
        for line in Path(self.record).read_text().splitlines():
            rec = json.loads(line)
            records.setdefault(rec["job"], []).append(rec)
        dead = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, "deadletters")[
            "items"
        ]
        dead_for = Counter(d["spec"]["jobName"] for d in dead)
        for name, job in planned.items():
            st = (found.get(name) or {}).get("status") or {}
            phase = st.get("phase")
            if phase not in TERMINAL:
                out.lost += 1
                out.details.append(f"{name} ({job.task}) lost: phase {phase!r}")
                continue
            if phase != job.phase:
                out.wrong_outcome += 1
                out.details.append(
                    f"{name} ({job.task}) ended {phase}, expected {job.phase}: "
                    f"{(st.get('message') or '')[:200]}"
                )
            attempts = int(st.get("attempts") or 0)
            runs = records.get(name, [])
            out.attempts += attempts
            out.executions += len(runs)
            if len(runs) < attempts:
                out.details.append(
                    f"(not a loss) {name} ({job.task}) counts {attempts} attempt(s) for "
                    f"{len(runs)} execution(s): "
                    + (", ".join(f"attempt {r['attempt']} in {r['pod']}" for r in runs) or "none")
                )
            if len(runs) > attempts:
                out.executions_beyond_attempts += len(runs) - attempts
                out.details.append(
                    f"{name} ({job.task}) ran {len(runs)} times for {attempts} attempt(s): "
                    + ", ".join(f"attempt {r['attempt']} in {r['pod']}" for r in runs)
                )
            if phase == "Succeeded" == job.phase:
                result = st.get("result")
                ok = (
                    result == job.result
                    if job.result is not None
                    else isinstance(result, dict) and int(result.get("attempt", 0)) >= 2
                )
                if not ok:
                    out.results_lost += 1
                    out.details.append(f"{name} ({job.task}) result {result!r}")
                if job.task == "chaos.long":
                    prog = st.get("progress") or {}
                    if prog.get("current") != job.kwargs["steps"]:
                        out.progress_lost += 1
                        out.details.append(f"{name} (chaos.long) final progress {prog!r}")
            if phase == "Failed" and job.phase == "Failed" and dead_for[name] == 0:
                out.deadletters_missing += 1
                out.details.append(f"{name} ({job.task}) Failed without a DeadLetter")
        self._count_compound(out, found, records)
        creates = Counter(
            (w.resource, w.name)
            for w in audit.writes(self.bench.state, [self.ns])
            if w.verb == "create" and w.code == 201 and w.user_agent.startswith(OPERATOR_AGENT)
        )
        for (resource, name), n in sorted(creates.items()):
            if n > 1 and resource == "jobs":
                out.jobs_created_twice += 1
                out.details.append(f"Job {name} created {n} times")
            if n > 1 and resource == "deadletters":
                out.deadletters_created_twice += 1
                out.details.append(f"DeadLetter {name} created {n} times")
        for name, n in dead_for.items():
            if n > 1:
                out.deadletters_created_twice += 1
                out.details.append(f"{n} DeadLetters for {name}")
        out.extra["operator log tracebacks"] = sum(
            run.log_path.read_text(errors="replace").count("Traceback")
            for run in self.operators
            if run.log_path.exists()
        )
        return out

    def _count_compound(
        self,
        out: Outcome,
        found: dict[str, dict[str, Any]],
        records: dict[str, list[dict[str, Any]]],
    ) -> None:
        """Workflows (each step's executions against its attempts, the chain's result) and
        batches (every item's outcome once; item re-runs are at-least-once, reported)."""
        flows = self.workflow_phases()
        for w in self.workflows:
            st = (flows.get(w) or {}).get("status") or {}
            if st.get("phase") not in TERMINAL:
                out.lost += 1
                out.details.append(f"workflow {w} lost: phase {st.get('phase')!r}")
            elif st.get("phase") != "Succeeded":
                out.wrong_outcome += 1
                out.details.append(f"workflow {w} ended {st.get('phase')}")
            elif st.get("result") != WORKFLOW_RESULT:
                out.results_lost += 1
                out.details.append(f"workflow {w} result {st.get('result')!r}")
        for name, bj in found.items():
            if not ((bj["metadata"].get("labels") or {}).get("bgjobs.dev/workflow")):
                continue
            attempts = int((bj.get("status") or {}).get("attempts") or 0)
            runs = records.get(name, [])
            out.attempts += attempts
            out.executions += len(runs)
            if len(runs) > attempts:
                out.executions_beyond_attempts += len(runs) - attempts
                out.details.append(f"step {name} ran {len(runs)} times for {attempts} attempt(s)")
        reruns = 0
        for b in self.batches:
            st = (found.get(b) or {}).get("status") or {}
            counts = st.get("batch") or {}
            if st.get("phase") not in TERMINAL:
                out.lost += 1
                out.details.append(f"batch {b} lost: phase {st.get('phase')!r}")
                continue
            if st.get("phase") != "Succeeded":
                out.wrong_outcome += 1
                out.details.append(f"batch {b} ended {st.get('phase')}: {st.get('error')}")
            if (counts.get("total"), counts.get("succeeded")) != (BATCH_ITEMS, BATCH_ITEMS):
                out.results_lost += 1
                out.details.append(f"batch {b} counts {counts}")
            calls = [r for key, rs in records.items() if key.startswith(f"{b}#") for r in rs]
            ran = {r["job"] for r in calls}
            if len(ran) < BATCH_ITEMS and st.get("phase") == "Succeeded":
                out.results_lost += 1
                out.details.append(f"batch {b}: only {len(ran)} items ever ran")
            reruns += len(calls) - len(ran)
        out.extra["workflows / batches / queued jobs in the burst"] = (
            f"{len(self.workflows)} / {len(self.batches)} x {BATCH_ITEMS} items / "
            f"{sum(1 for j in self.jobs if j.queue)} (JobQueue concurrency {QUEUE_CONCURRENCY})"
        )
        out.extra["batch items run more than once (at-least-once; outcome recorded once)"] = reruns

    def close(self) -> None:
        for run in self.operators:
            with contextlib.suppress(Exception):
                if run.proc is not None and run.proc.poll() is None:
                    os.kill(run.pid, signal.SIGCONT)
                run.stop()
        with contextlib.suppress(Exception):
            self.redis.stop()
        with contextlib.suppress(Exception):
            client.CoreV1Api(self.bench.api).delete_namespace(self.ns)


# --- the scenarios ------------------------------------------------------------------------
def _kill(run: OperatorRun) -> None:
    assert run.proc is not None
    run.proc.kill()
    run.proc.wait(10)


def operator_kill(r: Run) -> tuple[str, dict[str, Any]]:
    op = r.operator("a")
    op.start()
    r.submit_all()
    downs = []
    for _ in range(r.sizes.kills):
        time.sleep(r.rng.uniform(1.0, 8.0))
        _kill(op)
        down = r.rng.uniform(0.0, 3.0)
        time.sleep(down)
        t0 = time.monotonic()
        op.start()
        downs.append(round(down + time.monotonic() - t0, 1))
    return (
        f"the operator SIGKILLed {r.sizes.kills} times, 1-8 s apart (random), from the start "
        "of the burst; restarted after 0-3 s",
        {"seconds down per kill (until healthy again)": downs},
    )


def _ensure_peering(r: Run) -> None:
    ensure_peering(r.bench.api, r.ns, "chaos")


def _until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            got = check()
            if got:
                return got
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def peering_takeover(r: Run) -> tuple[str, dict[str, Any]]:
    _ensure_peering(r)
    ops = [r.operator(x, {"BGJOBS_PEERING": "chaos"}) for x in ("a", "b")]
    for op in ops:
        op.start()

    def leader() -> OperatorRun | None:
        # Both start paused; the one with the higher priority logs that it resumes.
        resumed = [
            op for op in ops if "Resuming operations" in op.log_path.read_text(errors="replace")
        ]
        return resumed[0] if len(resumed) == 1 else None

    active = _until(leader, 90, "one replica to resume operations")
    passive = ops[1] if active is ops[0] else ops[0]
    r.submit_all()
    r.wait_submitted_fraction(0.3)
    passive_log = passive.log_path.read_text(errors="replace")
    killed_at = time.time()
    _kill(active)
    probe = "probe"
    # A job submitted right after the kill: the time until its Job exists is the time the
    # cluster had no working operator.
    r.custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        r.ns,
        "backgroundjobs",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "BackgroundJob",
            "metadata": {"name": probe},
            "spec": {"task": "chaos.add", "kwargs": {"x": 1, "y": 1, "record": r.record}},
        },
    )
    batch = client.BatchV1Api(r.bench.api)

    def probe_job() -> bool:
        jobs = batch.list_namespaced_job(r.ns, label_selector="").items
        return any(
            ref.name == probe
            for j in jobs
            for ref in (j.metadata.owner_references or [])
            if ref.kind == "BackgroundJob"
        )

    _until(probe_job, 300, "the standby to create the probe job's Job")
    takeover = round(time.time() - killed_at, 1)
    resumed = passive.log_path.read_text(errors="replace")[len(passive_log) :]
    return (
        "two replicas with BGJOBS_PEERING (kopf peering, default 60 s peer lifetime); the "
        "active one SIGKILLed once 30% of the burst was submitted",
        {
            "takeover: SIGKILL of the active replica to the first Job created by the standby "
            "(s)": takeover,
            "standby logged `Resuming operations`": "Resuming operations" in resumed,
        },
    )


def operator_freeze(r: Run) -> tuple[str, dict[str, Any]]:
    op = r.operator("a")
    op.start()
    r.submit_all()
    r.wait_submitted_fraction(0.3)
    os.kill(op.pid, signal.SIGSTOP)
    time.sleep(r.sizes.outage)
    os.kill(op.pid, signal.SIGCONT)
    return (
        f"the operator frozen with SIGSTOP for {r.sizes.outage:.0f} s once 30% of the burst "
        "was submitted, then SIGCONT (its watch connections are stale by then)",
        {"operator still running at the end": op.proc is not None and op.proc.poll() is None},
    )


def _redis_outage(r: Run, keep_data: bool) -> tuple[str, dict[str, Any]]:
    op = r.operator("a")
    op.start()
    r.submit_all()
    r.wait_submitted_fraction(0.3)
    assert r.redis.proc is not None
    r.redis.proc.kill()
    r.redis.proc.wait(10)
    r.redis.proc = None
    if not keep_data:
        for f in r.redis.workdir.iterdir():
            if f.is_file():
                f.unlink()
            else:
                shutil.rmtree(f, ignore_errors=True)
    time.sleep(r.sizes.outage)
    r.redis.resume()
    how = (
        "restarted with its data (appendonly yes, appendfsync always, RDB on)"
        if keep_data
        else "restarted empty (no persistence, data gone)"
    )
    return (
        f"redis-server SIGKILLed once 30% of the burst was submitted, down for "
        f"{r.sizes.outage:.0f} s, {how}",
        {},
    )


def redis_empty(r: Run) -> tuple[str, dict[str, Any]]:
    return _redis_outage(r, keep_data=False)


def redis_data(r: Run) -> tuple[str, dict[str, Any]]:
    return _redis_outage(r, keep_data=True)


def _restart(r: Run, process: str, down_for: float, with_pods: bool = False) -> float:
    t0 = time.monotonic()
    cluster.restart(r.bench.state, process, down_for=down_for, with_pods=with_pods)
    r.bench.info = cluster.ClusterInfo.load(r.bench.state) or r.bench.info
    return round(time.monotonic() - t0, 1)


def apiserver_restart(r: Run) -> tuple[str, dict[str, Any]]:
    op = r.operator("a")
    op.start()
    r.submit_all()
    r.wait_submitted_fraction(0.3)
    took = _restart(r, "kube-apiserver", down_for=5)
    return (
        "kube-apiserver SIGKILLed once 30% of the burst was submitted, started again 5 s "
        "later (same flags, same etcd)",
        {"API server unavailable (s)": took},
    )


def etcd_restart(r: Run) -> tuple[str, dict[str, Any]]:
    op = r.operator("a")
    op.start()
    r.submit_all()
    r.wait_submitted_fraction(0.3)
    took = _restart(r, "etcd", down_for=5)
    return (
        "etcd SIGKILLed once 30% of the burst was submitted, started again 5 s later on "
        "its data directory",
        {"etcd unavailable (s)": took},
    )


def node_restart(r: Run) -> tuple[str, dict[str, Any]]:
    op = r.operator("a")
    op.start()
    r.submit_all()
    r.wait_submitted_fraction(0.5)

    def running_pods() -> int:
        pods = client.CoreV1Api(r.bench.api).list_namespaced_pod(r.ns).items
        return sum(1 for p in pods if p.status.phase == "Running")

    with contextlib.suppress(RuntimeError):
        _until(lambda: running_pods() >= 3, 120, "pods running")
    running = running_pods()
    took = _restart(r, "process-node", down_for=5, with_pods=True)
    return (
        "the process node SIGKILLed with every pod process on it (a machine dying) once "
        "half the burst was submitted, started again 5 s later; pods it had reported "
        "Running are reported Failed (exit 137, ContainerStatusUnknown), as kubelet does "
        "after a reboot",
        {"pods running when the node died": running, "node down (s)": took},
    )


SCENARIOS: dict[str, tuple[str, Callable[[Run], tuple[str, dict[str, Any]]]]] = {
    "operator-kill": ("1. Operator SIGKILLed repeatedly", operator_kill),
    "peering-takeover": ("2. Peering: the active replica SIGKILLed", peering_takeover),
    "operator-freeze": ("3. Operator frozen (SIGSTOP, SIGCONT)", operator_freeze),
    "redis-empty": ("4a. Redis down, restarted empty", redis_empty),
    "redis-data": ("4b. Redis down, restarted with its data", redis_data),
    "apiserver-restart": ("5a. kube-apiserver restarted", apiserver_restart),
    "etcd-restart": ("5b. etcd restarted", etcd_restart),
    "node-restart": ("6. Node killed and restarted while pods run", node_restart),
    # Not a burst: its own code path (load_held); listed here for --only and the titles.
    "load": ("7. Load held: steady submissions for minutes", lambda r: ("", {})),
}


LOAD_P99_BOUND = 0.300  # seconds: the submit-to-Job bound of docs/benchmarks.md (20/s)


def load_held(bench: Bench, sizes: Sizes) -> Outcome:
    """Submissions at a steady rate for minutes, into a paused JobQueue: every Job is
    created suspended, so the figure is the operator's (submit to Job), not the node's
    pods (this machine's node and controller-manager finish about 25 pods/s). Once its Job
    is seen, each BackgroundJob is deleted (its Job goes with it, by garbage collection),
    as a high-volume user cleans up: the live set stays bounded, so memory that grows
    would be a leak, not the work. Counted: Jobs missing or created twice; submit-to-Job
    latency; operator RSS sampled every 5 s (first minute against last minute)."""
    from bench.kube import Tracker, Watch, backgroundjob, create_backgroundjob
    from bench.stats import percentile

    ns = bench.namespace("chaos-load")
    redis_dir = bench.state / "services" / "redis-load"
    redis_dir.mkdir(parents=True, exist_ok=True)
    redis = RedisServer.start(redis_dir)
    op = bench.operator("chaos-load", [ns], {"BGJOBS_REDIS_URL": redis.url})
    custom = client.CustomObjectsApi(bench.api)
    count = int(sizes.load_rate * sizes.load_seconds)
    out = Outcome("load", "", count)
    try:
        op.start()
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            ns,
            "jobqueues",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "JobQueue",
                "metadata": {"name": "held"},
                "spec": {"paused": True},
            },
        )
        jobs = Tracker()
        cleaner = ThreadPoolExecutor(8)
        deleted: set[str] = set()

        def delete(name: str) -> None:
            with contextlib.suppress(client.ApiException):
                custom.delete_namespaced_custom_object(
                    GROUP, VERSION, ns, "backgroundjobs", name, propagation_policy="Background"
                )

        def on_job_event(type_: str, obj: dict[str, Any], received: float) -> None:
            jobs.on_event(type_, obj, received)
            name = obj["metadata"]["name"]
            if type_ != "DELETED" and name not in deleted:
                deleted.add(name)
                cleaner.submit(delete, name)

        watch = Watch(
            lambda **kw: client.BatchV1Api(bench.api).list_namespaced_job(ns, **kw),
            on_job_event,
        ).start()
        submitted: dict[str, float] = {}
        rss: list[tuple[float, int]] = []
        lock = threading.Lock()

        def submit(name: str) -> None:
            sent = time.time()
            create_backgroundjob(bench.api, backgroundjob(ns, name, "examples.noop", queue="held"))
            with lock:
                submitted[name] = sent

        start = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            futures = []
            for i in range(count):
                due = start + i / sizes.load_rate
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
                if not rss or time.monotonic() - rss[-1][0] >= 5:
                    rss.append((time.monotonic(), op.memory_kib()["VmRSS"]))
                futures.append(pool.submit(submit, f"l{i:05d}"))
            for f in futures:
                f.result()
        elapsed = time.monotonic() - start
        jobs.wait_seen(count, 60 + count * 0.01)
        rss.append((time.monotonic(), op.memory_kib()["VmRSS"]))
        cleaner.shutdown(wait=True)
        watch.stop()
        left = len(
            custom.list_namespaced_custom_object(GROUP, VERSION, ns, "backgroundjobs")["items"]
        )
        latencies = sorted(
            jobs.first_seen[n] - t for n, t in submitted.items() if n in jobs.first_seen
        )
        out.lost = count - len(latencies)
        creates = Counter(
            w.name
            for w in audit.writes(bench.state, [ns])
            if w.verb == "create" and w.resource == "jobs" and w.code == 201
        )
        out.jobs_created_twice = sum(1 for n in creates.values() if n > 1)
        first = [kib for t, kib in rss if t - start <= 60]
        last = [kib for t, kib in rss if t - start >= elapsed - 60]
        p99 = percentile(latencies, 99) if latencies else None
        out.seconds_to_terminal = round(elapsed, 1)
        out.executions = out.attempts = 0
        out.injected = (
            f"{count} BackgroundJobs at {sizes.load_rate:g}/s for {sizes.load_seconds:g} s "
            "(16 client threads), each into a paused JobQueue so its Job is created "
            "suspended; each BackgroundJob deleted once its Job was seen (bounded live set)"
        )
        out.extra.update(
            {
                "achieved submission rate (/s)": round(count / elapsed, 1),
                "submit → Job p50 / p99 (ms)": (
                    f"{percentile(latencies, 50) * 1000:.0f} / {p99 * 1000:.0f}"
                    if p99 is not None
                    else "n/a"
                ),
                f"p99 within the benchmark bound ({LOAD_P99_BOUND * 1000:.0f} ms)": (
                    p99 is not None and p99 <= LOAD_P99_BOUND
                ),
                "operator RSS, first minute max → last minute max (MiB)": (
                    f"{max(first) / 1024:.0f} → {max(last) / 1024:.0f}" if first and last else "n/a"
                ),
                "Jobs seen": len(latencies),
                "BackgroundJobs left undeleted at the end": left,
            }
        )
        return out
    finally:
        with contextlib.suppress(Exception):
            op.stop()
        with contextlib.suppress(Exception):
            redis.stop()
        with contextlib.suppress(Exception):
            client.CoreV1Api(bench.api).delete_namespace(ns)


def run_scenario(bench: Bench, name: str, sizes: Sizes) -> Outcome:
    if name == "load":
        return load_held(bench, sizes)
    r = Run(bench, name, sizes, persist=name == "redis-data")
    try:
        injected, extra = SCENARIOS[name][1](r)
        seconds = r.wait_terminal()
        out = r.count(injected, seconds)
        out.extra.update(extra)
        return out
    finally:
        r.close()


# --- the document ----------------------------------------------------------------------
HOW = """\
**How counted.** Each scenario runs in a namespace of its own with its own redis-server and
operator(s), on one devcluster (etcd, kube-apiserver, kube-controller-manager and the process
node as local processes). The burst is submitted from 8 client threads (retrying while the API
server is down); the failure is injected while it is being processed. Then:

* **jobs lost**: BackgroundJobs not in a terminal phase (Succeeded, Failed, Cancelled) when
  the deadline ran out; **wrong outcome**: terminal, but not the phase the task implies
  (`chaos.add`, `chaos.flaky`, `chaos.long` succeed; `chaos.permanent` fails);
* **Jobs / DeadLetters created twice**: successful (201) creates by the operator's user agent
  in the API server's audit log, per object name, more than once; also two DeadLetters for
  one job; **DeadLetters missing**: Failed jobs without one;
* **executions beyond attempts**: every task run appends a record (job, attempt, pod) to a
  local file before doing anything (`bench/chaos_tasks.py`); a job with more records than
  its `status.attempts` ran more often than its attempts explain;
* **results lost**: Succeeded jobs whose `status.result` is not what the task returned
  (`x + y`, `{"attempt": n >= 2}`, `{"steps": n}`); **progress lost**: Succeeded long jobs
  whose `status.progress.current` is not the last step reported;
* **time to terminal**: from the first submission until every job was terminal.

The tasks are the examples' behaviours (`examples.add`, `examples.flaky`,
`examples.permanent`, a long `examples.progress`) plus the execution record: 55% successes,
15% retries (one `ConnectionError`, then success on attempt 2), 15% permanent failures
(dead-lettered), 15% long jobs reporting progress once a second. Among the successes, one
job in four waits in a JobQueue of concurrency 10. The burst also holds one JobWorkflow per
50 jobs (a chain of three `chaos.add` steps; counted lost, wrong or with a wrong result
113, and each step's executions against its attempts) and one batch per 100 jobs (40 items
on 2 pods; counted lost, wrong, or with fewer than 40 items succeeded or ever run; items run
more than once are reported: batches are at-least-once per item, outcome once)."""


def render(raw: dict[str, Any]) -> str:
    ctx, sizes = raw["context"], raw["sizes"]
    m = ctx["machine"]
    out = [
        "# Reliability",
        "",
        "Generated by `make chaos` (`python -m bench.chaos`): failures injected into a running "
        "bgjobs on a devcluster, each during a burst of jobs, and what was lost or duplicated. "
        "The goal is zero in every loss and duplicate column. Re-run it to refresh this file.",
        "",
    ]
    if raw["smoke"]:
        out += ["> **Smoke run** (`--smoke`): small sizes that prove the suite works.", ""]
    out += [
        f"* **Date:** {ctx['date']}; the whole run took {ctx.get('elapsed', 'n/a')}.",
        f"* **Command:** `{ctx['command']}`.",
        f"* **Code:** commit {ctx.get('revision', 'unknown')}.",
        f"* **Sizes:** {sizes['jobs']} jobs per scenario, outages of {sizes['outage']:.0f} s, "
        f"{sizes['kills']} operator kills, deadline {sizes['deadline']:.0f} s, long jobs of "
        f"{sizes['long_steps']} s, seed {sizes['seed']}.",
        f"* **Machine:** {m['nproc']} CPUs ({m['cpu']}), {m['memory']} memory, shared with "
        f"other work (load average {ctx['load_before']} before, "
        f"{ctx.get('load_after', 'n/a')} after): times vary from run to run, counts should not.",
        "",
        "## Summary",
        "",
        "| scenario | " + " | ".join(title for _, title in COLUMNS) + " | all terminal after |",
        "|---|" + "---|" * (len(COLUMNS) + 1),
    ]
    results = raw["results"]
    for name, (title, _) in SCENARIOS.items():
        if name not in results:
            continue
        res = results[name]
        if "error" in res:
            out.append(f"| {title} | " + " | ".join("-" for _ in COLUMNS) + " | **failed** |")
            continue
        cells = [_cell(res[key]) for key, _ in COLUMNS]
        secs = res["seconds_to_terminal"]
        out.append(
            f"| {title} | "
            + " | ".join(cells)
            + f" | {f'{secs:.0f} s' if secs is not None else '**not by the deadline**'} |"
        )
    out += ["", HOW]
    for name, (title, _) in SCENARIOS.items():
        if name not in results:
            continue
        res = results[name]
        out += ["", f"## {title}", ""]
        if "error" in res:
            out += ["**The scenario failed:**", "", "```", res["error"].strip()[-2000:], "```"]
            continue
        out += [
            f"**Injected:** {res['injected']}.",
            "",
            "| figure | value |",
            "|---|---|",
            f"| jobs | {res['jobs']} |",
        ]
        out += [f"| {title_} | {_cell(res[key])} |" for key, title_ in COLUMNS]
        secs = res["seconds_to_terminal"]
        if name == "load":  # no burst run to the end: its figures are its own (extra)
            out += [f"| submitting took | {secs:.1f} s |" if secs is not None else ""]
        else:
            out += [
                f"| task executions / attempts counted | {res['executions']} / {res['attempts']} |",
                f"| executions the burst needs without failures | {planned_runs(res['jobs'])} |",
                f"| every job terminal after | "
                f"{f'{secs:.1f} s' if secs is not None else 'not by the deadline'} |",
            ]
        out += [f"| {k} | {v} |" for k, v in res["extra"].items()]
        for note in findings(name, res):
            out += ["", note]
        if res["details"]:
            out += ["", "What was counted:", ""]
            out += [f"* {d}" for d in res["details"][:30]]
            if len(res["details"]) > 30:
                out.append(f"* ... and {len(res['details']) - 30} more")
    return "\n".join(out).rstrip() + "\n"


def findings(name: str, res: dict[str, Any]) -> list[str]:
    """The explanation of a known non-zero figure (README, "Restart safety": open limits)."""
    notes = []
    bound_key = f"p99 within the benchmark bound ({LOAD_P99_BOUND * 1000:.0f} ms)"
    if name == "load" and res["extra"].get(bound_key) is False:
        latency = res["extra"].get("submit → Job p50 / p99 (ms)", "n/a")
        notes.append(
            f"**Why the bound was missed** (p50 / p99 {latency} ms against a bound set for "
            "20/s). Every process shares the 2 CPUs: the devcluster's API server, etcd and "
            "controller-manager, the operator and the bench's client. At 50/s each job costs "
            "the control plane a BackgroundJob create, the operator's Job create and its "
            "Queued status write, the BackgroundJob's delete and the garbage collector's "
            "delete of the Job: about 250 writes/s, with their watch events, so a request "
            "now and then waits behind others. The operator spends about 1.1 ms of CPU per "
            "job (docs/benchmarks.md, section 1), under 6 % of one core at 50/s. Open: a "
            "machine where the control plane has cores of its own."
        )
    if name.startswith("redis-") and res["progress_lost"]:
        notes.append(
            "**Why progress was lost.** A worker keeps its last report through an outage "
            "and retries it, and puts it in its termination message next to the outcome; "
            "a job counted here ended without either reaching the operator (see its line "
            "below)."
        )
    if name.startswith("redis-") and res["attempts"] > planned_runs(res["jobs"]):
        notes.append(
            f"**Why more attempts than the burst needs ({res['attempts']} for "
            f"{planned_runs(res['jobs'])}; not a duplicate: each is counted by the Job).** "
            "The attempt number comes from a Redis counter. While Redis is down the worker "
            "assumes attempt 1 (it logs `attempt number unknown without Redis`), so "
            "`chaos.flaky`, which fails on attempt 1 only, failed again and spent a retry "
            "(`ctx.is_last_attempt` is wrong the same way). After Redis returns empty, the "
            "operator puts the Job's counted failures back under the counter (README "
            '"Redis outages"). Open limit: while Redis is down nothing in a pod of a '
            "non-indexed Job tells its attempt number (the downward API has none)."
        )
    if name == "etcd-restart" and (res["seconds_to_terminal"] or 0) > 200:
        notes.append(
            "**Why it took this long.** Not the operator: every BackgroundJob had its Job "
            "within seconds (in the run recorded here at most 10 s, per the audit log). "
            "After the etcd restart the process node (the devcluster's "
            "kubelet stand-in) missed the creation of a pod made around the moment etcd "
            "died and found it only at its next full relist (its pod watch ends every "
            "5 minutes); that pod stayed Pending, unbound, until then. A devcluster limit "
            "(`devcluster/processnode.py` lists pods only when its watch ends)."
        )
    return notes


def planned_runs(jobs: int) -> int:
    """One execution per job, two per retried job (it fails once on purpose)."""
    return jobs + sum(1 for i in range(jobs) if i % 20 < 3)


def _cell(value: int) -> str:
    return "0" if value == 0 else f"**{value}**"


def command_line(argv: list[str]) -> str:
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in os.environ.items() if k.startswith("CHAOS_"))
    cmd = " ".join(["python -m bench.chaos", *map(shlex.quote, argv)])
    if os.environ.get("MAKELEVEL") and not argv:
        cmd = "make chaos"
    return f"{env} {cmd}".strip()


def measure(opts: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    sizes = Sizes.from_env(opts.smoke)
    wanted = [n.strip() for n in opts.only.split(",")] if opts.only else list(SCENARIOS)
    unknown = set(wanted) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"--only: unknown scenarios {sorted(unknown)}; known: {list(SCENARIOS)}")
    raw: dict[str, Any] = {
        "context": report.context(command_line(argv)),
        "smoke": opts.smoke,
        "sizes": asdict(sizes),
        "results": {},
    }
    started = time.monotonic()
    state = Path(tempfile.mkdtemp(prefix="bgjobs-chaos-"))
    say(f"starting a devcluster in {state}")
    b = setup(state)
    try:
        for name in wanted:
            say(f"{SCENARIOS[name][0]} ...")
            t0 = time.monotonic()
            try:
                raw["results"][name] = asdict(run_scenario(b, name, sizes))
            except Exception:  # noqa: BLE001 - report it, run the rest
                raw["results"][name] = {"error": traceback.format_exc()}
                say(f"{name} FAILED:\n{traceback.format_exc()}")
            say(f"{name} done in {time.monotonic() - t0:.0f} s: {_brief(raw['results'][name])}")
            if opts.json:  # what is done so far survives an interrupted run (--render it)
                opts.json.write_text(json.dumps(raw, indent=1))
    finally:
        say("stopping the devcluster")
        teardown(b)
        if opts.keep_state or os.environ.get("CHAOS_KEEP_STATE"):
            say(f"state kept in {state}")
        else:
            shutil.rmtree(state, ignore_errors=True)
    raw["context"]["elapsed"] = f"{(time.monotonic() - started) / 60:.1f} min"
    raw["context"]["load_after"] = report.loadavg()
    return raw


def _brief(res: dict[str, Any]) -> str:
    if "error" in res:
        return "failed"
    figures = ", ".join(f"{title} {res[key]}" for key, title in COLUMNS)
    return f"{figures}; terminal after {res['seconds_to_terminal']} s"


FUZZ_HEADING = "\n## Fuzzed manifests"


def _kept_sections(path: Path) -> str:
    """The part of the document `make fuzz` writes (from its heading on): kept as it is."""
    try:
        text = path.read_text()
    except OSError:
        return ""
    at = text.find(FUZZ_HEADING)
    return text[at:] if at >= 0 else ""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="30 jobs, short outages")
    parser.add_argument(
        "--output", type=Path, default=ROOT / "docs" / "reliability.md", help="markdown to write"
    )
    parser.add_argument("--only", help="comma-separated scenarios: " + ",".join(SCENARIOS))
    parser.add_argument("--json", type=Path, help="where to save the raw results")
    parser.add_argument("--render", type=Path, help="re-render --output from saved raw results")
    parser.add_argument("--keep-state", action="store_true", help="keep the devcluster state")
    opts = parser.parse_args(argv)
    if opts.render:
        raw = json.loads(opts.render.read_text())
    else:
        opts.json = opts.json or Path(tempfile.gettempdir()) / f"{opts.output.stem}-raw.json"
        raw = measure(opts, argv)
        opts.json.write_text(json.dumps(raw, indent=1))
        say(f"raw results saved to {opts.json}")
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(render(raw) + _kept_sections(opts.output))
    say(f"wrote {opts.output}")
    failed = [n for n, res in raw["results"].items() if "error" in res]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
