"""`python -m bench --smoke` end to end: its own devcluster, every section measured, a
markdown report with numbers. Timings are never asserted (the machine is shared)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from devcluster import bins

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = [
    "1. Reconcile throughput",
    "2. API writes per job",
    "3. Submit-to-Job latency",
    "4. Progress",
    "5. Memory and start-up",
    "6. Worker overhead",
    "7. API client",
    "8. Workflow step hand-off",
    "10. Dashboard",
    "11. JobQueue admission",
]
NUMBER = re.compile(r"\d+(\.\d+)?\s?(µs|ms|s|MiB|/s)?\b")


def _sections(markdown: str) -> dict[str, str]:
    parts = re.split(r"^## ", markdown, flags=re.MULTILINE)
    return {p.split("\n", 1)[0].strip(): p for p in parts[1:]}


def test_bench_smoke_writes_every_section_with_numbers(tmp_path: Path) -> None:
    out = tmp_path / "b.md"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--smoke",
            "--output",
            str(out),
            "--json",
            str(tmp_path / "raw.json"),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": bins.source_path()},
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = out.read_text()
    assert "Smoke run" in text
    sections = _sections(text)
    assert "Summary" in sections
    for title in SECTIONS:
        body = sections.get(title)
        assert body is not None, f"section {title!r} missing; have {sorted(sections)}"
        assert "section failed" not in body, body
        table_rows = [line for line in body.splitlines() if line.startswith("| ")]
        assert any(NUMBER.search(row) for row in table_rows[1:]), body
        assert "**How measured.**" in body and "**Targets.**" in body
    # The frame: machine, versions and the exact command.
    assert re.search(r"\*\*Machine:\*\* \d+ CPUs", text)
    assert "kopf (Python)" in text and "KUBERNETES_VERSION" in text
    assert "python -m bench --smoke" in text
