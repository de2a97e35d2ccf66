"""Business hours: parse and check a weekly schedule with holidays, and say whether people answer at an
instant and when they answer next.

Everything is computed on local wall-clock dates in the schedule's IANA zone and compared in UTC, so an
interval 09:00-17:00 stays 09:00-17:00 local on both sides of a DST change (it is 08:00-16:00 UTC in a
Berlin summer and 07:00-15:00 UTC in winter). An interval may end at "24:00"; one that crosses midnight
(22:00-06:00) is refused with a clear error: split it over the two days (22:00-24:00 and 00:00-06:00), so
that every interval belongs to exactly one local date and holidays apply without doubt.
"""

from __future__ import annotations

import functools
import itertools
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

#: Weekday keys in Python's weekday() order (Monday = 0).
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_LABELS = {
    "mon": gettext_lazy("Monday"),
    "tue": gettext_lazy("Tuesday"),
    "wed": gettext_lazy("Wednesday"),
    "thu": gettext_lazy("Thursday"),
    "fri": gettext_lazy("Friday"),
    "sat": gettext_lazy("Saturday"),
    "sun": gettext_lazy("Sunday"),
}
MAX_INTERVALS_PER_DAY = 6
MAX_HOLIDAYS = 366
#: How far ahead `next_open` looks (a schedule closed for longer has no next opening).
LOOKAHEAD_DAYS = 400

Minutes = tuple[int, int]  # an interval as minutes since local midnight, end exclusive (1440 = 24:00)


@functools.cache
def known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def zone_valid(name: str) -> bool:
    return isinstance(name, str) and name in known_zones()


def _minutes(text: Any, *, end: bool) -> int | None:
    """'HH:MM' as minutes since midnight; '24:00' only as an end. None when malformed."""
    if not isinstance(text, str) or len(text) != 5 or text[2] != ":":
        return None
    hh, mm = text[:2], text[3:]
    if not (hh.isdigit() and mm.isdigit()):
        return None
    hours, minutes = int(hh), int(mm)
    if end and hours == 24 and minutes == 0:
        return 1440
    if hours > 23 or minutes > 59:
        return None
    return hours * 60 + minutes


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def clean_weekly(value: Any, errors: dict[str, list[str]]) -> dict[str, list[list[str]]]:
    """Check a weekly schedule {"mon": [["09:00", "17:00"], ...], ...}; return it normalized (sorted
    intervals, closed days left out) and add messages to errors["weekly"]."""
    problems: list[str] = []
    clean: dict[str, list[list[str]]] = {}
    if not isinstance(value, Mapping):
        errors["weekly"] = [_('Give the opening hours as {"mon": [["09:00", "17:00"]], …}.')]
        return clean
    unknown = sorted(str(k) for k in value if k not in DAYS)
    if unknown:
        problems.append(
            _("Unknown days: %(days)s. Use %(allowed)s.")
            % {"days": ", ".join(unknown), "allowed": ", ".join(DAYS)}
        )
    for day in DAYS:
        intervals = value.get(day) or []
        label = str(DAY_LABELS[day])
        if not isinstance(intervals, list | tuple) or len(intervals) > MAX_INTERVALS_PER_DAY:
            problems.append(
                _("%(day)s: give at most %(max)s intervals.") % {"day": label, "max": MAX_INTERVALS_PER_DAY}
            )
            continue
        parsed: list[Minutes] = []
        for interval in intervals:
            if not isinstance(interval, list | tuple) or len(interval) != 2:
                problems.append(_("%(day)s: an interval is a pair [start, end].") % {"day": label})
                continue
            start, stop = _minutes(interval[0], end=False), _minutes(interval[1], end=True)
            if start is None or stop is None:
                problems.append(
                    _("%(day)s: use times as HH:MM (00:00 to 24:00), not %(value)s.")
                    % {"day": label, "value": "-".join(str(v) for v in interval)}
                )
            elif stop < start:
                problems.append(
                    _(
                        "%(day)s: %(start)s-%(end)s crosses midnight. Split it: %(start)s-24:00 on this day "
                        "and 00:00-%(end)s on the next."
                    )
                    % {"day": label, "start": interval[0], "end": interval[1]}
                )
            elif stop == start:
                problems.append(
                    _("%(day)s: the end must be after the start (%(start)s-%(end)s).")
                    % {"day": label, "start": interval[0], "end": interval[1]}
                )
            else:
                parsed.append((start, stop))
        parsed.sort()
        for (_s1, e1), (s2, _e2) in itertools.pairwise(parsed):
            if s2 < e1:
                problems.append(_("%(day)s: intervals overlap.") % {"day": label})
                break
        if parsed:
            clean[day] = [[_hhmm(s), _hhmm(e)] for s, e in parsed]
    if not problems and not clean:
        problems.append(_("Give at least one opening interval."))
    if problems:
        errors["weekly"] = problems
    return clean


