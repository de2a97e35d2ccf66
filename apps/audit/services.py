"""Recording audit events (the one entry point every service calls), purging and exporting them."""

from __future__ import annotations

import csv
import hashlib
import io
import ipaddress
import json
import zipfile
from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connections, transaction
from django.http import HttpRequest
from django.utils import timezone

from apps.audit import hooks, signing
from apps.audit.chain import (
    CENSORED,
    GENESIS,
    HASHED_FIELDS,
    anchor_message,
    canonical,
    link_hash,
    manifest_bytes,
)
from apps.audit.models import AuditAnchor, AuditEvent, AuditEventBase, Outcome, PlatformAuditEvent
from apps.audit.selectors import VerifyResult, audit_verify_chain
from apps.core import sql
from apps.core.context import TenantRef, as_ref, tenant_context
from apps.core.deadlines import optional_cache
from apps.core.spreadsheet import csv_cell
from apps.observability import metrics
from apps.observability.access import client_address
from apps.observability.logging import request_id_var

SENSITIVE_KEYS = ("password", "secret", "token", "key", "credential", "authorization", "otp", "private")
EXPORT_FIELDS = (*HASHED_FIELDS, "prev_hash", "hash")


# Writers of one tenant's chain and its purge share this lock class (apps/audit/sql/audit_purge.sql).
AUDIT_LOCK = "hub-audit"


def censor(changes: Mapping[str, Any] | None, sensitive: Iterable[str] = ()) -> dict[str, Any]:
    """Blank sensitive values (by key name, and any key the caller names) at any depth."""
    extra = {name.lower() for name in sensitive}

    def walk(value: Any, key: str = "") -> Any:
        lowered = key.lower()
        if lowered in extra or any(word in lowered for word in SENSITIVE_KEYS):
            return CENSORED if value not in (None, "") else value
        if isinstance(value, Mapping):
            return {str(k): walk(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(v, key) for v in value]
        return value

    result: dict[str, Any] = walk(dict(changes or {}))
    return result


def _client_ip(request: HttpRequest | None) -> str | None:
    """The client's address (behind trusted proxies too), normalized as PostgreSQL stores it (the hash
    must survive the round trip)."""
    raw = client_address(request.META) if request is not None else None
    try:
        return ipaddress.ip_address(raw).compressed if raw else None
    except ValueError:
        return None


def _chain_target(tenant: TenantRef | None) -> tuple[type[AuditEventBase], str, int]:
    if tenant is None:
        return PlatformAuditEvent, "default", 0
    return AuditEvent, tenant.db_alias, tenant.id


def audit_record(
    action: str,
    *,
    tenant: Any = None,
    actor: Any = None,
    target: Any = None,
    target_type: str = "",
    target_id: Any = "",
    target_label: str = "",
    changes: Mapping[str, Any] | None = None,
    sensitive: Iterable[str] = (),
    outcome: str = Outcome.SUCCESS,
    request: HttpRequest | None = None,
) -> AuditEventBase:
    """Append one event to the tenant's chain (or the platform chain when `tenant` is None).

    Writers of one chain are serialized by a transaction-scoped advisory lock, so concurrent requests
    and workers can never fork it; the unique (tenant, seq) constraint is the last line of defence.
    """
    ref = as_ref(tenant) if tenant is not None else None
    model, alias, chain_id = _chain_target(ref)
    if target is not None:
        target_type = target_type or target._meta.model_name
        target_id = target_id or target.pk
        target_label = target_label or str(target)
    user = actor if actor is not None else (getattr(request, "user", None) if request is not None else None)
    if user is None or not getattr(user, "is_authenticated", False):
        user = None
    event: dict[str, Any] = {
        "tenant_id": chain_id,
        "occurred_at": timezone.now(),
        "actor_id": user.pk if user is not None else None,
        "actor_label": user.get_username()[:200] if user is not None else "",
        "action": action,
        "target_type": str(target_type)[:64],
        "target_id": str(target_id)[:64],
        "target_label": str(target_label)[:200],
        "changes": json.loads(json.dumps(censor(changes, sensitive), default=str)),
        "ip": _client_ip(request),
        "user_agent": (request.headers.get("User-Agent", "") if request is not None else "")[:300],
        "request_id": (getattr(request, "request_id", None) or request_id_var.get() or "")[:64],
        "outcome": str(outcome),
    }
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        sql.advisory_xact_lock(using=alias, key=(AUDIT_LOCK, chain_id))
        cursor.execute(
            f"SELECT seq, hash FROM {model._meta.db_table} WHERE tenant_id = %s ORDER BY seq DESC LIMIT 1",  # noqa: S608
            [chain_id],
        )
        last = cursor.fetchone()
        if last is None:  # empty, or everything purged: continue from the checkpoint
            last = _last_checkpoint(alias, chain_id, model)
        seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS)
        event["seq"] = seq
        row = model(**event, prev_hash=prev_hash, hash=link_hash(prev_hash, event))
        if ref is not None:
            with tenant_context(ref):
                row.save(using=alias)
        else:
            row.save(using=alias)
    if ref is not None and hooks.has_appended_hooks():
        transaction.on_commit(partial(hooks.run_appended, ref), using=alias)
    return row


