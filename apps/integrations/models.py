"""Connections: a configured connector instance of one tenant, stored in the tenant's region silo."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.core.models import RegionObjectModel
from apps.security.fields import EncryptedTextField

#: The guardian permission that lets a member without the connector-manager role manage one connection.
CONNECTION_PERM = "integrations.change_connection"


class Connection(RegionObjectModel):
    """One tenant's link to a vendor system.

    Non-secret settings are plain JSON; the connector's sensitive fields live together as one encrypted
    JSON document, so a database dump or backup never holds a vendor password in the clear.
    """

    hub_silo: ClassVar[str] = "region"

    name = models.CharField(_("name"), max_length=100)
    kind = models.CharField(_("kind"), max_length=32)
    settings = models.JSONField(_("settings"), default=dict, blank=True)
    credentials = EncryptedTextField(_("credentials"), blank=True, null=True)
    field_map = models.JSONField(_("field map"), default=dict, blank=True)
    endpoint_region = models.CharField(
        _("endpoint region"), max_length=16, help_text=_("Region the vendor endpoint is in.")
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    last_test_at = models.DateTimeField(_("last tested"), null=True, blank=True)
    last_test_ok = models.BooleanField(_("last test passed"), null=True, blank=True)
    last_test_message = models.TextField(_("last test result"), blank=True, default="")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant_id", "name"], name="connection_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def secrets(self) -> dict[str, str]:
        """The decrypted credentials document (decrypts on first access)."""
        raw = self.credentials
        if not raw:
            return {}
        data: dict[str, str] = json.loads(raw)
        return data

    def connector_config(self) -> dict[str, Any]:
        """The full config a connector is built from: settings, decrypted secrets, field-map overrides."""
        return {**self.settings, **self.secrets, "field_map": self.field_map}

    def set_secrets(self, values: dict[str, Any]) -> None:
        self.credentials = json.dumps({k: v for k, v in sorted(values.items()) if v not in (None, "")})
