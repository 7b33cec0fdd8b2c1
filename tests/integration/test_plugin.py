"""kubectl bgjobs through the real kubectl binary: kubectl finds ``kubectl-bgjobs`` on PATH
and runs it as a plugin against devcluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from devcluster import bins, cluster
from tests.integration.support import BgJobs, RedisServer

VENV_BIN = Path(sys.executable).parent
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def plugin(devcluster: cluster.ClusterInfo, bgjobs: BgJobs) -> Run:
    """``kubectl bgjobs ARGS`` in the test's namespace; returns the CompletedProcess."""
    assert (VENV_BIN / "kubectl-bgjobs").exists(), "run: pip install -e '.[dev]'"
    kubectl = str(bins.binary("kubectl"))
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DEVCLUSTER_STATE": devcluster.state_dir,
    }
    env.pop("KUBECONFIG", None)

    def run(
        *args: str, kubeconfig: str = devcluster.kubeconfig, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        # kubectl refuses flags before a plugin's name: they go after "bgjobs".
        return subprocess.run(
            [kubectl, "bgjobs", f"--kubeconfig={kubeconfig}", "-n", bgjobs.namespace, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )

    return run


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_a_succeeding_job_submit_watch_list_describe_logs(plugin: Run) -> None:
    sub = plugin(
        "submit", "examples.progress", "--kwargs", '{"steps": 4, "delay": 0.3}', "--name", "prog"
    )
    assert sub.returncode == 0, sub.stderr
    assert sub.stdout.strip() == "backgroundjob.bgjobs.dev/prog created"
    plugin("submit", "examples.add", "40", "2", "--name", "add")

    watch = plugin("watch", "prog", "--timeout", "90")
    assert watch.returncode == 0, watch.stdout + watch.stderr
    assert last_line(watch.stdout) == 'result: {"steps": 4}'
    # Not a terminal: one plain line per change, the last one complete.
    lines = watch.stdout.strip().splitlines()
    assert lines[0].startswith("prog  ") and "\r" not in watch.stdout
    assert lines[-2] == "prog  Succeeded  [##########] 100%  working: step 4/4  attempt 1"

    assert plugin("watch", "add", "--timeout", "60").returncode == 0
    table = plugin("list").stdout.splitlines()
    assert table[0].split() == ["NAME", "TASK", "PHASE", "PROGRESS", "ATTEMPTS", "AGE"]
    rows = {line.split()[0]: line for line in table[1:]}
    assert set(rows) == {"prog", "add"}
    assert rows["prog"].split()[1:3] == ["examples.progress", "Succeeded"]
    assert "[##########] 100%" in rows["prog"]
    assert rows["add"].split()[1:5] == ["examples.add", "Succeeded", "-", "1"]
    only = plugin("list", "--task", "examples.add", "-o", "json")
    assert [i["status"]["result"] for i in json.loads(only.stdout)["items"]] == [42]

    described = plugin("describe", "prog")
    assert described.returncode == 0, described.stderr
    assert "Phase:          Succeeded" in described.stdout
    assert 'Result:         {"steps": 4}' in described.stdout
    conditions = described.stdout.split("Conditions:")[1].split("Events:")[0]
    assert any(
        line.split()[:3] == ["Succeeded", "True", "Completed"] for line in conditions.splitlines()
    )

    logs = plugin("logs", "prog")
    assert logs.returncode == 0, logs.stderr
    # Through the API server's pod log: the node serves containerLogs at 127.0.0.1.
    assert "(Kubernetes API)" in logs.stderr, logs.stderr
    records = [json.loads(line) for line in logs.stdout.splitlines() if line.startswith("{")]
    finished = [r for r in records if r["msg"].startswith("attempt finished")]
    assert finished and finished[-1]["status"] == "SUCCESS"
    assert finished[-1]["job"] == "prog" and finished[-1]["task"] == "examples.progress"


def test_a_failing_job_watch_describe_and_replay(plugin: Run) -> None:
    assert plugin("submit", "examples.permanent", "--name", "perm").returncode == 0
    watch = plugin("watch", "perm", "--timeout", "90")
    assert watch.returncode == 1, watch.stdout + watch.stderr
    final = last_line(watch.stdout)
    assert final.startswith("error: ") and "PermanentError: bad input" in final
    assert "exit code 3" in final and "dead letter perm-" in final

    described = plugin("describe", "perm").stdout
    assert "  Message:      bad input" in described
    assert "  Reason:       PodFailurePolicy" in described
    conditions = described.split("Conditions:")[1].split("Events:")[0]
    assert any(
        line.split()[:3] == ["Failed", "True", "PodFailurePolicy"]
        for line in conditions.splitlines()
    )
    assert any(line.split()[:2] == ["DeadLettered", "True"] for line in conditions.splitlines())
    events = described.split("Events:")[1]
    assert any(line.split()[:2] == ["Warning", "Failed"] for line in events.splitlines())

    row = next(line for line in plugin("list").stdout.splitlines() if line.startswith("perm "))
    assert row.split()[2:4] == ["Failed", "-"]

    dls = plugin("dead-letters").stdout.splitlines()
    dl = dls[1].split()[0]
    assert dls[1].split()[1:3] == ["perm", "examples.permanent"]
    replay = plugin("replay", dl)
    assert replay.returncode == 0, replay.stderr
    assert replay.stdout.strip().endswith(f"backgroundjob.bgjobs.dev/{dl}-r1")


def test_cancel_then_watch_exits_2(plugin: Run) -> None:
    plugin("submit", "examples.sleep", "--kwargs", '{"seconds": 600}', "--name", "long")
    cancel = plugin("cancel", "long")
    assert cancel.returncode == 0 and "cancel requested" in cancel.stdout
    watch = plugin("watch", "long", "--timeout", "60")
    assert watch.returncode == 2, watch.stdout + watch.stderr
    assert last_line(watch.stdout) == "cancelled"


def test_idempotent_submit(plugin: Run) -> None:
    first = plugin("submit", "examples.noop", "--idempotency-key", "k-1")
    again = plugin("submit", "examples.noop", "--idempotency-key", "k-1")
    assert "created" in first.stdout and "unchanged" in again.stdout
    assert first.stdout.split()[0] == again.stdout.split()[0]


def test_unknown_name(plugin: Run, bgjobs: BgJobs) -> None:
    for command in ("watch", "describe", "logs", "cancel"):
        proc = plugin(command, "nope")
        assert proc.returncode == 1, command
        assert proc.stderr.strip() == (
            f'error: backgroundjob "nope" not found in namespace "{bgjobs.namespace}"'
        ), command


def test_refused_spec_prints_the_api_servers_message(plugin: Run) -> None:
    proc = plugin("submit", "examples.add", "--soft-time-limit", "10", "--time-limit", "5")
    assert proc.returncode == 1
    assert "timeLimits.softSeconds must be less than timeLimits.hardSeconds" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreachable_cluster(plugin: Run, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    proc = plugin("list", kubeconfig=str(kubeconfig), timeout=60)
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "https://127.0.0.1:1" in lines[0] and "make cluster-up" in lines[0]
    assert str(kubeconfig) in lines[0]


def test_help(plugin: Run) -> None:
    proc = plugin("--help")
    assert proc.returncode == 0
    for command in ("submit", "list", "watch", "logs", "describe", "cancel", "replay"):
        assert command in proc.stdout


def test_queues_lists_depth_and_pause(plugin: Run, bgjobs: BgJobs, kubectl) -> None:  # type: ignore[no-untyped-def]
    from tests.integration.support import wait_for

    bgjobs.create(
        "jobqueues",
        {
            "apiVersion": "bgjobs.dev/v1alpha1",
            "kind": "JobQueue",
            "metadata": {"name": "held"},
            "spec": {"concurrency": 2, "paused": True, "rateLimit": "5/m"},
        },
    )
    sub = plugin("submit", "examples.noop", "--name", "w1", "--queue", "held", "--priority", "3")
    assert sub.returncode == 0, sub.stderr
    assert bgjobs.get("w1")["spec"]["priority"] == 3

    def listed() -> str | None:
        out = plugin("queues").stdout
        return out if "held   1 " in out else None

    out = wait_for(listed, timeout=60, what="the queue to show one waiting job")
    assert out.splitlines()[0].split() == [
        "NAME",
        "WAITING",
        "RUNNING",
        "RATE",
        "ADMITTED-1M",
        "PAUSED",
        "OLDEST-WAITING",
    ]
    assert out.splitlines()[1].split()[:6] == ["held", "1", "0/2", "5/m", "0", "yes"]
    wait_for(
        lambda: "QueuePaused" in kubectl("get", "bgj", "w1", "-n", bgjobs.namespace).stdout,
        timeout=30,
        what="the Waiting-On column",
    )
    later = plugin("submit", "examples.noop", "--name", "d1", "--countdown", "3600")
    assert later.returncode == 0, later.stderr
    assert bgjobs.get("d1")["spec"]["countdownSeconds"] == 3600


def test_dashboard_serves_with_the_users_kubeconfig(
    devcluster: cluster.ClusterInfo, bgjobs: BgJobs, tmp_path: Path
) -> None:
    """`kubectl bgjobs dashboard` through kubectl: it serves the dashboard on 127.0.0.1
    with the kubeconfig and namespace given to the plugin, answers /healthz and lists the
    namespace's jobs, and ends on Ctrl-C (SIGINT)."""
    import httpx

    from devcluster.dashboard import DashboardProcess

    bgjobs.submit("dash-add", "examples.add", args=[1, 2])
    env = {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    dash = DashboardProcess(
        devcluster.kubeconfig,
        namespace=bgjobs.namespace,
        command=[str(bins.binary("kubectl")), "bgjobs", "dashboard"],
        log_path=tmp_path / "dashboard.log",
        env=env,
    )
    url = dash.start()
    try:
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(url + "healthz", timeout=10).status_code == 200
        page = httpx.get(url + "jobs", timeout=30)
        assert page.status_code == 200
        assert f'data-key="{bgjobs.namespace}/dash-add"' in page.text
        assert 'data-actions="false"' in page.text  # no --actions: read-only
    finally:
        code = dash.stop()
    assert code in (0, 130), "".join(dash.output)


def test_item_shows_one_batch_items_outcome_from_redis(
    plugin: Run, bgjobs: BgJobs, redis_server: RedisServer
) -> None:
    items = [{"n": i, "fail": i == 2} for i in range(4)]
    bgjobs.submit("items4", "examples.item", items=items)
    assert bgjobs.wait_phase("items4", timeout=120)["phase"] == "Failed"
    ok = plugin("item", "items4", "3", "--redis-url", redis_server.url)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines() == ["item 3 of items4: SUCCESS after 1 attempt", "result: 6"]
    bad = plugin("item", "items4", "2", "--redis-url", redis_server.url, "-o", "json")
    assert json.loads(bad.stdout)["error"]["message"] == "item 2 refused"
    missing = plugin("item", "items4", "9", "--redis-url", redis_server.url)
    assert missing.returncode == 1 and "item 9 of items4 has no recorded outcome" in missing.stderr
    no_redis = plugin("item", "items4", "3")
    assert no_redis.returncode == 1 and "--redis-url" in no_redis.stderr
    # Redis unreachable: the error names it without the password.
    refused = plugin("item", "items4", "3", "--redis-url", "redis://:s3cret-pw@127.0.0.1:1/0")
    assert refused.returncode == 1 and "Redis at redis://:***@127.0.0.1:1/0" in refused.stderr
    assert "s3cret-pw" not in refused.stderr + refused.stdout
