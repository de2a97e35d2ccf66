"""SIEM destinations of a tenant: where its audit chain is streamed, and how far delivery has got.

The delivery cursor (`delivered_seq`) lives on the row, in the tenant's region next to the chain it follows:
it only moves after the SIEM acknowledged everything up to it (at-least-once), and only the worker holding
the row lock sends (ordered).
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.core.models import RegionObjectModel
from apps.security.fields import EncryptedTextField


class SiemKind(models.TextChoices):
    SYSLOG_TLS = "syslog_tls", _("Syslog over TLS (RFC 5424/5425)")
    SPLUNK_HEC = "splunk_hec", _("Splunk HTTP Event Collector")
    WEBHOOK = "webhook", _("Webhook (JSON lines, HMAC-signed)")


class SiemDestination(RegionObjectModel):
    name = models.CharField(_("name"), max_length=100)
    kind = models.CharField(_("kind"), max_length=16, choices=SiemKind.choices)
    host = models.CharField(_("host"), max_length=255, blank=True)
    port = models.PositiveIntegerField(_("port"), null=True, blank=True)
    url = models.URLField(_("URL"), max_length=500, blank=True)
    # Secrets, encrypted with the tenant's data key and never shown again (write-only in the console).
    token = EncryptedTextField(_("HEC token"), blank=True, null=True)
    hmac_secret = EncryptedTextField(_("HMAC secret"), blank=True, null=True)
    client_cert = EncryptedTextField(_("client certificate"), blank=True, null=True)
    client_key = EncryptedTextField(_("client key"), blank=True, null=True)
    # Public certificates: when set, the only trust anchors for this destination.
    ca_bundle = models.TextField(_("CA bundle"), blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    # Delivery state.
    delivered_seq = models.BigIntegerField(default=0)
    delivered_count = models.BigIntegerField(default=0)
    last_delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant_id", "name"], name="siem_destination_name")]

    def __str__(self) -> str:
        return self.name

    @property
    def endpoint(self) -> str:
        """Where events go, for display: host:port or the URL (never a secret)."""
        return f"{self.host}:{self.port}" if self.kind == SiemKind.SYSLOG_TLS else self.url
