"""The web dashboard in a real headless Chromium (Debian's chromium + chromium-driver, driven
by Selenium) against the devcluster, the operator and a real redis-server. One browser and
one dashboard (with --actions) for the module; the read-only dashboard is started by the one
test that needs it. The tests use only the DOM hooks of the contract (data-role, data-key,
data-phase, data-action...). Waits are on what the page shows, never on how fast."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from devcluster import cluster
from devcluster.dashboard import DashboardProcess
from tests.integration.support import BgJobs, OperatorProcess, RedisServer, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = "apt-get install -y chromium chromium-driver (make system-deps)"

Browser = Any  # selenium.webdriver.Chrome: selenium is imported inside the fixture


def new_browser() -> Browser:
    """Headless Chromium through chromedriver. Missing binaries fail (not skip) the test
    with the command that installs them: CI must run these."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: {INSTALL}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # tests may run as root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    driver = new_browser()
    try:
        yield driver
    finally:
        driver.quit()


def start_dashboard(
    devcluster: cluster.ClusterInfo, redis_server: RedisServer, *, actions: bool, log: str
) -> DashboardProcess:
    dash = DashboardProcess(
        devcluster.kubeconfig,
        actions=actions,
        log_path=Path(devcluster.state_dir) / "logs" / log,
        # Where the workers' outcomes (tracebacks) are, as the operator is told.
        env={"BGJOBS_REDIS_URL": redis_server.url},
    )
    dash.start()
    return dash


@pytest.fixture(scope="module")
def dashboard(
    devcluster: cluster.ClusterInfo,
    redis_server: RedisServer,
    crds: Path,
    operator: OperatorProcess,
) -> Iterator[str]:
    """The dashboard with --actions, watching every namespace; yields its base URL."""
    dash = start_dashboard(devcluster, redis_server, actions=True, log="dashboard-actions.log")
    try:
        yield dash.url
    finally:
        dash.stop()


# --- helpers ------------------------------------------------------------------------------


