"""SIEM streaming: configuring destinations (audited) and delivering the audit chain to them.

Delivery is at least once and ordered per tenant: each batch runs in one transaction that holds the
destination row (SELECT ... FOR UPDATE SKIP LOCKED), reads the events after the cursor in sequence order,
sends them and moves the cursor only once the SIEM acknowledged the batch. A second worker skips the row;
a worker killed mid-batch leaves the row and cursor as they were, so the whole batch is sent again (the
receiver de-duplicates by `id`). Nothing is kept in process memory.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.core.backoff import jittered_backoff
from apps.core.context import TenantRef, as_ref, current_tenant, tenant_context
from apps.core.outbound import guarded_session
from apps.core.tasks import BROKER_ERRORS
from apps.observability import metrics
from apps.siem import formats
from apps.siem.models import SiemDestination, SiemKind
from apps.siem.senders import SendFailed, sender_for
from connectors.errors import ConnectorError

logger = logging.getLogger(__name__)

SECRET_FIELDS = ("token", "hmac_secret", "client_cert", "client_key")
PLAIN_FIELDS = ("name", "kind", "host", "port", "url", "ca_bundle")
DELIVER_TASK = "apps.siem.tasks.siem_deliver_task"
KICK_TASK = "apps.siem.tasks.siem_kick_task"
START_NOW, START_BEGINNING = "now", "beginning"


# --- configuration -------------------------------------------------------------------------------------
def _chain_head_seq() -> int:
    """The newest sequence number of the current tenant's chain (0 when empty)."""
    last = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
    return int(last or 0)


def destination_check_target(*, kind: str, host: str, port: int | None, url: str) -> None:
    """Refuse a target the SSRF guard refuses (private, loopback, metadata addresses unless allow-listed)."""
    session = guarded_session()
    try:
        if kind == SiemKind.SYSLOG_TLS:
            if not host:
                raise ValidationError({"host": _("Enter the syslog host.")})
            session.resolve_checked(host, port or 6514)
        else:
            if not url.lower().startswith("https://"):
                raise ValidationError({"url": _("Enter an https URL.")})
            session.check_address(url)
    except ConnectorError as exc:
        field = "host" if kind == SiemKind.SYSLOG_TLS else "url"
        raise ValidationError(
            {field: _("This address is not allowed: %(reason)s") % {"reason": exc}}
        ) from None


def _check_secrets(destination: SiemDestination) -> None:
    if destination.kind == SiemKind.SPLUNK_HEC and not destination.token:
        raise ValidationError({"token": _("A Splunk HEC destination needs its token.")})
    if destination.kind == SiemKind.WEBHOOK and not destination.hmac_secret:
        raise ValidationError({"hmac_secret": _("A webhook destination needs an HMAC secret.")})
    if bool(destination.client_cert) != bool(destination.client_key):
        raise ValidationError({"client_key": _("Give both the client certificate and its key, or neither.")})


def _audit_changes(data: dict[str, Any]) -> dict[str, Any]:
    """What the audit event records: plain settings, and only *whether* a secret was set."""
    changes = {k: data[k] for k in PLAIN_FIELDS if k in data and k != "ca_bundle"}
    if "ca_bundle" in data:
        changes["ca_bundle"] = "set" if data["ca_bundle"] else "none"
    # Which write-only fields were entered, never their values (under a key the audit's censor leaves alone).
    entered = [name for name in SECRET_FIELDS if data.get(name)]
    if entered:
        changes["write_only_fields_entered"] = entered
    return changes


