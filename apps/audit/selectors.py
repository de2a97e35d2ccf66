"""Reading and verifying the audit chains and exports."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db.models import Q, QuerySet

from apps.audit import signing
from apps.audit.chain import CENSORED, GENESIS, anchor_message, link_hash, manifest_bytes
from apps.audit.models import (
    AuditAnchor,
    AuditCheckpoint,
    AuditEvent,
    AuditEventBase,
    PlatformAuditCheckpoint,
    PlatformAuditEvent,
)
from apps.core.context import as_ref, tenant_context
from apps.core.spreadsheet import csv_cell_value


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    broken_seq: int | None = None
    reason: str = ""
    # What is wrong at broken_seq, for messages in plain words: missing, duplicated, unlinked, modified,
    # truncated (events up to an anchored head are gone), forged (an anchor's signature is invalid).
    kind: str = ""


# Groups of actions the console filters by, as action prefixes. "identity": who may get in and how — sign-ins
# (incl. single sign-on and its denials), SSO settings and role mappings, SCIM provisioning, memberships.
ACTION_CATEGORIES: dict[str, tuple[str, ...]] = {
    "identity": ("security.", "sso.", "scim.", "member."),
}


def audit_event_list(*, filters: dict[str, Any] | None = None) -> QuerySet[AuditEvent]:
    """The current tenant's events, newest first, filtered (category, actor, action, target, outcome, dates,
    text)."""
    filters = filters or {}
    qs = AuditEvent.objects.all().order_by("-seq")
    if filters.get("category") in ACTION_CATEGORIES:
        category = Q()
        for prefix in ACTION_CATEGORIES[filters["category"]]:
            category |= Q(action__startswith=prefix)
        qs = qs.filter(category)
    if filters.get("actor"):
        qs = qs.filter(actor_label__icontains=filters["actor"])
    if filters.get("action"):
        qs = qs.filter(action__startswith=filters["action"])
    if filters.get("target"):
        qs = qs.filter(Q(target_label__icontains=filters["target"]) | Q(target_id=filters["target"]))
    if filters.get("outcome"):
        qs = qs.filter(outcome=filters["outcome"])
    if filters.get("since"):
        qs = qs.filter(occurred_at__gte=filters["since"])
    if filters.get("until"):
        qs = qs.filter(occurred_at__lt=filters["until"])
    if filters.get("q"):
        text = filters["q"]
        qs = qs.filter(
            Q(action__icontains=text)
            | Q(target_label__icontains=text)
            | Q(actor_label__icontains=text)
            | Q(request_id=text)
        )
    return qs


def audit_event_get(*, seq: int) -> AuditEvent | None:
    """One event of the current tenant by its sequence number."""
    return AuditEvent.objects.filter(seq=seq).first()


def audit_head(*, tenant: Any) -> tuple[int, str] | None:
    """The newest (seq, hash) of a tenant's chain: its last event, or the checkpoint of a purge of all."""
    with tenant_context(as_ref(tenant)):
        last = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
        if last is None:
            checkpoint = AuditCheckpoint.objects.first()
            return (checkpoint.purged_through_seq, checkpoint.hash_at_seq) if checkpoint else None
    return int(last[0]), str(last[1])


def audit_latest_anchor(*, tenant: Any) -> AuditAnchor | None:
    """The newest signed head of a tenant's chain, from the control database."""
    return AuditAnchor.objects.filter(tenant_id=as_ref(tenant).id).order_by("-seq", "-id").first()


@dataclass(frozen=True)
class ChangeRow:
    field: str
    before: Any
    after: Any
    is_update: bool


def audit_event_changes(event: AuditEventBase) -> list[ChangeRow]:
    """The event's `changes` as rows: `[before, after]` pairs when the event records an update.

    Services record updates as `{field: [before, after]}` and creations as `{field: value}`; a creation's
    value can itself be a two-item list, so an event counts as an update only when every value is a pair
    (or a censored "***", which replaced a sensitive pair whole).
    """
    changes = event.changes if isinstance(event.changes, dict) else {"": event.changes}
    pairs = {k: v for k, v in changes.items() if isinstance(v, list) and len(v) == 2}
    is_update = bool(pairs) and all(k in pairs or v == CENSORED for k, v in changes.items())
    rows = []
    for key, value in sorted(changes.items()):
        if not is_update:
            rows.append(ChangeRow(str(key), None, value, False))
        elif key in pairs:
            rows.append(ChangeRow(str(key), value[0], value[1], True))
        else:
            rows.append(ChangeRow(str(key), CENSORED, CENSORED, True))
    return rows


