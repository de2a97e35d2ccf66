"""Bearer-token authentication for the management API: tenant-scoped tokens that act as one member.

A request with `Authorization: Bearer hubm_<prefix>_<secret>` is authenticated as the token's user, limited
to the token's tenant: the API views answer 404 for any other tenant. Authentication also sets the tenant
context (the silo router needs it) for the rest of the request.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from apps.core.context import TenantRef, set_tenant
from apps.observability.logging import tenant_slug_var
from apps.tenants.models import ManagementToken, Membership, Tenant
from apps.tenants.services import MANAGEMENT_TOKEN_SCHEME, management_token_hash, management_token_touch

KEYWORD = "Bearer"
_MAX_TOKEN_LENGTH = 200


class ManagementTokenAuthentication(BaseAuthentication):
    """Authenticate `Authorization: Bearer <management token>`; refuse unknown, expired or revoked tokens.

    Requests without a Bearer header are left to the next authentication class (the session).
    """

    def authenticate(self, request: Request) -> tuple[Any, ManagementToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != KEYWORD.lower().encode():
            return None
        if len(parts) != 2:
            raise AuthenticationFailed(_("Malformed Authorization header: use “Bearer <token>”."))
        try:
            plaintext = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed(_("Invalid token.")) from None
        token = self._lookup(plaintext)
        now = timezone.now()
        if token.revoked_at is not None:
            raise AuthenticationFailed(_("This token has been revoked."))
        if token.expires_at is not None and token.expires_at <= now:
            raise AuthenticationFailed(_("This token has expired."))
        user = token.user
        if not user.is_active:
            raise AuthenticationFailed(_("The token's user is inactive."))
        if not token.tenant.is_active and not user.is_staff:
            raise AuthenticationFailed(_("The token's tenant is not active."))
        if not user.is_staff and not Membership.objects.filter(tenant=token.tenant, user=user).exists():
            raise AuthenticationFailed(_("The token's user is no longer a member of its tenant."))
        management_token_touch(token=token)
        enter_tenant(request, token.tenant)
        return user, token

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD

    @staticmethod
    def _lookup(plaintext: str) -> ManagementToken:
        scheme, _sep, rest = plaintext.partition("_")
        if scheme != MANAGEMENT_TOKEN_SCHEME or "_" not in rest or len(plaintext) > _MAX_TOKEN_LENGTH:
            raise AuthenticationFailed(_("Invalid token."))
        token = (
            ManagementToken.objects.select_related("user", "tenant__home_region")
            .filter(token_hash=management_token_hash(plaintext))
            .first()
        )
        if token is None:
            raise AuthenticationFailed(_("Invalid token."))
        return token


def enter_tenant(request: Request, tenant: Tenant | TenantRef) -> None:
    """Set the tenant context for the rest of an API request, once.

    TenantMiddleware resets whatever `_tenant_tokens` holds when the request ends, as for console pages.
    """
    django_request = request._request
    if getattr(django_request, "_tenant_tokens", None) is None:
        django_request._tenant_tokens = (  # type: ignore[attr-defined]
            set_tenant(tenant),
            tenant_slug_var.set(tenant.slug),
        )


class ManagementTokenScheme(OpenApiAuthenticationExtension):
    """Describe the management token in the OpenAPI schema as an HTTP bearer scheme."""

    target_class = "apps.tenants.authentication.ManagementTokenAuthentication"
    name = "managementToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "hubm_<prefix>_<secret>",
            "description": (
                "A tenant-scoped management token, created by a tenant admin in the console under "
                "/t/<tenant>/api-tokens/. It acts as its user, with that user's role, in its tenant only."
            ),
        }