def _last_checkpoint(alias: str, chain_id: int, model: type[AuditEventBase]) -> tuple[int, str] | None:
    table = "audit_auditcheckpoint" if model is AuditEvent else "audit_platformauditcheckpoint"
    with connections[alias].cursor() as cursor:
        cursor.execute(
            f"SELECT purged_through_seq, hash_at_seq FROM {table} WHERE tenant_id = %s "  # noqa: S608
            "ORDER BY purged_through_seq DESC LIMIT 1",
            [chain_id],
        )
        row = cursor.fetchone()
    return (row[0], row[1]) if row else None


def audit_purge(*, tenant: Any, before: Any) -> int:
    """Delete the tenant's events older than `before` through the privileged SQL function (checkpointed).

    audit_purge() runs as the audit tables' owner (SECURITY DEFINER): the hub's own role cannot delete.
    """
    ref = as_ref(tenant)
    with transaction.atomic(using=ref.db_alias), connections[ref.db_alias].cursor() as cursor:
        sql.advisory_xact_lock(using=ref.db_alias, key=(AUDIT_LOCK, ref.id))
        cursor.execute("SELECT audit_purge(%s::bigint, %s::timestamptz)", [ref.id, before])
        count = int(cursor.fetchone()[0])
    return count


# --- anchors -------------------------------------------------------------------------------------------
def _chain_head(ref: TenantRef | None) -> tuple[int, str] | None:
    """The newest (seq, hash) of a chain: its last event, or the checkpoint of a purge that took them all."""
    model, alias, chain_id = _chain_target(ref)
    with connections[alias].cursor() as cursor:
        cursor.execute(
            f"SELECT seq, hash FROM {model._meta.db_table} WHERE tenant_id = %s ORDER BY seq DESC LIMIT 1",  # noqa: S608
            [chain_id],
        )
        row = cursor.fetchone()
    return (int(row[0]), str(row[1])) if row else _last_checkpoint(alias, chain_id, model)


def _hash_at(ref: TenantRef | None, seq: int) -> str | None:
    """The hash of event `seq` of a chain, or of the purge checkpoint at `seq`; None when purged past it."""
    model, alias, chain_id = _chain_target(ref)
    with connections[alias].cursor() as cursor:
        cursor.execute(
            f"SELECT hash FROM {model._meta.db_table} WHERE tenant_id = %s AND seq = %s",  # noqa: S608
            [chain_id, seq],
        )
        row = cursor.fetchone()
    if row is not None:
        return str(row[0])
    checkpoint = _last_checkpoint(alias, chain_id, model)
    if checkpoint is not None and checkpoint[0] == seq:
        return checkpoint[1]
    if checkpoint is not None and checkpoint[0] > seq:
        return None
    return ""  # neither there nor purged: missing


def audit_anchor(*, tenant: Any = None) -> AuditAnchor | None:
    """Sign the head of a tenant's chain (or the platform's) and keep it in the control database.

    With the head anchored outside the region, deleting the newest events no longer leaves a chain that
    verifies. Nothing is written when the head has not moved since the last anchor, nor (the chain must be
    verified first) when it no longer holds the last anchored event.
    """
    ref = as_ref(tenant) if tenant is not None else None
    head = _chain_head(ref)
    if head is None:
        return None
    chain_id = ref.id if ref is not None else 0
    latest = AuditAnchor.objects.filter(tenant_id=chain_id).order_by("-seq", "-id").first()
    if latest is not None and (latest.seq, latest.hash) == head:
        return latest
    if latest is not None and (latest.seq > head[0] or _hash_at(ref, latest.seq) not in (latest.hash, None)):
        return None  # truncated or rewritten: audit_verify reports it; a new anchor must not paper over it
    anchored_at = timezone.now()
    anchor = AuditAnchor(
        tenant_id=chain_id,
        seq=head[0],
        hash=head[1],
        anchored_at=anchored_at,
        public_key=signing.public_key_b64(),
        signature=signing.sign(
            anchor_message(tenant_id=chain_id, seq=head[0], hash=head[1], anchored_at=anchored_at)
        ),
    )
    anchor.save(using="default")
    return anchor


