"""/scim/v2/: the SCIM 2.0 service provider (RFC 7644) for Users and Groups, one base URL for every tenant.

The tenant comes from the bearer token (`Authorization: Bearer hubs_<prefix>_<secret>`); a resource of
another tenant does not exist (404). Every answer is application/scim+json (or application/json when asked
for), every refusal the SCIM error envelope; bodies over HUB_SCIM_MAX_BODY_BYTES get 413 before they are
read, and `count` is capped at HUB_SCIM_MAX_RESULTS. Views parse and answer; the services write.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from drf_spectacular.openapi import AutoSchema
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.models import ScimToken
from apps.accounts.scim import discovery, protocol
from apps.accounts.scim import selectors as scim_selectors
from apps.accounts.scim.errors import ScimError, invalid_value, not_found
from apps.accounts.scim.filters import filter_query
from apps.accounts.services import scim as svc
from apps.core import deadlines
from apps.core.public import public_base_url
from apps.core.ratelimit import rate_bucket, rate_charge, retry_after_seconds
from apps.core.views import record_unavailable
from apps.observability import metrics
from apps.tenants.authentication import enter_tenant

logger = logging.getLogger(__name__)
_MAX_TOKEN_LENGTH = 200
MAX_START_INDEX = 10_000_000  # far beyond any tenant; keeps OFFSET within range
RATE_NAMESPACE = "scim-rate"
_OUTCOMES = {
    401: "unauthorized",
    403: "unauthorized",
    404: "not_found",
    409: "conflict",
    413: "too_large",
    429: "rate_limited",
}


class ScimRenderer(JSONRenderer):
    media_type = "application/scim+json"


class ScimParser(JSONParser):
    media_type = "application/scim+json"


class ScimTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer hubs_…`: the tenant's SCIM token; unknown, revoked or expired: 401."""

    def authenticate(self, request: Request) -> tuple[svc.ScimClient, ScimToken] | None:
        parts = get_authorization_header(request).split()
        if not parts:
            return None
        if parts[0].lower() != b"bearer" or len(parts) != 2 or len(parts[1]) > _MAX_TOKEN_LENGTH:
            raise exceptions.AuthenticationFailed("Malformed Authorization header: use “Bearer <token>”.")
        try:
            plaintext = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        scheme, _sep, rest = plaintext.partition("_")
        if scheme != svc.SCIM_TOKEN_SCHEME or "_" not in rest:
            raise exceptions.AuthenticationFailed("Invalid token.")
        token = (
            ScimToken.objects.select_related("tenant__home_region")
            .filter(token_hash=svc.scim_token_hash(plaintext))
            .first()
        )
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed("This token has been revoked.")
        if token.expires_at is not None and token.expires_at <= timezone.now():
            raise exceptions.AuthenticationFailed("This token has expired.")
        if not token.tenant.is_active:
            raise exceptions.AuthenticationFailed("The token's tenant is not active.")
        svc.scim_token_touch(token=token)
        enter_tenant(request, token.tenant)
        return svc.ScimClient(token), token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="scim"'


def _throttle(token: ScimToken) -> None:
    """Hold each SCIM token to HUB_SCIM_RATE_PER_TOKEN, so one IdP's bulk sync cannot take the web processes.

    A Redis token bucket per token (apps/core/ratelimit.py, shared by every process): a limit of N per T is a
    burst of N refilled at N/T per second. Unlike the fixed window it replaced, a client can no longer send 2N
    across a window boundary, nor is it shut out until the window ends: past its burst it gets one request per
    T/N seconds, and Retry-After is the wait for the next token (1 s at 1200/min), not the rest of the window.
    A refused request costs nothing. Without Redis the shared policy holds: open for
    HUB_CHAT_RATE_FAIL_OPEN_SECONDS, then 503 with Retry-After (the exception handler answers it).
    """
    bucket = rate_bucket(RATE_NAMESPACE, "token", token.pk, settings.HUB_SCIM_RATE_PER_TOKEN)
    refused, wait = rate_charge([bucket])
    if refused is not None:
        metrics.record_rate_limit_hit("scim_token")
        raise ScimError(
            429, "Too many requests for this token; slow down.", retry_after=retry_after_seconds(wait)
        )


