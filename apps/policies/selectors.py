"""Reads of data policies: the policy itself, residency answers and the plain-words explanation."""

from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from apps.core.context import as_ref, tenant_context
from apps.policies.models import Category, DataPolicy
from apps.policies.registry import purgers
from apps.tenants.models import Region


def policy_get(*, tenant: Any) -> DataPolicy:
    """Return the tenant's policy, creating it with the defaults on first read.

    Materializing the defaults once means every later change has a "before" to audit, and the defaults
    can change in code without silently changing existing tenants' policies.
    """
    ref = as_ref(tenant)
    with tenant_context(ref):
        policy = DataPolicy.objects.first()
        if policy is not None:
            return policy
        try:
            with transaction.atomic(using=ref.db_alias):
                return DataPolicy.objects.create()
        except IntegrityError:  # a concurrent first read created it
            return DataPolicy.objects.get()


_FLAGS_SECONDS = 300


def _flags_key(tenant_id: int) -> str:
    return f"policies:flags:{tenant_id}"


def policy_flags(*, tenant: Any) -> dict[str, Any]:
    """The policy fields hot paths read on every request (a chat turn), from the shared cache.

    `policy_update` drops the entry when it commits, so a change applies to the next request everywhere.
    """
    ref = as_ref(tenant)
    flags: dict[str, Any] | None = cache.get(_flags_key(ref.id))
    if flags is None:
        policy = policy_get(tenant=ref)
        flags = {
            "redact_transcripts": policy.redact_transcripts,
            "allowed_regions": list(policy.allowed_regions),
        }
        cache.set(_flags_key(ref.id), flags, _FLAGS_SECONDS)
    return flags


def policy_flags_forget(*, tenant_id: int) -> None:
    cache.delete(_flags_key(tenant_id))


def allowed_regions(*, tenant: Any, policy: DataPolicy | None = None) -> list[str]:
    """Region codes the tenant's data may be sent to: its home region first, then the policy's others."""
    ref = as_ref(tenant)
    others = policy.allowed_regions if policy is not None else policy_flags(tenant=ref)["allowed_regions"]
    return [ref.region, *(code for code in others if code != ref.region)]


def transfer_allowed(*, tenant: Any, destination_region: str) -> bool:
    """Tell whether data of `tenant` may be sent to an endpoint declared in `destination_region`."""
    code = (destination_region or "").strip().lower()
    return bool(code) and code in allowed_regions(tenant=tenant)


def region_label(code: str, names: dict[str, str] | None = None) -> str:
    """ "EU (European Union)" when the region is known, else the code in capitals."""
    names = names if names is not None else dict(Region.objects.values_list("code", "name"))
    name = names.get(code)
    return f"{code.upper()} ({name})" if name and name.upper() != code.upper() else code.upper()


def _retention_sentence(category: str, days: int | None) -> str:
    if category == Category.TRANSCRIPTS:
        if days is None:
            return _("Conversation transcripts are kept with no time limit.")
        return ngettext(
            "Conversation transcripts are deleted %(days)d day after the conversation ends.",
            "Conversation transcripts are deleted %(days)d days after the conversation ends.",
            days,
        ) % {"days": days}
    if category == Category.SYNCED_RECORDS:
        if days is None:
            return _("Records synced from business systems are kept with no time limit.")
        return ngettext(
            "Records synced from business systems are deleted %(days)d day after they last changed.",
            "Records synced from business systems are deleted %(days)d days after they last changed.",
            days,
        ) % {"days": days}
    if category == Category.SYNC_LOGS:
        if days is None:
            return _("Sync logs are kept with no time limit.")
        return ngettext(
            "Sync logs are deleted %(days)d day after the sync run.",
            "Sync logs are deleted %(days)d days after the sync run.",
            days,
        ) % {"days": days}
    if category == Category.DELIVERED_WRITES:
        if days is None:
            return _("Writes delivered to business systems are kept with no time limit.")
        return ngettext(
            "Writes delivered to business systems are deleted %(days)d day after delivery.",
            "Writes delivered to business systems are deleted %(days)d days after delivery.",
            days,
        ) % {"days": days}
    if days is None:
        return _("Audit events are kept forever.")
    return ngettext(
        "Audit events are deleted %(days)d day after they were recorded; "
        "a checkpoint keeps the rest of the log verifiable.",
        "Audit events are deleted %(days)d days after they were recorded; "
        "a checkpoint keeps the rest of the log verifiable.",
        days,
    ) % {"days": days}


def policy_explain(*, tenant: Any, policy: DataPolicy | None = None) -> dict[str, list[str]]:
    """Say what the policy does, in plain words, grouped as residency, redaction and retention."""
    ref = as_ref(tenant)
    policy = policy or policy_get(tenant=ref)
    names = dict(Region.objects.values_list("code", "name"))
    regions = ", ".join(region_label(code, names) for code in allowed_regions(tenant=ref, policy=policy))
    residency = [
        _("Data is stored in %(region)s only.") % {"region": region_label(ref.region, names)},
        _("Data may only be sent to: %(regions)s.") % {"regions": regions},
        _(
            "Connectors and language model providers whose endpoint is in any other region are refused, "
            "and each refusal is recorded in the audit log."
        ),
    ]
    if policy.redact_transcripts:
        redaction = [
            _(
                "E-mail addresses, phone numbers, payment cards, IBANs and national ids are removed from "
                "conversation transcripts before they are stored."
            )
        ]
    else:
        redaction = [_("Conversation transcripts are stored as written, including any personal data.")]
    redaction.append(
        _("Text sent to an external language model is always redacted, and logs never carry personal data.")
    )
    enforced = purgers()
    retention = []
    for category in Category:
        sentence = _retention_sentence(category, policy.retention_days(category))
        if policy.retention_days(category) is not None and category not in enforced:
            sentence = _("%(sentence)s (Takes effect once the hub stores this kind of data.)") % {
                "sentence": sentence
            }
        retention.append(sentence)
    return {"residency": residency, "redaction": redaction, "retention": retention}
