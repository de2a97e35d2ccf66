"""Console form of a SIEM destination. Secrets are write-only: never rendered back, empty keeps them."""

from __future__ import annotations

import ssl
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from django import forms
from django.utils.translation import gettext_lazy as _

from apps.siem.models import SiemKind
from apps.siem.services import START_BEGINNING, START_NOW

KEEP = _("Leave empty to keep the stored value; it is never shown again.")


def _secret(label: Any, *, textarea: bool = False) -> forms.CharField:
    widget: forms.Widget = (
        forms.Textarea(attrs={"rows": 4, "autocomplete": "off"})
        if textarea
        else forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})
    )
    return forms.CharField(label=label, required=False, widget=widget, max_length=20_000, strip=True)


class DestinationForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100)
    kind = forms.ChoiceField(label=_("Kind"), choices=SiemKind.choices)
    host = forms.CharField(label=_("Syslog host"), max_length=255, required=False)
    port = forms.IntegerField(label=_("Syslog port"), min_value=1, max_value=65535, required=False)
    url = forms.URLField(
        label=_("URL"),
        max_length=500,
        required=False,
        assume_scheme="https",
        help_text=_(
            "Splunk HEC: the collector's base URL (…/services/collector/event is added). "
            "Webhook: the full URL. https only."
        ),
    )
    token = _secret(_("Splunk HEC token"))
    hmac_secret = _secret(_("Webhook HMAC secret"))
    client_cert = forms.CharField(
        label=_("Client certificate (PEM, for mutual TLS)"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        max_length=20_000,
    )
    client_key = _secret(_("Client private key (PEM)"), textarea=True)
    ca_bundle = forms.CharField(
        label=_("CA certificates to trust (PEM)"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        max_length=100_000,
        help_text=_(
            "When given, the only certificates trusted for this destination. "
            "Certificates are always verified."
        ),
    )
    start = forms.ChoiceField(
        label=_("Start with"),
        choices=[(START_NOW, _("New events only")), (START_BEGINNING, _("The whole audit log"))],
        initial=START_NOW,
    )

    def __init__(self, *args: Any, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.editing = editing
        if editing:
            del self.fields["start"]
            self.fields["kind"].disabled = True
            for name in ("token", "hmac_secret", "client_cert", "client_key"):
                self.fields[name].help_text = KEEP

    def clean_client_cert(self) -> str:
        value: str = self.cleaned_data["client_cert"]
        if value:
            try:
                x509.load_pem_x509_certificate(value.encode())
            except ValueError:
                raise forms.ValidationError(_("Not a PEM certificate.")) from None
        return value

    def clean_client_key(self) -> str:
        value: str = self.cleaned_data["client_key"]
        if value:
            try:
                load_pem_private_key(value.encode(), password=None)
            except (ValueError, TypeError):
                raise forms.ValidationError(_("Not an unencrypted PEM private key.")) from None
        return value

    def clean_ca_bundle(self) -> str:
        value: str = self.cleaned_data["ca_bundle"]
        if value:
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=value)
            except (ssl.SSLError, ValueError):
                raise forms.ValidationError(_("Not PEM certificates.")) from None
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        if kind == SiemKind.SYSLOG_TLS:
            if not data.get("host"):
                self.add_error("host", _("Enter the syslog host."))
            data["port"] = data.get("port") or 6514
            data["url"] = ""
        elif kind:
            if not data.get("url"):
                self.add_error("url", _("Enter the URL."))
            elif not str(data["url"]).lower().startswith("https://"):
                self.add_error("url", _("Enter an https URL."))
            data["host"], data["port"] = "", None
        return data