def audit_anchor_all() -> int:
    """Anchor the head of every chain, the platform's and each tenant's; return how many have an anchor."""
    from apps.tenants.models import Tenant

    tenants = Tenant.objects.select_related("home_region").order_by("pk")
    return sum(audit_anchor(tenant=tenant) is not None for tenant in [None, *tenants])


# --- export --------------------------------------------------------------------------------------------
def _row(event: AuditEventBase) -> dict[str, Any]:
    data = {name: getattr(event, name) for name in EXPORT_FIELDS}
    data["occurred_at"] = json.loads(canonical({"occurred_at": event.occurred_at}))["occurred_at"]
    return data


def audit_export(
    *,
    tenant: Any,
    events: Iterable[AuditEventBase],
    fmt: str,
    actor: Any = None,
    request: HttpRequest | None = None,
    filters: Mapping[str, Any] | None = None,
) -> bytes:
    """Build a zip with the events (CSV or JSONL) and a signed manifest; the export itself is audited."""
    if fmt not in {"csv", "jsonl"}:
        raise ValueError("format must be csv or jsonl")
    ref = as_ref(tenant)
    anchor = audit_anchor(tenant=ref)  # first: the exported events then reach at least the anchored head
    rows = [_row(event) for event in events]
    rows.sort(key=lambda r: r["seq"])
    buffer = io.StringIO()
    if fmt == "jsonl":
        for row in rows:
            buffer.write(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str) + "\n")
    else:
        writer = csv.DictWriter(buffer, fieldnames=list(EXPORT_FIELDS))
        writer.writeheader()
        for row in rows:
            cells = {**row, "changes": json.dumps(row["changes"], sort_keys=True, ensure_ascii=False)}
            writer.writerow({name: csv_cell(value) for name, value in cells.items()})
    manifest: dict[str, Any] = {
        "tenant": ref.slug,
        "format": fmt,
        "count": len(rows),
        "first_seq": rows[0]["seq"] if rows else None,
        "last_seq": rows[-1]["seq"] if rows else None,
        "last_hash": rows[-1]["hash"] if rows else None,
        "filters": dict(filters or {}),
        "exported_at": timezone.now().isoformat(),
        # Cells a spreadsheet would run as formulas carry a leading quote (apps/core/spreadsheet.py).
        "csv_cells": "formula-quoted" if fmt == "csv" else None,
        # The chain head as anchored in the control database: proof of how long the chain was.
        "anchor": _anchor_json(anchor),
    }
    archive = signed_archive(file_name=f"events.{fmt}", content=buffer.getvalue().encode(), manifest=manifest)
    audit_record(
        "audit.export",
        tenant=ref,
        actor=actor,
        request=request,
        target_type="audit_log",
        target_label=f"{len(rows)} events",
        changes={"format": fmt, "filters": dict(filters or {}), "count": len(rows)},
    )
    return archive


def signed_archive(*, file_name: str, content: bytes, manifest: Mapping[str, Any]) -> bytes:
    """Zip `content` with a manifest that names it, holds its SHA-256 and is signed with the audit key.

    Every signed export (the audit log, the access review) is this one shape, so one offline check fits all:
    the Ed25519 signature over the canonical manifest (chain.manifest_bytes), then the file's digest.
    """
    signed: dict[str, Any] = {
        **manifest,
        "file": file_name,
        "sha256": hashlib.sha256(content).hexdigest(),
        "algorithm": "Ed25519",
        "public_key": signing.public_key_b64(),
    }
    signed["signature"] = signing.sign(manifest_bytes(signed))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(file_name, content)
        zf.writestr("manifest.json", json.dumps(signed, indent=2, sort_keys=True))
    return archive.getvalue()


def _anchor_json(anchor: AuditAnchor | None) -> dict[str, Any] | None:
    if anchor is None:
        return None
    return {
        "tenant_id": anchor.tenant_id,
        "seq": anchor.seq,
        "hash": anchor.hash,
        "anchored_at": json.loads(canonical({"occurred_at": anchor.anchored_at}))["occurred_at"],
        "signature": anchor.signature,
    }