def destination_create(
    *,
    tenant: Any,
    data: dict[str, Any],
    start: str = START_NOW,
    actor: Any = None,
    request: HttpRequest | None = None,
) -> SiemDestination:
    """Add a destination that starts at the chain's head ("now") or at its first event ("beginning")."""
    ref = as_ref(tenant)
    destination_check_target(
        kind=data["kind"], host=data.get("host", ""), port=data.get("port"), url=data.get("url", "")
    )
    with tenant_context(ref), transaction.atomic(using=ref.db_alias):
        destination = SiemDestination(**{k: data.get(k) or v for k, v in _defaults().items()})
        for name in SECRET_FIELDS:
            setattr(destination, name, data.get(name) or None)
        _check_secrets(destination)
        if SiemDestination.objects.filter(name=destination.name).exists():
            raise ValidationError({"name": _("A destination with this name exists.")})
        destination.delivered_seq = _chain_head_seq() if start == START_NOW else 0
        destination.save()
        audit_record(
            "siem.destination_created",
            tenant=ref,
            actor=actor,
            request=request,
            target=destination,
            changes={**_audit_changes(data), "start": start, "delivered_seq": destination.delivered_seq},
        )
    return destination


def _defaults() -> dict[str, Any]:
    return {"name": "", "kind": SiemKind.WEBHOOK, "host": "", "port": None, "url": "", "ca_bundle": ""}


def destination_update(
    *,
    destination: SiemDestination,
    data: dict[str, Any],
    actor: Any = None,
    request: HttpRequest | None = None,
) -> SiemDestination:
    """Change a destination; an empty secret keeps the stored one (secrets are write-only)."""
    ref = current_tenant()
    destination_check_target(
        kind=destination.kind, host=data.get("host", ""), port=data.get("port"), url=data.get("url", "")
    )
    with transaction.atomic(using=ref.db_alias):
        locked = SiemDestination.objects.select_for_update().get(pk=destination.pk)
        for name in ("name", "host", "port", "url", "ca_bundle"):
            if name in data:
                setattr(locked, name, data[name] if data[name] is not None else _defaults()[name])
        for name in SECRET_FIELDS:
            if data.get(name):
                setattr(locked, name, data[name])
        _check_secrets(locked)
        if SiemDestination.objects.filter(name=locked.name).exclude(pk=locked.pk).exists():
            raise ValidationError({"name": _("A destination with this name exists.")})
        locked.consecutive_failures = 0
        locked.next_attempt_at = None  # a fixed setup is tried at once
        locked.save()
        audit_record(
            "siem.destination_updated",
            tenant=ref,
            actor=actor,
            request=request,
            target=locked,
            changes=_audit_changes(data),
        )
    return locked


def destination_set_enabled(
    *, destination: SiemDestination, enabled: bool, actor: Any = None, request: HttpRequest | None = None
) -> None:
    """Pause or resume a destination; a paused one keeps its cursor and resumes where it stopped."""
    ref = current_tenant()
    with transaction.atomic(using=ref.db_alias):
        updated = SiemDestination.objects.filter(pk=destination.pk).update(
            enabled=enabled, next_attempt_at=None, consecutive_failures=0, updated_at=timezone.now()
        )
        if updated:
            audit_record(
                "siem.destination_resumed" if enabled else "siem.destination_paused",
                tenant=ref,
                actor=actor,
                request=request,
                target=destination,
            )
    destination.enabled = enabled


def destination_delete(
    *, destination: SiemDestination, actor: Any = None, request: HttpRequest | None = None
) -> None:
    ref = current_tenant()
    with transaction.atomic(using=ref.db_alias):
        audit_record(
            "siem.destination_deleted",
            tenant=ref,
            actor=actor,
            request=request,
            target=destination,
            changes={"kind": destination.kind, "delivered_seq": destination.delivered_seq},
        )
        SiemDestination.objects.filter(pk=destination.pk).delete()


def siem_send_test(
    *, destination: SiemDestination, actor: Any = None, request: HttpRequest | None = None
) -> str:
    """Send one synthetic line marked test (not an audit event, the cursor does not move); "" on success,
    else the (redacted) error. The attempt itself is audited."""
    ref = current_tenant()
    event = formats.test_event(tenant_slug=ref.slug, at=timezone.now())
    error = ""
    try:
        with sender_for(destination) as sender:
            sender.send([event], test=True)
    except SendFailed as exc:
        error = exc.message
    audit_record(
        "siem.test_sent",
        tenant=ref,
        actor=actor,
        request=request,
        target=destination,
        outcome="success" if not error else "failure",
        changes={"error": error} if error else {},
    )
    return error


