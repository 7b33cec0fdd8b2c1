"""Tests for bgjobs.schedule: JobSchedule text -> CronJob cron, and predicted fire times.

Expected fire times are written out by hand (checked against a calendar), and the property
tests compare against a deliberately naive oracle (minute-by-minute or day-by-day scans) that
shares no code with the module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgjobs.schedule import (
    INTERVAL_PATTERN,
    ScheduleError,
    next_fire_times,
    parse_schedule,
    validate_time_zone,
)

# The machine running the suite is shared with heavy builds: few examples, no deadline.
PROPERTY = settings(max_examples=40, deadline=None)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# --------------------------------------------------------------------------- parse_schedule


@pytest.mark.parametrize(
    "text",
    [
        "* * * * *",
        "*/15 9-17 * * MON-FRI",
        "0 0 1 jan,Jul *",
        "5,10-20/5 0-23/6 1-31/10 */3 sun",
        "0 12 ? * *",
        "30 4 1,15 * 5",
        "0 0 29 2 *",
        "0 0 31 1,2 *",
        "7/15 * * * *",
    ],
)
def test_cron_expressions_pass_through_unchanged(text: str) -> None:
    assert parse_schedule(text) == text


def test_cron_whitespace_is_collapsed() -> None:
    assert parse_schedule("  0  12\t* *   *\n") == "0 12 * * *"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # robfig/cron (and so the CronJob) only accepts 0-6; 7 is rewritten to Sunday = 0.
        ("0 0 * * 7", "0 0 * * 0"),
        ("0 0 * * 5-7", "0 0 * * 0,5-6"),
        ("0 0 * * 1-7", "0 0 * * 0-6"),
        ("0 0 * * 7,MON", "0 0 * * 0-1"),
        ("0 0 * * *,7", "0 0 * * *"),
        ("0 0 * * 0-7/2", "0 0 * * 0,2,4,6"),  # 7 is written but stepped over
        ("0 0 * * 7/1", "0 0 * * 0"),
    ],
)
def test_day_of_week_seven_is_rewritten_to_zero(text: str, expected: str) -> None:
    assert parse_schedule(text) == expected


@pytest.mark.parametrize(
    "macro", ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"]
)
def test_macros_are_returned_unchanged(macro: str) -> None:
    assert parse_schedule(macro) == macro


def test_macros_are_case_insensitive_and_lowercased() -> None:
    assert parse_schedule(" @Daily ") == "@daily"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("every 1m", "* * * * *"),
        ("every minute", "* * * * *"),
        ("every 60s", "* * * * *"),
        ("every 2m", "*/2 * * * *"),
        ("every 5m", "*/5 * * * *"),
        ("every 15 minutes", "*/15 * * * *"),
        ("every 20 mins", "*/20 * * * *"),
        ("every 30m", "*/30 * * * *"),
        ("every 120s", "*/2 * * * *"),
        ("every 60m", "0 * * * *"),
        ("every 1h", "0 * * * *"),
        ("every hour", "0 * * * *"),
        ("every 120m", "0 */2 * * *"),
        ("every 2h", "0 */2 * * *"),
        ("every 2 hours", "0 */2 * * *"),
        ("every 3 hrs", "0 */3 * * *"),
        ("every 8h", "0 */8 * * *"),
        ("every 12h", "0 */12 * * *"),
        ("every 24h", "0 0 * * *"),
        ("every 1440m", "0 0 * * *"),
        ("every 1d", "0 0 * * *"),
        ("every day", "0 0 * * *"),
        ("every 1 day", "0 0 * * *"),
        ("EVERY 5M", "*/5 * * * *"),
        ("  every   10 m  ", "*/10 * * * *"),
    ],
)
def test_intervals_become_cron(text: str, expected: str) -> None:
    assert parse_schedule(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "every 90m",
            "every 90m cannot be expressed as a cron schedule (intervals must divide an hour or "
            "a day evenly); use e.g. every 60m or every 120m, or write a cron expression",
        ),
        (
            "every 7m",
            "every 7m cannot be expressed as a cron schedule (intervals must divide an hour or "
            "a day evenly); use e.g. every 6m or every 10m, or write a cron expression",
        ),
        (
            "every 5h",
            "every 5h cannot be expressed as a cron schedule (intervals must divide an hour or "
            "a day evenly); use e.g. every 4h or every 6h, or write a cron expression",
        ),
        (
            "every 2d",
            "every 2d cannot be expressed as a cron schedule (intervals must divide an hour or "
            "a day evenly); use e.g. every 1d, or write a cron expression",
        ),
        (
            "every 45s",
            "every 45s cannot be expressed as a cron schedule (cron's resolution is one "
            "minute); use e.g. every 1m",
        ),
        (
            "every 90s",
            "every 90s cannot be expressed as a cron schedule (cron's resolution is one "
            "minute); use e.g. every 1m or every 2m",
        ),
        ("every 0m", "every 0m: the interval must be at least 1m"),
    ],
)
def test_uneven_intervals_are_rejected_with_suggestions(text: str, message: str) -> None:
    with pytest.raises(ScheduleError) as error:
        parse_schedule(text)
    assert str(error.value) == message


@pytest.mark.parametrize("text", ["every 1h30m", "every", "every 5 weeks", "everyday", "every -5m"])
def test_malformed_intervals_are_rejected(text: str) -> None:
    with pytest.raises(ScheduleError, match="is not a valid interval"):
        parse_schedule(text)


def test_second_word_interval_mentions_minute_resolution() -> None:
    with pytest.raises(ScheduleError, match="resolution is one minute"):
        parse_schedule("every second")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("61 * * * *", "minute field: 61 is out of range 0-59"),
        ("0 24 * * *", "hour field: 24 is out of range 0-23"),
        ("0 0 0 * *", "day-of-month field: 0 is out of range 1-31"),
        ("0 0 32 * *", "day-of-month field: 32 is out of range 1-31"),
        ("0 0 1 13 *", "month field: 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week field: 8 is out of range 0-7"),
        ("0-60 * * * *", "minute field: 60 is out of range 0-59"),
        ("0 0 * FOO *", 'month field: "FOO" is not a number or a month name (JAN-DEC)'),
        ("0 0 * * MONDAY", 'day-of-week field: "MONDAY" is not a number or a day name (SUN-SAT)'),
        ("0 MON * * *", 'hour field: "MON" is not a number'),
        ("0 0 * JAN-X *", 'month field: "X" is not a number or a month name (JAN-DEC)'),
        ("*/0 * * * *", 'minute field: step 0 in "*/0" must be at least 1'),
        ("*/x * * * *", 'minute field: step "x" in "*/x" is not a number'),
        ("*/5/2 * * * *", 'minute field: "*/5/2" has more than one step'),
        ("1,,2 * * * *", 'minute field: empty list item in "1,,2"'),
        ("1-2-3 * * * *", 'minute field: "1-2-3" is not a value or a range like 1-5'),
        ("-5 * * * *", 'minute field: "-5" is not a value or a range like 1-5'),
        (
            "30-10 * * * *",
            "minute field: range 30-10 is backwards (30 > 10); ranges do not wrap around, "
            "write 0-10,30-59",
        ),
        (
            "0 0 * * FRI-MON",
            "day-of-week field: range FRI-MON is backwards (5 > 1); ranges do not wrap around, "
            "write 0-1,5-6",
        ),
        (
            "*/90 * * * *",
            'minute field: step 90 in "*/90" is larger than the range 0-59, '
            "so it would only ever match 0",
        ),
        (
            "0 */24 * * *",
            'hour field: step 24 in "*/24" is larger than the range 0-23, '
            "so it would only ever match 0",
        ),
        (
            "0 0 30 2 *",
            "day-of-month field: 30 never occurs in FEB, so the schedule would never fire",
        ),
        (
            "0 0 31 4,6 *",
            "day-of-month field: 31 never occurs in APR, JUN, so the schedule would never fire",
        ),
    ],
)
def test_invalid_cron_fields_are_named_in_the_error(text: str, message: str) -> None:
    with pytest.raises(ScheduleError) as error:
        parse_schedule(text)
    assert str(error.value) == message


def test_impossible_date_is_fine_when_day_of_week_is_restricted() -> None:
    # Both day fields restricted: OR semantics, so Mondays in February still fire.
    assert parse_schedule("0 0 30 2 MON") == "0 0 30 2 MON"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "schedule is empty"),
        ("   ", "schedule is empty"),
        ("0 0 * *", "expected 5 fields"),
        ("0 0 0 * * *", "CronJob schedules have no seconds field"),
        ("TZ=Europe/Berlin 0 0 * * *", "time zone prefix"),
        ("CRON_TZ=UTC 0 0 * * *", "time zone prefix"),
        ("@reboot", 'unknown macro "@reboot"'),
        ("@every 5m", 'for intervals write "every 5m" without the "@"'),
    ],
)
def test_other_invalid_schedules(text: str, fragment: str) -> None:
    with pytest.raises(ScheduleError, match=re.escape(fragment)):
        parse_schedule(text)


def test_schedule_error_is_a_value_error() -> None:
    assert issubclass(ScheduleError, ValueError)


@pytest.mark.parametrize(
    "text",
    ["every 5m", "every 15 minutes", "Every 2 Hours", "every day", "every hour", " every 90m "],
)
def test_interval_pattern_matches_interval_syntax(text: str) -> None:
    assert re.match(INTERVAL_PATTERN, text)


@pytest.mark.parametrize(
    "text", ["every 1h30m", "*/5 * * * *", "@hourly", "every", "every 5", "every 5w", "5m"]
)
def test_interval_pattern_rejects_other_text(text: str) -> None:
    assert re.match(INTERVAL_PATTERN, text) is None


# --------------------------------------------------------------------------- validate_time_zone


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])
def test_known_time_zones_are_accepted(tz: str) -> None:
    validate_time_zone(tz)


def test_unknown_time_zone_message() -> None:
    with pytest.raises(ScheduleError) as error:
        validate_time_zone("Mars/Base")
    assert str(error.value) == 'unknown time zone "Mars/Base"'


@pytest.mark.parametrize(
    "tz", ["", "Europe", "../etc/passwd", "/etc/localtime", "utc", " UTC", "Europe/Berlin\x00"]
)
def test_malformed_time_zones_are_rejected(tz: str) -> None:
    with pytest.raises(ScheduleError, match="unknown time zone"):
        validate_time_zone(tz)


@pytest.mark.parametrize("tz", ["Local", "localtime"])
def test_local_time_zone_is_rejected(tz: str) -> None:
    with pytest.raises(ScheduleError, match="is not allowed"):
        validate_time_zone(tz)


# --------------------------------------------------------------------------- next_fire_times


def test_quarter_hours_in_utc() -> None:
    assert next_fire_times("*/15 * * * *", utc(2024, 5, 5, 10, 7), count=4) == [
        utc(2024, 5, 5, 10, 15),
        utc(2024, 5, 5, 10, 30),
        utc(2024, 5, 5, 10, 45),
        utc(2024, 5, 5, 11, 0),
    ]


def test_fire_times_are_strictly_after() -> None:
    assert next_fire_times("*/15 * * * *", utc(2024, 5, 5, 10, 15)) == [utc(2024, 5, 5, 10, 30)]
    just_before = datetime(2024, 5, 5, 10, 14, 59, 999999, tzinfo=UTC)
    assert next_fire_times("*/15 * * * *", just_before) == [utc(2024, 5, 5, 10, 15)]


def test_hourly_macro() -> None:
    assert next_fire_times("@hourly", datetime(2024, 5, 5, 10, 15, 30, tzinfo=UTC), count=3) == [
        utc(2024, 5, 5, 11),
        utc(2024, 5, 5, 12),
        utc(2024, 5, 5, 13),
    ]


def test_hourly_macro_in_half_hour_offset_zone() -> None:
    # Asia/Kolkata is UTC+05:30: local full hours are UTC half hours.
    assert next_fire_times("@hourly", utc(2024, 5, 5, 10, 15), "Asia/Kolkata", count=2) == [
        utc(2024, 5, 5, 10, 30),
        utc(2024, 5, 5, 11, 30),
    ]


@pytest.mark.parametrize(
    ("macro", "expected"),
    [
        ("@daily", utc(2024, 5, 2)),
        ("@midnight", utc(2024, 5, 2)),
        ("@weekly", utc(2024, 5, 5)),  # 2024-05-01 is a Wednesday; next Sunday
        ("@monthly", utc(2024, 6, 1)),
        ("@yearly", utc(2025, 1, 1)),
        ("@annually", utc(2025, 1, 1)),
    ],
)
def test_other_macros(macro: str, expected: datetime) -> None:
    assert next_fire_times(macro, utc(2024, 5, 1, 8, 30)) == [expected]


def test_interval_text_is_accepted_too() -> None:
    assert next_fire_times("every 2h", utc(2024, 5, 5, 10, 15), count=2) == [
        utc(2024, 5, 5, 12),
        utc(2024, 5, 5, 14),
    ]


def test_result_is_utc_whatever_zone_after_is_in() -> None:
    after = datetime(2024, 1, 1, 12, 0, tzinfo=ZoneInfo("Asia/Tokyo"))  # 03:00 UTC
    (fire,) = next_fire_times("0 * * * *", after)
    assert fire == utc(2024, 1, 1, 4)
    assert fire.tzinfo is UTC


def test_weekdays_in_new_york_shift_utc_hour_after_dst_ends() -> None:
    # Friday 2024-11-01 10:00 EDT; DST ends on Sunday 11-03, so 09:00 becomes 14:00 UTC.
    fires = next_fire_times("0 9 * * MON-FRI", utc(2024, 11, 1, 14), "America/New_York", 2)
    assert fires == [utc(2024, 11, 4, 14), utc(2024, 11, 5, 14)]


# DST as robfig/cron (the CronJob controller) handles it; test_schedule_robfig.py compares
# many more cases with robfig's own output. Europe/Berlin in 2025:
#   2025-03-30 02:00 CET -> 03:00 CEST at 01:00 UTC (02:xx does not exist),
#   2025-10-26 03:00 CEST -> 02:00 CET at 01:00 UTC (02:xx happens twice).


def test_berlin_on_a_normal_day() -> None:
    fires = next_fire_times("*/30 * * * *", utc(2025, 6, 11, 10, 7), "Europe/Berlin", count=3)
    assert fires == [utc(2025, 6, 11, 10, 30), utc(2025, 6, 11, 11), utc(2025, 6, 11, 11, 30)]
    fires = next_fire_times("30 2 * * *", utc(2025, 6, 11, 10, 7), "Europe/Berlin", count=2)
    assert fires == [utc(2025, 6, 12, 0, 30), utc(2025, 6, 13, 0, 30)]


def test_berlin_fall_back_every_30_minutes_fires_in_both_passes_of_the_hour() -> None:
    # 02:00 and 02:30 CEST (00:00, 00:30 UTC), then 02:00 and 02:30 CET (01:00, 01:30 UTC).
    fires = next_fire_times("*/30 * * * *", utc(2025, 10, 25, 23, 45), "Europe/Berlin", 6)
    assert fires == [
        utc(2025, 10, 26, 0, 0),
        utc(2025, 10, 26, 0, 30),
        utc(2025, 10, 26, 1, 0),
        utc(2025, 10, 26, 1, 30),
        utc(2025, 10, 26, 2, 0),
        utc(2025, 10, 26, 2, 30),
    ]


def test_berlin_fall_back_fires_a_repeated_wall_time_twice() -> None:
    # 02:30 CEST (00:30 UTC) and 02:30 CET (01:30 UTC) both fire; the next day as usual.
    fires = next_fire_times("30 2 * * *", utc(2025, 10, 25, 12), "Europe/Berlin", count=3)
    assert fires == [utc(2025, 10, 26, 0, 30), utc(2025, 10, 26, 1, 30), utc(2025, 10, 27, 1, 30)]


def test_berlin_spring_forward_skips_the_missing_wall_time() -> None:
    # 02:30 on 2025-03-30 does not exist: robfig does not fire that day at all.
    fires = next_fire_times("30 2 * * *", utc(2025, 3, 28, 12), "Europe/Berlin", count=3)
    assert fires == [utc(2025, 3, 29, 1, 30), utc(2025, 3, 31, 0, 30), utc(2025, 4, 1, 0, 30)]


def test_berlin_spring_forward_hourly_has_no_hole_in_real_time() -> None:
    # 01:00 CET, (02:00 does not exist), 03:00 CEST, 04:00 CEST.
    fires = next_fire_times("0 * * * *", utc(2024, 3, 30, 23, 30), "Europe/Berlin", count=3)
    assert fires == [utc(2024, 3, 31, 0), utc(2024, 3, 31, 1), utc(2024, 3, 31, 2)]


# DST in America/New_York: 2024-03-10 02:00 EST -> 03:00 EDT (07:00 UTC),
#                           2024-11-03 02:00 EDT -> 01:00 EST (06:00 UTC).


def test_new_york_spring_forward_skips_the_missing_wall_time() -> None:
    fires = next_fire_times("30 2 * * *", utc(2024, 3, 9, 12), "America/New_York", count=2)
    assert fires == [utc(2024, 3, 11, 6, 30), utc(2024, 3, 12, 6, 30)]


def test_new_york_fall_back_fires_a_repeated_wall_time_twice() -> None:
    fires = next_fire_times("0 1 * * *", utc(2024, 11, 2, 12), "America/New_York", count=3)
    assert fires == [utc(2024, 11, 3, 5), utc(2024, 11, 3, 6), utc(2024, 11, 4, 6)]


def test_new_york_after_inside_the_repeated_hour() -> None:
    # `after` is 01:30 EST, the second pass of 01:xx, which fires again.
    fires = next_fire_times("*/15 * * * *", utc(2024, 11, 3, 6, 30), "America/New_York", 2)
    assert fires == [utc(2024, 11, 3, 6, 45), utc(2024, 11, 3, 7, 0)]


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    # Fridays OR the 13th; 2024-09-01 is a Sunday, 2024-10-13 a Sunday.
    fires = next_fire_times("0 0 13 * FRI", utc(2024, 9, 1), count=7)
    assert [fire.date() for fire in fires] == [
        date(2024, 9, 6),
        date(2024, 9, 13),
        date(2024, 9, 20),
        date(2024, 9, 27),
        date(2024, 10, 4),
        date(2024, 10, 11),
        date(2024, 10, 13),
    ]


def test_star_day_field_means_and() -> None:
    assert [f.date() for f in next_fire_times("0 0 13 * *", utc(2024, 9, 1), count=2)] == [
        date(2024, 9, 13),
        date(2024, 10, 13),
    ]
    assert [f.date() for f in next_fire_times("0 0 * * FRI", utc(2024, 9, 1), count=2)] == [
        date(2024, 9, 6),
        date(2024, 9, 13),
    ]


def test_stepped_star_counts_as_restricted_like_robfig_cron() -> None:
    # "*/2" is not a star for robfig/cron: odd days OR Mondays (2024-07-01 is a Monday).
    fires = next_fire_times("0 0 */2 * MON", utc(2024, 6, 30, 12), count=6)
    assert [fire.day for fire in fires] == [1, 3, 5, 7, 8, 9]
    # "*/1" still is a star: Mondays only.
    fires = next_fire_times("0 0 */1 * MON", utc(2024, 6, 30, 12), count=2)
    assert [fire.day for fire in fires] == [1, 8]


def test_leap_day() -> None:
    assert next_fire_times("0 0 29 2 *", utc(2024, 3, 1), count=3) == [
        utc(2028, 2, 29),
        utc(2032, 2, 29),
        utc(2036, 2, 29),
    ]


def test_leap_day_skips_2100_within_robfigs_five_year_horizon() -> None:
    # robfig searches five calendar years: from 2096 it finds nothing (2104 is eight years
    # on), from 2099 it finds 2104.
    assert next_fire_times("0 0 29 2 *", utc(2096, 3, 1)) == []
    assert next_fire_times("0 0 29 2 *", utc(2099, 3, 1)) == [utc(2104, 2, 29)]


def test_sunday_as_seven_equals_zero() -> None:
    after = utc(2024, 5, 1)
    assert next_fire_times("0 0 * * 7", after, count=3) == next_fire_times(
        "0 0 * * SUN", after, count=3
    )
    assert next_fire_times("0 0 * * 7", after)[0] == utc(2024, 5, 5)


def test_sparse_schedule_is_fast_enough_to_find() -> None:
    assert next_fire_times("59 23 31 12 *", utc(2024, 6, 1), count=3) == [
        utc(2024, 12, 31, 23, 59),
        utc(2025, 12, 31, 23, 59),
        utc(2026, 12, 31, 23, 59),
    ]


def test_search_stops_at_the_end_of_the_calendar() -> None:
    assert next_fire_times("0 0 1 1 *", utc(9999, 6, 1), count=2) == []


def test_long_runs_are_not_cut_short() -> None:
    fires = next_fire_times("@yearly", utc(2000, 6, 1), count=500)
    assert len(fires) == 500
    assert fires[-1] == utc(2500, 1, 1)


def test_end_of_calendar_in_a_zone_ahead_of_utc() -> None:
    assert next_fire_times("* * * * *", utc(9999, 12, 31, 23, 58), "Asia/Tokyo") == []


def test_count_zero_returns_nothing() -> None:
    assert next_fire_times("* * * * *", utc(2024, 1, 1), count=0) == []


def test_negative_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="count"):
        next_fire_times("* * * * *", utc(2024, 1, 1), count=-1)


def test_naive_after_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire_times("* * * * *", datetime(2024, 1, 1))


def test_unknown_zone_and_bad_cron_raise_schedule_error() -> None:
    with pytest.raises(ScheduleError, match='unknown time zone "Mars/Base"'):
        next_fire_times("* * * * *", utc(2024, 1, 1), "Mars/Base")
    with pytest.raises(ScheduleError, match="minute field: 61"):
        next_fire_times("61 * * * *", utc(2024, 1, 1))


# --------------------------------------------------------------------------- property tests


@dataclass(frozen=True)
class Field:
    """A generated cron field with the values it should select, computed independently."""

    text: str
    values: frozenset[int]
    star: bool


MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


@st.composite
def fields(
    draw: st.DrawFn, low: int, high: int, names: list[str] | None = None, limit: int | None = None
) -> Field:
    """One cron field: *, N, A-B, */N, A-B/N or a list; ``limit`` allows dow 7."""
    top = high if limit is None else limit

    def spell(value: int) -> str:
        if names and value <= high and draw(st.booleans()):
            name = names[value - low]
            return draw(st.sampled_from([name, name.upper(), name.title()]))
        return str(value)

    kind = draw(st.sampled_from(["star", "value", "range", "step", "range_step", "list"]))
    if kind == "star":
        return Field("*", frozenset(range(low, high + 1)), True)
    if kind == "value":
        value = draw(st.integers(low, top))
        return Field(spell(value), frozenset({value}), False)
    if kind == "step":
        step = draw(st.integers(1, high - low))
        return Field(f"*/{step}", frozenset(range(low, high + 1, step)), step == 1)
    if kind == "list":
        values = draw(st.sets(st.integers(low, top), min_size=1, max_size=4))
        return Field(",".join(spell(v) for v in sorted(values)), frozenset(values), False)
    start = draw(st.integers(low, top))
    end = draw(st.integers(start, top))
    if kind == "range":
        return Field(f"{spell(start)}-{spell(end)}", frozenset(range(start, end + 1)), False)
    step = draw(st.integers(1, max(1, end - start)))
    return Field(f"{start}-{end}/{step}", frozenset(range(start, end + 1, step)), False)


@dataclass(frozen=True)
class Cron:
    minute: Field
    hour: Field
    dom: Field
    month: Field
    dow: Field

    @property
    def text(self) -> str:
        return " ".join(f.text for f in (self.minute, self.hour, self.dom, self.month, self.dow))

    def day_matches(self, day: date) -> bool:
        dom = day.day in self.dom.values
        dow = day.isoweekday() % 7 in {v % 7 for v in self.dow.values}
        return (dom and dow) if (self.dom.star or self.dow.star) else (dom or dow)

    def matches(self, local: datetime) -> bool:
        return (
            local.minute in self.minute.values
            and local.hour in self.hour.values
            and local.month in self.month.values
            and self.day_matches(local.date())
        )

    def can_fire(self) -> bool:
        if not self.dow.star:
            return True
        longest = {2: 29, 4: 30, 6: 30, 9: 30, 11: 30}
        return any(d <= longest.get(m, 31) for m in self.month.values for d in self.dom.values)


crons = st.builds(
    Cron,
    fields(0, 59),
    fields(0, 23),
    fields(1, 31),
    fields(1, 12, MONTHS),
    fields(0, 6, DAYS, limit=7),
)
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"]
# Lord Howe Island skips only half an hour in spring, so "within an hour" needs whole-hour DST.
WHOLE_HOUR_DST_ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kathmandu"]
afters = st.datetimes(
    min_value=datetime(1995, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
)


@PROPERTY
@given(crons, afters, st.sampled_from(ZONES), st.integers(1, 6))
def test_every_fire_matches_the_cron_in_its_zone(
    cron: Cron, after: datetime, tz: str, count: int
) -> None:
    if not cron.can_fire():
        with pytest.raises(ScheduleError, match="would never fire"):
            next_fire_times(cron.text, after, tz, count)
        return
    fires = next_fire_times(cron.text, after, tz, count)
    assert len(fires) == count
    assert fires[0] > after
    assert all(a < b for a, b in pairwise(fires))
    zone = ZoneInfo(tz)
    for fire in fires:
        assert fire.tzinfo is UTC
        assert fire.second == 0 and fire.microsecond == 0
        local = fire.astimezone(zone)
        assert cron.matches(local), (cron.text, local)


@PROPERTY
@given(crons)
def test_normalised_cron_is_idempotent_and_means_the_same(cron: Cron) -> None:
    if not cron.can_fire():
        return
    normalised = parse_schedule(cron.text)
    assert parse_schedule(normalised) == normalised
    assert "7" not in re.split(r"[-,/]", normalised.split()[4])
    after = utc(2024, 2, 27, 13, 7)
    assert next_fire_times(normalised, after, count=5) == next_fire_times(cron.text, after, count=5)


# Around whole-hour DST changes away from midnight: (zone, a UTC instant near a transition).
# There robfig fires at every real minute whose wall time matches; at half-hour changes
# (Australia/Lord_Howe) and at midnight it has quirks of its own, which
# test_schedule_robfig.py checks against robfig's output.
TRANSITIONS = [
    ("Europe/Berlin", utc(2024, 3, 31, 1)),
    ("Europe/Berlin", utc(2024, 10, 27, 1)),
    ("America/New_York", utc(2024, 3, 10, 7)),
    ("America/New_York", utc(2024, 11, 3, 6)),
]


def scan_minutes(
    cron: Cron, zone: ZoneInfo, after: datetime, until: datetime
) -> Iterator[datetime]:
    """The naive oracle: every UTC minute in (after, until] whose wall time matches."""
    instant = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while instant <= until:
        local = instant.astimezone(zone)
        if cron.matches(local):
            yield instant
        instant += timedelta(minutes=1)


every_day = st.builds(
    Cron,
    fields(0, 59),
    fields(0, 23),
    st.just(Field("*", frozenset(range(1, 32)), True)),
    st.just(Field("*", frozenset(range(1, 13)), True)),
    st.just(Field("*", frozenset(range(7)), True)),
)


@PROPERTY
@given(
    every_day,
    st.sampled_from(TRANSITIONS),
    st.integers(-36 * 60, 12 * 60),
    st.integers(0, 59),
)
def test_no_fire_is_missed_around_dst_changes(
    cron: Cron, transition: tuple[str, datetime], offset_minutes: int, second: int
) -> None:
    tz, instant = transition
    after = instant + timedelta(minutes=offset_minutes, seconds=second)
    fires = next_fire_times(cron.text, after, tz, count=3)
    assert fires == list(scan_minutes(cron, ZoneInfo(tz), after, fires[-1]))


@PROPERTY
@given(
    st.builds(
        Cron,
        st.just(Field("0", frozenset({0}), False)),
        st.just(Field("0", frozenset({0}), False)),
        fields(1, 31),
        fields(1, 12, MONTHS),
        fields(0, 6, DAYS, limit=7),
    ),
    st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 1, 1)),
)
def test_no_day_is_missed(cron: Cron, start: date) -> None:
    if not cron.can_fire():
        return
    fires = next_fire_times(
        cron.text, datetime(start.year, start.month, start.day, tzinfo=UTC), None, 4
    )
    expected: list[datetime] = []
    day, searched_from = start + timedelta(days=1), start.year
    while len(expected) < 4 and day.year <= searched_from + 5:  # robfig's horizon
        if day.month in cron.month.values and cron.day_matches(day):
            expected.append(datetime(day.year, day.month, day.day, tzinfo=UTC))
            searched_from = day.year
        day += timedelta(days=1)
    assert fires == expected


@PROPERTY
@given(st.integers(1, 59), afters, st.sampled_from(WHOLE_HOUR_DST_ZONES))
def test_minute_steps_are_exactly_n_apart_within_an_hour(
    step: int, after: datetime, tz: str
) -> None:
    fires = next_fire_times(f"*/{step} * * * *", after, tz, count=12)
    zone = ZoneInfo(tz)
    for a, b in pairwise(fires):
        local_a, local_b = a.astimezone(zone), b.astimezone(zone)
        same_hour = local_a.replace(minute=0, tzinfo=None) == local_b.replace(minute=0, tzinfo=None)
        if same_hour and local_a.utcoffset() == local_b.utcoffset():
            assert b - a == timedelta(minutes=step)
        else:
            assert local_b.minute == 0
            assert local_a.minute == 59 - 59 % step


EVEN_MINUTES = [1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440]


@PROPERTY
@given(st.sampled_from(EVEN_MINUTES), afters)
def test_expressible_intervals_fire_exactly_that_far_apart(minutes: int, after: datetime) -> None:
    cron = parse_schedule(f"every {minutes}m")
    fires = next_fire_times(cron, after, count=6)
    assert {b - a for a, b in pairwise(fires)} == {timedelta(minutes=minutes)}


@PROPERTY
@given(
    st.integers(1, 5000).filter(lambda m: m not in EVEN_MINUTES),
    st.sampled_from(["m", "h", "d"]),
)
def test_inexpressible_intervals_suggest_expressible_neighbours(amount: int, unit: str) -> None:
    minutes = amount * {"m": 1, "h": 60, "d": 1440}[unit]
    if minutes in EVEN_MINUTES:
        return
    with pytest.raises(ScheduleError, match="cannot be expressed") as error:
        parse_schedule(f"every {amount}{unit}")
    advice = str(error.value).split("use e.g. ", 1)[1]
    suggestions = re.findall(r"every \d+[mhd]", advice)
    assert 1 <= len(suggestions) <= 2
    suggested = []
    for suggestion in suggestions:
        parse_schedule(suggestion)  # must not raise
        value, suffix = int(suggestion[6:-1]), suggestion[-1]
        suggested.append(value * {"m": 1, "h": 60, "d": 1440}[suffix])
    assert suggested == sorted(suggested)
    if len(suggested) == 2:
        assert suggested[0] < minutes < suggested[1]
    else:
        assert suggested == [1440] and minutes > 1440
