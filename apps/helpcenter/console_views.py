"""Console side of the help center: a knowledge base's help center settings (the public pages: views.py)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from apps.core.errors import ValidationFailed
from apps.helpcenter.forms import HelpCenterSettingsForm
from apps.knowledge.selectors import kb_get
from apps.knowledge.services import kb_update
from apps.tenants import roles
from apps.tenants.decorators import tenant_permission_required


@tenant_permission_required(roles.MANAGE_KNOWLEDGE)
@require_POST
def kb_settings_view(request: HttpRequest, tenant_slug: str, kb_id: Any) -> HttpResponse:
    """Turn a knowledge base's public help center on or off and set its address (audited by kb_update)."""
    kb = kb_get(kb_id=kb_id)
    if kb is None:
        raise Http404
    form = HelpCenterSettingsForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Use lower-case letters, digits and hyphens for the address."))
        return redirect("knowledge:kb-detail", tenant_slug=tenant_slug, kb_id=kb.pk)
    try:
        kb_update(
            kb=kb,
            helpcenter_enabled=form.cleaned_data["enabled"],
            helpcenter_handle=form.cleaned_data["handle"],
            actor=request.user,
        )
    except ValidationFailed as exc:
        messages.error(request, " ".join(str(m) for msgs in exc.errors.values() for m in msgs) or str(exc))
    else:
        messages.success(request, _("Help center settings saved."))
    return redirect("knowledge:kb-detail", tenant_slug=tenant_slug, kb_id=kb.pk)
