"""Data-subject requests (GDPR art. 12, 15, 17): a register with deadlines, access archives, erasure that
tells the connected vendors, and the evidence of each.

Writes only. The subject's identifiers are stored encrypted; every audit event names the subject by
pseudonym (the keyed hash of `services.pseudonym`), never by e-mail or phone.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.audit.archives import signed_archive
from apps.audit.services import audit_record
from apps.core.context import TenantRef, as_ref, tenant_context
from apps.core.errors import ValidationFailed
from apps.observability.metrics import record_dsr_event
from apps.policies.models import (
    MAX_EXTENSION_DAYS,
    RESPONSE_DAYS,
    DataSubjectRequest,
    RequestKind,
    RequestStatus,
)
from apps.policies.registry import Subject, erasure_notifiers, exporters
from apps.policies.services import erase_subject, pseudonym

logger = logging.getLogger(__name__)

TARGET_TYPE = "data_subject_request"
#: Notification states after which a vendor needs nothing more (an operator may settle a dead one by hand).
DONE_STATES = ("delivered", "handled")
#: States an operator may settle by hand: delivery gave up (dead), or the vendor has no erasure mechanism.
HANDLEABLE_STATES = ("dead", "discarded", "manual")
ARCHIVE_TASK = "apps.policies.tasks.dsr_archive_build_task"


# --- helpers -----------------------------------------------------------------------------------------------
def dsr_subject(dsr: DataSubjectRequest) -> Subject:
    """The subject of a request, from its encrypted identifiers."""
    data = json.loads(dsr.identifiers or "{}")
    return Subject.of(
        email=data.get("email"),
        phone=data.get("phone"),
        external_id=data.get("external_id"),
        user_ref=data.get("user_ref"),
    )


def _label(dsr: DataSubjectRequest) -> str:
    return f"{dsr.kind} request {dsr.subject_key[:12]}"  # the log is not translated


def _audit(
    action: str,
    dsr: DataSubjectRequest,
    *,
    tenant: TenantRef,
    actor: Any,
    request: HttpRequest | None,
    changes: Mapping[str, Any] | None = None,
) -> None:
    event = {"dsr.created": "created", "dsr.extended": "extended", "dsr.rejected": "rejected",
             "dsr.completed": "completed"}.get(action)  # fmt: skip
    if event:
        record_dsr_event(kind=dsr.kind, event=event)
    audit_record(
        action,
        tenant=tenant,
        actor=actor,
        request=request,
        target_type=TARGET_TYPE,
        target_id=str(dsr.pk),
        target_label=_label(dsr),
        changes={"kind": dsr.kind, "subject": dsr.subject_key, **(changes or {})},
    )


def _refuse(message: str, field: str = "__all__") -> ValidationFailed:
    return ValidationFailed(message, {field: [message]})


def _locked(pk: Any) -> DataSubjectRequest:
    """The request, row-locked until the transaction ends (inside the tenant's context)."""
    return DataSubjectRequest.objects.select_for_update().defer("archive").get(pk=pk)


def _require_open(dsr: DataSubjectRequest) -> None:
    if not dsr.is_open:
        raise _refuse(_("This request is already closed."))


def _reason(reason: str | None, missing: str) -> str:
    """The operator's reason for an action, stripped; refused with `missing` when there is none."""
    reason = (reason or "").strip()
    if not reason:
        raise _refuse(missing, "reason")
    return reason


def _change_open(
    ref: TenantRef,
    dsr: DataSubjectRequest,
    change: Callable[[DataSubjectRequest], Mapping[str, Any] | None],
    *,
    fields: list[str],
    action: str,
    actor: Any,
    request: HttpRequest | None,
) -> DataSubjectRequest:
    """Lock the request, refuse it if closed, let `change` set `fields` (it may refuse; it returns what the
    audit event adds), save and audit `action` in that one transaction, so the timeline never lags the row."""
    with tenant_context(ref), transaction.atomic(using=ref.db_alias):
        locked = _locked(dsr.pk)
        _require_open(locked)
        changes = change(locked)
        locked.save(update_fields=[*fields, "updated_at"])
        _audit(action, locked, tenant=ref, actor=actor, request=request, changes=changes)
    return locked


# --- register ----------------------------------------------------------------------------------------------
def dsr_create(
    *,
    tenant: Any,
    kind: str,
    email: str | None = None,
    phone: str | None = None,
    external_id: str | None = None,
    user_ref: str | None = None,
    received_at: datetime | None = None,
    notes: str = "",
    actor: Any,
    request: HttpRequest | None = None,
) -> DataSubjectRequest:
    """Register a request; it is due 30 days after it was received (GDPR art. 12(3))."""
    ref = as_ref(tenant)
    if kind not in RequestKind.values:
        raise _refuse(_("Choose access or erasure."), "kind")
    subject = Subject.of(email=email, phone=phone, external_id=external_id, user_ref=user_ref)
    identifiers = subject.identifiers()
    if not identifiers:
        raise _refuse(_("Give an e-mail address, a phone number, an external id or a chat user reference."))
    now = timezone.now()
    received = received_at or now
    if received > now + timedelta(minutes=5):
        raise _refuse(_("The request cannot have been received in the future."), "received_at")
    pseudonyms = {k: pseudonym(tenant=ref, kind=k, value=v) for k, v in identifiers.items()}
    with tenant_context(ref):
        dsr = DataSubjectRequest(
            kind=kind,
            identifiers=json.dumps(identifiers, sort_keys=True),
            pseudonyms=pseudonyms,
            subject_key=next(iter(pseudonyms.values())),
            received_at=received,
            due_at=received + timedelta(days=RESPONSE_DAYS),
            notes=notes.strip(),
            created_by_id=getattr(actor, "pk", None),
        )
        dsr.save()
    _audit(
        "dsr.created",
        dsr,
        tenant=ref,
        actor=actor,
        request=request,
        changes={"pseudonyms": pseudonyms, "received_at": received, "due_at": dsr.due_at},
    )
    return dsr


def dsr_extend(
    *,
    tenant: Any,
    dsr: DataSubjectRequest,
    days: int,
    reason: str,
    actor: Any,
    request: HttpRequest | None = None,
) -> DataSubjectRequest:
    """Push the deadline back by `days`, with a reason; at most 60 days in all (GDPR art. 12(3))."""
    ref = as_ref(tenant)
    reason = _reason(reason, _("Say why the request needs more time."))

    def extend(locked: DataSubjectRequest) -> dict[str, Any]:
        total = locked.extension_days + int(days)
        if days < 1 or total > MAX_EXTENSION_DAYS:
            raise _refuse(
                _("A request can be extended by %(max)d days at most in all (%(used)d used).")
                % {"max": MAX_EXTENSION_DAYS, "used": locked.extension_days},
                "days",
            )
        locked.extension_days = total
        locked.extension_reason = reason
        locked.due_at = locked.received_at + timedelta(days=RESPONSE_DAYS + total)
        return {"days": int(days), "total_days": total, "due_at": locked.due_at}

    return _change_open(
        ref,
        dsr,
        extend,
        fields=["extension_days", "extension_reason", "due_at"],
        action="dsr.extended",
        actor=actor,
        request=request,
    )


def dsr_reject(
    *, tenant: Any, dsr: DataSubjectRequest, reason: str, actor: Any, request: HttpRequest | None = None
) -> DataSubjectRequest:
    """Close a request without acting on it (e.g. the identity could not be verified), with the reason."""
    ref = as_ref(tenant)
    reason = _reason(reason, _("Say why the request is rejected."))

    def reject(locked: DataSubjectRequest) -> None:
        if locked.status == RequestStatus.IN_PROGRESS:
            raise _refuse(_("A request in progress cannot be rejected any more."))
        locked.status, locked.reason = RequestStatus.REJECTED, reason
        locked.completed_at = timezone.now()
        locked.handled_by_id = getattr(actor, "pk", None)

    return _change_open(
        ref,
        dsr,
        reject,
        fields=["status", "reason", "completed_at", "handled_by_id"],
        action="dsr.rejected",
        actor=actor,
        request=request,
    )


def dsr_start(
    *, tenant: Any, dsr: DataSubjectRequest, actor: Any, request: HttpRequest | None = None
) -> DataSubjectRequest:
    """Act on a received request: queue the access archive, or erase and tell the vendors.

    A request in progress whose work left no result (the archive task was lost with the broker, the erasure
    failed half-way) may be started again: both are idempotent.
    """
    ref = as_ref(tenant)
    with tenant_context(ref), transaction.atomic(using=ref.db_alias):
        locked = _locked(dsr.pk)
        if not dsr_can_start(locked):
            raise _refuse(_("This request was already started."))
        locked.status = RequestStatus.IN_PROGRESS
        locked.handled_by_id = getattr(actor, "pk", None)
        locked.save(update_fields=["status", "handled_by_id", "updated_at"])
        if locked.kind == RequestKind.ACCESS:
            _queue_archive(ref, locked)
        _audit("dsr.started", locked, tenant=ref, actor=actor, request=request)
    if locked.kind == RequestKind.ERASURE:
        _erase(ref, locked, actor=actor, request=request)
        with tenant_context(ref):
            locked.refresh_from_db()
    return locked


def dsr_can_start(dsr: DataSubjectRequest) -> bool:
    """Received, or in progress without its result yet (a retry)."""
    if dsr.status == RequestStatus.RECEIVED:
        return True
    result = "archive" if dsr.kind == RequestKind.ACCESS else "erasure"
    return dsr.status == RequestStatus.IN_PROGRESS and result not in dsr.evidence


# --- access archive ----------------------------------------------------------------------------------------
def _queue_archive(ref: TenantRef, dsr: DataSubjectRequest) -> None:
    from celery import current_app

    from apps.core.tasks import task_enqueue_on_commit

    task_enqueue_on_commit(
        current_app.tasks[ARCHIVE_TASK],
        kwargs={"tenant_id": ref.id, "request_id": str(dsr.pk)},
        using=ref.db_alias,
    )


def dsr_archive_collect(
    *, tenant: Any, subject: Subject
) -> tuple[dict[str, bytes], dict[str, int], list[str]]:
    """Every registered category's rows about `subject` as one JSON file each; (files, counts, truncated)."""
    ref = as_ref(tenant)
    limit = settings.HUB_DSR_EXPORT_LIMIT
    files: dict[str, bytes] = {}
    counts: dict[str, int] = {}
    truncated: list[str] = []
    for category, export in sorted(exporters().items()):
        with tenant_context(ref):
            rows = export(tenant=ref, subject=subject, limit=limit + 1)
        if len(rows) > limit:
            rows = rows[:limit]
            truncated.append(category)
        counts[category] = len(rows)
        body = {"category": category, "count": len(rows), "truncated": category in truncated, "rows": rows}
        files[f"{category}.json"] = json.dumps(
            body, indent=2, sort_keys=True, ensure_ascii=False, default=str
        ).encode()
    return files, counts, truncated


def dsr_archive_build(*, tenant: Any, request_id: Any) -> DataSubjectRequest | None:
    """Build, sign and store (encrypted) the access archive of a request in progress, then complete it.

    Idempotent: a redelivered task finds the request completed and does nothing.
    """
    ref = as_ref(tenant)
    with tenant_context(ref):
        dsr = DataSubjectRequest.objects.defer("archive").filter(pk=request_id).first()
    if dsr is None or dsr.kind != RequestKind.ACCESS or dsr.status != RequestStatus.IN_PROGRESS:
        return None
    with tenant_context(ref):
        subject = dsr_subject(dsr)
    files, counts, truncated = dsr_archive_collect(tenant=ref, subject=subject)
    manifest = {
        "tenant": ref.slug,
        "request": str(dsr.pk),
        "kind": dsr.kind,
        "subject": dsr.pseudonyms,
        "received_at": dsr.received_at.isoformat(),
        "counts": counts,
        "truncated": truncated,
    }
    content, signed = signed_archive(files=files, manifest=manifest)
    now = timezone.now()
    archive_evidence = {
        "sha256": _sha256(content),
        "size": len(content),
        "counts": counts,
        "truncated": truncated,
        "files": signed["files"],
        "signature": signed["signature"],
        "built_at": now.isoformat(),
    }
    with tenant_context(ref), transaction.atomic(using=ref.db_alias):
        locked = _locked(dsr.pk)
        if locked.status != RequestStatus.IN_PROGRESS:
            return locked
        locked.archive = base64.b64encode(content).decode()
        locked.archive_expires_at = now + timedelta(days=settings.HUB_DSR_ARCHIVE_DAYS)
        locked.evidence = {**locked.evidence, "archive": archive_evidence}
        locked.status, locked.completed_at = RequestStatus.COMPLETED, now
        locked.save(
            update_fields=[
                "archive",
                "archive_expires_at",
                "evidence",
                "status",
                "completed_at",
                "updated_at",
            ]
        )
        # In the same transaction: nobody reads "completed" without its event in the chain.
        _audit(
            "dsr.completed",
            locked,
            tenant=ref,
            actor=None,
            request=None,
            changes={"sha256": archive_evidence["sha256"], "counts": counts, "truncated": truncated},
        )
    return locked


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def dsr_archive_download(
    *, tenant: Any, dsr: DataSubjectRequest, actor: Any, request: HttpRequest | None = None
) -> bytes | None:
    """The archive's bytes (None once expired or never built); every download is audited."""
    ref = as_ref(tenant)
    with tenant_context(ref):
        stored = DataSubjectRequest.objects.filter(pk=dsr.pk).first()
        raw = stored.archive if stored is not None else None
    if not raw:
        return None
    content = base64.b64decode(raw)
    _audit("dsr.archive_downloaded", dsr, tenant=ref, actor=actor, request=request,
           changes={"sha256": _sha256(content)})  # fmt: skip
    return content


def dsr_archives_expire(*, now: datetime | None = None) -> int:
    """Delete the access archives kept past HUB_DSR_ARCHIVE_DAYS, in every region; return how many."""
    from apps.tenants.models import Region

    now = now or timezone.now()
    total = 0
    for alias in {region.db_alias for region in Region.objects.all()}:
        total += (
            DataSubjectRequest.all_tenants.db_manager(alias)
            .filter(archive__isnull=False, archive_expires_at__lte=now)
            .update(archive=None, updated_at=now)
        )
    return total


# --- erasure -----------------------------------------------------------------------------------------------
def _erase(ref: TenantRef, dsr: DataSubjectRequest, *, actor: Any, request: HttpRequest | None) -> None:
    """Queue the vendors' erasure requests, erase the hub's own data, record the evidence."""
    with tenant_context(ref):
        subject = dsr_subject(dsr)
    notices: list[dict[str, Any]] = []
    for name, notifier in sorted(erasure_notifiers().items()):
        for notice in notifier.notify(tenant=ref, subject=subject, request_id=str(dsr.pk)):
            notices.append(
                {
                    "id": str(notice.message_id)
                    if notice.message_id is not None
                    else f"manual:{notice.connection_id}",
                    "notifier": name,
                    "connection_id": notice.connection_id,
                    "connection": notice.connection_name,
                    "kind": notice.kind,
                    "message_id": notice.message_id,
                    "state": notice.state,
                    "handled_reason": "",
                }
            )
    ids = subject.identifiers()
    report = erase_subject(
        tenant=ref,
        email=ids.get("email"),
        phone=ids.get("phone"),
        external_id=ids.get("external_id"),
        user_ref=ids.get("user_ref"),
        actor=actor,
        request=request,
    )
    with tenant_context(ref), transaction.atomic(using=ref.db_alias):
        locked = _locked(dsr.pk)
        locked.evidence = {
            **locked.evidence,
            "erasure": {"counts": report.counts, "total": report.total, "pseudonyms": report.pseudonyms,
                        "erased_at": timezone.now().isoformat()},
            "notifications": notices,
        }  # fmt: skip
        locked.save(update_fields=["evidence", "updated_at"])
        _audit(
            "dsr.erased",
            locked,
            tenant=ref,
            actor=actor,
            request=request,
            changes={
                "counts": report.counts,
                "vendors": [{k: n[k] for k in ("kind", "id", "state")} for n in notices],
            },
        )
    dsr_refresh(tenant=ref, request_id=dsr.pk)


def dsr_refresh(*, tenant: Any, request_id: Any) -> DataSubjectRequest | None:
    """Update the vendor notifications' states; complete the erasure once every vendor is done.

    Called when an erasure outbox message settles (integrations' signal receiver) and after the erasure.
    """
    ref = as_ref(tenant)
    with tenant_context(ref), transaction.atomic(using=ref.db_alias):
        dsr = DataSubjectRequest.objects.select_for_update().defer("archive").filter(pk=request_id).first()
        if dsr is None or dsr.kind != RequestKind.ERASURE or dsr.status != RequestStatus.IN_PROGRESS:
            return dsr
        if "erasure" not in dsr.evidence:
            return dsr
        notices = list(dsr.evidence.get("notifications") or [])
        notifiers = erasure_notifiers()
        for name, notifier in notifiers.items():
            mine = [
                n["message_id"]
                for n in notices
                if n["notifier"] == name and n["message_id"] is not None and n["state"] != "handled"
            ]
            if not mine:
                continue
            states = notifier.states(tenant=ref, message_ids=mine)
            for notice in notices:
                if (
                    notice["notifier"] == name
                    and notice["message_id"] in states
                    and notice["state"] != "handled"
                ):
                    if states[notice["message_id"]] == "dead" and notice["state"] != "dead":
                        record_dsr_event(kind=dsr.kind, event="vendor_dead")
                    notice["state"] = states[notice["message_id"]]
        done = all(n["state"] in DONE_STATES for n in notices)
        dsr.evidence = {**dsr.evidence, "notifications": notices}
        fields = ["evidence", "updated_at"]
        if done:
            dsr.status, dsr.completed_at = RequestStatus.COMPLETED, timezone.now()
            fields += ["status", "completed_at"]
        dsr.save(update_fields=fields)
        if done:  # in the same transaction, like the archive's completion
            _audit(
                "dsr.completed",
                dsr,
                tenant=ref,
                actor=None,
                request=None,
                changes={"vendors": {n["id"]: n["state"] for n in notices}},
            )
    return dsr


def dsr_notification_handle(
    *,
    tenant: Any,
    dsr: DataSubjectRequest,
    notice_id: str,
    reason: str,
    actor: Any,
    request: HttpRequest | None = None,
) -> DataSubjectRequest | None:
    """Settle a vendor notification that could not be delivered (dead), e.g. erased by hand at the vendor."""
    ref = as_ref(tenant)
    reason = _reason(reason, _("Say how the vendor's copy was handled."))

    def handle(locked: DataSubjectRequest) -> dict[str, Any]:
        notices = list(locked.evidence.get("notifications") or [])
        notice = next((n for n in notices if n["id"] == notice_id), None)
        if notice is None:
            raise _refuse(_("This request has no such vendor notification."))
        if notice["state"] not in HANDLEABLE_STATES:
            raise _refuse(_("Only a notification that could not be delivered can be marked as handled."))
        before = notice["state"]
        notice["state"], notice["handled_reason"] = "handled", reason
        locked.evidence = {**locked.evidence, "notifications": notices}
        return {"notification": notice_id, "vendor": notice["kind"], "state_before": before}

    locked = _change_open(
        ref,
        dsr,
        handle,
        fields=["evidence"],
        action="dsr.notification_handled",
        actor=actor,
        request=request,
    )
    return dsr_refresh(tenant=ref, request_id=locked.pk)