def _verify_rows(
    rows: Any, start_seq: int, start_hash: str, anchored: dict[int, str] | None = None
) -> VerifyResult:
    expected_seq, expected_prev, checked = start_seq, start_hash, 0
    anchored = anchored or {}
    for row in rows:
        event = row if isinstance(row, dict) else {f.name: getattr(row, f.name) for f in row._meta.fields}
        seq = int(event["seq"])
        if seq != expected_seq:
            kind = "missing" if seq > expected_seq else "duplicated"
            return VerifyResult(
                False, checked, expected_seq, f"event #{expected_seq} is {kind} (next found: #{seq})", kind
            )
        if event["prev_hash"] != expected_prev:
            return VerifyResult(
                False, checked, seq, f"event #{seq} does not link to the event before it", "unlinked"
            )
        if link_hash(event["prev_hash"], event) != event["hash"]:
            return VerifyResult(
                False, checked, seq, f"event #{seq} was modified after it was recorded", "modified"
            )
        if seq in anchored and anchored[seq] != event["hash"]:
            return VerifyResult(
                False, checked, seq, f"event #{seq} differs from the one anchored at #{seq}", "modified"
            )
        expected_seq, expected_prev, checked = seq + 1, event["hash"], checked + 1
    return VerifyResult(True, checked)


def audit_verify_chain(
    *,
    tenant: Any = None,
    export_anchors: Iterable[dict[str, Any]] = (),
    from_seq: int | None = None,
    to_seq: int | None = None,
) -> VerifyResult:
    """Recompute the chain of a tenant (or the platform), whole or a range, and name the first broken link.

    Also checked against the signed heads anchored in the control database (apps/audit/services.py
    audit_anchor), and any `export_anchors` (the `anchor` of export manifests, kept elsewhere): every
    anchor's signature, the anchored hash of each event still present, and that no anchored event is
    missing from the tail, so deleting the newest events is detected too.

    A range (`from_seq`/`to_seq`, either open) checks the links inside it and that its first event links to
    the event before it (or to the purge checkpoint); a range reaching into the purged part starts after it.
    """
    chain_id = as_ref(tenant).id if tenant is not None else 0
    # Anchors first: any anchor written later covers events this walk may not see, and is left to next time.
    anchors = list(AuditAnchor.objects.filter(tenant_id=chain_id).order_by("seq", "id"))
    anchors += [
        AuditAnchor(
            tenant_id=int(a["tenant_id"]),
            seq=int(a["seq"]),
            hash=str(a["hash"]),
            anchored_at=a["anchored_at"],
            signature=str(a["signature"]),
        )
        for a in export_anchors
    ]
    trusted = signing.trusted_public_keys()
    for anchor in anchors:
        message = anchor_message(
            tenant_id=chain_id, seq=anchor.seq, hash=anchor.hash, anchored_at=anchor.anchored_at
        )
        if not any(signing.verify(message, anchor.signature, key) for key in trusted):
            return VerifyResult(
                False, 0, anchor.seq, f"the anchor of event #{anchor.seq} has an invalid signature", "forged"
            )
    span = _Span(from_seq, to_seq)
    if tenant is None:
        platform = PlatformAuditEvent.objects.filter(tenant_id=0)
        checkpoint = PlatformAuditCheckpoint.objects.filter(tenant_id=0).first()
        return _verify_anchored(platform, checkpoint, anchors, span)
    with tenant_context(as_ref(tenant)):
        return _verify_anchored(AuditEvent.objects.all(), AuditCheckpoint.objects.first(), anchors, span)


@dataclass(frozen=True)
class _Span:
    """The part of a chain to verify: [start, end], either open (None)."""

    start: int | None = None
    end: int | None = None


