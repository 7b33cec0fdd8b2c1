"""next_fire_times agrees with robfig/cron v3, the parser the CronJob controller fires by.

robfig/robfig_fire_times.jsonl holds what robfig/cron's own ``Next`` returned for the cases in
robfig/cases.json (regenerate: ``cd tests/unit/robfig && go run . > robfig_fire_times.jsonl``):
17 schedules in 9 time zones, each from a normal day and from 26 h, 2 h and 30 min before
and 20 min after each of the zone's 2025 DST changes (Europe/Berlin, America/New_York,
Australia/Lord_Howe's half-hour change, America/Santiago's and America/Havana's at
midnight, Pacific/Chatham's at 02:45), and robfig's five-year search horizon.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bgjobs.schedule import next_fire_times

GOLDEN = Path(__file__).parent / "robfig" / "robfig_fire_times.jsonl"
CASES = [json.loads(line) for line in GOLDEN.read_text().splitlines()]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def test_the_golden_file_covers_the_dst_changes() -> None:
    assert len(CASES) > 900
    zones = {case["zone"] for case in CASES}
    assert {"Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago"} <= zones


@pytest.mark.parametrize("zone", sorted({case["zone"] for case in CASES}))
def test_fire_times_agree_with_robfig_cron(zone: str) -> None:
    disagreements = []
    for case in (c for c in CASES if c["zone"] == zone):
        fires = next_fire_times(case["cron"], utc(case["after"]), zone or None, case["count"])
        expected = [utc(fire) for fire in case["fires"]]
        if fires != expected:
            disagreements.append((case["cron"], case["after"], fires, expected))
    assert disagreements == []
