"""Management API rate limits: per caller (a management token, or a console session's user) and per tenant.

A leaked or buggy token must not be able to hammer the API, and one tenant's callers together must not take
more than their share of the web processes. The buckets and their Redis-down policy (fail open for a bounded
window, then 503) are apps/core/ratelimit.py's, the same as the chat API's.

The throttle is checked twice per request of a TenantScopedView (apps/tenants/api_base.py): by DRF before the
tenant is resolved, which charges the caller's bucket (so a token probing other tenants' URLs is limited
too), and again once the caller may see the tenant, which charges the tenant's. A caller refused its own
limit never reaches the second check, so one that keeps calling after its 429 spends nothing of its tenant's
budget, and a request for a tenant the caller cannot see (404) spends nothing of that tenant's. A costly
endpoint adds buckets with `extra_limits`, charged before the tenant's (the audit chain verify:
HUB_API_RATE_VERIFY per tenant).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from apps.core.buckets import TokenBucket
from apps.core.ratelimit import rate_bucket, rate_charge
from apps.observability import metrics
from apps.tenants.models import ManagementToken, Tenant

NAMESPACE = "api-rate"


def api_bucket(scope: str, ident: Any, rate: tuple[int, int]) -> TokenBucket:
    """The shared bucket of one management API caller or tenant."""
    return rate_bucket(NAMESPACE, scope, ident, rate)


class ManagementRateThrottle(BaseThrottle):
    """HUB_API_RATE_PER_TOKEN per token or session user before the tenant is known; once it is, any
    `extra_limits` and HUB_API_RATE_PER_TENANT (shared by all the tenant's callers) in one round trip."""

    def __init__(self) -> None:
        self._wait: float | None = None

    def extra_limits(self, tenant: Tenant) -> list[tuple[str, TokenBucket]]:
        """Buckets of a costly endpoint, as (metric scope, bucket), charged before the tenant's."""
        return []

    def allow_request(self, request: Request, view: Any) -> bool:
        if not request.user.is_authenticated:
            return True  # the permission answers 401
        tenant: Tenant | None = getattr(view, "tenant", None)
        if tenant is None:
            token = request.auth if isinstance(request.auth, ManagementToken) else None
            caller = f"token:{token.pk}" if token is not None else f"user:{request.user.pk}"
            limits = [("api_caller", api_bucket("caller", caller, settings.HUB_API_RATE_PER_TOKEN))]
        else:
            limits = self.extra_limits(tenant)
            limits.append(("api_tenant", api_bucket("tenant", tenant.pk, settings.HUB_API_RATE_PER_TENANT)))
        refused, wait = rate_charge([bucket for _scope, bucket in limits])
        if refused is None:
            return True
        self._wait = wait
        metrics.record_rate_limit_hit(next(scope for scope, bucket in limits if bucket is refused))
        return False

    def wait(self) -> float | None:
        return self._wait
