"""Console forms for the data policy and subject erasure. The rules themselves live in services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from apps.policies.models import MAX_RETENTION_DAYS, MIN_RETENTION_DAYS, Category
from apps.policies.services import PRESETS
from apps.tenants.models import Region

KEEP_FOREVER = _("Leave empty to keep forever.")


def _days_field(label: Any, category: str) -> forms.IntegerField:
    return forms.IntegerField(
        label=label,
        required=False,
        min_value=MIN_RETENTION_DAYS[category],
        max_value=MAX_RETENTION_DAYS,
        help_text=KEEP_FOREVER,
    )


class PolicyForm(forms.Form):
    allowed_regions = forms.MultipleChoiceField(
        label=_("Other regions data may be sent to"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("The home region is always allowed."),
    )
    redact_transcripts = forms.BooleanField(
        label=_("Redact personal data in transcripts before storing them"), required=False
    )
    transcript_retention_days = _days_field(_("Conversation transcripts (days)"), Category.TRANSCRIPTS)
    synced_record_retention_days = _days_field(_("Synced records (days)"), Category.SYNCED_RECORDS)
    sync_log_retention_days = _days_field(_("Sync logs (days)"), Category.SYNC_LOGS)
    audit_retention_days = _days_field(_("Audit events (days)"), Category.AUDIT_EVENTS)
    delivered_write_retention_days = _days_field(
        _("Delivered writes to business systems (days)"), Category.DELIVERED_WRITES
    )

    def __init__(self, *args: Any, home_region: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["allowed_regions"]
        field.choices = [  # type: ignore[attr-defined]
            (region.code, f"{region.code.upper()} ({region.name})")
            for region in Region.objects.exclude(code=home_region).order_by("code")
        ]
        self.fields["audit_retention_days"].help_text = _(
            "At least %(min)d days. Leave empty to keep forever."
        ) % {"min": MIN_RETENTION_DAYS[Category.AUDIT_EVENTS]}


class PresetForm(forms.Form):
    preset = forms.ChoiceField(choices=[(name, name) for name in PRESETS])


class SubjectForm(forms.Form):
    """The identifiers of a data subject, at least one of them (the erasure page's and the register's)."""

    email = forms.EmailField(label=_("E-mail address"), required=False)
    phone = forms.CharField(label=_("Phone number"), required=False, max_length=40)
    external_id = forms.CharField(
        label=_("External id"),
        required=False,
        max_length=200,
        help_text=_("The person's id in a connected system, e.g. a CRM contact id."),
    )
    #: The fields that identify the subject, and the error when none is given.
    identifier_fields: tuple[str, ...] = ("email", "phone", "external_id")
    no_identifier = _("Give an e-mail address, a phone number or an external id.")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not any(data.get(name) for name in self.identifier_fields):
            raise forms.ValidationError(self.no_identifier)
        return data


class ErasureForm(SubjectForm):
    confirm = forms.BooleanField(
        label=_("I understand that this permanently deletes this person's data in this tenant"),
        required=True,
    )
