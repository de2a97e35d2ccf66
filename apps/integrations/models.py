"""Connections: a configured connector instance of one tenant, stored in the tenant's region silo."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from django.db import models
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from apps.core.models import RegionModel, RegionObjectModel
from apps.security.fields import EncryptedTextField
from connectors.errors import CredentialsNotBound

#: The guardian permission that lets a member without the connector-manager role manage one connection.
CONNECTION_PERM = "integrations.change_connection"
#: Keys the hub itself keeps beside a connector's own settings and credentials (webhook verification, see
#: services/webhooks.py). A connector refuses unknown keys, so `connector_config` leaves these out.
HUB_SETTING_KEYS = frozenset({"webhook_org_id"})
HUB_SECRET_KEYS = frozenset({"webhook_secret"})
#: Longest error text kept on a sync run or attempt, an outbox message or attempt, and a dead letter.
ERROR_LIMIT = 2_000


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
    # The endpoint origins the credentials were entered for: they are never sent anywhere else.
    credentials_origins = models.JSONField(_("credentials entered for"), default=list, blank=True)
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
        """The full config a connector is built from: settings, decrypted secrets, field-map overrides.

        Refuses (CredentialsNotBound) when the endpoint is no longer the one the credentials were entered for,
        so stored secrets never reach a host they were not meant for, however the settings changed.
        """
        from apps.integrations.conf import endpoint_origins

        secrets = self.secrets
        if any(k not in HUB_SECRET_KEYS for k in secrets):
            origins = endpoint_origins(self.kind, self.settings)
            if not set(origins) <= set(self.credentials_origins or ()):
                raise CredentialsNotBound(
                    gettext(
                        "The stored credentials were entered for another address (%(bound)s); the connection "
                        "now points at %(now)s. Enter the credentials again."
                    )
                    % {"bound": ", ".join(self.credentials_origins or ()) or "-", "now": ", ".join(origins)}
                )
        config = {**self.settings, **secrets}
        hub_owned = HUB_SETTING_KEYS | HUB_SECRET_KEYS
        return {**{k: v for k, v in config.items() if k not in hub_owned}, "field_map": self.field_map}

    def set_secrets(self, values: dict[str, Any]) -> None:
        """Store the credentials; new connector credentials are bound to the endpoint in `settings` now."""
        from apps.integrations.conf import endpoint_origins

        before = {k: v for k, v in self.secrets.items() if k not in HUB_SECRET_KEYS}
        kept = {k: v for k, v in sorted(values.items()) if v not in (None, "")}
        self.credentials = json.dumps(kept)
        if {k: v for k, v in kept.items() if k not in HUB_SECRET_KEYS} != before:
            self.credentials_origins = endpoint_origins(self.kind, self.settings)


# --- sync state, runs and the synced-records store -----------------------------------------------------
class Trigger(models.TextChoices):
    SCHEDULE = "schedule", _("Schedule")
    MANUAL = "manual", _("Manual")
    BACKFILL = "backfill", _("Backfill")
    WEBHOOK = "webhook", _("Webhook")


class RunStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", pgettext_lazy("status", "Failed")
    SKIPPED = "skipped", _("Skipped")


class StreamState(RegionModel):
    """Where one stream of one connection stands: its cursor, schedule and pause switch.

    The cursor is only ever written in the transaction that stores the records it covers (services/sync.py).
    """

    hub_silo: ClassVar[str] = "region"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="stream_states")
    stream = models.CharField(_("stream"), max_length=32)
    cursor = models.JSONField(_("cursor"), default=dict, blank=True)
    paused = models.BooleanField(_("paused"), default=False)
    interval_seconds = models.PositiveIntegerField(_("sync every (seconds)"), default=900)
    last_success_at = models.DateTimeField(_("last success"), null=True, blank=True)
    next_run_at = models.DateTimeField(_("next run"), null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["stream"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant_id", "connection", "stream"], name="streamstate_one_per_stream"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.connection_id}/{self.stream}"


class SyncRun(RegionModel):
    """One sync of one stream, from queueing to its outcome, with the counts the console shows."""

    hub_silo: ClassVar[str] = "region"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="sync_runs")
    stream = models.CharField(_("stream"), max_length=32)
    trigger = models.CharField(_("trigger"), max_length=16, choices=Trigger.choices)
    backfill = models.BooleanField(_("backfill"), default=False)
    status = models.CharField(_("status"), max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    read = models.PositiveIntegerField(_("read"), default=0)
    created = models.PositiveIntegerField(_("created"), default=0)
    updated = models.PositiveIntegerField(_("updated"), default=0)
    unchanged = models.PositiveIntegerField(_("unchanged"), default=0)
    failed = models.PositiveIntegerField(_("failed"), default=0)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant_id", "connection", "stream", "-created_at"], name="syncrun_history"),
        ]

    def __str__(self) -> str:
        return f"{self.stream} {self.status}"


class SyncAttempt(RegionModel):
    """One try of a run (a run retried three times has four attempts), with why it ended."""

    hub_silo: ClassVar[str] = "region"

    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveSmallIntegerField(_("attempt"))
    error = models.TextField(_("error"), blank=True, default="")
    retry_after = models.FloatField(_("retry after (s)"), null=True, blank=True)
    started_at = models.DateTimeField(_("started"))
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        ordering = ["run", "number"]

    def __str__(self) -> str:
        return f"{self.run_id}#{self.number}"


class SyncedRecord(RegionModel):
    """The hub's copy of one vendor record: queried columns, canonical fields, raw payload, content hash.

    Written only by the bulk upsert in sync.py (no per-row ORM saves); `updated_at` is the vendor's change
    time, `synced_at` when the hub last stored a different content.
    """

    hub_silo: ClassVar[str] = "region"

    id = models.BigAutoField(primary_key=True)
    # Fewer indexes, faster bulk upserts: the identity constraint already leads with tenant and connection.
    tenant_id = models.BigIntegerField(editable=False)
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="+", db_index=False)
    stream = models.CharField(max_length=32)
    external_id = models.CharField(max_length=255)
    updated_at = models.DateTimeField()  # the vendor's change time, not auto_now
    deleted = models.BooleanField(default=False)
    email = models.CharField(max_length=254, blank=True, default="")
    display_name = models.CharField(max_length=255, blank=True, default="")
    status = models.CharField(max_length=64, blank=True, default="")
    number = models.CharField(max_length=64, blank=True, default="")
    fields = models.JSONField(default=dict)
    raw = models.JSONField(default=dict)
    content_hash = models.CharField(max_length=64)
    synced_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant_id", "connection", "stream", "external_id"], name="syncedrecord_identity"
            ),
        ]
        indexes = [
            # The chat looks people up by e-mail and orders by number, always within one tenant.
            models.Index(
                fields=["tenant_id", "email"], name="syncedrecord_email", condition=~models.Q(email="")
            ),
            models.Index(
                fields=["tenant_id", "number"], name="syncedrecord_number", condition=~models.Q(number="")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.stream}:{self.external_id}"


# --- transactional outbox and dead letters ------------------------------------------------------------
class OutboxStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    DELIVERING = "delivering", _("Delivering")
    DELIVERED = "delivered", _("Delivered")
    DEAD = "dead", _("Dead")
    DISCARDED = "discarded", _("Discarded")


class OutboxMessage(RegionModel):
    """A write the hub owes a vendor (a captured lead, a ticket), committed with the change that caused it.

    `external_id` is the hub's idempotency key: the vendor upserts by it, so delivering twice (a crash
    after the vendor accepted) updates the same record instead of creating a second one. Messages with the
    same `ordering_key` (the target record) are delivered strictly in `sequence` order; a message waits
    while any predecessor is undelivered, including a dead one, until that is replayed or discarded.
    `payload` holds personal data: the "outbox" eraser blanks it.
    """

    hub_silo: ClassVar[str] = "region"

    id = models.BigAutoField(primary_key=True)
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="outbox_messages")
    stream = models.CharField(_("stream"), max_length=32)
    operation = models.CharField(_("operation"), max_length=16, default="upsert")
    external_id = models.CharField(_("hub external id"), max_length=255)
    payload = models.JSONField(_("payload"), default=dict)
    ordering_key = models.CharField(_("ordering key"), max_length=255)
    sequence = models.PositiveIntegerField(_("sequence"))
    status = models.CharField(
        _("status"), max_length=16, choices=OutboxStatus.choices, default=OutboxStatus.PENDING
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"))
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)
    vendor_id = models.CharField(_("vendor id"), max_length=255, blank=True, default="")
    last_error = models.TextField(_("last error"), blank=True, default="")

    class Meta:
        ordering = ["id"]
        constraints = [
            # Also the index of the relay's "no undelivered predecessor" check.
            models.UniqueConstraint(
                fields=["tenant_id", "connection", "ordering_key", "sequence"], name="outbox_key_sequence"
            ),
        ]
        indexes = [
            # The relay's scan: undelivered messages that are due.
            models.Index(
                fields=["next_attempt_at"],
                name="outbox_due",
                condition=models.Q(status__in=["pending", "delivering"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.stream}:{self.external_id}#{self.sequence}"


class OutboxAttempt(RegionModel):
    """One delivery try of one message (Saleor style: one row per try), with why it failed."""

    hub_silo: ClassVar[str] = "region"

    message = models.ForeignKey(OutboxMessage, on_delete=models.CASCADE, related_name="attempt_rows")
    number = models.PositiveIntegerField(_("attempt"))
    started_at = models.DateTimeField(_("started"))
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True, default="")
    retry_after = models.FloatField(_("retry after (s)"), null=True, blank=True)

    class Meta:
        ordering = ["message", "number"]

    def __str__(self) -> str:
        return f"{self.message_id}#{self.number}"


class DeadLetterKind(models.TextChoices):
    OUTBOX = "outbox", _("Outbox delivery")
    SYNC = "sync", _("Sync")


class DeadLetterStatus(models.TextChoices):
    OPEN = "open", pgettext_lazy("status", "Open")
    REPLAYED = "replayed", _("Replayed")
    DISCARDED = "discarded", _("Discarded")


class DeadLetter(RegionModel):
    """Work that failed for good (a permanent error, or retries used up), kept for an operator to act on.

    `errors` is the attempt history ([{number, started_at, finished_at, error, retry_after}]); `payload` is
    what would be replayed (for outbox letters the message payload, blanked by the "outbox" eraser).
    `resolved_by_id` is a plain user id: users live in the control database.
    """

    hub_silo: ClassVar[str] = "region"

    kind = models.CharField(_("kind"), max_length=16, choices=DeadLetterKind.choices)
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="dead_letters")
    stream = models.CharField(_("stream"), max_length=32)
    message = models.OneToOneField(
        OutboxMessage, on_delete=models.CASCADE, null=True, blank=True, related_name="dead_letter"
    )
    sync_run = models.OneToOneField(
        SyncRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="dead_letter"
    )
    payload = models.JSONField(_("payload"), default=dict, blank=True)
    error = models.TextField(_("error"), blank=True, default="")
    errors = models.JSONField(_("error history"), default=list, blank=True)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    status = models.CharField(
        _("status"), max_length=16, choices=DeadLetterStatus.choices, default=DeadLetterStatus.OPEN
    )
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)
    resolved_by_id = models.BigIntegerField(_("resolved by"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant_id", "status", "-created_at"], name="deadletter_list"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.stream}#{self.pk}"
