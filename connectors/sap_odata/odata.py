"""OData V2 literals and the JSON date formats SAP Gateway uses, shared by the connector and its simulator.

Kept apart from both so the simulator parses exactly what the connector writes (`datetime'…'`,
`datetimeoffset'…'`, `time'PT…'`, `/Date(ms)/`), and a change to one is a change to the other.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DATE_JSON = re.compile(r"^/Date\((-?\d+)(?:([+-])(\d{4}))?\)/$")
_DURATION = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)(?:\.\d+)?S)?$")


def quote(value: str) -> str:
    """A string literal: single quotes doubled, as OData V2 escapes them."""
    return "'" + value.replace("'", "''") + "'"


def datetime_literal(value: datetime) -> str:
    """`datetime'2024-01-31T00:00:00'` (Edm.DateTime carries no zone: SAP stores UTC)."""
    return f"datetime'{value.astimezone(UTC):%Y-%m-%dT%H:%M:%S}'"


def datetimeoffset_literal(value: datetime) -> str:
    """`datetimeoffset'2024-01-31T10:20:30Z'`, with milliseconds when the value has them."""
    moment = value.astimezone(UTC)
    fraction = f".{moment.microsecond // 1000:03d}" if moment.microsecond else ""
    return f"datetimeoffset'{moment:%Y-%m-%dT%H:%M:%S}{fraction}Z'"


def time_literal(seconds: int) -> str:
    """`time'PT10H20M30S'` for an Edm.Time (seconds since midnight)."""
    return f"time'{duration(seconds)}'"


def duration(seconds: int) -> str:
    return f"PT{seconds // 3600:02d}H{seconds // 60 % 60:02d}M{seconds % 60:02d}S"


def parse_duration(value: str) -> int:
    """Seconds of an Edm.Time in JSON (`PT10H20M30S`); ValueError for anything else."""
    match = _DURATION.match(value)
    if match is None or value == "PT":
        raise ValueError(f"not an Edm.Time duration: {value!r}")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def date_json(seconds: int, *, offset: bool = False) -> str:
    """`/Date(ms)/` (Edm.DateTime) or `/Date(ms+0000)/` (Edm.DateTimeOffset) for a UTC epoch second."""
    return f"/Date({seconds * 1000}+0000)/" if offset else f"/Date({seconds * 1000})/"


def parse_date_json(value: str) -> datetime:
    """An aware UTC datetime from `/Date(ms)/` or `/Date(ms±offset)/`; ValueError for anything else.

    The ticks are UTC milliseconds either way; the offset (minutes) only says where the writer was."""
    match = _DATE_JSON.match(value)
    if match is None:
        raise ValueError(f"not an OData V2 JSON date: {value!r}")
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(match.group(1)))
