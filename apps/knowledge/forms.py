"""Forms of the knowledge console."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.utils.translation import gettext_lazy as _

from apps.knowledge.selectors import normalize_region


class SearchPreviewForm(forms.Form):
    """What would the chat answer from for this question, locale and region."""

    question = forms.CharField(label=_("Question"), max_length=2000)
    locale = forms.CharField(
        label=_("Locale"), max_length=16, help_text=_("The user's locale, e.g. de or fr-CA.")
    )
    region = forms.CharField(
        label=_("Region"), max_length=16, required=False, help_text=_("Optional, e.g. eu or us.")
    )

    def clean_region(self) -> str:
        return normalize_region(self.cleaned_data.get("region"))


class EditorForm(forms.Form):
    """The target side of the side-by-side editor; the service validates again (keys, locales, limits)."""

    title = forms.CharField(label=_("Title"), max_length=300)
    body = forms.CharField(
        label=_("Body (Markdown)"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 20}),
    )
    tags = forms.CharField(
        label=_("Tags"),
        max_length=500,
        required=False,
        help_text=_("Comma-separated, e.g. returns, refunds."),
    )
    note = forms.CharField(
        label=_("Note"), max_length=200, required=False, help_text=_("What changed, for the reviewer.")
    )

    def clean_body(self) -> str:
        # Browsers send text areas with CRLF line ends; revisions and diffs compare lines.
        return str(self.cleaned_data.get("body") or "").replace("\r\n", "\n").replace("\r", "\n")

    def clean_tags(self) -> list[str]:
        raw = str(self.cleaned_data.get("tags") or "")
        tags = list(dict.fromkeys(t.strip() for t in raw.split(",") if t.strip()))
        if any(len(t) > 50 for t in tags):
            raise forms.ValidationError(_("Use at most 50 characters per tag."))
        return tags


class RejectForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))


class ConnectionImportForm(forms.Form):
    """Import a vendor knowledge base (ServiceNow kb_knowledge, Salesforce Knowledge) through a connection."""

    connection = forms.TypedChoiceField(label=_("Connection"), coerce=str)
    publish = forms.BooleanField(
        label=_("Publish imported texts at once"),
        required=False,
        help_text=_("Otherwise new and changed texts wait in the review queue."),
    )

    def __init__(self, *args: Any, connections: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.TypedChoiceField, self.fields["connection"]).choices = connections
