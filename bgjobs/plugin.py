"""kubectl bgjobs: submit, follow and inspect background jobs from the command line.

Installed as the console script ``kubectl-bgjobs``, so ``kubectl bgjobs ...`` finds it on
PATH. Put kubectl's own flags after the plugin name (``kubectl bgjobs -n shop list``):
kubectl refuses flags placed before a plugin's name.

Exit codes: 0 success; 1 an error (not found, unreachable cluster, refused spec) or, for
``watch``/``submit --wait``, a Failed job; 2 a Cancelled job; 3 ``--timeout`` passed.
The rendering helpers are pure functions of what the API returned, unit-tested alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from bgjobs.client import (
    WORKER_CONTAINER,
    Client,
    DeadLetterView,
    JobView,
    default_namespace,
    parse_time,
)
from bgjobs.client.workflows import WorkflowHandle, WorkflowView
from bgjobs.errors import (
    BgJobsError,
    ClusterUnreachable,
    InvalidSpec,
    JobTimeout,
    NotFound,
    describe_error,
)
from bgjobs.redaction import redact, redact_url

EXIT_OK, EXIT_ERROR, EXIT_CANCELLED, EXIT_TIMEOUT = 0, 1, 2, 3
RESOURCE = "backgroundjob.bgjobs.dev"

# --- rendering (pure) -----------------------------------------------------------------


def progress_bar(percent: float | None, width: int = 10) -> str:
    """``[#####-----]  50%``; ``-`` when no progress was reported. A bar is full only at
    100 %, never by rounding up."""
    if percent is None:
        return "-"
    pct = max(0.0, min(100.0, float(percent)))
    filled = math.floor(pct * width / 100)
    return f"[{'#' * filled}{'-' * (width - filled)}] {math.floor(pct):3d}%"


def human_age(seconds: float | None) -> str:
    """A kubectl-like age: 42s, 3m12s, 45m, 5h3m, 20h, 3d4h, 30d, 2y."""
    if seconds is None:
        return "<unknown>"
    s = max(0, int(seconds))
    m, h, d = s // 60, s // 3600, s // 86400
    if s < 120:
        return f"{s}s"
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if h < 3:
        return f"{m}m"
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if d < 2:
        return f"{h}h"
    if d < 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    return f"{d // 365}y"


def age(when: datetime | str | None, now: datetime) -> str:
    moment = parse_time(when)
    return human_age((now - moment).total_seconds()) if moment else "<unknown>"


def parse_cli_arg(text: str) -> Any:
    """A positional task argument: JSON when it parses (``42``, ``true``, ``[1,2]``,
    ``{"a":1}``, ``"007"``), else the text itself (``report.csv``)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_kwargs(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidSpec(f"--kwargs must be a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidSpec(f"--kwargs must be a JSON object, got {type(value).__name__}")
    return value


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns three spaces apart, like ``kubectl get``."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [
        "   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [list(headers), *rows]
    ]
    return "\n".join(lines)


def job_table(views: Sequence[JobView], now: datetime, namespaces: bool = False) -> str:
    headers = ["NAME", "TASK", "PHASE", "PROGRESS", "ATTEMPTS", "AGE"]
    rows = [
        [
            v.name,
            v.task,
            v.phase,
            progress_bar(v.percent),
            str(v.attempts) if v.attempts else "-",
            age(v.created, now),
        ]
        for v in views
    ]
    if namespaces:
        headers = ["NAMESPACE", *headers]
        rows = [[v.namespace, *row] for v, row in zip(views, rows, strict=True)]
    return render_table(headers, rows)


def dead_letter_table(views: Sequence[DeadLetterView], now: datetime) -> str:
    headers = ["NAME", "JOB", "TASK", "ERROR", "ATTEMPTS", "REPLAYS", "AGE"]
    rows = [
        [
            v.name,
            v.job_name,
            v.task,
            str((v.error or {}).get("type") or "-"),
            str(v.attempts or "-"),
            str(v.replays),
            age(v.created, now),
        ]
        for v in views
    ]
    return render_table(headers, rows)


def queue_table(queues: Sequence[dict[str, Any]], now: datetime) -> str:
    """JobQueues: depth (waiting), running of the limit, rate, admitted in the last
    minute, paused, and how long the oldest waiting job has waited."""
    headers = ["NAME", "WAITING", "RUNNING", "RATE", "ADMITTED-1M", "PAUSED", "OLDEST-WAITING"]
    rows = []
    for q in queues:
        spec, st = q.get("spec") or {}, q.get("status") or {}
        limit = spec.get("concurrency")
        running = f"{st.get('running', 0)}/{limit if limit is not None else '-'}"
        oldest = st.get("oldestWaiting") if st.get("waiting") else None
        rows.append(
            [
                q["metadata"]["name"],
                str(st.get("waiting", 0)),
                running,
                str(spec.get("rateLimit") or "-"),
                str(st.get("admittedLastMinute", 0)),
                "yes" if spec.get("paused") else "no",
                age(oldest, now) if oldest else "-",
            ]
        )
    return render_table(headers, rows)


def progress_text(view: JobView) -> str:
    """Bar plus stage and message: ``[####------]  40%  exporting: 2000/5000 records``."""
    detail = ": ".join(
        str(x) for x in (view.progress.get("stage"), view.progress.get("message")) if x
    )
    bar = progress_bar(view.percent)
    return f"{bar}  {detail}" if detail else bar


def batch_text(batch: dict[str, Any]) -> str:
    """A batch's bar over its items: ``[####------]  40%  20/50 items, 2 failed, 12.5/s``."""
    total = int(batch.get("total") or 0)
    done = int(batch.get("succeeded") or 0) + int(batch.get("failed") or 0)
    text = f"{progress_bar(done * 100 / total if total else None)}  {done}/{total} items"
    if batch.get("failed"):
        text += f", {batch['failed']} failed"
    if batch.get("ratePerSecond") is not None:
        text += f", {batch['ratePerSecond']:g}/s"
    return text


def watch_line(view: JobView) -> str:
    parts = [view.name, view.phase]
    if view.batch:
        parts.append(batch_text(view.batch))
    elif view.percent is not None or view.progress:
        parts.append(progress_text(view))
    if view.attempts:
        parts.append(f"attempt {view.attempts}")
    return "  ".join(parts)


def final_line(view: JobView) -> str:
    """What ``watch`` prints last: the result, or the error."""
    if view.succeeded and view.batch:
        return f"all {view.batch.get('total')} items succeeded"
    if view.succeeded:
        if view.result is None and view.result_ref:
            return f"result: in Redis at {view.result_ref} (too large for status)"
        return "result: " + json.dumps(view.result, ensure_ascii=False)
    if view.failed:
        tail = f"; dead letter {view.dead_letter}" if view.dead_letter else ""
        return f"error: {describe_error(view.error)}{tail}"
    if view.cancelled:
        return "cancelled"
    return f"still {view.phase}"


def exit_code_for(view: JobView) -> int:
    if view.succeeded:
        return EXIT_OK
    if view.cancelled:
        return EXIT_CANCELLED
    return EXIT_ERROR


def _field(label: str, value: Any, indent: int = 0) -> str:
    shown = "<none>" if value is None or value == "" else str(value)
    return f"{' ' * indent}{label + ':':<{16 - indent}}{shown}"


def describe_job(view: JobView, events: Sequence[dict[str, Any]], now: datetime) -> str:
    """``kubectl describe``-style text for a BackgroundJob and its Events."""

    def when(t: datetime | None) -> str | None:
        return f"{t.strftime('%Y-%m-%dT%H:%M:%SZ')} ({age(t, now)} ago)" if t else None

    out = [
        _field("Name", view.name),
        _field("Namespace", view.namespace),
        _field("Task", view.task),
        _field("Queue", view.queue),
        _field("Args", json.dumps(view.args)),
        _field("Kwargs", json.dumps(view.kwargs)),
        _field("Phase", view.phase + ("  (cancel requested)" if view.cancel_requested else "")),
        _field("Attempts", view.attempts or None),
        _field("Progress", progress_text(view) if view.progress else None),
        *(
            [
                _field("Items", batch_text(view.batch)),
                _field("Running", view.batch.get("running"), indent=2),
                _field("Executions", view.batch.get("executions"), indent=2),
            ]
            if view.batch
            else []
        ),
        _field("Created", when(view.created)),
        _field("Started", when(view.started)),
        _field("Completed", when(view.completed)),
        _field("Job", view.job_name),
    ]
    if view.idempotency_key:
        out.append(_field("Idempotency Key", view.idempotency_key))
    if view.succeeded and view.batch:
        out.append(_field("Results", f"per item, in Redis at {view.batch.get('outcomesKey')}"))
    elif view.succeeded:
        shown = json.dumps(view.result, ensure_ascii=False)
        out.append(
            _field("Result", f"(in Redis at {view.result_ref})" if view.result_ref else shown)
        )
    if view.error:
        out.append("Error:")
        for label, key in (
            ("Type", "type"),
            ("Message", "message"),
            ("Reason", "reason"),
            ("Exit Code", "exitCode"),
            ("Attempt", "attempt"),
        ):
            if view.error.get(key) is not None:
                out.append(_field(label, view.error[key], indent=2))
    if view.dead_letter:
        out.append(
            _field("Dead Letter", f"{view.dead_letter}  (kubectl bgjobs replay {view.dead_letter})")
        )
    out.append("Conditions:")
    if view.conditions:
        rows = [
            [
                str(c.get("type") or ""),
                str(c.get("status") or ""),
                str(c.get("reason") or ""),
                age(c.get("lastTransitionTime"), now),
                str(c.get("message") or ""),
            ]
            for c in view.conditions
        ]
        table = render_table(["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"], rows)
        out.extend("  " + line for line in table.splitlines())
    else:
        out.append("  <none>")
    out.append("Events:")
    if events:
        rows = [
            [
                str(e.get("type") or ""),
                str(e.get("reason") or ""),
                age(e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp"), now),
                str((e.get("source") or {}).get("component") or e.get("reportingComponent") or ""),
                str(e.get("message") or "").replace("\n", " "),
            ]
            for e in events
        ]
        table = render_table(["TYPE", "REASON", "AGE", "FROM", "MESSAGE"], rows)
        out.extend("  " + line for line in table.splitlines())
    else:
        out.append("  <none>")
    return "\n".join(out)


def _depths(spec_steps: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Each step's depth in the graph (the longest chain of dependencies above it)."""
    deps = {s["name"]: list(s.get("dependsOn") or []) for s in spec_steps}
    depth: dict[str, int] = {}

    def of(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name not in depth:
            above = [d for d in deps.get(name, []) if d in deps and d not in seen]
            depth[name] = 1 + max((of(d, seen | {name}) for d in above), default=-1)
        return depth[name]

    for name in deps:
        of(name)
    return depth


def workflow_tree(view: WorkflowView) -> str:
    """The steps as a tree, indented by depth in the graph, with phase, attempts,
    progress, what each waits for, and its result or error."""
    spec_steps = list((view.raw.get("spec") or {}).get("steps") or [])
    depths = _depths(spec_steps)
    lines = {s.get("name"): s for s in view.steps}
    order = sorted(spec_steps, key=lambda s: depths.get(s["name"], 0))
    rows = []
    for s in order:
        line = lines.get(s["name"]) or {}
        phase = str(line.get("phase") or "Waiting")
        error = line.get("error")
        outcome = describe_error(error) if error else str(line.get("result") or "")
        rows.append(
            [
                "  " * depths.get(s["name"], 0)
                + ("└ " if depths.get(s["name"]) else "")
                + s["name"],
                phase,
                str(line.get("attempts") or "-"),
                progress_bar(line.get("progress")),
                ", ".join(s.get("dependsOn") or []) or "-",
                outcome[:60],
            ]
        )
    handler = (view.raw.get("status") or {}).get("onFailure")
    if handler:
        rows.append(
            [
                "(onFailure)",
                str(handler.get("phase")),
                str(handler.get("attempts") or "-"),
                progress_bar(handler.get("progress")),
                view.failed_step or "-",
                str(handler.get("result") or "")[:60],
            ]
        )
    return render_table(["STEP", "PHASE", "ATTEMPTS", "PROGRESS", "AFTER", "RESULT/ERROR"], rows)


def workflow_summary(view: WorkflowView) -> str:
    head = f"{view.name}: {view.phase}, {view.steps_done or '0/?'} steps, "
    head += progress_bar(view.progress)
    if view.failed_step:
        head += f"; step {view.failed_step} failed: {describe_error(view.error)}"
    return head


def describe_workflow(view: WorkflowView, events: Sequence[dict[str, Any]], now: datetime) -> str:
    """``kubectl describe``-style text for a JobWorkflow: fields, the step tree, Events."""
    st = view.raw.get("status") or {}
    spec = view.raw.get("spec") or {}
    out = [
        _field("Name", view.name),
        _field("Namespace", view.namespace),
        _field("Phase", view.phase + ("  (cancel requested)" if spec.get("cancel") else "")),
        _field("Steps", view.steps_done),
        _field("Progress", progress_bar(view.progress) if view.progress is not None else None),
        _field("Fail Fast", bool(spec.get("failFast"))),
        _field("Resumes", view.resumes or None),
        _field("Started", st.get("startTime")),
        _field("Completed", st.get("completionTime")),
    ]
    if view.failed_step:
        out.append(_field("Failed Step", view.failed_step))
        out.append(_field("Error", describe_error(view.error)))
        out.append(_field("Resume", f"kubectl bgjobs workflow resume {view.name}"))
    elif view.error:
        out.append(_field("Error", describe_error(view.error)))
    if view.phase == "Succeeded":
        out.append(_field("Result", json.dumps(view.result, ensure_ascii=False)[:200]))
    out.append("Steps:")
    out.extend("  " + line for line in workflow_tree(view).splitlines())
    out.append("Events:")
    if events:
        rows = [
            [
                str(e.get("type") or ""),
                str(e.get("reason") or ""),
                age(e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp"), now),
                str(e.get("message") or "").replace("\n", " "),
            ]
            for e in events
        ]
        out.extend(
            "  " + line
            for line in render_table(["TYPE", "REASON", "AGE", "MESSAGE"], rows).splitlines()
        )
    else:
        out.append("  <none>")
    return "\n".join(out)


def unreachable_message(exc: ClusterUnreachable, kubeconfig: str | None) -> str:
    where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    return (
        f"error: cannot reach the Kubernetes API server at {exc.server} ({exc.reason}); "
        f"is the cluster running? For the local dev cluster run `make cluster-up`, "
        f"otherwise check KUBECONFIG (using {where})"
    )


# --- commands -------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _print_objects(objects: list[dict[str, Any]], fmt: str, out: TextIO) -> None:
    doc = {"apiVersion": "v1", "kind": "List", "items": objects}
    if fmt == "json":
        out.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    else:
        import yaml

        out.write(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def _start_at(text: str | None) -> datetime | None:
    if text is None:
        return None
    moment = parse_time(text)
    if moment is None or moment.tzinfo is None:
        raise InvalidSpec(f"--start-at {text!r} is not an RFC 3339 time with a zone")
    return moment


def cmd_submit(client: Client, opts: argparse.Namespace) -> int:
    handle = client.submit_call(
        opts.task,
        [parse_cli_arg(a) for a in opts.args],
        parse_kwargs(opts.kwargs),
        name=opts.name,
        idempotency_key=opts.idempotency_key,
        queue=opts.queue,
        max_retries=opts.max_retries,
        critical=True if opts.critical else None,
        soft_time_limit=opts.soft_time_limit,
        time_limit=opts.time_limit,
        deadline=opts.deadline,
        priority=opts.priority,
        countdown=opts.countdown,
        eta=_start_at(opts.start_at),
    )
    if handle.created:
        print(f"{RESOURCE}/{handle.name} created")
    else:
        print(f"{RESOURCE}/{handle.name} unchanged (the idempotency key matched this job)")
    if opts.wait:
        return follow(client, handle.name, opts.timeout, opts.interval)
    return EXIT_OK


def cmd_list(client: Client, opts: argparse.Namespace) -> int:
    views = client.list(
        task=opts.task, phase=opts.phase, queue=opts.queue, all_namespaces=opts.all_namespaces
    )
    if opts.output in ("json", "yaml"):
        _print_objects([v.raw for v in views], opts.output, sys.stdout)
    elif opts.output == "name":
        for v in views:
            print(f"{RESOURCE}/{v.name}")
    elif not views:
        where = "any" if opts.all_namespaces else f"{client.namespace}"
        print(f"No backgroundjobs found in {where} namespace.", file=sys.stderr)
    else:
        print(job_table(views, _now(), namespaces=opts.all_namespaces))
    return EXIT_OK


def cmd_queues(client: Client, opts: argparse.Namespace) -> int:
    queues = client.queues()
    if opts.output in ("json", "yaml"):
        _print_objects(queues, opts.output, sys.stdout)
    elif not queues:
        print(f"No jobqueues found in {client.namespace} namespace.", file=sys.stderr)
    else:
        print(queue_table(queues, _now()))
    return EXIT_OK


def cmd_dead_letters(client: Client, opts: argparse.Namespace) -> int:
    views = client.dead_letters(task=opts.task, job=opts.job)
    if opts.output in ("json", "yaml"):
        _print_objects([v.raw for v in views], opts.output, sys.stdout)
    elif not views:
        print(f"No deadletters found in {client.namespace} namespace.", file=sys.stderr)
    else:
        print(dead_letter_table(views, _now()))
    return EXIT_OK


def follow(client: Client, name: str, timeout: float | None, interval: float) -> int:
    """Show the job until it ends: a redrawn line on a terminal, a line per change
    otherwise; then the result or the error."""
    tty = sys.stdout.isatty()
    last_line = ""
    view: JobView | None = None
    try:
        for view in client.watch(name, timeout=timeout, poll=interval):
            line = watch_line(view)
            if line == last_line:
                continue
            last_line = line
            if tty:
                sys.stdout.write("\r\033[K" + line)
                sys.stdout.flush()
            else:
                print(line, flush=True)
    except JobTimeout as exc:
        if tty:
            sys.stdout.write("\n")
        print(f"error: {exc}; it keeps running", file=sys.stderr)
        return EXIT_TIMEOUT
    if tty:
        sys.stdout.write("\n")
    assert view is not None
    print(final_line(view), flush=True)
    return exit_code_for(view)


def cmd_watch(client: Client, opts: argparse.Namespace) -> int:
    return follow(client, opts.name, opts.timeout, opts.interval)


def _termination_message(pod: dict[str, Any], container: str) -> str | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") != container:
            continue
        for key in ("state", "lastState"):
            terminated = (cs.get(key) or {}).get("terminated") or {}
            if terminated.get("message"):
                return str(terminated["message"])
    return None


def pod_output(
    client: Client, pod: dict[str, Any], container: str, state_dir: str | None
) -> tuple[str, str]:
    """(output, where it came from) for one pod: the API's pod log, else the devcluster
    process node's file, else the termination message."""
    name = pod["metadata"]["name"]
    problems = []
    try:
        with client.errors("Pod", name):
            text = client.core.read_namespaced_pod_log(
                name, client.namespace, container=container, _request_timeout=15
            )
        return str(text), f"pod log of {name} (Kubernetes API)"
    except ClusterUnreachable:
        raise
    except BgJobsError as exc:
        problems.append(f"pod log API: {exc}")
    if state_dir:
        path = Path(state_dir) / "pods" / client.namespace / name / f"{container}.log"
        if path.is_file():
            return path.read_text(errors="replace"), f"devcluster process node file {path}"
        problems.append(f"no file {path}")
    message = _termination_message(pod, container)
    if message is not None:
        return message, f"termination message of pod {name} (" + "; ".join(problems) + ")"
    raise BgJobsError(f"no output available for pod {name}: " + "; ".join(problems))


def cmd_logs(client: Client, opts: argparse.Namespace) -> int:
    view = client.get(opts.name)
    pods = client.pods(opts.name)
    if not pods:
        if view.dead_letter:
            dl = client.dead_letter(view.dead_letter)
            if dl.last_output:
                print(
                    f"logs from: dead letter {dl.name} (the job's pods are gone)", file=sys.stderr
                )
                sys.stdout.write(dl.last_output.rstrip("\n") + "\n")
                return EXIT_OK
        print(
            f'error: backgroundjob "{opts.name}" has no pods (not started yet, or removed after '
            "ttlSecondsAfterFinished)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    pod = pods[-1]
    state_dir = opts.devcluster_state or os.environ.get("DEVCLUSTER_STATE")
    text, source = pod_output(client, pod, opts.container, state_dir)
    print(f"logs from: {source} (attempt {len(pods)} of {len(pods)})", file=sys.stderr)
    sys.stdout.write(text if not text or text.endswith("\n") else text + "\n")
    return EXIT_OK


def cmd_cancel(client: Client, opts: argparse.Namespace) -> int:
    view = client.get(opts.name)
    if view.terminal:
        print(f'backgroundjob "{view.name}" already {view.phase}; nothing to cancel')
        return EXIT_OK
    client.cancel(opts.name)
    print(f"{RESOURCE}/{opts.name} cancel requested")
    return EXIT_OK


def cmd_replay(client: Client, opts: argparse.Namespace) -> int:
    new = client.replay(opts.dead_letter)
    print(f"deadletter.bgjobs.dev/{opts.dead_letter} replayed: {RESOURCE}/{new}")
    if opts.wait:
        # The operator creates the job a moment after the replay is recorded.
        _await_existence(client, new, opts.timeout)
        return follow(client, new, opts.timeout, opts.interval)
    return EXIT_OK


def _await_existence(client: Client, name: str, timeout: float | None) -> None:
    import time

    deadline = time.monotonic() + (timeout or 60)
    while True:
        try:
            client.get(name)
            return
        except NotFound:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def cmd_describe(client: Client, opts: argparse.Namespace) -> int:
    view = client.get(opts.name)
    print(describe_job(view, client.events(opts.name), _now()))
    return EXIT_OK


def item_text(name: str, index: int, outcome: dict[str, Any]) -> str:
    """One item's outcome: ``item 7 of invoices: FAILURE after 3 attempts`` and its error
    or result as JSON."""
    attempts = outcome.get("attempts")
    head = f"item {index} of {name}: {outcome.get('status', '?')}"
    if isinstance(attempts, int):
        head += f" after {attempts} attempt{'s' if attempts != 1 else ''}"
    if outcome.get("status") == "SUCCESS":
        body = json.dumps(outcome.get("result"), ensure_ascii=False)
        return f"{head}\nresult: {body}"
    err = outcome.get("error") or {}
    return f"{head}\nerror: {err.get('type', 'Unknown')}: {err.get('message', '')}"


def cmd_item(client: Client, opts: argparse.Namespace) -> int:
    url = opts.redis_url or os.environ.get("BGJOBS_REDIS_URL")
    if not url:
        raise BgJobsError(
            "item outcomes are kept in Redis: pass --redis-url or set $BGJOBS_REDIS_URL "
            "(from outside the cluster, e.g. after kubectl port-forward to the Redis Service)"
        )
    view = client.get(opts.name)
    if not view.batch:
        raise BgJobsError(f'backgroundjob "{opts.name}" is not a batch (it has no spec.items)')
    import redis

    client.redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        outcome = client.item_outcome(opts.name, opts.index)
    except redis.RedisError as exc:
        raise BgJobsError(f"Redis at {redact_url(url)}: {redact(str(exc))}") from None
    if outcome is None:
        raise BgJobsError(
            f"item {opts.index} of {opts.name} has no recorded outcome: not run yet, not an "
            f"item of this batch ({view.batch.get('total')} items), or expired from Redis"
        )
    if opts.output == "json":
        print(json.dumps(outcome, ensure_ascii=False, indent=2))
    else:
        print(item_text(opts.name, opts.index, outcome))
    return EXIT_OK


def cmd_workflow(client: Client, opts: argparse.Namespace) -> int:
    handle = client.workflow(opts.name)
    if opts.action == "describe":
        print(describe_workflow(handle.get_view(), client.events(opts.name, "JobWorkflow"), _now()))
        return EXIT_OK
    if opts.action == "resume":
        n = handle.resume()
        print(f"jobworkflow.bgjobs.dev/{opts.name} resume {n} requested")
        return follow_workflow(handle, opts.timeout, opts.interval) if opts.wait else EXIT_OK
    if opts.action == "cancel":
        handle.cancel()
        print(f"jobworkflow.bgjobs.dev/{opts.name} cancel requested")
        return EXIT_OK
    return follow_workflow(handle, opts.timeout, opts.interval)


def follow_workflow(handle: WorkflowHandle, timeout: float | None, interval: float) -> int:
    """Show the workflow's step tree until it finishes: redrawn in place on a terminal,
    printed on each change otherwise."""
    import time

    tty = sys.stdout.isatty()
    deadline = None if timeout is None else time.monotonic() + timeout
    shown, drawn = "", 0
    while True:
        view = handle.get_view()
        text = workflow_summary(view) + "\n" + workflow_tree(view)
        if text != shown:
            if tty and drawn:
                sys.stdout.write(f"\033[{drawn}F\033[J")
            print(text, flush=True)
            shown, drawn = text, text.count("\n") + 1
        asked = int(((view.raw.get("spec") or {}).get("resumes")) or 0)
        if view.finished and view.resumes >= asked:
            return {"Succeeded": EXIT_OK, "Cancelled": EXIT_CANCELLED}.get(view.phase, EXIT_ERROR)
        if deadline is not None and time.monotonic() > deadline:
            print(f"error: {view.name} still {view.phase} after {timeout:g}s", file=sys.stderr)
            return EXIT_TIMEOUT
        time.sleep(interval)


def dashboard_argv(opts: argparse.Namespace) -> list[str]:
    """The dashboard's command line for ``kubectl bgjobs dashboard``: the user's own
    kubeconfig, context and namespace (so their RBAC applies), served on localhost."""
    argv = ["--host", opts.address, "--port", str(opts.port)]
    for flag in ("kubeconfig", "context", "namespace"):
        if getattr(opts, flag, None):
            argv += [f"--{flag}", getattr(opts, flag)]
    return [*argv, "--actions"] if opts.actions else argv


def _free_port(address: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def _open_when_ready(url: str) -> None:
    """Open the browser once /healthz answers (the caches have synced)."""
    import threading
    import time
    import urllib.request
    import webbrowser

    def wait_then_open() -> None:
        for _ in range(600):
            try:
                with urllib.request.urlopen(url + "healthz", timeout=2) as resp:
                    if resp.status == 200:
                        webbrowser.open(url)
                        return
            except OSError:
                pass
            time.sleep(0.5)

    threading.Thread(target=wait_then_open, daemon=True, name="open-browser").start()


def cmd_dashboard(opts: argparse.Namespace) -> int:
    try:
        from bgjobs.dashboard import server
    except ImportError as exc:
        print(
            f"error: the dashboard needs the dashboard extra ({exc.name} is missing): "
            "pip install 'bgjobs[dashboard]'",
            file=sys.stderr,
        )
        return EXIT_ERROR
    if opts.open:
        # The browser needs the address before the server prints it: pick the port now.
        if opts.port == 0:
            opts.port = _free_port(opts.address)
        _open_when_ready(f"http://{opts.address}:{opts.port}/")
    return int(server.main(dashboard_argv(opts)) or 0)


# --- command line ---------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl bgjobs",
        description="Submit, follow and inspect bgjobs BackgroundJobs and DeadLetters.",
        epilog="Exit codes: 0 ok; 1 error or Failed job; 2 Cancelled job; 3 --timeout passed.",
    )
    _global_options(parser, None)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Callable[..., int], help_: str, **kw: Any) -> Any:
        p = sub.add_parser(name, parents=[common], help=help_, description=help_, **kw)
        p.set_defaults(func=func)
        return p

    def following(p: Any) -> None:
        p.add_argument("--timeout", type=float, default=None, help="give up after SECONDS")
        p.add_argument(
            "--interval", type=float, default=0.5, help="seconds between polls (default 0.5)"
        )

    p = command("submit", cmd_submit, "run a task as a new BackgroundJob")
    p.add_argument("task", help="the registered task name, e.g. examples.add")
    p.add_argument(
        "args",
        nargs="*",
        metavar="ARG",
        help="positional arguments, each parsed as JSON when valid (42, true, [1,2]) else a "
        "string; put -- before arguments starting with '-'",
    )
    p.add_argument(
        "--kwargs", metavar="JSON", help='keyword arguments as a JSON object, e.g. {"steps": 5}'
    )
    p.add_argument("--name", help="the job's name (default: <task>-<random>)")
    p.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="submit at most once per key: a repeat returns the existing job",
    )
    p.add_argument("--queue", help="queue name (label bgjobs.dev/queue)")
    p.add_argument("--max-retries", type=int, metavar="N", help="retries after the first attempt")
    p.add_argument(
        "--soft-time-limit", type=float, metavar="SECONDS", help="per-attempt soft limit"
    )
    p.add_argument("--time-limit", type=float, metavar="SECONDS", help="per-attempt hard limit")
    p.add_argument("--deadline", type=float, metavar="SECONDS", help="limit for the whole job")
    p.add_argument("--critical", action="store_true", help="alert when the job is dead-lettered")
    p.add_argument("--priority", type=int, help="admission order in its JobQueue (higher first)")
    p.add_argument("--countdown", type=float, metavar="SECONDS", help="start after SECONDS")
    p.add_argument(
        "--start-at", metavar="RFC3339", help="start at this time, e.g. 2030-01-01T09:00:00Z"
    )
    p.add_argument("--wait", action="store_true", help="follow the job until it ends, like watch")
    following(p)

    p = command(
        "list", cmd_list, "list BackgroundJobs with their phase and progress", aliases=["ls"]
    )
    p.add_argument("--task", help="only this task")
    p.add_argument("--phase", help="only this phase (Pending, Running, Retrying, Succeeded, ...)")
    p.add_argument("--queue", help="only this queue")
    p.add_argument(
        "-o",
        "--output",
        choices=["table", "json", "yaml", "name"],
        default="table",
        help="output format (default table)",
    )
    p.add_argument(
        "-A", "--all-namespaces", action="store_true", help="list jobs in every namespace"
    )

    p = command("watch", cmd_watch, "follow a job until it ends; print its result or error")
    p.add_argument("name", help="the BackgroundJob")
    following(p)

    p = command("logs", cmd_logs, "print the output of the job's last attempt")
    p.add_argument("name", help="the BackgroundJob")
    p.add_argument("-c", "--container", default=WORKER_CONTAINER, help="container (default worker)")
    p.add_argument(
        "--devcluster-state",
        metavar="DIR",
        help="devcluster state directory, read when the API cannot serve pod logs (no kubelet); "
        "default $DEVCLUSTER_STATE",
    )

    p = command("describe", cmd_describe, "show a job's status, conditions, error and Events")
    p.add_argument("name", help="the BackgroundJob")

    p = command(
        "item",
        cmd_item,
        "show one batch item's outcome (status, attempts, result or error) from Redis",
    )
    p.add_argument("name", help="the batch BackgroundJob")
    p.add_argument("index", type=int, help="the item's index (its number in spec.items)")
    p.add_argument(
        "--redis-url",
        metavar="URL",
        help="the Redis the workers record into (default $BGJOBS_REDIS_URL); never printed "
        "with its password",
    )
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")

    p = command("cancel", cmd_cancel, "stop a job (spec.cancel); it ends Cancelled")
    p.add_argument("name", help="the BackgroundJob")

    p = command("replay", cmd_replay, "run a dead-lettered task again as <deadletter>-r<N>")
    p.add_argument("dead_letter", metavar="DEADLETTER", help="the DeadLetter")
    p.add_argument("--wait", action="store_true", help="follow the new job until it ends")
    following(p)

    p = command(
        "workflow",
        cmd_workflow,
        "show a JobWorkflow's step tree (describe), follow it (watch), resume or cancel it",
        aliases=["wf"],
    )
    p.add_argument("action", choices=["describe", "watch", "resume", "cancel"])
    p.add_argument("name", help="the JobWorkflow")
    p.add_argument("--wait", action="store_true", help="resume: follow it until it finishes")
    following(p)

    p = command(
        "queues",
        cmd_queues,
        "list JobQueues: waiting, running of the limit, rate, admitted last minute, paused",
        aliases=["q"],
    )
    p.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")

    p = command(
        "dashboard",
        cmd_dashboard,
        "serve the web dashboard on this machine with your kubeconfig (your RBAC applies); "
        "Ctrl-C stops it",
    )
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: a free one)")
    p.add_argument("--address", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument(
        "--actions",
        action="store_true",
        help="show the action buttons (cancel, replay, pause, submit): writes as you",
    )
    p.add_argument("--open", action="store_true", help="open it in the browser once ready")

    p = command("dead-letters", cmd_dead_letters, "list DeadLetters", aliases=["dl"])
    p.add_argument("--task", help="only this task")
    p.add_argument("--job", help="only the dead letter of this BackgroundJob")
    p.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    return parser


def _global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "-n",
        "--namespace",
        default=default,
        help="namespace (default: the current kubeconfig context's, else default)",
    )
    parser.add_argument(
        "--kubeconfig",
        default=default,
        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)",
    )
    parser.add_argument("--context", default=default, help="kubeconfig context to use")


def main(argv: Sequence[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    # urllib3 logs every connection retry; the one line below says what matters.
    logging.getLogger("urllib3").setLevel(logging.CRITICAL)
    try:
        if opts.func is cmd_dashboard:
            # The dashboard makes its own clients (watches); no Client here. With no -n it
            # shows every namespace the user may see.
            return cmd_dashboard(opts)
        namespace = opts.namespace or default_namespace(opts.kubeconfig, opts.context)
        client = Client(namespace, kubeconfig=opts.kubeconfig, context=opts.context)
        return int(opts.func(client, opts))
    except ClusterUnreachable as exc:
        print(unreachable_message(exc, opts.kubeconfig), file=sys.stderr)
    except InvalidSpec as exc:
        print(f"error: refused: {exc.message}", file=sys.stderr)
    except BgJobsError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `kubectl bgjobs list | head`: the reader left; say nothing more, and keep Python
        # from complaining about the unflushed stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
