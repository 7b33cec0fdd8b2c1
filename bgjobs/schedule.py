"""Schedules of JobSchedule resources: parse them into CronJob cron expressions, predict fire times.

A JobSchedule becomes a batch/v1 CronJob, and Kubernetes parses ``spec.schedule`` with
robfig/cron v3 (``ParseStandard``). Anything that parser rejects, or silently misreads, would
only surface later as a CronJob that fails to be created or never runs. So this module checks
schedules when the JobSchedule is applied and answers with a message that names the field and
the value at fault.

Users may write:

* a standard 5-field cron expression (minute hour day-of-month month day-of-week),
* one of the macros ``@yearly @annually @monthly @weekly @daily @midnight @hourly``, or
* an interval such as ``every 15m`` / ``every 2 hours``, which is turned into cron when cron can
  express it evenly (cron matches wall-clock fields, so "every 90 minutes" is impossible).

Checks are a little stricter than robfig/cron where it quietly accepts a likely mistake: empty
list items (``1,,2``), a step that can match only one value (``*/90``), and dates that never
occur (``0 0 30 2 *``). Day-of-week 7 (Sunday, as in most crons) is accepted and rewritten to 0,
which is all robfig/cron knows.

:func:`next_fire_times` predicts the fire times the way the CronJob controller evaluates the
schedule (robfig/cron semantics), for status fields, ``kubectl bgjobs`` output and tests.

Everything here is pure: no I/O apart from reading the time zone database.
"""

from __future__ import annotations

import calendar
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "CRON_PATTERN",
    "EXPRESSIBLE_INTERVAL_PATTERN",
    "INTERVAL_PATTERN",
    "INTERVAL_PREFIX_PATTERN",
    "MACROS",
    "MACRO_PATTERN",
    "TZ_PREFIX_PATTERN",
    "ScheduleError",
    "next_fire_times",
    "parse_schedule",
    "validate_time_zone",
]


class ScheduleError(ValueError):
    """A schedule or time zone the CronJob would reject, misread or never run.

    A ``ValueError`` so that API layers (pydantic validators, admission checks) report it as an
    ordinary validation error without special-casing.
    """


# The spellings of each interval unit, keyed by its one-letter abbreviation (which every
# spelling starts with), and the seconds it stands for.
_UNIT_SPELLINGS: Mapping[str, str] = {
    "s": "s|secs?|seconds?",
    "m": "m|mins?|minutes?",
    "h": "h|hrs?|hours?",
    "d": "d|days?",
}
_UNIT_SECONDS: Mapping[str, int] = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# Kept to the regex subset shared by Python ``re``, Go RE2 (CRD ``pattern``, CEL ``matches``)
# and pydantic's Rust engine: no look-around, no named groups, the case-insensitive flag at the
# very start. It checks syntax only; whether cron can express the interval is up to
# parse_schedule (and EXPRESSIBLE_INTERVAL_PATTERN, its regular-expression twin).
INTERVAL_PATTERN: str = (
    r"(?i)^\s*every\s+(?:([0-9]+)\s*"
    f"({'|'.join(_UNIT_SPELLINGS.values())})"
    r"|(second|minute|hour|day))\s*$"
)
_INTERVAL_RE = re.compile(INTERVAL_PATTERN)

# Intervals (in minutes) that cron repeats evenly: divisors of an hour, and whole hours that
# divide a day. Anything else drifts at the hour or day boundary (*/7 fires at :56 then :00).
_EVEN_MINUTES: tuple[int, ...] = tuple(
    sorted({m for m in range(1, 61) if 60 % m == 0} | {60 * h for h in range(1, 25) if 24 % h == 0})
)