# --- delivery ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeliveryResult:
    delivered: int
    batches: int
    failed: bool
    more: bool  # stopped with events left (time budget), not for a failure or an empty backlog


def _failure_delay(failures: int, exc: SendFailed) -> float:
    cap = settings.HUB_SIEM_RETRY_MAX_SECONDS
    if exc.permanent:  # someone must fix the setup first: retry slowly
        return float(cap)
    return jittered_backoff(
        retries=max(failures - 1, 0),
        base_ms=settings.HUB_SIEM_RETRY_BASE_MS,
        cap_seconds=cap,
        retry_after=exc.retry_after,
    )


def _purge_note(first_seq: int, delivered_seq: int) -> str:
    return f"Events {delivered_seq + 1}-{first_seq - 1} were purged by retention before delivery; skipped."


def siem_deliver(*, destination_id: Any, budget_seconds: float | None = None) -> DeliveryResult:
    """Send the current tenant's events after the destination's cursor, batch by batch, until done, failed
    or out of time. Returns quietly when the row is gone, paused, backing off or held by another worker."""
    ref = current_tenant()
    alias = ref.db_alias
    budget = settings.HUB_SIEM_RUN_SECONDS if budget_seconds is None else budget_seconds
    deadline = time.monotonic() + budget
    delivered = batches = 0
    sender = None
    kind = "unknown"
    try:
        while True:
            with transaction.atomic(using=alias):
                destination = (
                    SiemDestination.objects.select_for_update(skip_locked=True)
                    .filter(pk=destination_id, enabled=True)
                    .first()
                )
                if destination is None:
                    return DeliveryResult(delivered, batches, failed=False, more=False)
                kind = destination.kind
                now = timezone.now()
                if destination.next_attempt_at is not None and destination.next_attempt_at > now:
                    return DeliveryResult(delivered, batches, failed=False, more=False)
                rows = list(
                    AuditEvent.objects.filter(seq__gt=destination.delivered_seq).order_by("seq")[
                        : settings.HUB_SIEM_BATCH
                    ]
                )
                if not rows:
                    return DeliveryResult(delivered, batches, failed=False, more=False)
                if sender is None:
                    sender = sender_for(destination)
                try:
                    sender.send([formats.event_json(row, tenant_slug=ref.slug) for row in rows])
                except SendFailed as exc:
                    _record_failure(destination, exc, now=now)
                    metrics.record_siem_failure(kind=kind)
                    return DeliveryResult(delivered, batches, failed=True, more=False)
                fields = ["delivered_seq", "delivered_count", "last_delivered_at", "consecutive_failures",
                          "next_attempt_at", "updated_at"]  # fmt: skip
                if rows[0].seq != destination.delivered_seq + 1:  # a gap is always a retention purge
                    destination.note = _purge_note(rows[0].seq, destination.delivered_seq)
                    fields.append("note")
                    logger.info("siem: purged events skipped", extra={"skipped_to": rows[0].seq})
                destination.delivered_seq = rows[-1].seq
                destination.delivered_count += len(rows)
                destination.last_delivered_at = timezone.now()
                destination.consecutive_failures = 0
                destination.next_attempt_at = None
                destination.save(update_fields=fields)
            delivered += len(rows)
            batches += 1
            metrics.record_siem_delivered(kind=kind, count=len(rows))
            if len(rows) < settings.HUB_SIEM_BATCH:
                return DeliveryResult(delivered, batches, failed=False, more=False)
            if time.monotonic() >= deadline:
                return DeliveryResult(delivered, batches, failed=False, more=True)
    finally:
        if sender is not None:
            sender.close()


def _record_failure(destination: SiemDestination, exc: SendFailed, *, now: datetime) -> None:
    destination.consecutive_failures += 1
    destination.last_error = exc.message[:500]
    destination.last_error_at = now
    delay = _failure_delay(destination.consecutive_failures, exc)
    destination.next_attempt_at = now + timedelta(seconds=delay)
    destination.save(
        update_fields=["consecutive_failures", "last_error", "last_error_at", "next_attempt_at", "updated_at"]
    )
    # The message names the host and the failure, never a secret or an event (senders redact).
    logger.warning(
        "siem: delivery failed",
        extra={"destination": str(destination.pk), "kind": destination.kind, "retry_in_s": round(delay, 1)},
    )


