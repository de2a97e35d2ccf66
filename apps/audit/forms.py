"""Forms of the compliance console: the event filters (shared by the list and the export) and the export."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from apps.audit.models import Outcome

TEXT_FILTERS = ("q", "actor", "action", "target")


class EventFilterForm(forms.Form):
    """Filters of the event list. Dates are days in the user's time zone; "To" includes the whole day."""

    q = forms.CharField(
        label=_("Search"),
        required=False,
        max_length=200,
        help_text=_("Action, actor, target or request id."),
    )
    category = forms.ChoiceField(
        label=_("Category"),
        required=False,
        choices=[
            ("", _("All events")),
            ("identity", _("Identity (sign-ins, single sign-on, SCIM, members)")),
        ],
    )
    actor = forms.CharField(label=_("Actor"), required=False, max_length=200)
    action = forms.CharField(
        label=_("Action"),
        required=False,
        max_length=64,
        help_text=_("Starts with, e.g. “member.” for every membership event."),
    )
    target = forms.CharField(label=_("Target"), required=False, max_length=200)
    outcome = forms.ChoiceField(
        label=_("Outcome"), required=False, choices=[("", _("Any outcome")), *Outcome.choices]
    )
    date_from = forms.DateField(
        label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", _("“To” must not be before “From”."))
        return data

    def selector_filters(self) -> dict[str, Any]:
        """What `audit_event_list(filters=...)` takes: the non-empty filters, days as aware datetimes."""
        data = self.cleaned_data
        filters: dict[str, Any] = {name: data[name].strip() for name in TEXT_FILTERS if data.get(name)}
        filters = {name: value for name, value in filters.items() if value}
        if data.get("outcome"):
            filters["outcome"] = data["outcome"]
        if data.get("category"):
            filters["category"] = data["category"]
        if data.get("date_from"):
            filters["since"] = _start_of(data["date_from"])
        if data.get("date_to"):
            filters["until"] = _start_of(data["date_to"] + timedelta(days=1))
        return filters

    def export_filters(self) -> dict[str, str]:
        """The filters as the export manifest records them (JSON; times with their UTC offset)."""
        return {
            name: value.isoformat() if isinstance(value, datetime) else str(value)
            for name, value in self.selector_filters().items()
        }


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_current_timezone())


class ExportForm(forms.Form):
    format = forms.ChoiceField(
        label=_("Format"),
        choices=[("csv", _("CSV (spreadsheets)")), ("jsonl", _("JSON Lines (one event per line)"))],
        initial="csv",
    )
