"""Business hours: open/closed and the next opening in the schedule's zone, right across DST changes in two
zones (Europe/Berlin and America/New_York), holidays, 24:00, and the checks on write."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from apps.chat.services.business_hours import (
    clean_holidays,
    clean_timezone,
    clean_weekly,
    schedule_state,
)

WEEKDAYS = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}


def state(zone: str, now: datetime, weekly: Any = None, holidays: Any = ()) -> tuple[bool, datetime | None]:
    return schedule_state(timezone=zone, weekly=weekly or WEEKDAYS, holidays=list(holidays), now=now)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# Europe/Berlin: CET (+1) / CEST (+2); changes 2026-03-29 (spring) and 2026-10-25 (autumn), both Sundays.
# America/New_York: EST (-5) / EDT (-4); changes 2026-03-08 (spring) and 2026-11-01 (autumn), both Sundays.
@pytest.mark.parametrize(
    ("zone", "friday", "monday_open_utc", "monday_close_utc"),
    [
        # Berlin spring: Friday 27 March is CET, Monday 30 March is CEST: 09:00 local = 07:00 UTC.
        ("Europe/Berlin", utc(2026, 3, 27, 16, 30), utc(2026, 3, 30, 7), utc(2026, 3, 30, 15)),
        # Berlin autumn: Friday 23 October is CEST, Monday 26 October is CET: 09:00 local = 08:00 UTC.
        ("Europe/Berlin", utc(2026, 10, 23, 15, 30), utc(2026, 10, 26, 8), utc(2026, 10, 26, 16)),
        # New York spring: Friday 6 March is EST, Monday 9 March is EDT: 09:00 local = 13:00 UTC.
        ("America/New_York", utc(2026, 3, 6, 22, 30), utc(2026, 3, 9, 13), utc(2026, 3, 9, 21)),
        # New York autumn: Friday 30 October is EDT, Monday 2 November is EST: 09:00 local = 14:00 UTC.
        ("America/New_York", utc(2026, 10, 30, 21, 30), utc(2026, 11, 2, 14), utc(2026, 11, 2, 22)),
    ],
)
def test_monday_opening_after_a_weekend_with_a_dst_change(
    zone: str, friday: datetime, monday_open_utc: datetime, monday_close_utc: datetime
) -> None:
    # Friday 17:30 local (closed): the next opening is Monday 09:00 local, with Monday's offset.
    assert state(zone, friday) == (False, monday_open_utc)
    # 09:00-17:00 local on Monday: open from its first second, closed at 17:00 local.
    assert state(zone, monday_open_utc) == (True, None)
    assert state(zone, monday_close_utc)[0] is False
    one_minute_before = monday_close_utc.replace(hour=monday_close_utc.hour - 1, minute=59)
    assert state(zone, one_minute_before) == (True, None)
    # A minute before 09:00 local it is closed and opens at 09:00 local.
    before = monday_open_utc.replace(hour=monday_open_utc.hour - 1, minute=59)
    assert state(zone, before) == (False, monday_open_utc)


@pytest.mark.parametrize(
    ("zone", "saturday_open", "sunday_change_open"),
    [
        # Open every day 09:00-17:00: the Sunday of the change itself opens at 09:00 local.
        ("Europe/Berlin", utc(2026, 3, 28, 8), utc(2026, 3, 29, 7)),
        ("Europe/Berlin", utc(2026, 10, 24, 7), utc(2026, 10, 25, 8)),
        ("America/New_York", utc(2026, 3, 7, 14), utc(2026, 3, 8, 13)),
        ("America/New_York", utc(2026, 10, 31, 13), utc(2026, 11, 1, 14)),
    ],
)
def test_the_day_of_the_change_keeps_local_hours(
    zone: str, saturday_open: datetime, sunday_change_open: datetime
) -> None:
    every_day = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    assert state(zone, saturday_open, every_day) == (True, None)
    after_saturday = saturday_open.replace(hour=saturday_open.hour + 8)  # 17:00 local Saturday
    assert state(zone, after_saturday, every_day) == (False, sunday_change_open)


def test_night_shift_split_over_midnight_and_24_00() -> None:
    weekly = {"mon": [["22:00", "24:00"]], "tue": [["00:00", "06:00"]]}
    # Monday 23:30 Berlin (CET in January) = 22:30 UTC: open; Tuesday 05:59 local open; 06:00 closed.
    assert state("Europe/Berlin", utc(2026, 1, 5, 22, 30), weekly) == (True, None)
    assert state("Europe/Berlin", utc(2026, 1, 5, 23, 0), weekly) == (True, None)  # 00:00 Tuesday
    assert state("Europe/Berlin", utc(2026, 1, 6, 4, 59), weekly) == (True, None)
    assert state("Europe/Berlin", utc(2026, 1, 6, 5, 0), weekly) == (False, utc(2026, 1, 12, 21))


def test_holidays_skip_to_the_next_working_day() -> None:
    # Friday 25 December 2026 is a holiday: Thursday evening's next opening is Monday 28th (CET).
    result = state("Europe/Berlin", utc(2026, 12, 24, 17), holidays=["2026-12-25"])
    assert result == (False, utc(2026, 12, 28, 8))
    assert state("Europe/Berlin", utc(2026, 12, 25, 10), holidays=["2026-12-25"]) == (
        False,
        utc(2026, 12, 28, 8),
    )


def test_never_open_has_no_next_opening() -> None:
    holidays = [f"2026-01-{d:02d}" for d in range(1, 32)]
    weekly = {"mon": [["09:00", "10:00"]]}
    assert state("UTC", utc(2026, 1, 1), weekly, holidays)[1] == utc(2026, 2, 2, 9)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        state("UTC", datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("weekly", "message"),
    [
        ({"mon": [["9:00", "17:00"]]}, "HH:MM"),
        ({"mon": [["09:00", "25:00"]]}, "HH:MM"),
        ({"mon": [["24:00", "24:00"]]}, "HH:MM"),
        ({"mon": [["09:60", "17:00"]]}, "HH:MM"),
        ({"mon": [["17:00", "09:00"]]}, "crosses midnight"),
        ({"mon": [["22:00", "06:00"]]}, "Split it"),
        ({"mon": [["09:00", "09:00"]]}, "after the start"),
        ({"mon": [["09:00", "13:00"], ["12:00", "17:00"]]}, "overlap"),
        ({"funday": [["09:00", "17:00"]]}, "Unknown days"),
        ({"mon": "09:00-17:00"}, "intervals"),
        ({"mon": [["09:00"]]}, "pair"),
        ({}, "at least one"),
        ([["09:00", "17:00"]], "opening hours"),
    ],
)
def test_weekly_refused(weekly: Any, message: str) -> None:
    errors: dict[str, list[str]] = {}
    clean_weekly(weekly, errors)
    assert any(message in m for m in errors["weekly"]), errors


def test_weekly_normalized() -> None:
    errors: dict[str, list[str]] = {}
    clean = clean_weekly({"mon": [["13:00", "17:00"], ["09:00", "12:00"]], "sun": []}, errors)
    assert errors == {}
    assert clean == {"mon": [["09:00", "12:00"], ["13:00", "17:00"]]}


def test_timezone_and_holidays_refused() -> None:
    errors: dict[str, list[str]] = {}
    clean_timezone("Mars/Olympus", errors)
    clean_timezone("../../etc/passwd", errors)
    assert "Unknown time zone" in errors["timezone"][0]
    errors = {}
    assert clean_holidays(["2026-02-30", "christmas", "2026-12-25"], errors) == ["2026-12-25"]
    assert "2026-02-30" in errors["holidays"][0] and "christmas" in errors["holidays"][0]
    errors = {}
    assert clean_holidays(["2026-12-26", "2026-12-25", "2026-12-25"], errors) == ["2026-12-25", "2026-12-26"]
    assert errors == {}
    clean_holidays("2026-12-25", errors)
    assert errors["holidays"]


def test_times_skipped_or_repeated_by_a_change() -> None:
    # Berlin, Sunday 29 March 2026: 02:00-03:00 does not exist. 02:30-04:00 opens when the clock reads 03:00
    # CEST (01:00 UTC, the gap's end) at the latest and closes at 04:00 CEST (02:00 UTC).
    sunday = {"sun": [["02:30", "04:00"]]}
    assert state("Europe/Berlin", utc(2026, 3, 29, 1, 30), sunday) == (True, None)
    assert state("Europe/Berlin", utc(2026, 3, 29, 2, 0), sunday)[0] is False
    # Sunday 25 October 2026: 02:00-03:00 happens twice; the interval opens at the first 02:30 (CEST, 00:30
    # UTC) and closes at 04:00 CET (03:00 UTC).
    october = state("Europe/Berlin", utc(2026, 10, 25, 0, 0), sunday)
    assert october == (False, utc(2026, 10, 25, 0, 30))
    assert state("Europe/Berlin", utc(2026, 10, 25, 2, 59), sunday) == (True, None)
    assert state("Europe/Berlin", utc(2026, 10, 25, 3, 0), sunday)[0] is False
