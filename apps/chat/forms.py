"""Console forms for channels and API keys. They shape input; the services validate and decide."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from django import forms
from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from apps.chat.models import Action, ApiKeyScope, Channel, ChannelKind, ConversationStatus, IdentityMode
from apps.chat.services.channels import CHANNEL_FIELDS
from apps.core.context import tenant_context
from apps.integrations.forms import ConnectionForm
from apps.integrations.models import Connection
from apps.knowledge.selectors import kb_list
from apps.tenants.models import Tenant


class ChannelForm(forms.Form):
    name = forms.CharField(
        label=_("Name"),
        max_length=100,
        help_text=_("How the console shows it, e.g. “Website” or “WhatsApp DE”."),
    )
    kind = forms.ChoiceField(label=_("Kind"), choices=ChannelKind.choices, initial=ChannelKind.WEB)
    default_locale = forms.ChoiceField(
        label=_("Default locale"),
        help_text=_("Used when a conversation does not name the user's locale."),
    )
    allowed_actions = forms.MultipleChoiceField(
        label=_("Allowed actions"),
        choices=Action.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("Knowledge answers are always allowed; business actions only when ticked here."),
    )
    knowledge_base_id = forms.ChoiceField(label=_("Knowledge base"), required=False)
    content_region = forms.ChoiceField(
        label=_("Content region"),
        required=False,
        help_text=_("Regional variants of articles to prefer. Empty: the tenant's home region."),
    )
    ticket_connection_id = forms.ChoiceField(
        label=_("Ticket connection"),
        required=False,
        help_text=_("Where tickets and human handoffs go (ServiceNow, Salesforce or HubSpot)."),
    )
    lead_connection_id = forms.ChoiceField(
        label=_("Lead connection"),
        required=False,
        help_text=_("Where captured leads go (Salesforce or HubSpot)."),
    )

    def __init__(self, *args: Any, tenant: Tenant, channel: Channel | None = None, **kwargs: Any) -> None:
        if channel is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                f: ("" if getattr(channel, f) is None else getattr(channel, f)) for f in CHANNEL_FIELDS
            }
        super().__init__(*args, **kwargs)
        locales = tenant.enabled_locales or [tenant.default_locale]
        with tenant_context(tenant):
            kbs = list(kb_list().order_by("name").values_list("pk", "name"))
            connections = list(Connection.objects.order_by("name").values_list("pk", "name", "kind"))
        home = _("Home region (%(region)s)") % {"region": tenant.region_code}
        connection_choices = [(str(pk), f"{name} ({kind})") for pk, name, kind in connections]
        choices: dict[str, list[tuple[str, Any]]] = {
            "default_locale": [(code, code) for code in locales],
            "knowledge_base_id": [("", _("All knowledge bases")), *((str(pk), name) for pk, name in kbs)],
            "content_region": [("", home), *((code, code.upper()) for code in settings.HUB_REGIONS)],
            "ticket_connection_id": [("", _("None")), *connection_choices],
            "lead_connection_id": [("", _("None")), *connection_choices],
        }
        for name, options in choices.items():
            cast(forms.ChoiceField, self.fields[name]).choices = options
        self.fields["default_locale"].initial = self.initial.get("default_locale") or tenant.default_locale

    def channel_data(self) -> dict[str, Any]:
        data = {f: self.cleaned_data.get(f) for f in CHANNEL_FIELDS}
        for field in ("knowledge_base_id", "ticket_connection_id", "lead_connection_id"):
            data[field] = data[field] or None
        data["content_region"] = data["content_region"] or ""
        data["allowed_actions"] = list(data["allowed_actions"] or [])
        return data


class EnableForm(forms.Form):
    enabled = forms.BooleanField(required=False)


class ApiKeyForm(forms.Form):
    EXPIRY_CHOICES = [
        ("never", _("Never")),
        ("30", _("In 30 days")),
        ("90", _("In 90 days")),
        ("365", _("In a year")),
    ]

    name = forms.CharField(
        label=_("Name"), max_length=100, help_text=_("What uses the key, e.g. “production widget”.")
    )
    scopes = forms.MultipleChoiceField(
        label=_("Scopes"),
        choices=ApiKeyScope.choices,
        initial=[ApiKeyScope.CHAT],
        widget=forms.CheckboxSelectMultiple,
        help_text=_("Give a bot only what it needs: most need “chat” alone."),
    )
    expires = forms.ChoiceField(label=_("Expires"), choices=EXPIRY_CHOICES, initial="never")

    def expires_at(self) -> datetime | None:
        days = self.cleaned_data["expires"]
        return None if days == "never" else timezone.now() + timedelta(days=int(days))


class RotateForm(forms.Form):
    OVERLAP_CHOICES = [
        ("0", _("Stop the old key now")),
        ("1", _("1 hour")),
        ("24", _("24 hours")),
        ("72", _("3 days")),
        ("168", _("7 days")),
    ]

    overlap_hours = forms.TypedChoiceField(
        label=_("Keep the old key working for"),
        choices=OVERLAP_CHOICES,
        coerce=int,
        initial="24",
        help_text=_("Time to deploy the new key everywhere before the old one stops."),
    )


class ConversationFilterForm(forms.Form):
    channel = forms.ChoiceField(label=_("Channel"), required=False)
    status = forms.ChoiceField(
        label=_("Status"), required=False, choices=[("", _("Any")), *ConversationStatus.choices]
    )

    def __init__(self, *args: Any, channels: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        options = [("", _("Any")), *sorted(channels.items(), key=lambda kv: kv[1])]
        cast(forms.ChoiceField, self.fields["channel"]).choices = options


class LlmProviderForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100)
    base_url = forms.CharField(
        label=_("Base URL"), max_length=300, help_text=_("The API root, e.g. https://api.openai.com/v1.")
    )
    model = forms.CharField(label=_("Model"), max_length=100, help_text=_("e.g. gpt-4o-mini"))
    api_key = forms.CharField(
        label=_("API key"),
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=_("Stored encrypted and never shown again. Leave empty to keep the current key."),
    )
    region = forms.ChoiceField(
        label=_("Conversations from region"),
        required=False,
        help_text=_("Use this provider for conversations served from this region (empty: any region)."),
    )
    endpoint_region = forms.ChoiceField(
        label=_("Endpoint region"),
        help_text=_("Where the provider processes data; the tenant's residency policy must allow it."),
    )
    prompt_price_per_1k = forms.DecimalField(
        label=_("Prompt price per 1,000 tokens (USD)"), required=False, min_value=0, decimal_places=6
    )
    completion_price_per_1k = forms.DecimalField(
        label=_("Completion price per 1,000 tokens (USD)"), required=False, min_value=0, decimal_places=6
    )
    enabled = forms.BooleanField(label=_("Enabled"), required=False, initial=True)
    classify_intents = forms.BooleanField(
        label=_("Classify intents"),
        required=False,
        help_text=_(
            "Ask this provider to classify messages the fast classifier is unsure about. It only names an "
            "intent: details such as an order number or e-mail address come from the user's own words, and "
            "the channel's allowed actions still apply."
        ),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        regions = [(code, code.upper()) for code in settings.HUB_REGIONS]
        cast(forms.ChoiceField, self.fields["region"]).choices = [("", _("Any region")), *regions]
        cast(forms.ChoiceField, self.fields["endpoint_region"]).choices = regions


class PlatformForm(ConnectionForm):
    """A channel's platform account: the connector's settings and write-only secrets ("blank keeps it")."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        del self.fields["name"]  # the connection is named after its channel

    def platform_data(self) -> dict[str, Any]:
        return {
            "settings": self.settings_data(),
            "credentials": self.credentials_data(),
            "endpoint_region": self.cleaned_data.get("endpoint_region"),
        }


class OriginsForm(forms.Form):
    allowed_origins = forms.CharField(
        label=_("Allowed origins"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_(
            "One per line, scheme://host[:port], e.g. https://shop.example.com. Only these sites may use "
            "the widget key; http:// is accepted for localhost only in production."
        ),
    )


class IdentityForm(forms.Form):
    identity_mode = forms.ChoiceField(
        label=_("User identity"),
        choices=IdentityMode.choices,
        help_text=_(
            "Unverified users never see or change customer data. HMAC: your site sends user_hash = "
            "HMAC-SHA256 (hex) of the user id, keyed with the identity secret. JWT: your site sends a "
            "short-lived HS256 token signed with it."
        ),
    )
