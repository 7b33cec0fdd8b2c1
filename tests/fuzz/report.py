"""The "Fuzzed manifests" section of docs/reliability.md, rendered from a fuzz run."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from tests.fuzz.runner import KNOWN_OPEN, RunResult

HEADING = "## Fuzzed manifests"

OUTCOME_COLUMNS = [
    ("refused at apply", "refused at apply"),
    ("marked Invalid", "marked Invalid"),
    ("succeeded", "succeeded, echo exact"),
    ("replay succeeded", "replay succeeded, echo exact"),
    ("accepted, CronJob ready", "CronJob ready, env exact"),
    ("recorded", "recorded"),
]

HOW = """\
**How measured.** `make fuzz` (`python -m tests.fuzz`, generator and runner in `tests/fuzz/`)
starts a devcluster of its own, a real redis-server and the real operator (the same process
the integration tests run, with the real worker: every job's pod runs `bgjobs-worker run` and
the task `examples.echo`, which returns its args and kwargs). Hypothesis strategies built from
the pydantic models in `bgjobs/api/v1alpha1.py` (their fields and their bounds, read from the
models' JSON schemas, the CRDs' source; every manifest meant to be valid is validated by the
model before it is sent) generate BackgroundJob, JobSchedule and DeadLetter manifests; which
generator makes the n-th manifest is round robin, so each category gets its share. All are
submitted at once by 8 threads into namespaces of 150, as `kubectl apply` sends them
(`fieldValidation=Strict`), a watch records every batch Job created, and the namespaces are
listed until each accepted manifest has settled. A smaller fixed-seed run of the same code
(`tests/integration/test_fuzz_smoke.py`, 60 manifests) is part of `make test`.

* **Valid, hostile values.** args and kwargs of unicode (astral, combining, ZWJ, BOM, RTL
  override, control characters, NUL), `$(VAR)`, `$$`, `${X}` and other template syntax,
  JSON `null` at every level, empty objects and lists, nesting up to 250 levels, integers
  from 0 to beyond 64 bits, floats from 5e-324 to 1.797e308 and -0.0, strings up to the
  operator's 32 KiB input limit; names at the 63/52-character limits and dotted names; all
  optional spec fields (retry, time limits, deadlines, TTLs, env, resources, queue, image).
  Property: accepted, `Succeeded`, and what the task returned (`status.result`, and the
  Redis result document whenever the Job's uid or `status.resultRef` is known) equals the
  stored args and kwargs as canonical JSON (keys sorted, UTF-8, numbers by value: 1.0 and 1
  are one JSON number). Schedules are created suspended; their CronJob's worker env must
  carry the template's args and kwargs exactly. DeadLetters are records (accepted, no
  replay) or ask for one replay, whose task must echo the letter's inputs.
* **Invalid.** Unknown fields (top level, spec, nested), wrong types for every spec field,
  out-of-range values for every bounded field, soft >= hard time limit, hard limit beyond the
  deadline, bad names (upper case, `_`, spaces, unicode, `..`, too long), a missing task,
  inputs over the operator's 32 KiB limit (up to 1 MB), a reserved env name, NUL in an env
  value, a bad resource quantity; bad cron (out-of-range fields, wrong field count, unknown
  macro, intervals cron cannot express, TZ prefixes, dates that never occur, backwards
  ranges), unknown time zones; DeadLetters missing fields, with replays out of range, or
  asking for a replay the API server must refuse. Property: refused at apply (HTTP 4xx with
  a message) or accepted and marked `Invalid` with a message, and no Job, CronJob or replay
  created (checked by the Job watch, so a Job that came and went counts too).
* **Extreme.** Schema-valid durations at 2^31-1 and beyond (TTLs, deadlines, time limits):
  either outcome above is fine, a job stuck, failed or wrong is not.
* **The operator**: no `Traceback` in its log during the run, never restarted.
"""

DEFECTS = """\
**Defects the fuzzer found (fixed, each with a regression test):**

1. *A null inside args wedged the job.* The spec-immutability CEL rule compares the whole
   spec, and CEL cannot read a list holding `null` unless the items are `nullable`: every
   status write of such a job was refused (422), so it stayed `Pending` while its task ran,
   and the operator retried it forever. `args` items (BackgroundJob, JobSchedule template,
   DeadLetter) are now `nullable: true`.
2. *`resources` could not be set.* The CRD generator dropped `additionalProperties`, so
   `spec.resources.requests.cpu` was an unknown field: `kubectl apply` refused
   `resources: {requests: {cpu: 100m}}`, and a client without strict validation had it
   silently pruned. Map values are now in the schema (int-or-string quantities).
