"""Tenant middleware: `/t/<tenant_slug>/...` URLs set the tenant, the membership and the tenant context."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from apps.core.context import reset_tenant, set_tenant
from apps.observability.logging import tenant_slug_var
from apps.tenants.models import Membership, Tenant
from apps.tenants.sso import sso_blocks


class TenantMiddleware:
    """Resolve the tenant named in the URL; anyone who is not a member (nor an operator) gets a 404.

    A member of a tenant that enforces single sign-on whose session did not come from its IdP is sent to sign
    in there first (`apps.tenants.sso`).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.tenant = None  # type: ignore[attr-defined]
        request.membership = None  # type: ignore[attr-defined]
        try:
            return self.get_response(request)
        finally:
            tokens = getattr(request, "_tenant_tokens", None)
            if tokens is not None:
                reset_tenant(tokens[0])
                tenant_slug_var.reset(tokens[1])

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: dict[str, Any]
    ) -> HttpResponse | None:
        slug = view_kwargs.get("tenant_slug")
        if slug is None:
            return None
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        tenant = Tenant.objects.select_related("home_region").filter(slug=slug, is_active=True).first()
        if tenant is None and user.is_staff:
            tenant = Tenant.objects.select_related("home_region").filter(slug=slug).first()
        if tenant is None:
            raise Http404
        membership = Membership.objects.filter(tenant=tenant, user=user).first()
        if membership is None and not user.is_staff:
            raise Http404
        if sso_blocks(user=user, session=request.session, tenant=tenant, membership=membership):
            url = reverse("accounts:sso-tenant", kwargs={"organisation": tenant.slug})
            return HttpResponseRedirect(url + "?" + urlencode({"next": request.get_full_path()}))
        request.tenant = tenant  # type: ignore[attr-defined]
        request.membership = membership  # type: ignore[attr-defined]
        request._tenant_tokens = (set_tenant(tenant), tenant_slug_var.set(tenant.slug))  # type: ignore[attr-defined]
        return None
