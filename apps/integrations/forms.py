"""Console forms for connections, built from the connector's `config_schema`.

Secret fields are write-only: password inputs that never render a value; blank means "keep the stored one".
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from apps.integrations.models import Connection
from apps.integrations.services.connections import RESERVED_NAMES
from apps.tenants.selectors import region_list
from connectors.base import ConfigField, Connector


class KindForm(forms.Form):
    """Step one of creating a connection: which system to connect."""

    kind = forms.ChoiceField(label=_("System"), widget=forms.RadioSelect)

    def __init__(self, *args: Any, registry: dict[str, type[Connector]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        kind_field: Any = self.fields["kind"]
        kind_field.choices = [(kind, cls.label) for kind, cls in sorted(registry.items())]


def _setting_field(config_field: ConfigField) -> forms.Field:
    label = config_field.label
    help_text = config_field.help
    if config_field.choices:
        return forms.ChoiceField(
            label=label,
            help_text=help_text,
            choices=[(c, c) for c in config_field.choices],
            required=config_field.required,
            initial=config_field.default,
        )
    if isinstance(config_field.default, bool):
        return forms.BooleanField(
            label=label, help_text=help_text, required=False, initial=config_field.default
        )
    if isinstance(config_field.default, int):
        return forms.IntegerField(
            label=label, help_text=help_text, required=config_field.required, initial=config_field.default
        )
    return forms.CharField(
        label=label,
        help_text=help_text,
        required=config_field.required,
        initial=config_field.default,
        max_length=2000,
    )


class ConnectionForm(forms.Form):
    """Name, endpoint region, the connector's settings and its write-only secrets."""

    name = forms.CharField(label=_("Name"), max_length=100)
    endpoint_region = forms.ChoiceField(
        label=_("Endpoint region"),
        help_text=_(
            "Where the vendor endpoint is hosted; the tenant's data policy decides which are allowed."
        ),
    )

    def __init__(
        self,
        *args: Any,
        connector: type[Connector],
        connection: Connection | None = None,
        secrets_set: dict[str, bool] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.connector = connector
        region_field: Any = self.fields["endpoint_region"]
        region_field.choices = [(r.code, f"{r.name} ({r.code})") for r in region_list().order_by("code")]
        for config_field in connector.config_schema:
            if config_field.name in RESERVED_NAMES:
                raise ImproperlyConfigured(
                    f"{connector.kind}: setting name '{config_field.name}' is reserved"
                )
            if config_field.secret:
                is_set = bool((secrets_set or {}).get(config_field.name))
                state = _("Set — leave blank to keep it.") if is_set else _("Not set.")
                self.fields[config_field.name] = forms.CharField(
                    label=config_field.label,
                    required=config_field.required and connection is None,
                    widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
                    help_text=f"{state} {config_field.help}".strip(),
                    strip=False,
                    max_length=10_000,
                )
            else:
                self.fields[config_field.name] = _setting_field(config_field)
                if connection is not None and config_field.name in connection.settings:
                    self.initial.setdefault(config_field.name, connection.settings[config_field.name])
        if connection is not None:
            self.initial.setdefault("name", connection.name)
            self.initial.setdefault("endpoint_region", connection.endpoint_region)

    def settings_data(self) -> dict[str, Any]:
        return {f.name: self.cleaned_data.get(f.name) for f in self.connector.config_schema if not f.secret}

    def credentials_data(self) -> dict[str, str]:
        return {f.name: self.cleaned_data.get(f.name) or "" for f in self.connector.config_schema if f.secret}


class FieldMapForm(forms.Form):
    """The field-map overrides as JSON: {"stream": {"canonical field": "vendor field"}}."""

    field_map = forms.CharField(
        label=_("Field map overrides (JSON)"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 14, "spellcheck": "false", "class": "code"}),
        help_text=_("Only the fields that differ from the defaults; leave empty to use the defaults."),
    )

    @staticmethod
    def initial_for(connection: Connection) -> dict[str, str]:
        return {"field_map": json.dumps(connection.field_map, indent=2) if connection.field_map else ""}


class EnableForm(forms.Form):
    enabled = forms.BooleanField(required=False)


class ConnectionAccessForm(forms.Form):
    """Pick one member to grant (or revoke) access to a single connection; `users` bounds the choice."""

    user: forms.ModelChoiceField[Any] = forms.ModelChoiceField(
        queryset=None, label=_("Member"), empty_label=None
    )

    def __init__(self, *args: Any, users: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        user_field: Any = self.fields["user"]
        user_field.queryset = users
        user_field.label_from_instance = lambda user: user.get_username()