def siem_due(*, now: datetime | None = None) -> list[tuple[int, str]]:
    """(tenant id, destination id) of every enabled destination with undelivered events that may be tried
    now, in every region (beat queues a delivery for each)."""
    from apps.tenants.models import Tenant

    now = now or timezone.now()
    tenants = list(Tenant.objects.select_related("home_region").filter(is_active=True))
    found: list[tuple[int, str]] = []
    for alias in sorted({t.home_region.db_alias for t in tenants}):
        ids = [t.id for t in tenants if t.home_region.db_alias == alias]
        backlog = AuditEvent.all_tenants.using(alias).filter(
            tenant_id=OuterRef("tenant_id"), seq__gt=OuterRef("delivered_seq")
        )
        rows = (
            SiemDestination.all_tenants.using(alias)
            .filter(enabled=True, tenant_id__in=ids)
            .exclude(next_attempt_at__gt=now)
            .filter(Exists(backlog))
            .values_list("tenant_id", "id")
        )
        found.extend((tenant_id, str(pk)) for tenant_id, pk in rows)
    return found


def siem_kick_destinations() -> list[str]:
    """The current tenant's enabled destinations that may be tried now (the kick task queues each)."""
    now = timezone.now()
    return [
        str(pk)
        for pk in SiemDestination.objects.filter(enabled=True)
        .exclude(next_attempt_at__gt=now)
        .values_list("id", flat=True)
    ]


#: tenant id -> when this process last tried to kick it (time.monotonic). Only saves Redis round trips on the
#: append path: each process tries at most once per window, Redis (SET NX) lets one try per window win, and
#: beat catches up whatever a kick missed, so no delivery depends on it.
_tried: dict[int, float] = {}


def siem_on_append(ref: TenantRef) -> None:
    """The audit hook: after an append commits, queue one kick per tenant per debounce window.

    The first append of a window (per process: a dict lookup; across processes: Redis SET NX with the
    window as TTL) of a tenant with an enabled destination publishes a task, delayed to the end of the
    window so that it carries every event appended meanwhile. When Redis is down nothing is queued and beat
    (HUB_SIEM_BEAT_SECONDS) catches up.
    """
    window = settings.HUB_SIEM_KICK_SECONDS
    if not window:
        return
    now = time.monotonic()
    if now - _tried.get(ref.id, -window) < window:
        return
    if len(_tried) > 10_000:  # bounded whatever the number of tenants
        _tried.clear()
    _tried[ref.id] = now
    # Most tenants stream nowhere: no task for them (one indexed query per tenant per window and process).
    if not SiemDestination.all_tenants.using(ref.db_alias).filter(tenant_id=ref.id, enabled=True).exists():
        return
    try:
        if not cache.add(f"siem:kick:{ref.id}", 1, timeout=window):
            return
    except BROKER_ERRORS:
        return  # Redis (and so the broker) is away: beat catches up
    _publish(KICK_TASK, {"tenant_id": ref.id}, countdown=window)


def siem_queue_delivery(*, tenant_id: int, destination_id: str) -> bool:
    return _publish(DELIVER_TASK, {"tenant_id": tenant_id, "destination_id": destination_id})


def _publish(name: str, kwargs: dict[str, Any], *, countdown: float | None = None) -> bool:
    """Publish a task of this app by name (tasks.py imports services); a broker failure is logged, not
    raised: the cursor is in the database and beat queues the delivery again."""
    from celery import current_app

    try:
        current_app.tasks[name].apply_async(kwargs=kwargs, countdown=countdown)
    except BROKER_ERRORS as exc:
        logger.warning("siem: task not queued, the broker is unavailable (%s)", type(exc).__name__)
        return False
    return True