def audit_verify(
    *,
    tenant: Any,
    actor: Any = None,
    request: HttpRequest | None = None,
    from_seq: int | None = None,
    to_seq: int | None = None,
    via: Mapping[str, Any] | None = None,
) -> VerifyResult:
    """Verify the tenant's chain (whole, or the range given), anchor its head when the whole chain is intact,
    and record the check with its outcome."""
    whole = from_seq is None and to_seq is None
    result = audit_verify_chain(tenant=tenant, from_seq=from_seq, to_seq=to_seq)
    if result.ok and whole:
        audit_anchor(tenant=tenant)
    changes: dict[str, Any] = {
        "checked": result.checked,
        "broken_seq": result.broken_seq,
        "reason": result.reason,
    }
    if not whole:
        changes |= {"from_seq": from_seq, "to_seq": to_seq}
    audit_record(
        "audit.verified",
        tenant=tenant,
        actor=actor,
        request=request,
        target_type="audit_log",
        target_label=f"{result.checked} events",
        outcome=Outcome.SUCCESS if result.ok else Outcome.FAILURE,
        changes={**changes, **dict(via or {})},
    )
    return result


# --- read events recorded once per window --------------------------------------------------------------
def recent_key(kind: str, material: Mapping[str, Any]) -> str:
    """Name what a read event covered (tenant, reader, filters) by a digest: the key never holds them."""
    blob = json.dumps(dict(material), sort_keys=True, default=str)
    return f"audit-{kind}:" + hashlib.sha256(blob.encode()).hexdigest()


def recent_get(key: str) -> Any:
    """What a read event recorded within HUB_AUDIT_READ_DEDUPE_SECONDS remembered under `key`.

    None when nothing was, when the window is 0 or when Redis is down: the caller then records again, so the
    log may get repetitive but never has a gap.
    """
    if not settings.HUB_AUDIT_READ_DEDUPE_SECONDS:
        return None
    with optional_cache("cache"):
        return cache.get(key)


def recent_remember(key: str, value: Any = True) -> None:
    """Remember, for HUB_AUDIT_READ_DEDUPE_SECONDS, what the read event just recorded covered (skipped while
    Redis is down)."""
    window = int(settings.HUB_AUDIT_READ_DEDUPE_SECONDS)
    if window:
        with optional_cache("cache"):
            cache.set(key, value, timeout=window)


# --- reads of the audit log (the audit API) -------------------------------------------------------------
READ_ACTION = "audit.read"
#: Seq ranges remembered per reader and filters for deduplication; past this, the lowest are forgotten (which
#: only means that a re-read of them is recorded again).
_READ_SPANS_KEPT = 64


def _covered(spans: list[list[int]], seqs: Iterable[int]) -> bool:
    return all(any(lo <= seq <= hi for lo, hi in spans) for seq in seqs)


def _merge(spans: list[list[int]], lo: int, hi: int) -> list[list[int]]:
    merged: list[list[int]] = []
    for a, b in sorted([*spans, [lo, hi]]):
        if merged and a <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return merged[-_READ_SPANS_KEPT:]


def audit_read_record(
    *,
    tenant: Any,
    actor: Any,
    request: HttpRequest | None,
    filters: Mapping[str, Any],
    events: list[AuditEventBase],
    via: Mapping[str, Any],
    order: str = "",
) -> AuditEventBase | None:
    """Record that a page of the audit log was served: one `audit.read` event per page, never one per row.

    Called after the page is built, so a page never contains its own read event. A page that shows the
    reader nothing new is not recorded again: within HUB_AUDIT_READ_DEDUPE_SECONDS, a page of the same
    reader (user and token) and filters (cursor, limit and order aside) whose events other than `audit.read`
    ones all lie in seq ranges already recorded for them. Reads count as nothing new, or pollers would record
    each other's (and their own) reads for ever. The ranges are kept in Redis; when Redis is down every page
    is recorded (None: nothing recorded).
    """
    ref = as_ref(tenant)
    seqs = [event.seq for event in events]
    content = [event.seq for event in events if event.action != READ_ACTION]
    reader = {**via, "user": getattr(actor, "pk", None)}
    key = recent_key("read", {"t": ref.id, "r": reader, "f": dict(filters)})
    spans = recent_get(key)
    if isinstance(spans, list) and _covered(spans, content):
        metrics.record_audit_read(recorded=False)
        return None
    event = audit_record(
        READ_ACTION,
        tenant=ref,
        actor=actor,
        request=request,
        target_type="audit_log",
        target_label=f"{len(events)} events",
        changes={
            "filters": dict(filters),
            **({"order": order} if order else {}),
            "count": len(events),
            "first_seq": seqs[0] if seqs else None,
            "last_seq": seqs[-1] if seqs else None,
            **dict(via),
        },
    )
    metrics.record_audit_read(recorded=True)
    new_spans = list(spans) if isinstance(spans, list) else []
    if seqs:
        new_spans = _merge(new_spans, min(seqs), max(seqs))
    recent_remember(key, new_spans)
    return event