# The descriptors robfig/cron understands, except @every (we convert intervals to plain cron
# so the CronJob shows a normal schedule) and @reboot (a cluster has no boot).
_MACROS: Mapping[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

MACROS: tuple[str, ...] = tuple(_MACROS)

_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")

# Longest month lengths, February counting leap years: used to reject dates that never occur.
_MAX_MONTH_DAYS: Mapping[int, int] = {
    1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31,
}  # fmt: skip

TZ_PREFIX_PATTERN: str = r"(?i)^\s*(CRON_)?TZ="
_TZ_PREFIX_RE = re.compile(TZ_PREFIX_PATTERN)


@dataclass(frozen=True)
class _Field:
    """One cron field's bounds.

    ``high`` is where ``*`` and open ``N/step`` ranges end, ``limit`` the largest value accepted
    when written out; they differ only for day-of-week, where 7 is an alias of Sunday (0).
    """

    name: str
    low: int
    high: int
    limit: int
    names: Mapping[str, int]
    names_hint: str


_FIELDS: tuple[_Field, ...] = (
    _Field("minute", 0, 59, 59, {}, ""),
    _Field("hour", 0, 23, 23, {}, ""),
    _Field("day-of-month", 1, 31, 31, {}, ""),
    _Field(
        "month",
        1,
        12,
        12,
        {name.lower(): i for i, name in enumerate(_MONTH_NAMES, 1)},
        "a month name (JAN-DEC)",
    ),
    _Field(
        "day-of-week",
        0,
        6,
        7,
        {name.lower(): i for i, name in enumerate(_DAY_NAMES)},
        "a day name (SUN-SAT)",
    ),
)
_MINUTE, _HOUR, _DOM, _MONTH, _DOW = _FIELDS


# --------------------------------------------------------------------------- patterns for CEL
# The same knowledge as regular expressions, for the CRD's CEL rules (bgjobs/api/rules.py):
# built from the tables above, so the API server and parse_schedule read schedules alike.
# They check what a regular expression can (syntax, each number within its field's bounds,
# steps no longer than the field); parse_schedule also refuses backwards ranges, steps longer
# than their range and dates that never occur.


def _decimal(low: int, high: int) -> str:
    """The numbers ``low``..``high`` (below 100), leading zeros allowed, as a regex."""
    options = []
    for tens in range(low // 10, high // 10 + 1):
        first, last = max(low, tens * 10) % 10, min(high, tens * 10 + 9) % 10
        digits = f"[{first}-{last}]" if first != last else str(first)
        options.append(digits if tens == 0 else f"{tens}{digits}")
    return f"0*(?:{'|'.join(options)})"


def _interval_amounts(unit: str) -> str:
    """The amounts of ``unit`` that make an even interval (``every 120s``, ``every 2h``)."""
    per_unit = _UNIT_SECONDS[unit]
    amounts = [m * 60 // per_unit for m in _EVEN_MINUTES if m * 60 % per_unit == 0]
    return f"0*(?:{'|'.join(map(str, amounts))})"


def _field_pattern(field: _Field) -> str:
    names = "".join(f"|{name}" for name in field.names)
    value = f"(?:{_decimal(field.low, field.limit)}{names})"
    step = _decimal(1, field.limit - field.low)
    item = f"(?:[*?]|{value}(?:-{value})?)(?:/{step})?"
    return f"{item}(?:,{item})*"


CRON_PATTERN: str = r"(?i)^\s*" + r"\s+".join(_field_pattern(field) for field in _FIELDS) + r"\s*$"
MACRO_PATTERN: str = rf"(?i)^\s*({'|'.join(_MACROS)})\s*$"
INTERVAL_PREFIX_PATTERN: str = r"(?i)^\s*every"
EXPRESSIBLE_INTERVAL_PATTERN: str = (
    r"(?i)^\s*every\s+(?:"
    + "|".join(
        rf"{_interval_amounts(unit)}\s*(?:{spelled})" for unit, spelled in _UNIT_SPELLINGS.items()
    )
    + r"|minute|hour|day)\s*$"
)


@dataclass(frozen=True)
class _ParsedField:
    """The values a field (or one list item) selects, and whether it counts as a "star".

    robfig/cron calls a field a star when any list item is ``*`` or ``?`` without a step above 1.
    That matters for days: day-of-month and day-of-week combine with OR when both are
    restricted, with AND otherwise, so ``*/2`` (restricted) and ``*`` (star) behave differently.
    ``aliased`` records that a value above the field's ``high`` was written (day-of-week 7),
    which robfig/cron rejects even where a step skips it (``0-7/2``), so the field is rewritten.
    """

    values: frozenset[int]
    star: bool
    aliased: bool


@dataclass(frozen=True)
class _CronSpec:
    """A parsed 5-field expression: the values each field selects."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]  # 0 = Sunday, 7 already folded into 0
    dom_star: bool
    dow_star: bool

    def matches_day(self, day: date) -> bool:
        """robfig/cron's rule: OR if both day fields are restricted, else AND."""
        dom_match = day.day in self.days_of_month
        dow_match = day.isoweekday() % 7 in self.days_of_week
        if self.dom_star or self.dow_star:
            return dom_match and dow_match
        return dom_match or dow_match


# --------------------------------------------------------------------------- public API


def parse_schedule(text: str) -> str:
    """Return the cron expression the CronJob gets for a JobSchedule's ``schedule``.

    Cron expressions come back with whitespace collapsed and day-of-week 7 rewritten as 0
    (robfig/cron only knows 0-6). Macros come back as written (lower-cased), because the
    CronJob understands them. Intervals come back as the equivalent cron expression.
    Raises :class:`ScheduleError` with a message meant for the user who wrote ``text``.
    """
    schedule = " ".join(text.split())
    if not schedule:
        raise ScheduleError(
            'schedule is empty; write a cron expression such as "*/15 * * * *", '
            'a macro such as @daily, or an interval such as "every 15m"'
        )
    if schedule.startswith("@"):
        return _parse_macro(schedule)
    if schedule.lower().startswith("every"):
        return _parse_interval(schedule)
    if _TZ_PREFIX_RE.match(schedule):
        raise ScheduleError(
            "a time zone prefix (TZ=... or CRON_TZ=...) is not allowed in the schedule; "
            "set the time zone in its own field"
        )
    return _parse_cron(schedule)[1]


def next_fire_times(
    cron: str, after: datetime, tz: str | None = None, count: int = 1
) -> list[datetime]:
    """Return the next ``count`` fire times strictly after ``after``, as aware UTC datetimes.

    ``cron`` is anything :func:`parse_schedule` accepts. It is evaluated in wall-clock time of
    ``tz`` (an IANA name; UTC when None), as the CronJob controller does with
    ``spec.timeZone``, and the times are the ones robfig/cron's ``Next`` gives (the parser the
    CronJob controller fires by), DST changes included:

    * a wall time that occurs twice (fall back) fires at both occurrences: ``*/30`` in
      Europe/Berlin on 2025-10-26 fires at 00:00, 00:30, 01:00, 01:30, 02:00 UTC, and
      ``30 2 * * *`` at 00:30 and 01:30 UTC;
    * a wall time that does not exist (spring forward) does not fire that day: ``30 2 * * *``
      in Europe/Berlin skips 2025-03-30;
    * robfig searches five calendar years at most: a schedule with no fire in that span (the
      29th of February around 2100) predicts none, as the controller would.

    Fewer than ``count`` times are returned only then, or past the year 9999.
    """
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError("after must be a timezone-aware datetime")
    if count < 0:
        raise ValueError(f"count must not be negative, got {count}")
    spec = _compile(cron)
    zone = _zone(tz)
    fires: list[datetime] = []
    instant = calendar.timegm(after.utctimetuple())  # whole seconds, rounded down
    while len(fires) < count:
        try:
            found = _robfig_next(spec, instant, zone)
        except (OverflowError, ValueError):  # past the end of Python's calendar
            break
        if found is None:
            break
        fires.append(datetime.fromtimestamp(found, UTC))
        instant = found
    return fires


def validate_time_zone(tz: str) -> None:
    """Raise :class:`ScheduleError` unless ``tz`` is an IANA time zone name we can load.

    Kubernetes rejects ``Local`` (the controller's own zone is not a stable choice); we also
    reject ``localtime`` for the same reason.
    """
    _zone(tz)


# --------------------------------------------------------------------------- macros and intervals


def _parse_macro(schedule: str) -> str:
    """Accept the descriptors the CronJob understands; point @every users at our intervals."""
    macro = schedule.lower()
    if macro in _MACROS:
        return macro
    hint = ""
    if macro.startswith("@every"):
        hint = f'; for intervals write {_quote(schedule[1:])} without the "@"'
    raise ScheduleError(f"unknown macro {_quote(schedule)}; use one of {', '.join(_MACROS)}{hint}")


def _parse_interval(schedule: str) -> str:
    """Turn ``every <N><unit>`` into cron, or explain why cron cannot run it evenly."""
    match = _INTERVAL_RE.match(schedule)
    if match is None:
        raise ScheduleError(
            f"{_quote(schedule)} is not a valid interval; write every <N><unit> with unit "
            's, m, h or d, e.g. "every 15m" or "every 2h"'
        )
    number, unit, word = match.groups()
    amount, unit = (1, word) if word else (int(number), unit)
    letter = unit[0].lower()
    if amount == 0:
        raise ScheduleError(f"{schedule}: the interval must be at least 1{letter}")
    return _interval_to_cron(schedule, amount * _UNIT_SECONDS[letter], letter)


def _interval_to_cron(schedule: str, seconds: int, unit: str) -> str:
    """Map an interval onto cron fields when it divides an hour or a day; raise otherwise."""
    if seconds % 60:
        raise ScheduleError(
            f"{schedule} cannot be expressed as a cron schedule (cron's resolution is one "
            f"minute); use e.g. {_suggest(seconds / 60, 'm')}"
        )
    minutes = seconds // 60
    if minutes not in _EVEN_MINUTES:
        raise ScheduleError(
            f"{schedule} cannot be expressed as a cron schedule (intervals must divide an hour "
            f"or a day evenly); use e.g. {_suggest(minutes, unit)}, or write a cron expression"
        )
    if minutes == 1:
        return "* * * * *"
    if minutes < 60:
        return f"*/{minutes} * * * *"
    hours = minutes // 60
    if hours == 1:
        return "0 * * * *"
    if hours < 24:
        return f"0 */{hours} * * *"
    return "0 0 * * *"


def _suggest(minutes: float, unit: str) -> str:
    """The nearest even intervals below and above ``minutes``, spelled in the user's unit."""
    below = [m for m in _EVEN_MINUTES if m < minutes]
    above = [m for m in _EVEN_MINUTES if m > minutes]
    options = ([below[-1]] if below else []) + ([above[0]] if above else [])
    return " or ".join(f"every {_format_minutes(m, unit)}" for m in options)


def _format_minutes(minutes: int, unit: str) -> str:
    """``90, 'm'`` -> ``90m``; ``240, 'h'`` -> ``4h``; falls back to a finer unit if needed."""
    if unit == "d" and minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    if unit in ("h", "d") and minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


# --------------------------------------------------------------------------- cron expressions


@lru_cache(maxsize=256)
def _compile(schedule: str) -> _CronSpec:
    """Parse anything parse_schedule accepts into field sets (cached: schedules repeat)."""
    cron = parse_schedule(schedule)
    return _parse_cron(_MACROS.get(cron, cron))[0]


def _parse_cron(schedule: str) -> tuple[_CronSpec, str]:
    """Parse a 5-field expression; return it and the text the CronJob should get."""
    texts = schedule.split()
    if len(texts) != 5:
        hint = "; CronJob schedules have no seconds field" if len(texts) == 6 else ""
        raise ScheduleError(
            "expected 5 fields (minute hour day-of-month month day-of-week), a macro such as "
            f'@daily, or an interval such as "every 15m"; got {len(texts)} field(s) in '
            f"{_quote(schedule)}{hint}"
        )
    minute, hour, dom, month, dow = (
        _parse_field(text, field) for text, field in zip(texts, _FIELDS, strict=True)
    )
    spec = _CronSpec(
        minutes=minute.values,
        hours=hour.values,
        days_of_month=dom.values,
        months=month.values,
        days_of_week=frozenset(v % 7 for v in dow.values),
        dom_star=dom.star,
        dow_star=dow.star,
    )
    _check_day_exists(spec, texts[2])
    if dow.aliased:
        texts[4] = "*" if dow.star else _compact(spec.days_of_week)
    return spec, " ".join(texts)


def _parse_field(text: str, field: _Field) -> _ParsedField:
    """A field is a comma-separated list; it selects the union of its items."""
    items = [_parse_item(item, text, field) for item in text.split(",")]
    return _ParsedField(
        values=frozenset().union(*(item.values for item in items)),
        star=any(item.star for item in items),
        aliased=any(item.aliased for item in items),
    )


def _parse_item(item: str, text: str, field: _Field) -> _ParsedField:
    """One list item: ``*``, ``?``, ``N``, ``A-B``, each optionally followed by ``/STEP``."""
    if not item:
        raise _field_error(field, f"empty list item in {_quote(text)}")
    span, slash, step_text = item.partition("/")
    if "/" in step_text:
        raise _field_error(field, f"{_quote(item)} has more than one step")
    star = span in ("*", "?")
    if star:
        start, end = field.low, field.high
    else:
        bounds = span.split("-")
        if len(bounds) > 2 or not all(bounds):
            raise _field_error(field, f"{_quote(item)} is not a value or a range like 1-5")
        start = _parse_value(bounds[0], field)
        # "N/step" runs from N to the end of the field, as in robfig/cron.
        open_end = max(field.high, start) if slash else start
        end = _parse_value(bounds[1], field) if len(bounds) == 2 else open_end
        if start > end:
            raise _field_error(
                field,
                f"range {span} is backwards ({start} > {end}); ranges do not wrap around, "
                f"write {_compact([*range(start, field.high + 1), *range(field.low, end + 1)])}",
            )
    step = _parse_step(step_text, item, field) if slash else 1
    if step > 1 and step > end - start:
        raise _field_error(
            field,
            f"step {step} in {_quote(item)} is larger than the range {start}-{end}, "
            f"so it would only ever match {start}",
        )
    return _ParsedField(
        values=frozenset(range(start, end + 1, step)),
        star=star and step == 1,
        aliased=end > field.high,
    )


def _parse_value(token: str, field: _Field) -> int:
    """A number within the field's bounds, or a month/day name where the field has names."""
    name_value = field.names.get(token.lower())
    if name_value is not None:
        return name_value
    if not (token.isascii() and token.isdigit()):
        kinds = f"a number or {field.names_hint}" if field.names else "a number"
        raise _field_error(field, f"{_quote(token)} is not {kinds}")
    value = int(token)
    if not field.low <= value <= field.limit:
        raise _field_error(field, f"{value} is out of range {field.low}-{field.limit}")
    return value


def _parse_step(token: str, item: str, field: _Field) -> int:
    if not (token.isascii() and token.isdigit()):
        raise _field_error(field, f"step {_quote(token)} in {_quote(item)} is not a number")
    step = int(token)
    if step == 0:
        raise _field_error(field, f"step 0 in {_quote(item)} must be at least 1")
    return step


def _check_day_exists(spec: _CronSpec, dom_text: str) -> None:
    """Reject dates that never occur (``0 0 30 2 *``): the CronJob would simply never run.

    Only possible when day-of-week is a star (AND semantics): a restricted day-of-week
    matches some day of every month.
    """
    if not spec.dow_star:
        return
    if any(day <= _MAX_MONTH_DAYS[m] for m in spec.months for day in spec.days_of_month):
        return
    months = ", ".join(_MONTH_NAMES[m - 1] for m in sorted(spec.months))
    raise _field_error(
        _DOM, f"{dom_text} never occurs in {months}, so the schedule would never fire"
    )


def _compact(values: Iterable[int]) -> str:
    """``{0, 5, 6}`` -> ``0,5-6``: the shortest list-of-ranges spelling of a value set."""
    runs: list[list[int]] = []
    for value in sorted(set(values)):
        if runs and value == runs[-1][1] + 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _field_error(field: _Field, message: str) -> ScheduleError:
    return ScheduleError(f"{field.name} field: {message}")


def _quote(text: str) -> str:
    """Double-quote user text for messages, escaping anything that would garble them."""
    return json.dumps(text, ensure_ascii=False)


# --------------------------------------------------------------------------- fire times


def _zone(tz: str | None) -> tzinfo:
    """Load an IANA zone, turning every way ZoneInfo can fail into one clear ScheduleError."""
    if tz is None:
        return UTC
    if tz.lower() in ("local", "localtime"):
        raise ScheduleError(
            f"time zone {_quote(tz)} is not allowed; name an IANA time zone such as "
            '"Europe/Berlin" or "UTC"'
        )
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # Not found, malformed key ("../x", ""), a directory ("Europe"), an unreadable file.
        raise ScheduleError(f"unknown time zone {_quote(tz)}") from None


# What follows mirrors robfig/cron v3's SpecSchedule.Next and the two Go time functions its
# DST behaviour comes from (time.Date picking an offset for a wall time, AddDate adding wall
# days), on Unix seconds. The fields are matched in the zone's wall time; hours, minutes
# and seconds are stepped in real time (which is why a repeated wall hour fires twice and a
# skipped one not at all), days and months in wall time.

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _wall(instant: int, zone: tzinfo) -> datetime:
    return datetime.fromtimestamp(instant, zone)


def _offset(instant: int, zone: tzinfo) -> int:
    offset = _wall(instant, zone).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def _go_date(year: int, month: int, day: int, hour: int, minute: int, zone: tzinfo) -> int:
    """Go's ``time.Date``: overflowing fields carry over; a wall time in a gap or an overlap
    gets the offset in force at the wall time read as UTC, corrected once if that offset
    does not hold at the resulting instant."""
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    days = date(year, month, 1).toordinal() - _EPOCH_ORDINAL + day - 1
    local = days * 86400 + hour * 3600 + minute * 60
    return local - _offset(local - _offset(local, zone), zone)


def _robfig_next(spec: _CronSpec, after: int, zone: tzinfo) -> int | None:
    """The first fire after ``after`` (Unix seconds), or None when robfig finds none.

    Field by field, from months down to seconds: a field that does not match is stepped
    until it does, and a step that wraps the field around (January, the 1st, hour 0,
    minute 0, second 0) starts the check over from the months, as robfig's ``goto WRAP``.
    """
    t = after + 1
    year_limit = _wall(t, zone).year + 5
    added = False  # once a field has moved, the fields below it start from their beginning
    while True:
        w = _wall(t, zone)
        if w.year > year_limit:
            return None
        wrapped = False
        while w.month not in spec.months:
            if not added:
                added = True
                w = _wall(t := _go_date(w.year, w.month, 1, 0, 0, zone), zone)
            w = _wall(t := _go_date(w.year, w.month + 1, w.day, w.hour, w.minute, zone), zone)
            if wrapped := w.month == 1:
                break
        if wrapped:
            continue
        while not spec.matches_day(w.date()):
            if not added:
                added = True
                w = _wall(t := _go_date(w.year, w.month, w.day, 0, 0, zone), zone)
            w = _wall(t := _go_date(w.year, w.month, w.day + 1, w.hour, w.minute, zone), zone)
            if w.hour:  # midnight fell into a DST change: to the nearest day start
                t += (24 - w.hour) * 3600 if w.hour > 12 else -w.hour * 3600
                w = _wall(t, zone)
            if wrapped := w.day == 1:
                break
        if wrapped:
            continue
        while w.hour not in spec.hours:
            if not added:
                added = True
                t = _go_date(w.year, w.month, w.day, w.hour, 0, zone)
            w = _wall(t := t + 3600, zone)
            if wrapped := w.hour == 0:
                break
        if wrapped:
            continue
        while w.minute not in spec.minutes:
            if not added:
                added = True
                t -= t % 60
            w = _wall(t := t + 60, zone)
            if wrapped := w.minute == 0:
                break
        if wrapped:
            continue
        if w.second:  # CronJob schedules fire at second 0: step to it, which wraps
            added = True
            t += 60 - w.second
            continue
        return t
