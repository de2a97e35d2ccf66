"""The base every management API endpoint builds on, whichever app serves it (tenants, chat, integrations).

`/api/v1/tenants/{slug}/...` endpoints subclass TenantScopedView, document their errors with
`error_responses`, turn a service's refusal into a 400 with `service_errors` and validate with
StrictSerializer. API packages import these from here, never from each other (a contract in pyproject.toml).
Project-wide DRF hooks named in the settings (exception handler, paging) are in apps/core/api.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers
from rest_framework.exceptions import NotAuthenticated, NotFound, PermissionDenied
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request

from apps.core.errors import ValidationFailed
from apps.tenants import roles
from apps.tenants.authentication import enter_tenant
from apps.tenants.models import ManagementToken, Membership, Tenant
from apps.tenants.ratelimit import ManagementRateThrottle
from apps.tenants.sso import sso_blocks

TENANT_PARAM = OpenApiParameter("slug", OpenApiTypes.STR, OpenApiParameter.PATH, description="Tenant slug.")
ERROR_RESPONSES: dict[int, OpenApiResponse] = {
    400: OpenApiResponse(description="Invalid input: field errors, or `Unknown field.` for extra fields."),
    401: OpenApiResponse(description="Not authenticated, or the token is unknown, expired or revoked."),
    403: OpenApiResponse(description="The caller's role does not allow this."),
    404: OpenApiResponse(description="No such tenant or object for this caller."),
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """The documented error answers of an operation, for `extend_schema(responses=...)`."""
    return {code: ERROR_RESPONSES[code] for code in codes}


@contextmanager
def service_errors() -> Iterator[None]:
    """Report a service's refusal of input as a 400 with field errors, the same shape serializers use."""
    try:
        yield
    except ValidationFailed as exc:
        raise serializers.ValidationError(exc.errors or {"non_field_errors": [str(exc)]}) from None
    except DjangoValidationError as exc:
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        raise serializers.ValidationError(detail) from None


def request_token(request: Request) -> ManagementToken | None:
    """The management token the request authenticated with, if any (else a signed-in session)."""
    return request.auth if isinstance(request.auth, ManagementToken) else None


class TenantScopedView(GenericAPIView):
    """Base of every `/tenants/{slug}/...` endpoint: resolves the tenant, the membership and the context."""

    tenant: Tenant
    membership: Membership | None
    throttle_classes = [ManagementRateThrottle]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authentication, permission, the caller's rate limit
        self.tenant, self.membership = self._resolve_tenant(request, kwargs["slug"])
        # The tenant's rate limit, once the caller may see the tenant: a request for another tenant (404)
        # never spends that tenant's budget.
        self.check_throttles(request)

    @staticmethod
    def _resolve_tenant(request: Request, slug: str) -> tuple[Tenant, Membership | None]:
        user = request.user
        token = request_token(request)
        if token is not None:
            if token.tenant.slug != slug:
                raise NotFound
            tenant: Tenant | None = token.tenant
        else:
            tenant = Tenant.objects.select_related("home_region").filter(slug=slug).first()
            if tenant is not None and not tenant.is_active and not user.is_staff:
                tenant = None
        if tenant is None:
            raise NotFound
        if not user.is_authenticated:
            raise NotAuthenticated
        membership = Membership.objects.filter(tenant=tenant, user=user).first()
        if membership is None and not user.is_staff:
            raise NotFound
        if token is None and sso_blocks(
            user=user, session=getattr(request, "session", None), tenant=tenant, membership=membership
        ):
            raise PermissionDenied(
                _("This tenant requires single sign-on: sign in through its identity provider.")
            )
        enter_tenant(request, tenant)
        return tenant, membership

    def require(self, perm: str) -> None:
        """Refuse with 403 unless the caller's role here grants `perm` (the same rule as the console)."""
        if not roles.can(self.request.user, self.membership, perm):
            raise PermissionDenied(_("Your role in this tenant does not allow this."))

    def via(self) -> dict[str, Any]:
        """How the caller came in, as read events record it: a management token by its id (`via_id`; a key
        named "token" would be censored), or a console session."""
        token = request_token(self.request)
        return {"via": "token", "via_id": token.pk} if token is not None else {"via": "session"}

    def validated(self, serializer_class: type[serializers.Serializer]) -> dict[str, Any]:
        """The request body as `serializer_class` checked it; a 400 with field errors otherwise."""
        serializer = serializer_class(data=self.request.data)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def writer(self) -> dict[str, Any]:
        """Who writes, as the services audit it: the API's user and request."""
        return {"actor": self.request.user, "request": self.request._request}


class StrictSerializer(serializers.Serializer):
    """Refuse fields the endpoint does not accept instead of silently ignoring them (a typo is an error).

    `immutable_fields` names fields the resource has but this request may not set, for a clearer message.
    """

    immutable_fields: tuple[str, ...] = ()

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            known = set(self.fields) | set(self.immutable_fields)
            errors = {
                key: [_("This field cannot be changed.") if key in known else _("Unknown field.")]
                for key in data
                if key not in writable
            }
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)