def clean_holidays(value: Any, errors: dict[str, list[str]]) -> list[str]:
    """Check a list of local dates "YYYY-MM-DD"; return them sorted without repeats."""
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        errors["holidays"] = [_("Give the holidays as a list of dates (YYYY-MM-DD).")]
        return []
    if len(value) > MAX_HOLIDAYS:
        errors["holidays"] = [_("Give at most %(max)s holidays.") % {"max": MAX_HOLIDAYS}]
        return []
    bad, days = [], set()
    for text in value:
        try:
            if len(text.strip()) != 10:
                raise ValueError(text)
            days.add(date.fromisoformat(text.strip()))
        except ValueError:
            bad.append(text)
    if bad:
        errors["holidays"] = [
            _("Not dates (YYYY-MM-DD): %(values)s.") % {"values": ", ".join(str(b)[:20] for b in bad[:5])}
        ]
    return [d.isoformat() for d in sorted(days)]


def clean_timezone(value: Any, errors: dict[str, list[str]]) -> str:
    name = str(value or "").strip()
    if not zone_valid(name):
        errors["timezone"] = [
            _("Unknown time zone “%(zone)s”: use an IANA name such as Europe/Berlin.") % {"zone": name[:64]}
        ]
    return name


@dataclass(frozen=True, slots=True)
class Schedule:
    """A checked schedule: intervals per weekday (minutes), holidays and the zone."""

    zone: zoneinfo.ZoneInfo
    weekly: Mapping[int, Sequence[Minutes]]
    holidays: frozenset[date]

    @classmethod
    def of(cls, *, timezone: str, weekly: Mapping[str, Any], holidays: Sequence[str]) -> Schedule:
        """Build from stored (already validated) values; anything malformed is left out, never guessed."""
        parsed: dict[int, list[Minutes]] = {}
        for index, day in enumerate(DAYS):
            intervals = weekly.get(day) if isinstance(weekly, Mapping) else None
            for interval in intervals if isinstance(intervals, list | tuple) else []:
                if not isinstance(interval, list | tuple) or len(interval) != 2:
                    continue
                start, stop = _minutes(interval[0], end=False), _minutes(interval[1], end=True)
                if start is not None and stop is not None and start < stop:
                    parsed.setdefault(index, []).append((start, stop))
        days = set()
        for text in holidays if isinstance(holidays, list | tuple) else []:
            try:
                days.add(date.fromisoformat(text))
            except (TypeError, ValueError):
                continue
        return cls(
            zone=zoneinfo.ZoneInfo(timezone),
            weekly={k: sorted(v) for k, v in parsed.items()},
            holidays=frozenset(days),
        )

    def _local(self, day: date, minutes: int) -> datetime:
        """The UTC instant of a local wall-clock time ("24:00" is the next day's midnight). A time that a
        spring-forward change skips maps past the gap (zoneinfo's fold=0 reading); nothing is guessed."""
        if minutes == 1440:
            day, minutes = day + timedelta(days=1), 0
        wall = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=self.zone)
        return wall.astimezone(UTC)

    def intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        """The opening intervals of one local date, as UTC instants."""
        if day in self.holidays:
            return []
        return [(self._local(day, s), self._local(day, e)) for s, e in self.weekly.get(day.weekday(), ())]

    def state(self, now: datetime) -> tuple[bool, datetime | None]:
        """(open now, the next opening in UTC when closed; None when open or never within the lookahead)."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        now = now.astimezone(UTC)
        today = now.astimezone(self.zone).date()
        for offset in range(-1, LOOKAHEAD_DAYS):  # yesterday: an interval ending at 24:00 may still run
            for start, stop in self.intervals(today + timedelta(days=offset)):
                if start <= now < stop:
                    return True, None
                if start > now:
                    return False, start
        return False, None


def schedule_state(
    *, timezone: str, weekly: Mapping[str, Any], holidays: Sequence[str], now: datetime
) -> tuple[bool, datetime | None]:
    """Whether a schedule is open at `now`, and its next opening (UTC) when it is not."""
    return Schedule.of(timezone=timezone, weekly=weekly, holidays=holidays).state(now)