def _verify_anchored(
    events: QuerySet[Any], checkpoint: Any, anchors: list[AuditAnchor], span: _Span = _Span()
) -> VerifyResult:
    start_seq, start_hash = _start(checkpoint)
    purged_through = start_seq - 1
    for anchor in anchors:  # an anchor at the purge cut must match the checkpoint's hash
        if anchor.seq == purged_through and anchor.hash != start_hash:
            return VerifyResult(
                False,
                0,
                anchor.seq,
                f"the purge checkpoint differs from the anchor at #{anchor.seq}",
                "modified",
            )
    if span.start is not None and span.start > start_seq:
        # The range's first event must link to the one before it, which must still be there.
        before = events.filter(seq=span.start - 1).values_list("hash", flat=True).first()
        if before is None:
            return VerifyResult(False, 0, span.start - 1, f"event #{span.start - 1} is missing", "missing")
        start_seq, start_hash = span.start, before
        events = events.filter(seq__gte=start_seq)
    rows = events
    if span.end is not None:
        rows = rows.filter(seq__lte=span.end)
    anchored = {a.seq: a.hash for a in anchors}
    result = _verify_rows(rows.order_by("seq").iterator(chunk_size=2000), start_seq, start_hash, anchored)
    if not result.ok:
        return result
    head = start_seq - 1 + result.checked
    anchored_head = max((a.seq for a in anchors), default=0)
    required = anchored_head if span.end is None else min(anchored_head, span.end)
    if required > head:
        return VerifyResult(
            False,
            result.checked,
            head + 1,
            f"events #{head + 1} to #{required} are missing: the chain was anchored at #{anchored_head}",
            "truncated",
        )
    return result


def _start(checkpoint: Any) -> tuple[int, str]:
    """Where verification begins: after the last purge checkpoint, or at the genesis."""
    return (checkpoint.purged_through_seq + 1, checkpoint.hash_at_seq) if checkpoint else (1, GENESIS)


def audit_verify_export(path: Path, *, public_key: str | None = None) -> VerifyResult:
    """Check an export offline: manifest signature, file digest, count, and each event's hash."""
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        content = zf.read(manifest["file"])
    key = public_key or manifest.get("public_key", "")
    if not signing.verify(manifest_bytes(manifest), manifest.get("signature", ""), key):
        return VerifyResult(False, 0, None, "the manifest signature is invalid")
    if hashlib.sha256(content).hexdigest() != manifest["sha256"]:
        return VerifyResult(False, 0, None, "the events file does not match the manifest digest")
    if manifest.get("kind"):  # another signed document (an access review): signature and digest are the check
        return VerifyResult(True, 0, kind=str(manifest["kind"]))
    if manifest["format"] == "jsonl":
        rows = [json.loads(line) for line in content.decode().splitlines() if line.strip()]
    else:
        rows = list(csv.DictReader(io.StringIO(content.decode())))
        for row in rows:
            if manifest.get("csv_cells") == "formula-quoted":
                row.update({name: csv_cell_value(value) for name, value in row.items()})
            row["changes"] = json.loads(row["changes"])
            for name in ("seq", "tenant_id", "actor_id"):
                row[name] = int(row[name]) if row[name] not in ("", None) else None
            row["ip"] = row["ip"] or None
    if len(rows) != manifest["count"]:
        return VerifyResult(
            False, 0, None, f"the manifest counts {manifest['count']} events, the file has {len(rows)}"
        )
    for checked, row in enumerate(rows):
        if link_hash(row["prev_hash"], row) != row["hash"]:
            return VerifyResult(False, checked, row["seq"], f"event #{row['seq']} was modified after export")
    contiguous = not manifest.get("filters") and rows
    if contiguous:
        result = _verify_rows(rows, rows[0]["seq"], rows[0]["prev_hash"])
        if not result.ok:
            return result
    if rows and rows[-1]["hash"] != manifest["last_hash"]:
        return VerifyResult(False, len(rows), None, "the last hash differs from the manifest")
    anchor = manifest.get("anchor")
    if anchor:
        message = anchor_message(
            tenant_id=anchor["tenant_id"],
            seq=anchor["seq"],
            hash=anchor["hash"],
            anchored_at=anchor["anchored_at"],
        )
        if not signing.verify(message, anchor["signature"], key):
            return VerifyResult(
                False, len(rows), anchor["seq"], "the anchor's signature is invalid", "forged"
            )
        exported = {row["seq"]: row["hash"] for row in rows}
        if anchor["seq"] in exported and exported[anchor["seq"]] != anchor["hash"]:
            return VerifyResult(
                False, len(rows), anchor["seq"], f"event #{anchor['seq']} differs from the anchor", "modified"
            )
    return VerifyResult(True, len(rows))
