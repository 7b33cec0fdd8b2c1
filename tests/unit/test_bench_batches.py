"""The batches bench section renders its figures (the measuring needs a devcluster)."""

from __future__ import annotations

from bench import batches


def test_the_batches_section_renders_rates_side_by_side() -> None:
    section = batches.render(
        {
            "batch": {
                "items": 10000,
                "parallelism": 2,
                "seconds": 4.0,
                "phase": "Succeeded",
                "batch": {"succeeded": 10000, "failed": 0, "executions": 10000},
                "operator_cpu": 0.5,
            },
            "per_job": {"jobs": 50, "seconds": 20.0},
            "loop": {"calls": 10000, "seconds": 0.002},
            "warm": {"items": 10000, "seconds": 0.4, "exit": 0, "chunk": 100},
            "celery": {"version": "5.5.0", "tasks": 10000, "seconds": 8.0},
        }
    )
    assert "| 1250 |" in section.body
    assert "= 0.50 (target <= 1.0" in section.targets and "met" in section.targets
    assert "**2500**" in section.body and "| 2.5 |" in section.body
    assert "40.0 µs" in section.body
    assert "1000x" in section.targets
    assert section.headlines[0].value.startswith("2500/s")


def test_a_batch_that_did_not_finish_renders_as_not_measured() -> None:
    section = batches.render(
        {
            "batch": {
                "items": 10,
                "parallelism": 2,
                "seconds": None,
                "phase": None,
                "batch": None,
                "operator_cpu": 0.0,
            },
            "per_job": {"jobs": 3, "seconds": 9.0},
            "loop": {"calls": 10, "seconds": 0.001},
        }
    )
    assert "Not measured: a run did not finish" in section.targets
