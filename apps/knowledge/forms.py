"""Forms of the knowledge console."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _


class SearchPreviewForm(forms.Form):
    """What would the chat answer from for this question, locale and region."""

    question = forms.CharField(label=_("Question"), max_length=2000)
    locale = forms.CharField(
        label=_("Locale"), max_length=16, help_text=_("The user's locale, e.g. de or fr-CA.")
    )
    region = forms.CharField(
        label=_("Region"), max_length=16, required=False, help_text=_("Optional, e.g. EU or US.")
    )

    def clean_region(self) -> str:
        return str(self.cleaned_data.get("region") or "").strip().upper()