3. *Durations without an upper bound.* `ttlSecondsAfterFinished` > 2^31-1 (the Job's int32)
   and `timeLimits` near 2^63 ended `Invalid` with a Go unmarshalling error;
   `activeDeadlineSeconds` = 2^63-1 overflowed the Job controller's clock and failed the job
   at once with `DeadlineExceeded` (and a DeadLetter); `resultTTLSeconds` = 2^63-1 made Redis
   refuse the result (`invalid expire time`), so it was kept only in the termination
   message; `hardSeconds` = 2^31-1 made the pod deadline (hard + 30 s) exceed the int32
   pod validation allows, so the Job was refused. Every duration is now at most 2^31-1 s
   (68 years), time limits 2^31-31 s, refused at apply beyond.
4. *A NUL in an env value* made the pod unstartable (no process environment can hold one;
   the devcluster's node even reported it as a success, fixed too): `env[].value` now has a
   pattern refusing NUL at apply.
"""

KNOWN = """\
**Not bgjobs' doing (the API server, reported for completeness).** The API server stores
numbers it cannot hold as int64 as float64 and writes them back as the shortest decimal that
reads as the same float64: `18446744073709551617` comes back as `18446744073709552000` and the
float `3.3e16` as the integer `33000000000000000`. Every client (kubectl included) reads
that value back, and the task receives exactly it; the table counts these under "API server
float64". Send numbers beyond 2^53 as strings if they must be exact. Lone UTF-16 surrogates
(not Unicode scalar values) are turned into U+FFFD by the API server's decoder and are not
generated. Client-side `kubectl apply` drops `null` values from maps before sending (apply
reads them as "delete"); `kubectl create`, server-side apply and API clients keep them.
"""


def _cell(n: int) -> str:
    return str(n) if n else "-"


def render(result: RunResult, *, seed: int, generated_seconds: float) -> str:
    cases = result.cases
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    invalid = [c for c in cases if c.expect == "reject"]
    valid = [c for c in cases if c.expect in ("run", "accept")]
    extreme = [c for c in cases if c.expect == "run_or_reject"]
    runs = [c for c in cases if c.expect == "run"]
    lines = [
        HEADING,
        "",
        f"_Written by `make fuzz` on {when}: {len(cases)} manifests (seed {seed}), "
        f"{result.seconds:.0f} s against the cluster (+{generated_seconds:.0f} s generating), "
        f"{len(result.namespaces)} namespaces._",
        "",
        "| Figure | Value |",
        "|---|---|",
        f"| manifests | {len(cases)} ({len(valid)} valid, {len(invalid)} invalid, "
        f"{len(extreme)} extreme) |",
        f"| invalid: refused at apply | {sum(c.outcome == 'refused at apply' for c in invalid)} |",
        f"| invalid: marked Invalid (with a message, no Job) | "
        f"{sum(c.outcome == 'marked Invalid' and bool(c.ok) for c in invalid)} |",
        f"| invalid: neither (failures) | {sum(not c.ok for c in invalid)} "
        f"(known open defect: {len(result.known_open)}) |",
        f"| tasks run to compare (jobs and replays) | {len(runs)} |",
        f"| succeeded with args and kwargs exact | {sum(bool(c.ok) for c in runs)} |",
        f"| of which exact only as the API server stored them (float64) | "
        f"{sum(bool(c.extra.get('float64')) for c in runs)} |",
        f"| compared with status.result / with the Redis result | "
        f"{sum('status.result' in c.extra.get('compared', []) for c in cases)} / "
        f"{sum('redis' in c.extra.get('compared', []) for c in cases)} |",
        f"| mismatches (task input != stored spec) | "
        f"{sum('MISMATCH' in c.outcome for c in cases)} |",
        f"| valid manifests failing (refused, stuck, failed) | {sum(not c.ok for c in valid)} |",
        f"| extreme: ran / refused or Invalid / failing | "
        f"{sum(c.outcome == 'succeeded' for c in extreme)} / "
        f"{sum(c.outcome in ('refused at apply', 'marked Invalid') for c in extreme)} / "
        f"{sum(not c.ok for c in extreme)} |",
        f"| operator tracebacks / ERROR lines / restarts | {len(result.traceback_lines)} / "
        f"{len(result.error_lines)} / {result.operator_restarts} |",
        f"| every case settled within the timeout | {'yes' if not result.timed_out else 'NO'} |",
        "",
        "Per category (outcome counts; a category's property is in the list below the table):",
        "",
        "| Kind | Category | Expect | N | "
        + " | ".join(title for _, title in OUTCOME_COLUMNS)
        + " | other | failing |",
        "|---|---|---|---:|" + "---:|" * len(OUTCOME_COLUMNS) + "---:|---:|",
    ]
    groups: dict[tuple[str, str, str], list] = {}
    for c in cases:
        groups.setdefault((c.kind, c.category, c.expect), []).append(c)
    for (kind, category, expect), members in sorted(groups.items()):
        outcomes = Counter(c.outcome for c in members)
        known = {key for key, _ in OUTCOME_COLUMNS}
        other = sum(n for o, n in outcomes.items() if o not in known)
        cells = [_cell(outcomes[key]) for key, _ in OUTCOME_COLUMNS]
        failing = sum(not c.ok for c in members)
        lines.append(
            f"| {kind} | {category} | {expect} | {len(members)} | "
            + " | ".join(cells)
            + f" | {_cell(other)} | {_cell(failing)} |"
        )
    lines.append("")
    if result.failures:
        lines += ["**Failing manifests** (first 40):", ""]
        for c in result.failures[:40]:
            detail = re.sub(r"\s+", " ", c.detail)[:240].replace("|", "\\|")
            lines.append(f"* {c.kind} `{c.name}` ({c.category}): {c.outcome}: {detail}")
        lines.append("")
    if result.known_open:
        lines += ["**Known open defect** (reported, not fixed here):", ""]
        for (kind, category), what in KNOWN_OPEN.items():
            n = sum(c.kind == kind and c.category == category for c in result.known_open)
            lines.append(f"* {kind} {category} ({n} manifests): {what}.")
        lines.append("")
    lines += [HOW, DEFECTS, KNOWN]
    return "\n".join(lines).rstrip() + "\n"


def headline(result: RunResult) -> str:
    return (
        f"fuzz: {len(result.cases)} manifests, {len(result.failures)} failing "
        f"(+{len(result.known_open)} known open), "
        f"{len(result.traceback_lines)} tracebacks, {result.operator_restarts} restarts, "
        f"{result.seconds:.0f} s"
    )


def write_section(path: Path, section: str) -> None:
    """Replace the "Fuzzed manifests" section of ``path`` (up to the next level-2 heading),
    or append it; every other section is kept as it is."""
    text = path.read_text() if path.exists() else "# Reliability\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)
