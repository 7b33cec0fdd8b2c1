"""`python -m bench`: start a devcluster of its own, measure, write docs/benchmarks.md.

python -m bench                      # full sizes (make bench), 6-10 min on 2 cores
python -m bench --smoke --output x   # tiny sizes, a few minutes: proves it works
python -m bench --only writes,progress
python -m bench --render results.json  # re-render a document from saved raw results
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from bench import (
    batches,
    client_choice,
    dashboard,
    latency,
    memory,
    progress,
    queues,
    report,
    sizes,
    throughput,
    worker,
    workflows,
    writes,
)
from bench.cluster import ROOT, setup, teardown
from bench.report import Headline, Section

SECTIONS: dict[str, ModuleType] = {
    "throughput": throughput,
    "writes": writes,
    "latency": latency,
    "progress": progress,
    "memory": memory,
    "worker": worker,
    "client": client_choice,
    "workflows": workflows,
    "batches": batches,
    "dashboard": dashboard,
    "queues": queues,
}
TITLES = {
    "throughput": "1. Reconcile throughput",
    "writes": "2. API writes per job",
    "latency": "3. Submit-to-Job latency",
    "progress": "4. Progress",
    "memory": "5. Memory and start-up",
    "worker": "6. Worker overhead",
    "client": "7. API client",
    "workflows": "8. Workflow step hand-off",
    "batches": "9. Batches",
    "dashboard": "10. Dashboard",
    "queues": "11. JobQueue admission",
}


def say(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def command_line(argv: list[str]) -> str:
    """The command as typed: `make bench` (make sets MAKELEVEL for its children) or
    `python -m bench ...`, with the BENCH_* overrides in front."""
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sizes.overrides().items())
    cmd = " ".join(["python -m bench", *map(shlex.quote, argv)])
    if os.environ.get("MAKELEVEL") and not argv:
        cmd = "make bench"
    return f"{env} {cmd}".strip()


def _failed(name: str, error: str) -> Section:
    return Section(
        title=TITLES[name],
        body=f"**Not measured: this section failed.**\n\n```\n{error.strip()[-2000:]}\n```",
        how="See the error above.",
        targets="Not judged.",
        headlines=[Headline(TITLES[name], "failed")],
    )


def render_all(raw: dict[str, Any]) -> tuple[str, bool]:
    rendered, ok = [], True
    for name, module in SECTIONS.items():
        if name not in raw["results"]:
            continue
        result = raw["results"][name]
        if "error" in result:
            rendered.append(_failed(name, result["error"]))
            ok = False
            continue
        render: Callable[[dict[str, Any]], Section] = module.render
        try:
            rendered.append(render(result))
        except Exception:  # noqa: BLE001 - a rendering bug must not hide other sections
            rendered.append(_failed(name, traceback.format_exc()))
            ok = False
    return report.render(raw["context"], rendered, raw["smoke"]), ok


def measure(opts: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    s = sizes.from_env(opts.smoke)
    wanted = [n.strip() for n in opts.only.split(",")] if opts.only else list(SECTIONS)
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"--only: unknown sections {sorted(unknown)}; known: {list(SECTIONS)}")
    raw: dict[str, Any] = {
        "context": report.context(command_line(argv)),
        "smoke": opts.smoke,
        "sizes": s.__dict__,
        "results": {},
    }
    started = time.monotonic()
    state = Path(tempfile.mkdtemp(prefix="bgjobs-bench-"))
    say(f"starting a devcluster in {state}")
    b = setup(state)
    try:
        for name in wanted:
            say(f"{TITLES[name]} ...")
            t0 = time.monotonic()
            try:
                raw["results"][name] = SECTIONS[name].run(b, s)
            except Exception:  # noqa: BLE001 - report it, measure the rest
                raw["results"][name] = {"error": traceback.format_exc()}
                say(f"{TITLES[name]} FAILED:\n{traceback.format_exc()}")
            say(f"{TITLES[name]} done in {time.monotonic() - t0:.0f} s")
    finally:
        say("stopping the devcluster")
        teardown(b)
        if opts.keep_state or os.environ.get("BENCH_KEEP_STATE"):
            say(f"state kept in {state}")
        else:
            shutil.rmtree(state, ignore_errors=True)
    elapsed = time.monotonic() - started
    raw["context"]["elapsed"] = f"{elapsed / 60:.1f} min"
    raw["context"]["load_after"] = report.loadavg()
    raw["context"]["changed_during_run"] = report.source_digest() != raw["context"]["source_digest"]
    return raw


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds, not minutes)")
    parser.add_argument(
        "--output", type=Path, default=ROOT / "docs" / "benchmarks.md", help="markdown to write"
    )
    parser.add_argument("--only", help="comma-separated sections: " + ",".join(SECTIONS))
    parser.add_argument(
        "--json",
        type=Path,
        help="where to save the raw results (default: next to --output's name in the temp dir)",
    )
    parser.add_argument("--render", type=Path, help="re-render --output from saved raw results")
    parser.add_argument(
        "--keep-state",
        action="store_true",
        help="keep the devcluster's state dir (logs, audit log) for a closer look; "
        "or BENCH_KEEP_STATE=1",
    )
    opts = parser.parse_args(argv)
    if opts.render:
        raw = json.loads(opts.render.read_text())
    else:
        raw = measure(opts, argv)
        saved = opts.json or Path(tempfile.gettempdir()) / f"{opts.output.stem}-raw.json"
        saved.write_text(json.dumps(raw, indent=1))
        say(f"raw results saved to {saved}")
    text, ok = render_all(raw)
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(text)
    say(f"wrote {opts.output}")
    for line in text.split("## Summary", 1)[-1].split("\n## ", 1)[0].strip().splitlines():
        print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
