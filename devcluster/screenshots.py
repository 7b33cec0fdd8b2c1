"""`make screenshots`: the dashboard's main pages as PNGs in docs/screenshots/.

A devcluster of its own (state in .devcluster/screenshots), a redis-server and the operator
(as in `make demo`), the examples (jobs with progress, a flaky one, a dead letter, a batch,
a schedule, the seed's workflow, a JobQueue), one long job left running so its progress bar
shows, then the dashboard (with --actions, so the buttons show) and a headless Chromium
(Debian's chromium + chromium-driver, driven by Selenium) photographing each page. Everything
is stopped at the end, the cluster included.
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from pathlib import Path
from typing import Any

from devcluster import cluster
from devcluster.dashboard import DashboardProcess
from devcluster.demo import ROOT, WORKFLOW, Demo, say

OUT = ROOT / "docs" / "screenshots"
NS = "default"
# (file name, path on the dashboard, CSS selector that must be present before the shot)
PAGES = [
    ("jobs", f"/jobs?namespace={NS}", 'tr[data-role="job"]'),
    ("job-failed", f"/jobs/{NS}/bad-input", '[data-role="error"]'),
    ("workflow", f"/workflows/{NS}/{WORKFLOW}", '[data-role="step"]'),
    ("batches", "/batches", "body"),
    ("queues", "/queues", 'tr[data-role="queue"]'),
    ("deadletters", "/deadletters", "body"),
    ("schedules", "/schedules", "body"),
]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            raise SystemExit(f"{path} missing: make system-deps (apt chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=1200,760")
    options.add_argument("--hide-scrollbars")
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def wait_selector(driver: Any, selector: str, timeout: float = 60) -> None:
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if driver.find_elements(By.CSS_SELECTOR, selector):
            return
        time.sleep(0.5)
    raise SystemExit(f"{driver.current_url}: no {selector} after {timeout}s")


def shoot(driver: Any, path: Path) -> int:
    """A viewport PNG through the DevTools protocol (smaller than a full-page shot)."""
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    data = base64.b64decode(shot["data"])
    path.write_bytes(data)
    return len(data)


def stage(demo: Demo) -> None:
    """The examples, finished, plus a JobQueue and one job still running."""
    demo.apply_examples()
    demo.kubectl("apply", "-f", str(ROOT / "examples" / "jobqueue.yaml"))
    demo.watch()
    demo.kubectl("delete", "backgroundjob", "nightly-export", "--ignore-not-found")
    long_job = {
        "apiVersion": "bgjobs.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {"name": "nightly-export", "labels": {"team": "data"}},
        "spec": {"task": "examples.progress", "kwargs": {"steps": 200, "delay": 1.0}},
    }
    path = demo.state / "nightly-export.json"
    path.write_text(json.dumps(long_job))
    demo.kubectl("apply", "-f", str(path))
    say("waiting for nightly-export to report progress")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        out = demo.kubectl("get", "backgroundjob", "nightly-export", "-o", "json")
        status = json.loads(out).get("status") or {}
        if ((status.get("progress") or {}).get("percent") or 0) >= 3:
            return
        time.sleep(1)
    raise SystemExit("nightly-export reported no progress")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devcluster.screenshots")
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".devcluster" / "screenshots")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    opts = parser.parse_args()
    demo = Demo(opts.state_dir, cluster.free_port(), cluster.free_port())
    dashboard: DashboardProcess | None = None
    driver = None
    try:
        demo.start_cluster()
        demo.start_redis()
        demo.start_operator()
        stage(demo)
        say("starting the dashboard and a headless Chromium")
        dashboard = DashboardProcess(
            demo.env["KUBECONFIG"],
            actions=True,
            log_path=demo.state / "logs" / "dashboard.log",
            env=demo.env,
        )
        url = dashboard.start().rstrip("/")
        driver = browser()
        opts.out.mkdir(parents=True, exist_ok=True)
        for name, page, selector in PAGES:
            driver.get(url + page)
            wait_selector(driver, selector)
            time.sleep(1.5)  # let live.js apply the first updates
            size = shoot(driver, opts.out / f"{name}.png")
            print(f"    {opts.out / f'{name}.png'}  {size // 1024} KiB")
    finally:
        if driver is not None:
            driver.quit()
        if dashboard is not None:
            dashboard.stop()
        if not opts.keep:
            say("stopping the screenshot cluster")
            cluster.down(opts.state_dir)


if __name__ == "__main__":
    main()
