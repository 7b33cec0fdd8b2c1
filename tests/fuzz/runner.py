"""Submit fuzzed manifests to a real API server and operator, and judge each outcome.

Used by ``make fuzz`` (``python -m tests.fuzz``: a devcluster of its own, 1,000+ manifests)
and by tests/integration/test_fuzz_smoke.py (the session devcluster, ~60 manifests).

How a run goes: the cases are spread over a few fresh namespaces, all submitted at once by a
thread pool (POST with ``fieldValidation=Strict``, as ``kubectl apply`` does), a watch on
batch Jobs records every Job created (so a Job that came and went is still seen), and the
namespaces are listed every 2 s until every accepted case has settled. Then each case is
judged (see ``manifests.Case``) and the operator's log is searched for tracebacks.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from bgjobs.api import names
from tests.fuzz.manifests import Case, canonical, float64_equal, short

GROUP, VERSION = "bgjobs.dev", "v1alpha1"
TERMINAL = ("Succeeded", "Failed", "Cancelled")


@dataclass
class RunResult:
    cases: list[Case]
    seconds: float
    namespaces: list[str]
    traceback_lines: list[str] = field(default_factory=list)
    error_lines: list[str] = field(default_factory=list)
    operator_restarts: int = 0
    operator_alive: bool = True
    timed_out: bool = False

    @property
    def failures(self) -> list[Case]:
        """Cases that broke their property, known open defects excepted."""
        return [c for c in self.cases if not c.ok and not known_open(c)]

    @property
    def known_open(self) -> list[Case]:
        return [c for c in self.cases if not c.ok and known_open(c)]

    @property
    def ok(self) -> bool:
        return (
            not self.failures
            and not self.traceback_lines
            and not self.operator_restarts
            and self.operator_alive
        )


def _json(resp: Any) -> Any:
    return json.loads(resp.data)


class JobWatch:
    """Every batch Job created in the watched namespaces: (namespace, name) -> Job."""

    def __init__(self, api: client.ApiClient, namespaces: list[str]) -> None:
        self.batch = client.BatchV1Api(api)
        self.namespaces = set(namespaces)
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="fuzz-job-watch")

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def _record(self, job: dict[str, Any]) -> None:
        md = job["metadata"]
        if md["namespace"] in self.namespaces:
            self.jobs[(md["namespace"], md["name"])] = job

    def _run(self) -> None:
        rv = ""
        while not self.stopping.is_set():
            try:
                if not rv:
                    listing = _json(self.batch.list_job_for_all_namespaces(_preload_content=False))
                    for job in listing["items"]:
                        self._record(job)
                    rv = listing["metadata"]["resourceVersion"]
                resp = self.batch.list_job_for_all_namespaces(
                    watch=True,
                    resource_version=rv,
                    timeout_seconds=30,
                    allow_watch_bookmarks=True,
                    _preload_content=False,
                )
                for line in resp:
                    if self.stopping.is_set():
                        break
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        rv = ""
                        break
                    rv = event["object"]["metadata"].get("resourceVersion", rv)
                    if event["type"] != "BOOKMARK":
                        self._record(event["object"])
            except Exception:  # noqa: BLE001 - a dropped watch is listed again
                time.sleep(0.5)
                rv = ""


class Runner:
    def __init__(
        self,
        api: client.ApiClient,
        *,
        operator_log: Callable[[], str],
        operator_alive: Callable[[], bool] = lambda: True,
        operator_starts: Callable[[], int] = lambda: 1,
        redis_url: str | None = None,
        per_namespace: int = 150,
        threads: int = 8,
        settle_timeout: float = 600,
        say: Callable[[str], None] = lambda _msg: None,
    ) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.batch = client.BatchV1Api(api)
        self.operator_log = operator_log
        self.operator_alive = operator_alive
        self.operator_starts = operator_starts
        self.redis_url = redis_url
        self.per_namespace = per_namespace
        self.threads = threads
        self.settle_timeout = settle_timeout
        self.say = say
        self._results: dict[tuple[str, str], dict[str, Any] | None] = {}

    # --- set-up ------------------------------------------------------------------------
    def make_namespaces(self, count: int, prefix: str = "fuzz") -> list[str]:
        made = []
        for _ in range(count):
            ns = f"{prefix}-{uuid.uuid4().hex[:6]}"
            self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
            made.append(ns)
        deadline = time.monotonic() + 60
        for ns in made:  # pods are refused until the default ServiceAccount exists
            while True:
                try:
                    self.core.read_namespaced_service_account("default", ns)
                    break
                except ApiException:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.3)
        return made

    def delete_namespaces(self, namespaces: list[str]) -> None:
        for ns in namespaces:
            with contextlib.suppress(ApiException):
                self.core.delete_namespace(ns)

    # --- run ---------------------------------------------------------------------------
    def run(self, cases: list[Case], namespaces: list[str] | None = None) -> RunResult:
        started = time.monotonic()
        log_offset = len(self.operator_log())
        starts_before = self.operator_starts()
        if namespaces is None:
            namespaces = self.make_namespaces(max(1, -(-len(cases) // self.per_namespace)))
        for i, case in enumerate(cases):
            case.extra["namespace"] = namespaces[i % len(namespaces)]
        watch = JobWatch(self.api, namespaces)
        watch.start()
        time.sleep(0.5)
        try:
            self.say(f"submitting {len(cases)} manifests into {len(namespaces)} namespaces")
            with ThreadPoolExecutor(self.threads) as pool:
                list(pool.map(self._submit, cases))
            accepted = sum(1 for c in cases if c.extra.get("stored") is not None)
            self.say(f"{accepted} accepted, {len(cases) - accepted} refused at apply; waiting")
            timed_out = not self._settle(cases, namespaces, watch.jobs)
            time.sleep(3)  # anything the operator would still do to a settled case
            objects = self._list_all(namespaces)
        finally:
            watch.stop()
        for case in cases:
            self._judge(case, objects, watch.jobs)
        log = self.operator_log()[log_offset:]
        lines = log.splitlines()
        result = RunResult(
            cases=cases,
            seconds=time.monotonic() - started,
            namespaces=namespaces,
            traceback_lines=[ln for ln in lines if "Traceback" in ln],
            error_lines=[ln for ln in lines if " ERROR " in ln or " CRITICAL " in ln],
            operator_restarts=self.operator_starts() - starts_before,
            operator_alive=self.operator_alive(),
            timed_out=timed_out,
        )
        return result

    def _submit(self, case: Case) -> None:
        ns = case.extra["namespace"]
        case.extra["submitted_at"] = time.monotonic()
        try:
            resp = self.custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                ns,
                case.plural,
                case.manifest,
                field_validation="Strict",
                _preload_content=False,
            )
            case.extra["stored"] = _json(resp)
        except ApiException as exc:
            body: dict[str, Any] = {}
            with contextlib.suppress(Exception):
                body = json.loads(exc.body)
            case.extra["refused"] = (exc.status, str(body.get("message") or exc.reason))
        except ValueError as exc:  # the client refuses to send it (e.g. an empty name)
            case.extra["refused"] = (0, f"client: {exc}")

    def _list_all(self, namespaces: list[str]) -> dict[tuple[str, str, str], dict[str, Any]]:
        found: dict[tuple[str, str, str], dict[str, Any]] = {}
        for ns in namespaces:
            for plural in ("backgroundjobs", "jobschedules", "deadletters"):
                listing = _json(
                    self.custom.list_namespaced_custom_object(
                        GROUP, VERSION, ns, plural, _preload_content=False
                    )
                )
                for obj in listing["items"]:
                    found[(plural, ns, obj["metadata"]["name"])] = obj
            for cron in _json(self.batch.list_namespaced_cron_job(ns, _preload_content=False))[
                "items"
            ]:
                found[("cronjobs", ns, cron["metadata"]["name"])] = cron
        return found

    def _settled(self, case: Case, objects: dict[tuple[str, str, str], dict[str, Any]]) -> bool:
        if case.extra.get("stored") is None:
            return True
        ns, name = case.extra["namespace"], case.name
        obj = objects.get((case.plural, ns, name))
        if obj is None:
            return True  # deleted? judged as such
        status = obj.get("status") or {}
        if case.kind == "BackgroundJob":
            return status.get("phase") in TERMINAL
        if case.kind == "JobSchedule":
            return bool(status.get("conditions"))
        # DeadLetter: one asking for replays is settled when its replay has finished
        if int((case.manifest["spec"].get("replays")) or 0) < 1:
            return True
        replay = objects.get(("backgroundjobs", ns, names.replay_name(name, 1)))
        if replay is None:
            # the operator makes a replay within seconds; one missing after 30 s never comes
            waited = time.monotonic() - case.extra.get("submitted_at", 0.0)
            return _condition(status, "ReplayFailed") is not None or waited > 30
        return (replay.get("status") or {}).get("phase") in TERMINAL

    def _settle(
        self,
        cases: list[Case],
        namespaces: list[str],
        jobs: dict[tuple[str, str], dict[str, Any]],
    ) -> bool:
        deadline = time.monotonic() + self.settle_timeout
        last_report = 0.0
        while True:
            objects = self._list_all(namespaces)
            self._capture_results(objects, jobs)
            waiting = [c for c in cases if not self._settled(c, objects)]
            if not waiting:
                return True
            now = time.monotonic()
            if now > deadline:
                for c in waiting:
                    c.extra["unsettled"] = True
                return False
            if now - last_report > 15:
                self.say(
                    f"{len(waiting)} not settled yet, e.g. {waiting[0].kind} {waiting[0].name}"
                )
                last_report = now
            time.sleep(2)

    def _capture_results(
        self,
        objects: dict[tuple[str, str, str], dict[str, Any]],
        jobs: dict[tuple[str, str], dict[str, Any]],
    ) -> None:
        """Read each finished job's Redis result as soon as it is there: it expires after
        the job's resultTTLSeconds (60 s at the least), sooner than a long run ends."""
        for (plural, ns, name), bj in objects.items():
            if plural != "backgroundjobs":
                continue
            status = bj.get("status") or {}
            if status.get("phase") != "Succeeded":
                continue
            key = (ns, name)
            if key in self._results:
                continue
            job = jobs.get(key)
            ours = job is not None and any(
                ref.get("uid") == bj["metadata"]["uid"]
                for ref in job["metadata"].get("ownerReferences") or []
            )
            self._results[key] = self._redis_result(status, job if ours else None)

    # --- judging -----------------------------------------------------------------------
    def _judge(
        self,
        case: Case,
        objects: dict[tuple[str, str, str], dict[str, Any]],
        jobs: dict[tuple[str, str], dict[str, Any]],
    ) -> None:
        ns = case.extra["namespace"]
        if "refused" in case.extra:
            code, message = case.extra["refused"]
            case.outcome = "refused at apply"
            case.detail = f"{code}: {message}"
            ok_codes = code in (400, 404, 405, 422) or code == 0
            case.ok = case.expect in ("reject", "run_or_reject") and ok_codes and bool(message)
            if case.valid:
                case.detail = f"a valid manifest was refused: {case.detail}"
            return
        obj = objects.get((case.plural, ns, case.name))
        if obj is None:
            case.outcome, case.ok, case.detail = "vanished", False, "accepted, then gone"
            return
        stored_spec = obj["spec"]
        case.extra["rewritten"] = not float64_equal(case.manifest["spec"], stored_spec) or (
            canonical(case.manifest["spec"]) != canonical(stored_spec)
        )
        if case.kind == "BackgroundJob":
            self._judge_job(case, obj, jobs)
        elif case.kind == "JobSchedule":
            self._judge_schedule(case, obj, objects)
        else:
            self._judge_dead_letter(case, obj, objects, jobs)

    def _judge_job(
        self, case: Case, bj: dict[str, Any], jobs: dict[tuple[str, str], dict[str, Any]]
    ) -> None:
        status = bj.get("status") or {}
        phase = status.get("phase")
        job = jobs.get((bj["metadata"]["namespace"], bj["metadata"]["name"]))
        ours = job is not None and any(
            ref.get("uid") == bj["metadata"]["uid"]
            for ref in job["metadata"].get("ownerReferences") or []
        )
        invalid = _condition(status, "Invalid")
        if invalid is not None and invalid.get("status") == "True":
            case.outcome = "marked Invalid"
            case.detail = str(invalid.get("message") or "")
            case.ok = case.expect in ("reject", "run_or_reject") and bool(case.detail) and not ours
            if ours:
                case.detail += " (but a Job was created)"
            return
        if phase == "Succeeded":
            case.outcome = "succeeded"
            where = (bj["metadata"]["namespace"], bj["metadata"]["name"])
            self._compare(case, bj["spec"], status, job if ours else None, where)
            if case.expect == "reject":
                case.ok = False
                case.detail = "an invalid manifest ran: " + case.detail
            return
        case.outcome = f"ended {phase}" if phase in TERMINAL else f"stuck {phase or 'Pending'}"
        error = status.get("error") or {}
        case.detail = short(f"{error.get('reason')}: {error.get('type')}: {error.get('message')}")
        case.ok = False

    def _compare(
        self,
        case: Case,
        spec: dict[str, Any],
        status: dict[str, Any],
        job: dict[str, Any] | None,
        where: tuple[str, str],
    ) -> None:
        """What the task received (it returns its inputs) against what was submitted."""
        want = {"args": spec.get("args", []), "kwargs": spec.get("kwargs", {})}
        submitted = {
            "args": case.manifest["spec"].get("args", []),
            "kwargs": case.manifest["spec"].get("kwargs", {}),
        }
        got_sources: dict[str, Any] = {}
        if "result" in status and status.get("result") is not None:
            got_sources["status.result"] = status["result"]
        redis_doc = self._results.get(where) or self._redis_result(status, job)
        if redis_doc is not None:
            got_sources["redis"] = redis_doc.get("result")
        if not got_sources:
            case.ok = False
            case.detail = "no result to compare (neither status.result nor Redis)"
            return
        bad = [src for src, got in got_sources.items() if canonical(got) != canonical(want)]
        case.extra["compared"] = sorted(got_sources)
        if bad:
            case.ok = False
            case.outcome = "succeeded, MISMATCH"
            got = got_sources[bad[0]]
            case.detail = f"{bad[0]}: sent {short(canonical(want))} got {short(canonical(got))}"
            return
        case.ok = True
        if canonical(submitted) == canonical(want):
            case.detail = "echoed exactly"
        elif float64_equal(submitted, want):
            case.extra["float64"] = True
            case.detail = (
                "echoed exactly what the API server stored (integers beyond int64 as float64)"
            )
        else:
            case.ok = False
            case.detail = f"the API server stored something else: {short(canonical(want))}"

    def _redis_result(
        self, status: dict[str, Any], job: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        if not self.redis_url:
            return None
        import redis

        from bgjobs_worker import redis_keys

        key = status.get("resultRef")
        if not key and job is not None:
            md = job["metadata"]
            key = redis_keys.result_key(md["namespace"], md["uid"])
        if not key:
            return None
        conn = redis.Redis.from_url(self.redis_url)
        try:
            raw = conn.get(key)
        finally:
            conn.close()
        if raw is None:
            return None
        doc: dict[str, Any] = json.loads(raw)
        return doc

    def _judge_schedule(
        self,
        case: Case,
        sched: dict[str, Any],
        objects: dict[tuple[str, str, str], dict[str, Any]],
    ) -> None:
        status = sched.get("status") or {}
        ns = sched["metadata"]["namespace"]
        invalid = _condition(status, "Invalid")
        cron_name = status.get("cronJobName") or sched["metadata"]["name"]
        cron = objects.get(("cronjobs", ns, cron_name))
        if invalid is not None and invalid.get("status") == "True":
            case.outcome = "marked Invalid"
            case.detail = str(invalid.get("message") or "")
            case.ok = case.expect == "reject" and bool(case.detail) and cron is None
            if cron is not None:
                case.detail += " (but a CronJob exists)"
            return
        ready = _condition(status, "Ready")
        if ready is None or ready.get("status") != "True" or cron is None:
            case.outcome = "not ready"
            case.detail = short(ready or status)
            case.ok = False
            return
        case.outcome = "accepted, CronJob ready"
        container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        template = sched["spec"]["template"]
        # the kubelet turns $$ into $ in env values (the operator doubles every $)
        got = {
            "args": json.loads(_kubelet_unescape(env["BGJOBS_ARGS"])),
            "kwargs": json.loads(_kubelet_unescape(env["BGJOBS_KWARGS"])),
        }
        want = {"args": template.get("args", []), "kwargs": template.get("kwargs", {})}
        if canonical(got) != canonical(want):
            case.ok = False
            case.outcome = "accepted, MISMATCH in the CronJob"
            case.detail = f"sent {short(canonical(want))} got {short(canonical(got))}"
            return
        case.ok = case.expect == "accept"
        case.detail = "the CronJob's worker env carries the inputs exactly"

    def _judge_dead_letter(
        self,
        case: Case,
        dl: dict[str, Any],
        objects: dict[tuple[str, str, str], dict[str, Any]],
        jobs: dict[tuple[str, str], dict[str, Any]],
    ) -> None:
        ns, name = dl["metadata"]["namespace"], dl["metadata"]["name"]
        status = dl.get("status") or {}
        replays = int(dl["spec"].get("replays") or 0)
        replay = objects.get(("backgroundjobs", ns, names.replay_name(name, 1)))
        failed = _condition(status, "ReplayFailed")
        if replays < 1:
            case.outcome = "recorded"
            case.ok = replay is None and case.expect in ("accept", "run_or_reject")
            case.detail = "no replay asked, none made" if replay is None else "a replay was made"
            return
        if replay is None:
            if failed is not None and failed.get("status") == "True":
                case.outcome = "marked Invalid"
                case.detail = str(failed.get("message") or "")
                case.ok = case.expect in ("reject", "run_or_reject") and bool(case.detail)
            else:
                case.outcome = "replay never made"
                case.detail = "replays asked, no BackgroundJob and no condition saying why"
                case.ok = False
            return
        rstatus = replay.get("status") or {}
        if rstatus.get("phase") != "Succeeded":
            case.outcome = f"replay {rstatus.get('phase') or 'Pending'}"
            case.detail = short(rstatus.get("error") or rstatus.get("conditions") or "")
            case.ok = False
            return
        case.outcome = "replay succeeded"
        job = jobs.get((ns, replay["metadata"]["name"]))
        # the replay must receive the letter's args and kwargs, as the API server stored them
        probe = Case(case.name, case.kind, case.category, case.expect, {"spec": dl["spec"]})
        self._compare(probe, dl["spec"], rstatus, job, (ns, replay["metadata"]["name"]))
        case.ok, case.detail = probe.ok, probe.detail
        if case.expect == "reject":
            case.ok = False
        if not probe.ok:
            case.outcome = "replay succeeded, MISMATCH"


# Defects the fuzzer found that are reported, not yet fixed: (kind, category) -> what.
# Open defects the suite finds and tolerates (none at the moment): (kind, category) ->
# what is wrong. A DeadLetter whose replay the API server refused used to be retried
# forever with no word in its status; it now gets a ReplayFailed condition.
KNOWN_OPEN: dict[tuple[str, str], str] = {}


def known_open(case: Case) -> bool:
    return (case.kind, case.category) in KNOWN_OPEN and case.outcome == "replay never made"


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def _kubelet_unescape(value: str) -> str:
    """What the kubelet makes of an env value with no $(VAR) references: $$ -> $."""
    from devcluster.processnode import expand

    return expand(value, {})


def summarize(result: RunResult) -> dict[str, Any]:
    """Counts for the report: per kind and category, per expectation, per outcome."""
    per: dict[tuple[str, str], Counter[str]] = {}
    for c in result.cases:
        per.setdefault((c.kind, c.category), Counter())[c.outcome] += 1
    return {
        "total": len(result.cases),
        "by_outcome": Counter(c.outcome for c in result.cases),
        "by_expect": Counter(c.expect for c in result.cases),
        "per_category": per,
        "failures": [(c.kind, c.category, c.name, c.outcome, c.detail) for c in result.failures],
        "float64": sum(1 for c in result.cases if c.extra.get("float64")),
        "compared_redis": sum(1 for c in result.cases if "redis" in c.extra.get("compared", [])),
        "compared_status": sum(
            1 for c in result.cases if "status.result" in c.extra.get("compared", [])
        ),
    }
