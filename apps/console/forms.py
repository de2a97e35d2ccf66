"""Console forms: the dashboards' time window."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from apps.console.selectors.dashboards import DEFAULT_WINDOW, WINDOWS


class WindowForm(forms.Form):
    """Which period a dashboard covers (a GET form: the window is part of the link)."""

    window = forms.ChoiceField(
        label=_("Period"),
        choices=[(key, w.label) for key, w in WINDOWS.items()],
        required=False,
    )

    def clean_window(self) -> str:
        return self.cleaned_data["window"] or DEFAULT_WINDOW
