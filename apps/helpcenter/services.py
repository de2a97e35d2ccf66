"""Writing the help center's custom domains (an operator's job: see models.HelpCenterDomain).

The knowledge base's own help center settings are written by apps.knowledge.services.kb_update.
"""

from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from apps.audit.services import audit_record
from apps.core.context import tenant_context
from apps.core.errors import ValidationFailed
from apps.helpcenter.models import HelpCenterDomain, host_validator
from apps.helpcenter.selectors import domain_cache_key
from apps.knowledge.models import KnowledgeBase
from apps.knowledge.version import knowledge_version_bump
from apps.tenants.models import Tenant


def domain_add(*, host: str, tenant: Tenant, kb_id: Any, actor: Any = None) -> HelpCenterDomain:
    """Serve a knowledge base's help center on `host` (DNS and TLS are the operator's, at the ingress)."""
    host = (host or "").strip().lower().rstrip(".")
    errors: dict[str, list[str]] = {}
    try:
        host_validator(host)
    except ValidationError as exc:
        errors["host"] = list(exc.messages)
    if not errors and HelpCenterDomain.objects.filter(host=host).exists():
        errors["host"] = [_("This host already serves a help center.")]
    with tenant_context(tenant):
        kb = KnowledgeBase.objects.filter(pk=kb_id).first()
    if kb is None:
        errors["kb_id"] = [_("No such knowledge base in this tenant.")]
    if errors or kb is None:
        raise ValidationFailed(_("The domain was not added."), errors)
    with transaction.atomic():
        domain = HelpCenterDomain.objects.create(
            host=host, tenant=tenant, kb_id=kb.pk, created_by_id=getattr(actor, "pk", None)
        )
    audit_record(
        "helpcenter.domain_added",
        tenant=tenant,
        actor=actor,
        target=domain,
        changes={"host": host, "kb_id": str(kb.pk)},
    )
    _forget(domain)
    return domain


def domain_remove(*, domain: HelpCenterDomain, actor: Any = None) -> None:
    """Stop serving a help center on a host; it 404s (and citations move back) within the lookup cache."""
    tenant = domain.tenant
    host = domain.host
    domain.delete()
    audit_record("helpcenter.domain_removed", tenant=tenant, actor=actor, changes={"host": host})
    _forget(domain)


def _forget(domain: HelpCenterDomain) -> None:
    cache.delete(domain_cache_key(domain.host))
    knowledge_version_bump(tenant_id=domain.tenant_id)  # citation URLs (search set-up) move to the host
