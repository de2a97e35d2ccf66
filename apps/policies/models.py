"""A tenant's regional data policy: where its data may go, what is redacted, how long each kind is kept."""

from __future__ import annotations

from typing import ClassVar

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.core.models import REGION, RegionModel


class Category(models.TextChoices):
    """Data categories with a retention period; each maps to a `*_retention_days` field."""

    TRANSCRIPTS = "transcripts", _("Conversation transcripts")
    SYNCED_RECORDS = "synced_records", _("Synced records")
    SYNC_LOGS = "sync_logs", _("Sync logs")
    AUDIT_EVENTS = "audit_events", _("Audit events")
    # Writes the outbox delivered to vendors (leads, tickets: personal data). The newest write per target
    # record keeps its row with the payload blanked: its hub external id is what later writes upsert by.
    DELIVERED_WRITES = "delivered_writes", _("Delivered writes to business systems")


RETENTION_FIELDS: dict[str, str] = {
    Category.TRANSCRIPTS: "transcript_retention_days",
    Category.SYNCED_RECORDS: "synced_record_retention_days",
    Category.SYNC_LOGS: "sync_log_retention_days",
    Category.AUDIT_EVENTS: "audit_retention_days",
    Category.DELIVERED_WRITES: "delivered_write_retention_days",
}
# The shortest period that may be set (None, "keep forever", is always allowed). Audit events are evidence:
# compliance frameworks commonly ask for at least a year.
MIN_RETENTION_DAYS: dict[str, int] = {
    Category.TRANSCRIPTS: 1,
    Category.SYNCED_RECORDS: 1,
    Category.SYNC_LOGS: 1,
    Category.AUDIT_EVENTS: 365,
    Category.DELIVERED_WRITES: 1,
}
MAX_RETENTION_DAYS = 36_500  # a hundred years; beyond that, "keep forever" says it better

DEFAULT_RETENTION_DAYS: dict[str, int | None] = {
    Category.TRANSCRIPTS: 365,
    Category.SYNCED_RECORDS: None,
    Category.SYNC_LOGS: 90,
    Category.AUDIT_EVENTS: None,
    Category.DELIVERED_WRITES: 30,
}


class DataPolicy(RegionModel):
    """One per tenant, in its home region; created with privacy-first defaults on first read.

    `allowed_regions` lists the regions other than the home region that data may be sent to; the home
    region is always allowed and never stored here.
    """

    hub_silo: ClassVar[str] = REGION

    allowed_regions = ArrayField(
        models.CharField(max_length=16),
        default=list,
        blank=True,
        verbose_name=_("other regions data may be sent to"),
    )
    redact_transcripts = models.BooleanField(
        _("redact personal data in transcripts before storing them"), default=True
    )
    transcript_retention_days = models.PositiveIntegerField(
        _("conversation transcripts (days)"),
        null=True,
        blank=True,
        default=DEFAULT_RETENTION_DAYS[Category.TRANSCRIPTS],
    )
    synced_record_retention_days = models.PositiveIntegerField(
        _("synced records (days)"),
        null=True,
        blank=True,
        default=DEFAULT_RETENTION_DAYS[Category.SYNCED_RECORDS],
    )
    sync_log_retention_days = models.PositiveIntegerField(
        _("sync logs (days)"), null=True, blank=True, default=DEFAULT_RETENTION_DAYS[Category.SYNC_LOGS]
    )
    audit_retention_days = models.PositiveIntegerField(
        _("audit events (days)"),
        null=True,
        blank=True,
        default=DEFAULT_RETENTION_DAYS[Category.AUDIT_EVENTS],
    )
    delivered_write_retention_days = models.PositiveIntegerField(
        _("delivered writes to business systems (days)"),
        null=True,
        blank=True,
        default=DEFAULT_RETENTION_DAYS[Category.DELIVERED_WRITES],
    )

    class Meta:
        verbose_name = _("data policy")
        verbose_name_plural = _("data policies")
        constraints = [models.UniqueConstraint(fields=["tenant_id"], name="datapolicy_one_per_tenant")]

    def __str__(self) -> str:
        return f"data policy of tenant {self.tenant_id}"

    def retention_days(self, category: str) -> int | None:
        value: int | None = getattr(self, RETENTION_FIELDS[category])
        return value
