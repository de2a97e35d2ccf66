"""Writes and enforcement of data policies: updates, residency checks, retention, redaction, erasure."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _

from apps.audit.models import Outcome
from apps.audit.services import audit_record
from apps.core.context import as_ref, tenant_context
from apps.core.errors import HubError, ValidationFailed
from apps.policies.models import (
    MAX_RETENTION_DAYS,
    MIN_RETENTION_DAYS,
    RETENTION_FIELDS,
    Category,
    DataPolicy,
)
from apps.policies.registry import Subject, erasers, purgers
from apps.policies.selectors import policy_flags, policy_flags_forget, policy_get, transfer_allowed
from apps.security import pii
from apps.security.services import vault_tokenize
from apps.tenants.models import Region

logger = logging.getLogger(__name__)

EDITABLE_FIELDS = ("allowed_regions", "redact_transcripts", *RETENTION_FIELDS.values())
RETENTION_BATCH_SIZE = 1000
PRESETS = ("strict", "lenient")


class TransferRefused(HubError):
    """The tenant's data policy forbids sending its data to a region."""

    def __init__(self, *, destination_region: str, purpose: str) -> None:
        super().__init__(
            _("Sending data to region %(region)s for %(purpose)s is refused by this tenant's data policy.")
            % {"region": destination_region.upper() or "?", "purpose": purpose}
        )
        self.destination_region = destination_region
        self.purpose = purpose


# --- policy changes --------------------------------------------------------------------------------------
def preset_values(*, preset: str) -> dict[str, Any]:
    """The field values of a preset: "strict" (home region only, redaction, short retention) or "lenient"."""
    if preset == "strict":
        return {
            "allowed_regions": [],
            "redact_transcripts": True,
            "transcript_retention_days": 30,
            "synced_record_retention_days": 90,
            "sync_log_retention_days": 30,
            "audit_retention_days": MIN_RETENTION_DAYS[Category.AUDIT_EVENTS],
            "delivered_write_retention_days": 7,
        }
    if preset == "lenient":
        return {
            "allowed_regions": list(settings.HUB_REGIONS),
            "redact_transcripts": False,
            "transcript_retention_days": 730,
            "synced_record_retention_days": None,
            "sync_log_retention_days": 365,
            "audit_retention_days": None,
            "delivered_write_retention_days": 365,
        }
    raise ValueError(f"unknown preset {preset!r}")


def _clean(values: Mapping[str, Any], *, home_region: str) -> dict[str, Any]:
    """Validate and normalize policy values; raise ValidationFailed with field errors."""
    unknown = set(values) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValueError(f"not policy fields: {sorted(unknown)}")
    errors: dict[str, list[str]] = {}
    cleaned: dict[str, Any] = {}
    if "allowed_regions" in values:
        codes = [str(code).strip().lower() for code in values["allowed_regions"] or ()]
        known = set(Region.objects.values_list("code", flat=True))
        bad = sorted({code for code in codes if code not in known})
        if bad:
            errors["allowed_regions"] = [
                _("Unknown region: %(codes)s.") % {"codes": ", ".join(code.upper() for code in bad)}
            ]
        # The home region is always allowed, so it is never stored.
        cleaned["allowed_regions"] = sorted({code for code in codes if code != home_region})
    if "redact_transcripts" in values:
        cleaned["redact_transcripts"] = bool(values["redact_transcripts"])
    for category, name in RETENTION_FIELDS.items():
        if name not in values:
            continue
        days = values[name]
        if days in (None, ""):
            cleaned[name] = None
            continue
        try:
            days = int(days)
        except (TypeError, ValueError):
            errors[name] = [_("Enter a whole number of days.")]
            continue
        minimum = MIN_RETENTION_DAYS[category]
        if days < minimum:
            errors[name] = [
                _("Keep this data at least %(min)d days, or leave the field empty to keep it forever.")
                % {"min": minimum}
            ]
        elif days > MAX_RETENTION_DAYS:
            errors[name] = [
                _("Enter at most %(max)d days, or leave the field empty to keep it forever.")
                % {"max": MAX_RETENTION_DAYS}
            ]
        cleaned[name] = days
    if errors:
        raise ValidationFailed(_("The policy was not saved."), errors)
    return cleaned


def policy_update(
    *,
    tenant: Any,
    values: Mapping[str, Any],
    actor: Any = None,
    request: HttpRequest | None = None,
) -> DataPolicy:
    """Change some of the tenant's policy fields; audited as `policy.updated` with before/after."""
    ref = as_ref(tenant)
    cleaned = _clean(values, home_region=ref.region)
    policy_get(tenant=ref)
    with tenant_context(ref), transaction.atomic(using=ref.db_alias):
        policy = DataPolicy.objects.select_for_update().get()
        changes = {
            name: [getattr(policy, name), value]
            for name, value in cleaned.items()
            if getattr(policy, name) != value
        }
        if not changes:
            return policy
        for name, (_before, after) in changes.items():
            setattr(policy, name, after)
        policy.save(update_fields=[*changes, "updated_at"])
        # Now, and again at commit: a reader between the two could have cached the old values.
        policy_flags_forget(tenant_id=ref.id)
        transaction.on_commit(lambda: policy_flags_forget(tenant_id=ref.id), using=ref.db_alias)
    audit_record(
        "policy.updated",
        tenant=ref,
        actor=actor,
        request=request,
        target_type="data_policy",
        target_id=policy.pk,
        target_label="data policy",
        changes=changes,
    )
    return policy


def policy_apply_preset(
    *, tenant: Any, preset: str, actor: Any = None, request: HttpRequest | None = None
) -> DataPolicy:
    """Set every field from a preset (see preset_values); audited like any other change."""
    return policy_update(tenant=tenant, values=preset_values(preset=preset), actor=actor, request=request)


