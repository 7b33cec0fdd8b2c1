"""The short form of `make chaos`: two failure scenarios during a burst of 30 jobs on a
devcluster of their own (`python -m bench.chaos --smoke`). Nothing may be lost or
duplicated; times are never asserted (the machine is shared)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from devcluster import bins

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ["operator-kill", "node-restart", "load"]
ZERO = [
    "lost",
    "wrong_outcome",
    "jobs_created_twice",
    "deadletters_created_twice",
    "deadletters_missing",
    "executions_beyond_attempts",
    "results_lost",
    "progress_lost",
]


def test_chaos_smoke_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    out, raw = tmp_path / "reliability.md", tmp_path / "raw.json"
    env = {
        **os.environ,
        "PYTHONPATH": bins.source_path(),
        "CHAOS_N": "30",
        "CHAOS_KILLS": "2",
        "CHAOS_LONG_STEPS": "5",
        "CHAOS_DEADLINE": "150",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.chaos",
            "--smoke",
            "--only",
            ",".join(SCENARIOS),
            "--output",
            str(out),
            "--json",
            str(raw),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(raw.read_text())["results"]
    assert sorted(results) == sorted(SCENARIOS)
    for name, res in results.items():
        figures = {key: res[key] for key in ZERO}
        assert figures == dict.fromkeys(ZERO, 0), (name, figures, res["details"])
        assert res["seconds_to_terminal"] is not None, (name, res["details"])
        if name != "load":  # its jobs wait in a paused queue: nothing runs
            assert res["executions"] >= res["jobs"]
    text = out.read_text()
    assert "## Summary" in text and "**How counted.**" in text
    assert "1. Operator SIGKILLed repeatedly" in text and "6. Node killed" in text
