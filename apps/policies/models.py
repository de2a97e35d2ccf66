"""A tenant's regional data policy: where its data may go, what is redacted, how long each kind is kept."""

from __future__ import annotations

from typing import ClassVar

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.core.models import REGION, RegionModel, RegionObjectModel
from apps.security.fields import EncryptedTextField


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


# --- data-subject requests (issue 22) ---------------------------------------------------------------------
class RequestKind(models.TextChoices):
    ACCESS = "access", _("Access (export)")
    ERASURE = "erasure", _("Erasure")


class RequestStatus(models.TextChoices):
    RECEIVED = "received", _("Received")
    IN_PROGRESS = "in_progress", _("In progress")
    COMPLETED = "completed", _("Completed")
    REJECTED = "rejected", _("Rejected")


#: GDPR art. 12(3): answer within a month, extendable by two further months for complex requests.
RESPONSE_DAYS = 30
MAX_EXTENSION_DAYS = 60


class DataSubjectRequest(RegionObjectModel):
    """One person's access or erasure request, with its deadline and the evidence of how it was answered.

    The identifiers are kept encrypted with the tenant's key (the request must be answerable), and looked
    up by pseudonym; the audit log only ever sees the pseudonym. `evidence` holds counts, digests and the
    vendor notifications' states, never personal data.
    """

    hub_silo: ClassVar[str] = REGION

    kind = models.CharField(_("kind"), max_length=16, choices=RequestKind.choices)
    status = models.CharField(
        _("status"), max_length=16, choices=RequestStatus.choices, default=RequestStatus.RECEIVED
    )
    identifiers = EncryptedTextField(_("subject identifiers"))  # JSON: email, phone, external_id, user_ref
    pseudonyms = models.JSONField(_("pseudonyms"), default=dict)
    subject_key = models.CharField(_("subject pseudonym"), max_length=64, db_index=True)
    received_at = models.DateTimeField(_("received"))
    due_at = models.DateTimeField(_("due"))
    extension_days = models.PositiveSmallIntegerField(_("extension (days)"), default=0)
    extension_reason = models.TextField(_("extension reason"), blank=True, default="")
    reason = models.TextField(_("rejection reason"), blank=True, default="")
    notes = models.TextField(_("notes"), blank=True, default="")
    created_by_id = models.BigIntegerField(_("registered by"), null=True, blank=True)
    handled_by_id = models.BigIntegerField(_("handled by"), null=True, blank=True)
    completed_at = models.DateTimeField(_("completed"), null=True, blank=True)
    evidence = models.JSONField(_("evidence"), default=dict, blank=True)
    # The access archive (a zip, base64) encrypted with the tenant's key; dropped after HUB_DSR_ARCHIVE_DAYS.
    archive = EncryptedTextField(_("archive"), blank=True, null=True)
    archive_expires_at = models.DateTimeField(_("archive kept until"), null=True, blank=True)

    class Meta:
        ordering = ["due_at", "id"]
        verbose_name = _("data-subject request")
        verbose_name_plural = _("data-subject requests")
        indexes = [models.Index(fields=["tenant_id", "status", "due_at"], name="dsr_status_due")]

    def __str__(self) -> str:
        return f"{self.kind} request {self.pk}"

    @property
    def is_open(self) -> bool:
        return self.status in (RequestStatus.RECEIVED, RequestStatus.IN_PROGRESS)
