"""@task(queue=, rate_limit=) as the client reads them: the queue routes a submission, the
rate must be the one its JobQueue enforces, or the submission is refused."""

from __future__ import annotations

from typing import Any

import pytest

from bgjobs.client.task_options import Declared, declared, rate_limit_problem
from bgjobs_worker.registry import task, unregister


def jq(name: str, rate: str | None = None, routes: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"routes": routes or []}
    if rate:
        spec["rateLimit"] = rate
    return {"metadata": {"name": name}, "spec": spec}


def test_the_decorators_rate_limit_is_read_for_an_imported_task() -> None:
    @task(name="tests.limited_mail", queue="mail", rate_limit="10/m")
    def send(to: str) -> None: ...

    try:
        assert declared("tests.limited_mail") == Declared("mail", "10/m")
        assert declared("not.imported.here").rate_limit is None
    finally:
        unregister("tests.limited_mail")


def test_a_queue_enforcing_the_rate_passes_by_name_or_by_route() -> None:
    queues = [jq("mail", "10/m"), jq("routed", "5/s", ["app.mail.*"])]
    assert rate_limit_problem("app.send", "10/m", "mail", queues, "ns") is None
    assert rate_limit_problem("app.mail.send", "5/s", None, queues, "ns") is None


@pytest.mark.parametrize(
    ("rate", "queue", "queues", "says"),
    [
        ("fast", "mail", [jq("mail", "10/m")], "not N/s, N/m or N/h"),
        ("10/m", None, [jq("mail", "10/m")], "goes to no queue"),
        ("10/m", "mail", [], "queue 'mail' has no JobQueue in namespace ns"),
        ("10/m", "mail", [jq("mail")], "has rateLimit none; make it 10/m"),
        ("10/m", "mail", [jq("mail", "20/m")], "has rateLimit 20/m; make it 10/m"),
    ],
)
def test_a_rate_no_queue_enforces_is_refused_saying_what_to_apply(
    rate: str, queue: str | None, queues: list[dict[str, Any]], says: str
) -> None:
    problem = rate_limit_problem("app.send", rate, queue, queues, "ns")
    assert problem is not None and says in problem
    assert problem.startswith(f"@task(rate_limit={rate!r}) of app.send")