def css(driver: Browser, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def until(driver: Browser, check: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    """Wait for the page (live updates, no reload) to show something; stale elements (the
    page replaced them) count as not yet."""
    from selenium.common.exceptions import StaleElementReferenceException

    def attempt() -> Any:
        try:
            return check()
        except StaleElementReferenceException:
            return None

    return wait_for(attempt, timeout=timeout, what=what)


def attr(driver: Browser, selector: str, name: str) -> str | None:
    found = css(driver, selector)
    return found[0].get_attribute(name) if found else None


def no_alert(driver: Browser) -> bool:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        driver.switch_to.alert  # noqa: B018 - raises when there is none
    except NoAlertPresentException:
        return True
    return False


def click_action(driver: Browser, scope: str, action: str) -> None:
    """Press an action button and accept its confirm() dialog."""
    (button,) = css(driver, f'{scope} [data-role="action"][data-action="{action}"]')
    button.click()
    until(driver, lambda: not no_alert(driver), f"the confirm dialog of {action}", timeout=10)
    driver.switch_to.alert.accept()


def flash(driver: Browser) -> str:
    found = css(driver, '[data-role="flash"]')
    return str(found[0].text) if found else ""


def make_queue(bgjobs: BgJobs, name: str) -> None:
    """A JobQueue that runs one job at a time."""
    bgjobs.create(
        "jobqueues",
        {
            "apiVersion": "bgjobs.dev/v1alpha1",
            "kind": "JobQueue",
            "metadata": {"name": name},
            "spec": {"concurrency": 1},
        },
    )


# --- scenarios ----------------------------------------------------------------------------


def test_the_jobs_list_shows_a_running_jobs_progress_moving(
    browser: Browser, dashboard: str, bgjobs: BgJobs
) -> None:
    ns = bgjobs.namespace
    bgjobs.submit("moving", "examples.progress", kwargs={"steps": 20, "delay": 0.75})
    browser.get(f"{dashboard}jobs?namespace={ns}")
    row = f'tr[data-role="job"][data-key="{ns}/moving"]'
    progress = f'{row} progress[data-role="progress"]'

    def value() -> float | None:
        text = attr(browser, progress, "value")
        return float(text) if text not in (None, "") else None

    first = until(browser, value, "a progress bar on the running job's row")
    assert first < 100
    # The same page, never reloaded: the value moves through live updates.
    moved = until(browser, lambda: (v := value()) is not None and v > first and v, "progress")
    assert moved > first
    until(browser, lambda: attr(browser, row, "data-phase") == "Succeeded", "Succeeded")
    assert value() == 100


def test_a_failed_jobs_page_shows_its_error_and_traceback_and_its_dead_letter_replays(
    browser: Browser, dashboard: str, bgjobs: BgJobs
) -> None:
    ns = bgjobs.namespace
    bgjobs.submit("broken", "examples.permanent")
    bgjobs.wait_phase("broken", "Failed")
    browser.get(f"{dashboard}jobs/{ns}/broken")
    assert until(browser, lambda: attr(browser, '[data-role="phase"]', "textContent"), "phase")
    assert "Failed" in css(browser, '[data-role="phase"]')[0].text
    until(browser, lambda: "bad input" in css(browser, '[data-role="error"]')[0].text, "error")
    traceback = until(
        browser,
        lambda: (
            (t := css(browser, '[data-role="traceback"]')) and t[0].get_attribute("textContent")
        ),
        "the traceback",
    )
    assert "Traceback" in traceback and "PermanentError: bad input" in traceback
    # Each attempt (pod) with the error its worker wrote, and the newest pod's log tail.
    attempts = css(browser, '[data-role="attempt-list"]')[0].text
    assert "PermanentError: bad input" in attempts
    assert "PermanentError" in css(browser, '[data-role="output"]')[0].get_attribute("textContent")

    # Its dead letter, replayed from the page: the operator creates the new job.
    dl = wait_for(lambda: bgjobs.list("deadletters"), timeout=60, what="the dead letter")[0]
    name = dl["metadata"]["name"]
    browser.get(f"{dashboard}deadletters/{ns}/{name}")
    click_action(browser, "body", "replay")
    until(browser, lambda: flash(browser), "the flash message after the replay")
    assert not css(browser, '[data-role="flash"][data-level="error"]'), flash(browser)
    replayed = wait_for(
        lambda: bgjobs.get(name, "deadletters").get("status", {}).get("replayedJobs"),
        timeout=60,
        what="the replay to be recorded",
    )
    assert replayed == [f"{name}-r1"]
    job = wait_for(lambda: bgjobs.get(f"{name}-r1"), timeout=60, what="the replayed job")
    assert job["spec"]["task"] == "examples.permanent"


def test_a_workflows_graph_shows_steps_changing_state(
    browser: Browser, dashboard: str, bgjobs: BgJobs
) -> None:
    ns = bgjobs.namespace
    steps = [
        {"name": "first", "task": "examples.sleep", "kwargs": {"seconds": 2}},
        # immutable: the first step's result (None) is not passed on as a first argument.
        {
            "name": "second",
            "task": "examples.add",
            "args": [1, 2],
            "dependsOn": ["first"],
            "immutable": True,
        },
    ]
    body = {
        "apiVersion": "bgjobs.dev/v1alpha1",
        "kind": "JobWorkflow",
        "metadata": {"name": "graph"},
        "spec": {"steps": steps},
    }
    bgjobs.create("jobworkflows", body)
    browser.get(f"{dashboard}workflows/{ns}/graph")

    def phase(step: str) -> str | None:
        return attr(browser, f'svg [data-role="step"][data-step="{step}"]', "data-phase")

    until(browser, lambda: phase("first") and phase("second"), "both steps in the graph")
    # When the page was loaded the second step had not run (it waits for the first)...
    assert phase("second") != "Succeeded"
    seen = {phase("second")}
    # ...and it changes state in place, through live updates, until it succeeds.
    until(browser, lambda: seen.add(phase("second")) or phase("second") == "Succeeded", "second")
    until(browser, lambda: phase("first") == "Succeeded", "first step Succeeded")
    assert len(seen) >= 2, seen


def test_a_queue_paused_from_the_page_stops_admissions(
    browser: Browser, dashboard: str, bgjobs: BgJobs, batch: client.BatchV1Api
) -> None:
    ns = bgjobs.namespace
    make_queue(bgjobs, "gate")
    browser.get(f"{dashboard}queues?namespace={ns}")
    row = f'tr[data-role="queue"][data-key="{ns}/gate"]'
    until(browser, lambda: attr(browser, row, "data-paused") == "false", "the queue's row")
    click_action(browser, row, "pause-queue")
    until(browser, lambda: flash(browser), "the flash message after pausing")
    assert not css(browser, '[data-role="flash"][data-level="error"]'), flash(browser)
    assert bgjobs.get("gate", "jobqueues")["spec"]["paused"] is True

    bgjobs.submit("held", "examples.add", args=[1, 2], queue="gate")

    def held_reason() -> str | None:
        conds = bgjobs.status("held").get("conditions") or []
        queued = [c for c in conds if c["type"] == "Queued" and c["status"] == "True"]
        return queued[0]["reason"] if queued else None

    assert wait_for(held_reason, timeout=60, what="held to wait") == "QueuePaused"
    jobs = batch.list_namespaced_job(ns).items
    assert jobs and all(j.spec.suspend for j in jobs), "a paused queue admits nothing"
    browser.get(f"{dashboard}jobs?namespace={ns}")
    reason = f'tr[data-role="job"][data-key="{ns}/held"] [data-role="pending-reason"]'
    assert "pause" in until(browser, lambda: attr(browser, reason, "textContent"), "why").lower()

    # Resumed from the page: the job is admitted and runs.
    browser.get(f"{dashboard}queues?namespace={ns}")
    until(browser, lambda: attr(browser, row, "data-paused") == "true", "the paused row")
    click_action(browser, row, "resume-queue")
    assert bgjobs.wait_phase("held")["phase"] == "Succeeded"


def test_hostile_args_render_as_text(browser: Browser, dashboard: str, bgjobs: BgJobs) -> None:
    ns = bgjobs.namespace
    payload = "<script>alert('xss')</script><img src=x onerror=alert(1)>"
    bgjobs.submit("hostile", "examples.echo", args=[payload], kwargs={"note": payload})
    for page in (f"jobs?namespace={ns}", f"jobs/{ns}/hostile"):
        browser.get(dashboard + page)
        until(browser, lambda: css(browser, '[data-role="job"], [data-role="args"]'), page)
        assert no_alert(browser), f"a script ran on {page}"
    args = until(browser, lambda: css(browser, '[data-role="args"]')[0].text, "the args")
    assert payload in args  # shown as the text it is
    assert not css(browser, '[data-role="args"] script, [data-role="args"] img')
    bgjobs.wait_phase("hostile")
    browser.refresh()
    assert no_alert(browser)


def test_a_post_without_the_csrf_token_is_refused(
    browser: Browser, dashboard: str, bgjobs: BgJobs
) -> None:
    """Actions enabled, but a POST that did not come from the page's form (no token, or
    from another origin) is refused, and nothing changes."""
    ns = bgjobs.namespace
    make_queue(bgjobs, "guarded")
    browser.get(f"{dashboard}queues?namespace={ns}")
    row = f'tr[data-role="queue"][data-key="{ns}/guarded"]'
    until(browser, lambda: css(browser, f'{row} [data-action="pause-queue"]'), "pause button")
    form = css(browser, f'{row} [data-action="pause-queue"]')[0].find_element(
        "xpath", "./ancestor::form"
    )
    action = form.get_attribute("action")
    fields = {
        i.get_attribute("name"): i.get_attribute("value")
        for i in form.find_elements("css selector", "input[type=hidden]")
        if i.get_attribute("name") != "csrf_token"
    }
    refused = httpx.post(action, data=fields, timeout=30)
    assert refused.status_code == 403
    forged = httpx.post(
        action,
        data={**fields, "csrf_token": "forged"},
        headers={"Origin": "http://evil.example"},
        timeout=30,
    )
    assert forged.status_code == 403
    assert bgjobs.get("guarded", "jobqueues")["spec"].get("paused") in (None, False)


def test_with_actions_disabled_no_control_is_shown_and_a_forged_post_is_refused(
    browser: Browser,
    devcluster: cluster.ClusterInfo,
    redis_server: RedisServer,
    dashboard: str,
    bgjobs: BgJobs,
) -> None:
    ns = bgjobs.namespace
    make_queue(bgjobs, "ro")
    bgjobs.submit("ro-job", "examples.sleep", kwargs={"seconds": 30}, queue="ro")
    dash = start_dashboard(devcluster, redis_server, actions=False, log="dashboard-ro.log")
    try:
        url = dash.url
        pages = [f"jobs?namespace={ns}", f"jobs/{ns}/ro-job", f"queues?namespace={ns}"]
        pages += ["workflows", "batches", "schedules", "deadletters", "submit"]
        for page in pages:
            browser.get(url + page)
            assert attr(browser, "body", "data-actions") == "false", page
            assert not css(browser, '[data-role="action"]'), page
        browser.get(f"{url}queues?namespace={ns}")
        row = f'tr[data-role="queue"][data-key="{ns}/ro"]'
        until(browser, lambda: css(browser, row), "the queue's row")
        # A POST from the page's own origin, as a script on it would make.
        status = browser.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            const body = new URLSearchParams({namespace: arguments[0], name: "ro"});
            fetch("/actions/pause-queue", {method: "POST", body: body})
              .then(r => done(r.status), e => done(String(e)));
            """,
            ns,
        )
        assert status == 403
        refused = httpx.post(
            f"{url}actions/cancel", data={"namespace": ns, "name": "ro-job"}, timeout=30
        )
        assert refused.status_code == 403
        assert not bgjobs.get("ro", "jobqueues")["spec"].get("paused")
        assert not bgjobs.get("ro-job")["spec"].get("cancel")
    finally:
        dash.stop()
    bgjobs.patch("ro-job", {"spec": {"cancel": True}})  # don't leave a 30 s pod behind