# --- residency -------------------------------------------------------------------------------------------
def transfer_check(
    *, tenant: Any, destination_region: str, purpose: str, request: HttpRequest | None = None
) -> None:
    """Refuse (TransferRefused, audited as `policy.transfer_refused`) a transfer the policy forbids.

    Connectors and language model providers call this with their endpoint's declared region before any
    tenant data leaves the hub. `purpose` names the flow (e.g. "llm.generate"), never personal data.
    """
    ref = as_ref(tenant)
    destination = (destination_region or "").strip().lower()
    if transfer_allowed(tenant=ref, destination_region=destination):
        return
    audit_record(
        "policy.transfer_refused",
        tenant=ref,
        request=request,
        target_type="region",
        target_id=destination,
        target_label=destination.upper(),
        changes={"destination_region": destination, "purpose": purpose},
        outcome=Outcome.DENIED,
    )
    raise TransferRefused(destination_region=destination, purpose=purpose)


# --- retention -------------------------------------------------------------------------------------------
@dataclass
class RetentionReport:
    counts: dict[str, int] = field(default_factory=dict)
    cutoffs: dict[str, datetime] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def retention_enforce(
    *, tenant: Any, now: datetime | None = None, batch_size: int = RETENTION_BATCH_SIZE
) -> RetentionReport:
    """Purge, per category with a registered purge function, what is older than the policy allows.

    Each purge function works in batches of short transactions; one `retention.purged` event per run
    records the counts (also when nothing was purged: it is the evidence that retention runs).
    `now` exists so tests can move time forward instead of backdating rows.
    """
    ref = as_ref(tenant)
    now = now or timezone.now()
    policy = policy_get(tenant=ref)
    report = RetentionReport()
    for category, purge in purgers().items():
        days = policy.retention_days(category)
        if days is None:
            continue
        cutoff = now - timedelta(days=days)
        with tenant_context(ref):
            report.counts[category] = purge(tenant=ref, cutoff=cutoff, batch_size=batch_size)
        report.cutoffs[category] = cutoff
    audit_record(
        "retention.purged",
        tenant=ref,
        target_type="data_policy",
        target_id=policy.pk,
        target_label="data policy",
        changes={"counts": report.counts, "cutoffs": report.cutoffs, "total": report.total},
    )
    logger.info("retention enforced", extra={"tenant_id": ref.id, "purged": report.total})
    return report


# --- redaction and tokenization ---------------------------------------------------------------------------
def redact_for_storage(*, tenant: Any, text: str) -> str:
    """Redact a transcript before it is stored, when the tenant's policy asks for it."""
    if policy_flags(tenant=tenant)["redact_transcripts"]:
        return pii.redact(text)
    return text


def redact_for_external(text: str) -> str:
    """Always redact: for text sent outside the hub (an external language model)."""
    return pii.redact(text)


def tokenize_pii(*, text: str, kinds: Any = None) -> tuple[str, list[str]]:
    """Swap personal data for vault tokens (encrypted, reversible) in the current tenant's vault.

    For values a later step needs back (a lead's e-mail): vault_reveal(token=...) returns them. The same
    value repeated in one text gets one token.
    """
    issued: dict[tuple[str, str], str] = {}

    def replace(match: pii.PiiMatch) -> str:
        key = (match.kind.value, match.text)
        if key not in issued:
            issued[key] = vault_tokenize(value=match.text, kind=match.kind.value)
        return issued[key]

    redacted = pii.redact_with(text, replace, kinds=kinds)
    return redacted, list(issued.values())


# --- erasure ---------------------------------------------------------------------------------------------
@dataclass
class ErasureReport:
    pseudonyms: dict[str, str]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def pseudonym(*, tenant: Any, kind: str, value: str) -> str:
    """A keyed hash (HMAC-SHA256 with SECRET_KEY) of a normalized identifier.

    Stands for the subject in the audit log: the same person gets the same pseudonym in a tenant, so an
    erasure can be proven later, but without the key the identifier cannot be recovered or guessed.
    """
    return salted_hmac("hub.policies.erasure", f"{tenant.id}:{kind}:{value}", algorithm="sha256").hexdigest()


def erase_subject(
    *,
    tenant: Any,
    email: str | None = None,
    phone: str | None = None,
    external_id: str | None = None,
    user_ref: str | None = None,
    actor: Any,
    request: HttpRequest | None = None,
) -> ErasureReport:
    """Erase what the hub holds about one person, in every registered category, and audit it.

    Audit events are append-only and are not rewritten; the `policy.erasure` event names the subject only
    by pseudonym, so the log proves the erasure without keeping the identifier.
    """
    ref = as_ref(tenant)
    subject = Subject.of(email=email, phone=phone, external_id=external_id, user_ref=user_ref)
    identifiers = subject.identifiers()
    if not identifiers:
        raise ValidationFailed(
            _("Give an e-mail address, a phone number or an external id."),
            {"email": [_("Give an e-mail address, a phone number or an external id.")]},
        )
    report = ErasureReport(
        pseudonyms={kind: pseudonym(tenant=ref, kind=kind, value=v) for kind, v in identifiers.items()}
    )
    for category, erase in erasers().items():
        with tenant_context(ref):
            report.counts[category] = erase(tenant=ref, subject=subject)
    first = next(iter(report.pseudonyms.values()))
    audit_record(
        "policy.erasure",
        tenant=ref,
        actor=actor,
        request=request,
        target_type="data_subject",
        target_id=first[:64],
        target_label=f"data subject {first[:12]}",  # the log is not translated
        changes={"pseudonyms": report.pseudonyms, "counts": report.counts, "total": report.total},
    )
    return report
