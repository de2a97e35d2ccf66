"""Console forms of handoff routing: a route, business hours (a weekly grid and holidays), the preview and
the live view's filters. They only shape input; apps/chat/services/routes.py checks it."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from apps.chat.models import BusinessHours, ChannelKind, HandoffRoute, HandoffState
from apps.chat.services.business_hours import DAY_LABELS, DAYS
from apps.chat.services.routes import ROUTE_INTENTS
from apps.integrations.models import Connection

_LIST_HELP = _("Empty: any. Every list you fill in must match.")


def _words(text: str) -> list[str]:
    return [w.strip() for w in text.replace(",", " ").split() if w.strip()]


class RouteForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100)
    enabled = forms.BooleanField(label=_("Enabled"), required=False, initial=True)
    regions = forms.MultipleChoiceField(
        label=_("Regions"), required=False, widget=forms.CheckboxSelectMultiple, help_text=_LIST_HELP
    )
    locales = forms.CharField(
        label=_("Locales"),
        required=False,
        max_length=300,
        help_text=_(
            "Separated by spaces or commas, e.g. “de fr-CH”; a language (“de”) matches all its variants."
        ),
    )
    intents = forms.MultipleChoiceField(
        label=_("Intents"), required=False, widget=forms.CheckboxSelectMultiple, help_text=_LIST_HELP
    )
    channel_kinds = forms.MultipleChoiceField(
        label=_("Channel kinds"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        choices=ChannelKind.choices,
        help_text=_LIST_HELP,
    )
    connection_id = forms.ChoiceField(label=_("Ticket connection"))
    queue = forms.CharField(
        label=_("Queue"),
        required=False,
        max_length=255,
        help_text=_("Assignment group (ServiceNow), queue id (Salesforce) or pipeline (HubSpot)."),
    )
    fallback_connection_id = forms.ChoiceField(
        label=_("Fallback connection"),
        required=False,
        help_text=_(
            "Takes the ticket while the ticket connection is disabled or its circuit breaker is open."
        ),
    )
    fallback_queue = forms.CharField(label=_("Fallback queue"), required=False, max_length=255)
    business_hours_id = forms.ChoiceField(
        label=_("Business hours"),
        required=False,
        help_text=_("Outside them the ticket is still opened and the bot says when a person will answer."),
    )

    def __init__(
        self, *args: Any, connections: list[Connection], hours: list[BusinessHours], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        conns = [(str(c.pk), f"{c.name} ({c.kind})") for c in connections]
        cast(forms.ChoiceField, self.fields["regions"]).choices = [(r, r) for r in settings.HUB_REGIONS]
        cast(forms.ChoiceField, self.fields["intents"]).choices = [(i, i) for i in ROUTE_INTENTS]
        cast(forms.ChoiceField, self.fields["connection_id"]).choices = [("", "—"), *conns]
        cast(forms.ChoiceField, self.fields["fallback_connection_id"]).choices = [("", _("None")), *conns]
        cast(forms.ChoiceField, self.fields["business_hours_id"]).choices = [
            ("", _("Always (no business hours)")),
            *[(str(h.pk), h.name) for h in hours],
        ]

    @staticmethod
    def initial_of(route: HandoffRoute) -> dict[str, Any]:
        return {
            "name": route.name,
            "enabled": route.enabled,
            "regions": route.regions,
            "locales": " ".join(route.locales),
            "intents": route.intents,
            "channel_kinds": route.channel_kinds,
            "connection_id": str(route.connection_id),
            "queue": route.queue,
            "fallback_connection_id": str(route.fallback_connection_id or ""),
            "fallback_queue": route.fallback_queue,
            "business_hours_id": str(route.business_hours_id or ""),
        }

    def route_data(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        data["locales"] = _words(data["locales"])
        for field in ("fallback_connection_id", "business_hours_id"):
            data[field] = data[field] or None
        return data


class HoursForm(forms.Form):
    """Business hours: one text field per weekday ("09:00-12:30, 13:30-17:00") and holidays, one a line."""

    name = forms.CharField(label=_("Name"), max_length=100)
    timezone = forms.CharField(
        label=_("Time zone"), max_length=64, initial="UTC", help_text=_("IANA name, e.g. Europe/Berlin.")
    )
    holidays = forms.CharField(
        label=_("Holidays"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("Local dates without any opening, one a line (YYYY-MM-DD)."),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for day in DAYS:
            self.fields[day] = forms.CharField(
                label=DAY_LABELS[day],
                required=False,
                max_length=200,
                widget=forms.TextInput(attrs={"placeholder": "09:00-12:30, 13:30-17:00"}),
            )

    @property
    def day_fields(self) -> list[forms.BoundField]:
        return [self[day] for day in DAYS]

    @staticmethod
    def initial_of(hours: BusinessHours) -> dict[str, Any]:
        initial = {
            "name": hours.name,
            "timezone": hours.timezone,
            "holidays": "\n".join(hours.holidays or []),
        }
        for day in DAYS:
            initial[day] = ", ".join(f"{a}-{b}" for a, b in (hours.weekly or {}).get(day, []))
        return initial

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        weekly: dict[str, list[list[str]]] = {}
        for day in DAYS:
            text = cleaned.get(day) or ""
            intervals = []
            for part in [p.strip() for p in text.split(",") if p.strip()]:
                bounds = [b.strip() for b in part.replace("\u2013", "-").split("-")]
                if len(bounds) != 2:
                    self.add_error(day, _("Write intervals as 09:00-17:00, separated by commas."))
                    break
                intervals.append(bounds)
            if intervals:
                weekly[day] = intervals
        cleaned["weekly"] = weekly
        return cleaned

    def hours_data(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "name": data["name"],
            "timezone": data["timezone"],
            "weekly": data["weekly"],
            "holidays": [line.strip() for line in data["holidays"].splitlines() if line.strip()],
        }


class PreviewForm(forms.Form):
    channel = forms.ChoiceField(
        label=_("Channel"),
        required=False,
        help_text=_(
            "Optional: empty fields take the channel's values, and its ticket connection is the default."
        ),
    )
    region = forms.ChoiceField(label=_("Region"), required=False)
    locale = forms.CharField(label=_("Locale"), required=False, max_length=16, initial="en")
    intent = forms.ChoiceField(label=_("Intent"), required=False, initial="handoff")
    channel_kind = forms.ChoiceField(label=_("Channel kind"), choices=ChannelKind.choices, required=False)
    at = forms.CharField(
        label=_("Date and time"),
        required=False,
        max_length=40,
        widget=forms.TextInput(attrs={"type": "datetime-local"}),
        help_text=_("Empty: now."),
    )
    timezone = forms.CharField(label=_("Time zone"), required=False, max_length=64, initial="UTC")

    def __init__(self, *args: Any, channels: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["channel"]).choices = [
            ("", _("None")),
            *sorted(channels.items(), key=lambda kv: kv[1]),
        ]
        regions = [("", _("The channel's")), *[(r, r) for r in settings.HUB_REGIONS]]
        cast(forms.ChoiceField, self.fields["region"]).choices = regions
        cast(forms.ChoiceField, self.fields["intent"]).choices = [(i, i) for i in ROUTE_INTENTS]
        kinds = [("", _("The channel's")), *ChannelKind.choices]
        cast(forms.ChoiceField, self.fields["channel_kind"]).choices = kinds


class HandoffFilterForm(forms.Form):
    state = forms.ChoiceField(
        label=_("State"), required=False, choices=[("", _("Active")), *HandoffState.choices]
    )
    connection = forms.ChoiceField(label=_("Connection"), required=False)
    channel = forms.ChoiceField(label=_("Channel"), required=False)

    def __init__(
        self, *args: Any, connections: list[Connection], channels: dict[str, str], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["connection"]).choices = [
            ("", _("Any")),
            *[(str(c.pk), c.name) for c in connections],
        ]
        cast(forms.ChoiceField, self.fields["channel"]).choices = [
            ("", _("Any")),
            *sorted(channels.items(), key=lambda kv: kv[1]),
        ]
