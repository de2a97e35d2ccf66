"""Console forms of the data-subject request register. The rules (deadlines, extension bounds) live in
apps/policies/dsr.py; these only parse input."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from apps.policies.forms import SubjectForm
from apps.policies.models import MAX_EXTENSION_DAYS, RequestKind, RequestStatus


class DsrCreateForm(SubjectForm):
    kind = forms.ChoiceField(label=_("Request"), choices=RequestKind.choices)
    user_ref = forms.CharField(
        label=_("Chat user reference"),
        required=False,
        max_length=200,
        help_text=_("The id a chat channel gave this person (e.g. the widget's user id)."),
    )
    received_at = forms.DateTimeField(
        label=_("Received"),
        required=False,
        help_text=_("When the request reached you; leave empty for now. The deadline counts from here."),
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    notes = forms.CharField(
        label=_("Notes"),
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_(
            "How the request arrived and how the identity was checked. No personal data beyond that."
        ),
    )

    identifier_fields = (*SubjectForm.identifier_fields, "user_ref")
    no_identifier = _("Give an e-mail address, a phone number, an external id or a chat user reference.")
    field_order = ["kind", "email", "phone", "external_id", "user_ref", "received_at", "notes"]


class DsrFilterForm(forms.Form):
    status = forms.ChoiceField(
        label=_("Status"), required=False, choices=[("", _("Any status")), *RequestStatus.choices]
    )
    kind = forms.ChoiceField(
        label=_("Request"), required=False, choices=[("", _("Any request")), *RequestKind.choices]
    )


class DsrExtendForm(forms.Form):
    days = forms.IntegerField(label=_("Extend by (days)"), min_value=1, max_value=MAX_EXTENSION_DAYS)
    reason = forms.CharField(label=_("Reason"), max_length=1000, widget=forms.Textarea(attrs={"rows": 2}))


class DsrRejectForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=1000, widget=forms.Textarea(attrs={"rows": 2}))


class DsrHandleForm(forms.Form):
    notice = forms.CharField(max_length=80, widget=forms.HiddenInput)
    reason = forms.CharField(label=_("How it was handled"), max_length=1000)
