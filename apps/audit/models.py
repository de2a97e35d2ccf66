"""The tamper-evident audit log: one hash chain per tenant (region silo) and one for the platform (control).

Rows are append-only in the database itself: the tables belong to a NOLOGIN owner role, the runtime role may
only SELECT and INSERT, and a trigger rejects UPDATE, DELETE and TRUNCATE; retention purges go
through the `audit_purge` SQL function, which records a checkpoint so the remaining chain stays verifiable.
"""

from __future__ import annotations

from typing import ClassVar

from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.core.models import REGION, TenantScopedManager


class Outcome(models.TextChoices):
    SUCCESS = "success", _("Success")
    FAILURE = "failure", _("Failure")
    DENIED = "denied", _("Denied")


class AuditEventBase(models.Model):
    seq = models.BigIntegerField()
    occurred_at = models.DateTimeField(db_index=True)
    actor_id = models.BigIntegerField(null=True, blank=True)
    actor_label = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.SUCCESS)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        abstract = True
        ordering = ["-seq"]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action}"


class AuditEvent(AuditEventBase):
    """An event of one tenant, in the tenant's home region."""

    hub_silo: ClassVar[str] = REGION
    tenant_id = models.BigIntegerField()

    objects = TenantScopedManager()
    all_tenants = models.Manager()  # noqa: DJ012 - a manager, not a field

    class Meta(AuditEventBase.Meta):
        constraints = [models.UniqueConstraint(fields=["tenant_id", "seq"], name="auditevent_chain_unique")]
        indexes = [models.Index(fields=["tenant_id", "occurred_at"], name="auditevent_tenant_time")]


class PlatformAuditEvent(AuditEventBase):
    """An event with no tenant (logins, operator actions), in the control database."""

    tenant_id = models.BigIntegerField(default=0)

    class Meta(AuditEventBase.Meta):
        constraints = [
            models.UniqueConstraint(fields=["tenant_id", "seq"], name="platformaudit_chain_unique")
        ]


class AuditCheckpointBase(models.Model):
    """Where a purge cut the chain: the next event's prev_hash must equal `hash_at_seq`."""

    tenant_id = models.BigIntegerField()
    purged_through_seq = models.BigIntegerField()
    hash_at_seq = models.CharField(max_length=64)
    purged_count = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        ordering = ["-purged_through_seq"]

    def __str__(self) -> str:
        return f"checkpoint at #{self.purged_through_seq}"


class AuditCheckpoint(AuditCheckpointBase):
    hub_silo: ClassVar[str] = REGION

    objects = TenantScopedManager()
    all_tenants = models.Manager()  # noqa: DJ012 - a manager, not a field


class PlatformAuditCheckpoint(AuditCheckpointBase):
    pass


class AuditAnchor(models.Model):
    """A signed chain head (seq + hash), kept in the control database, away from the region it vouches for.

    Verification refuses a chain whose newest anchored event is missing or different: deleting the newest
    events (which leaves a chain that still links) is caught. Append-only like the events.
    """

    tenant_id = models.BigIntegerField()  # 0: the platform chain
    seq = models.BigIntegerField()
    hash = models.CharField(max_length=64)
    anchored_at = models.DateTimeField()
    public_key = models.CharField(max_length=64)
    signature = models.CharField(max_length=128)

    class Meta:
        ordering = ["-seq", "-id"]
        indexes = [models.Index(fields=["tenant_id", "seq"], name="auditanchor_chain_seq")]

    def __str__(self) -> str:
        return f"anchor of {self.tenant_id} at #{self.seq}"