def scim_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every refusal as a SCIM error; a dependency that is down as 503 with Retry-After."""
    headers: dict[str, str] = {}
    if isinstance(exc, ScimError):
        error = exc
        if exc.retry_after:
            headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        error = ScimError(401, str(exc.detail))
        headers["WWW-Authenticate"] = 'Bearer realm="scim"'
    elif isinstance(exc, exceptions.ParseError):
        error = ScimError(400, "The request body is not valid JSON.", "invalidSyntax")
    elif isinstance(exc, exceptions.APIException):
        error = ScimError(exc.status_code, str(exc.detail))
    elif record_unavailable(exc) is not None:
        error = ScimError(503, "A service the hub depends on is unavailable; try again shortly.")
        headers["Retry-After"] = str(deadlines.retry_after())
    else:
        return None  # a bug: handler500, never a trace
    return Response(error.body(), status=error.status, headers=headers)


class _NotInOpenApi(AutoSchema):
    """SCIM describes itself (ServiceProviderConfig, ResourceTypes, Schemas: RFC 7644 §4), not in OpenAPI."""

    def is_excluded(self) -> bool:
        return True


class ScimView(APIView):
    schema = _NotInOpenApi()
    authentication_classes = [ScimTokenAuthentication]
    permission_classes = [IsAuthenticated]
    renderer_classes = [ScimRenderer, JSONRenderer]
    parser_classes = [ScimParser, JSONParser]
    #: action label per HTTP method, for the metric
    actions: dict[str, str] = {}

    def get_exception_handler(self) -> Any:
        return scim_exception_handler

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise ScimError(400, "Invalid Content-Length.", "invalidSyntax") from None
        if length > settings.HUB_SCIM_MAX_BODY_BYTES:
            raise ScimError(413, "The request body is too large.")
        super().initial(request, *args, **kwargs)
        _throttle(request.auth)  # type: ignore[arg-type]  # ScimTokenAuthentication set it

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        status = response.status_code
        outcome = "ok" if status < 400 else _OUTCOMES.get(status, "invalid" if status < 500 else "error")
        if status == 503:
            outcome = "unavailable"
        metrics.record_scim_request(action=self.actions.get(request.method or "", "unknown"), outcome=outcome)
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        return response

    # helpers
    @property
    def tenant(self) -> Any:
        client: svc.ScimClient = self.request.user  # type: ignore[assignment]  # set by the authentication
        return client.tenant

    def base(self) -> str:
        return f"{public_base_url(self.request._request)}/scim/v2"

    def body(self) -> Any:
        return self.request.data

    def paging(self) -> tuple[int, int]:
        """(startIndex, count) per RFC 7644 §3.4.2.4: 1-based; count capped at the maximum, never negative."""
        values = []
        for name, default in (("startIndex", 1), ("count", settings.HUB_SCIM_MAX_RESULTS)):
            raw = self.request.query_params.get(name, "")
            try:
                values.append(int(raw) if raw.strip() else default)
            except ValueError:
                raise invalid_value(f"{name} must be a whole number.") from None
        start, count = values
        if start > MAX_START_INDEX:
            raise invalid_value("startIndex is too large.")
        return max(start, 1), min(max(count, 0), settings.HUB_SCIM_MAX_RESULTS)

    def projected(self, resource: dict[str, Any]) -> dict[str, Any]:
        params = self.request.query_params
        return protocol.project(
            resource, attributes=params.get("attributes", ""), excluded=params.get("excludedAttributes", "")
        )

    def filtered(self, resource: str) -> Q | None:
        text = self.request.query_params.get("filter", "").strip()
        return filter_query(text, resource=resource) if text else None

    def listed(self, queryset: Any, render: Any) -> Response:
        start, count = self.paging()
        total = queryset.count()
        rows = list(queryset[start - 1 : start - 1 + count]) if count else []
        resources = [self.projected(render(row)) for row in rows]
        return Response(protocol.list_response(resources, total=total, start=start))


def _excludes_members(request: HttpRequest | Request) -> bool:
    params = request.query_params if isinstance(request, Request) else request.GET
    excluded = {a.strip().lower() for a in params.get("excludedAttributes", "").split(",")}
    attributes = {a.strip().lower() for a in params.get("attributes", "").split(",") if a.strip()}
    return "members" in excluded or bool(attributes and "members" not in attributes)


# --- discovery ---------------------------------------------------------------------------------------------
class ServiceProviderConfigView(ScimView):
    actions = {"GET": "discovery"}

    def get(self, request: Request) -> Response:
        return Response(
            discovery.service_provider_config(
                base=self.base(),
                max_results=settings.HUB_SCIM_MAX_RESULTS,
                max_bytes=settings.HUB_SCIM_MAX_BODY_BYTES,
            )
        )


class ResourceTypesView(ScimView):
    actions = {"GET": "discovery"}

    def get(self, request: Request, name: str = "") -> Response:
        types = discovery.resource_types(base=self.base())
        if name:
            found = next((t for t in types if t["id"] == name), None)
            if found is None:
                raise not_found()
            return Response(found)
        return Response(protocol.list_response(types, total=len(types), start=1))


class SchemasView(ScimView):
    actions = {"GET": "discovery"}

    def get(self, request: Request, urn: str = "") -> Response:
        schemas = discovery.schemas(base=self.base())
        if urn:
            found = next((s for s in schemas if s["id"] == urn), None)
            if found is None:
                raise not_found()
            return Response(found)
        return Response(protocol.list_response(schemas, total=len(schemas), start=1))


# --- users -------------------------------------------------------------------------------------------------
class UsersView(ScimView):
    actions = {"GET": "users_list", "POST": "user_create"}

    def get(self, request: Request) -> Response:
        queryset = scim_selectors.scim_users(tenant=self.tenant, query=self.filtered("User"))
        return self.listed(queryset, lambda u: protocol.user_resource(u, base=self.base()))

    def post(self, request: Request) -> Response:
        data = protocol.user_data_from_body(self.body())
        scim_user = svc.scim_user_create(tenant=self.tenant, data=data, actor=request.user, request=request)
        resource = protocol.user_resource(scim_user, base=self.base())
        return Response(resource, status=201, headers={"Location": resource["meta"]["location"]})


class UserDetailView(ScimView):
    actions = {"GET": "user_get", "PUT": "user_replace", "PATCH": "user_patch", "DELETE": "user_delete"}

    def scim_user(self, scim_id: str) -> Any:
        found = scim_selectors.scim_user_get(tenant=self.tenant, scim_id=scim_id)
        if found is None:
            raise not_found()
        return found

    def answer(self, scim_id: str) -> Response:
        return Response(self.projected(protocol.user_resource(self.scim_user(scim_id), base=self.base())))

    def get(self, request: Request, scim_id: str) -> Response:
        return self.answer(scim_id)

    def put(self, request: Request, scim_id: str) -> Response:
        scim_user = self.scim_user(scim_id)
        data = protocol.user_data_from_body(self.body(), current=svc.user_data(scim_user))
        svc.scim_user_update(scim_user=scim_user, data=data, actor=request.user, request=request)
        return self.answer(scim_id)

    def patch(self, request: Request, scim_id: str) -> Response:
        scim_user = self.scim_user(scim_id)
        data = protocol.user_data_patched(svc.user_data(scim_user), self.body())
        svc.scim_user_update(scim_user=scim_user, data=data, actor=request.user, request=request)
        return self.answer(scim_id)

    def delete(self, request: Request, scim_id: str) -> Response:
        svc.scim_user_delete(scim_user=self.scim_user(scim_id), actor=request.user, request=request)
        return Response(status=204)


# --- groups ------------------------------------------------------------------------------------------------
class GroupsView(ScimView):
    actions = {"GET": "groups_list", "POST": "group_create"}

    def get(self, request: Request) -> Response:
        members = not _excludes_members(request)
        queryset = scim_selectors.scim_groups(
            tenant=self.tenant, query=self.filtered("Group"), members=members
        )
        return self.listed(queryset, lambda g: protocol.group_resource(g, base=self.base(), members=members))

    def post(self, request: Request) -> Response:
        data = protocol.group_data_from_body(self.body())
        group = svc.scim_group_create(tenant=self.tenant, data=data, actor=request.user, request=request)
        fresh = scim_selectors.scim_group_get(tenant=self.tenant, scim_id=str(group.scim_id))
        resource = protocol.group_resource(fresh or group, base=self.base())
        return Response(resource, status=201, headers={"Location": resource["meta"]["location"]})


class GroupDetailView(ScimView):
    actions = {"GET": "group_get", "PUT": "group_replace", "PATCH": "group_patch", "DELETE": "group_delete"}

    def group(self, scim_id: str, *, members: bool = True) -> Any:
        found = scim_selectors.scim_group_get(tenant=self.tenant, scim_id=scim_id, members=members)
        if found is None:
            raise not_found()
        return found

    def answer(self, scim_id: str) -> Response:
        members = not _excludes_members(self.request)
        group = self.group(scim_id, members=members)
        return Response(self.projected(protocol.group_resource(group, base=self.base(), members=members)))

    def get(self, request: Request, scim_id: str) -> Response:
        return self.answer(scim_id)

    def put(self, request: Request, scim_id: str) -> Response:
        group = self.group(scim_id)
        data = protocol.group_data_from_body(self.body())
        change = protocol.GroupChange(
            display_name=data.display_name,
            external_id=data.external_id,
            replace_members=list(data.members) if data.members is not None else None,
        )
        svc.scim_group_update(group=group, change=change, actor=request.user, request=request)
        return self.answer(scim_id)

    def patch(self, request: Request, scim_id: str) -> Response:
        group = self.group(scim_id)
        change = protocol.group_change(self.body())
        svc.scim_group_update(group=group, change=change, actor=request.user, request=request)
        return self.answer(scim_id)

    def delete(self, request: Request, scim_id: str) -> Response:
        svc.scim_group_delete(group=self.group(scim_id), actor=request.user, request=request)
        return Response(status=204)


class NotFoundView(ScimView):
    """Anything else under /scim/v2/: a SCIM 404 (after authentication: no probing without a token)."""

    def get(self, request: Request) -> Response:
        raise not_found()

    post = put = patch = delete = get
