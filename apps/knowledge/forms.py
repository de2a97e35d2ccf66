"""Forms of the knowledge console."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.utils.functional import lazy
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from apps.knowledge.content import markdown_problems
from apps.knowledge.models import PHRASING_MAX_CHARS, PHRASINGS_MAX
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


def _phrasings_help() -> str:
    return gettext(
        "One per line: how customers ask what this text answers, in their own words (short, colloquial, "
        "even misspelled). They help the assistant find this text and are never shown to customers. "
        "At most %(count)d, up to %(chars)d characters each."
    ) % {"count": PHRASINGS_MAX, "chars": PHRASING_MAX_CHARS}


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
    phrasings = forms.CharField(
        label=_("Other ways customers ask this"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text=lazy(_phrasings_help, str)(),
    )
    note = forms.CharField(
        label=_("Note"), max_length=200, required=False, help_text=_("What changed, for the reviewer.")
    )

    def clean_phrasings(self) -> list[str] | None:
        """One phrasing per line; None when the form did not send the field (the saved ones are kept).

        Checked here per line so an error names the line; `services.phrasings_clean` checks again (and
        de-duplicates, and counts).
        """
        if "phrasings" not in self.data:
            return None
        lines = str(self.cleaned_data.get("phrasings") or "").splitlines()
        problems = []
        for number, line in enumerate(lines, start=1):
            text = " ".join(line.split())
            if len(text) > PHRASING_MAX_CHARS:
                problems.append(
                    _("Line %(line)d is too long (%(length)d characters): use at most %(max)d.")
                    % {"line": number, "length": len(text), "max": PHRASING_MAX_CHARS}
                )
            elif text and markdown_problems(text):
                problems.append(_("Line %(line)d: write plain text, no markup.") % {"line": number})
        if problems:
            raise forms.ValidationError(problems)
        return [line for line in lines if line.strip()]

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
