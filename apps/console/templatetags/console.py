"""Template helpers for the console."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import template
from django.utils import formats
from django.utils.translation import gettext as _

register = template.Library()


@register.simple_tag(takes_context=True)
def query_with(context: dict[str, Any], **changes: Any) -> str:
    """Return the current query string with `changes` applied (keeps filters while paginating)."""
    params = context["request"].GET.copy()
    for key, value in changes.items():
        params[key] = value
    return str(params.urlencode())


@register.filter
def metric(value: Any, unit: str = "") -> str:
    """Format a dashboard number in the active locale, grouped ("1.234,5 ms" in German); "—" for none.

    Units: "%" and "ms" (one decimal), "usd" (two decimals, four below one dollar), "" (a count).
    """
    if value is None or value == "":
        return "—"
    number = float(value)
    if unit == "%":
        return _("%(value)s %%") % {"value": _number(number, 1)}
    if unit == "ms":
        return _("%(value)s ms") % {"value": _number(number, 1)}
    if unit == "usd":
        return _("%(amount)s USD") % {"amount": _number(number, 2 if abs(number) >= 1 or not number else 4)}
    return _number(number, 0 if number.is_integer() else 1)


@register.filter
def tick(value: Any, unit: str = "") -> str:
    """An axis label: the number without needless decimals, a percent sign for shares (the title names ms)."""
    number = float(value)
    text = _number(number, 0 if number.is_integer() else 1)
    return _("%(value)s %%") % {"value": text} if unit == "%" else text


@register.filter
def duration(value: Any) -> str:
    """A lag or age (timedelta or seconds) in its largest sensible unit, e.g. "3,5 h" in German."""
    if value is None:
        return "—"
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 120:
        return _("%(value)s s") % {"value": _number(seconds, 0)}
    if seconds < 2 * 3600:
        return _("%(value)s min") % {"value": _number(seconds / 60, 0)}
    if seconds < 2 * 86400:
        return _("%(value)s h") % {"value": _number(seconds / 3600, 1)}
    return _("%(value)s d") % {"value": _number(seconds / 86400, 1)}


def _number(value: float, decimals: int) -> str:
    return str(
        formats.number_format(
            round(value, decimals), decimal_pos=decimals, use_l10n=True, force_grouping=True
        )
    )


@register.filter(expects_localtime=True)
def bucket_label(value: datetime, window: str) -> str:
    """A chart bucket's start under the x-axis: the time of day, with the date over a week."""
    fmt = "SHORT_DATETIME_FORMAT" if window == "7d" else "TIME_FORMAT"
    return str(formats.date_format(value, fmt))
