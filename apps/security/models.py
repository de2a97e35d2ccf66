"""Per-tenant data keys, key rotation runs and the tokenization vault (all in the tenant's region)."""

from __future__ import annotations

from typing import ClassVar

from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.core.models import RegionModel, RegionObjectModel
from apps.security.fields import EncryptedTextField


class DataKey(RegionModel):
    """An AES-256 data key of one tenant, stored only wrapped by a master key. Versions never change.

    Lifecycle: active (encrypts) → retired (only decrypts, after a rotation) → destroyed (the wrapped material
    is deleted, once no row uses the version: what remains of it in old backups can no longer be read).
    """

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        RETIRED = "retired", _("Retired")
        DESTROYED = "destroyed", _("Destroyed")

    hub_silo: ClassVar[str] = "region"

    version = models.PositiveIntegerField()
    master_key_id = models.CharField(max_length=64)
    wrapped_key = models.BinaryField(null=True)  # NULL once destroyed
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    destroyed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant_id", "version"], name="datakey_unique_version"),
            models.UniqueConstraint(
                fields=["tenant_id"], condition=models.Q(status="active"), name="datakey_one_active"
            ),
            models.CheckConstraint(
                condition=models.Q(status="destroyed", wrapped_key__isnull=True, destroyed_at__isnull=False)
                | (~models.Q(status="destroyed") & models.Q(wrapped_key__isnull=False)),
                name="datakey_material_until_destroyed",
            ),
        ]

    def __str__(self) -> str:
        return f"data key v{self.version} ({self.status})"


class KeyRotation(RegionModel):
    """Progress of one rotation run, visible while it runs."""

    class Kind(models.TextChoices):
        DATA = "data", _("Data key")
        MASTER = "master", _("Master key rewrap")

    hub_silo: ClassVar[str] = "region"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    to_version = models.PositiveIntegerField(null=True)
    rows_total = models.PositiveIntegerField(default=0)
    rows_done = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} rotation {self.rows_done}/{self.rows_total}"


class VaultEntry(RegionObjectModel):
    """A reversibly tokenized value (e.g. an e-mail captured in chat, needed later for a lead)."""

    hub_silo: ClassVar[str] = "region"

    token = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=32)
    value = EncryptedTextField()

    def __str__(self) -> str:
        return self.token
