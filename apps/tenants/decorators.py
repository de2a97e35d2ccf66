"""View decorators for tenant pages (the TenantMiddleware has already resolved request.tenant)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse

from apps.tenants import roles


def tenant_permission_required(
    perm: str,
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Allow members whose role grants `perm`; other members get 403, non-members already got 404."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            tenant = getattr(request, "tenant", None)
            if tenant is None:
                raise Http404
            if not roles.can(request.user, request.membership, perm):  # type: ignore[attr-defined]
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def operator_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Platform operators only; to anyone else the page does not exist."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not (request.user.is_authenticated and request.user.is_staff and request.user.is_active):
            raise Http404
        return view(request, *args, **kwargs)

    return wrapper
