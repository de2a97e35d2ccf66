"""The help center box on a knowledge base's console page (one include line in knowledge/kb_detail.html)."""

from __future__ import annotations

from typing import Any

from django import template

from apps.helpcenter.forms import HelpCenterSettingsForm
from apps.knowledge.selectors import public_article_bases
from apps.tenants import roles

register = template.Library()


@register.inclusion_tag("helpcenter/kb_settings.html", takes_context=True)
def helpcenter_settings(context: Any, kb: Any) -> dict[str, Any]:
    request = context["request"]
    tenant = request.tenant
    public_url = ""
    if kb.helpcenter_enabled and kb.helpcenter_handle:
        base = public_article_bases(tenant=tenant, kbs=[(str(kb.pk), kb.helpcenter_handle)]).get(str(kb.pk))
        public_url = f"{base}/{kb.source_locale}/" if base else ""
    return {
        "kb": kb,
        "request": request,
        "csrf_token": context.get("csrf_token"),
        "public_url": public_url,
        "can_manage": roles.can(request.user, request.membership, roles.MANAGE_KNOWLEDGE),
        "form": HelpCenterSettingsForm(
            initial={"enabled": kb.helpcenter_enabled, "handle": kb.helpcenter_handle}
        ),
    }
