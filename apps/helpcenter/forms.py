"""The help center settings of a knowledge base (console)."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _


class HelpCenterSettingsForm(forms.Form):
    enabled = forms.BooleanField(label=_("Public help center"), required=False)
    handle = forms.SlugField(
        label=_("Address"),
        max_length=50,
        required=False,
        help_text=_("Lower-case letters, digits and hyphens; empty: taken from the knowledge base's name."),
    )
