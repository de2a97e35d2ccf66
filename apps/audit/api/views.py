"""The audit API: the tenant's chain page by page, one event, and verification (whole or a range).

Who: a member whose role grants `view_audit` (compliance officers, admins), signed in or through a management
token; other members 403, another tenant 404. Every page served is recorded as one `audit.read` event
(apps/audit/services.audit_read_record: after the page is built, repeats left out), a verification as
`audit.verified`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django_filters.utils import translate_validation
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.mixins import ListModelMixin
from rest_framework.request import Request
from rest_framework.response import Response

from apps.audit.api.filters import MAX_BIGINT, AuditEventFilter
from apps.audit.api.pagination import SeqCursorPagination
from apps.audit.api.serializers import (
    AnchorSerializer,
    AuditEventSerializer,
    VerifyRequestSerializer,
    VerifyResultSerializer,
)
from apps.audit.models import AuditEvent, Outcome
from apps.audit.selectors import audit_event_get, audit_event_list, audit_head, audit_latest_anchor
from apps.audit.services import audit_read_record, audit_verify
from apps.core.buckets import TokenBucket
from apps.tenants import roles
from apps.tenants.api_base import TENANT_PARAM, TenantScopedView
from apps.tenants.api_base import error_responses as _errors
from apps.tenants.models import Tenant
from apps.tenants.ratelimit import ManagementRateThrottle, api_bucket

SEQ_PARAM = OpenApiParameter(
    "seq", OpenApiTypes.INT, OpenApiParameter.PATH, description="The event's position in the chain."
)


# The django-filter schema extension builds a queryset from the model's default manager, which needs a tenant
# context: the list filters itself (AuditEventFilter) and documents the filters here.
FILTER_PARAMS = [
    OpenApiParameter(
        "since",
        OpenApiTypes.DATETIME,
        description="Events at or after this time (ISO 8601; UTC without offset).",
    ),
    OpenApiParameter(
        "until", OpenApiTypes.DATETIME, description="Events before this time (ISO 8601; UTC without offset)."
    ),
    OpenApiParameter("actor", OpenApiTypes.STR, description="A user id, or an exact user name."),
    OpenApiParameter(
        "action",
        OpenApiTypes.STR,
        description="An action, exact (`member.role_changed`), or a prefix followed by `.*` (`member.*`).",
    ),
    OpenApiParameter("target_type", OpenApiTypes.STR, description="Target type, exact (`membership`)."),
    OpenApiParameter("target_id", OpenApiTypes.STR, description="Target id, exact."),
    OpenApiParameter("outcome", OpenApiTypes.STR, enum=Outcome.values, description="The event's outcome."),
]


class AuditView(TenantScopedView):
    filter_backends: list[Any] = []


@extend_schema(tags=["audit"], parameters=[TENANT_PARAM])
class AuditEventListView(ListModelMixin, AuditView):
    """The tenant's audit events, filtered, a page at a time by sequence number."""

    serializer_class = AuditEventSerializer
    pagination_class = SeqCursorPagination

    def get_queryset(self) -> QuerySet[AuditEvent]:
        if getattr(self, "swagger_fake_view", False):
            return AuditEvent.all_tenants.none()
        return audit_event_list()

    @extend_schema(
        summary="List audit events",
        description=(
            "Newest first by default (`order=oldest` for the other way). Follow `next` to page: it carries "
            "the cursor (`before` newest first, `after` oldest first), so pages stay gapless and without "
            "duplicates while events are appended. Poll for new events with `order=oldest&after=<last "
            "seq>`. Each page served is recorded as one `audit.read` event."
        ),
        parameters=FILTER_PARAMS,
        responses={200: AuditEventSerializer(many=True), **_errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        self.require(roles.VIEW_AUDIT)
        filterset = AuditEventFilter(request.query_params, queryset=self.get_queryset(), request=request)
        if not filterset.is_valid():
            raise translate_validation(filterset.errors)
        paginator = SeqCursorPagination()
        page = paginator.paginate(filterset.qs, request)
        response = paginator.get_paginated_response(AuditEventSerializer(page, many=True).data)
        filters = {k: v for k, v in filterset.form.cleaned_data.items() if v not in (None, "")}
        audit_read_record(
            tenant=self.tenant,
            actor=request.user,
            request=request._request,
            filters=filters,
            order=paginator.order,
            events=page,
            via=self.via(),
        )
        return response


@extend_schema(tags=["audit"], parameters=[TENANT_PARAM, SEQ_PARAM])
class AuditEventDetailView(AuditView):
    """One event of the tenant's chain by its sequence number."""

    serializer_class = AuditEventSerializer

    @extend_schema(
        summary="Get an audit event",
        responses={200: AuditEventSerializer, **_errors(401, 403, 404)},
    )
    def get(self, request: Request, slug: str, seq: int) -> Response:
        self.require(roles.VIEW_AUDIT)
        event = audit_event_get(seq=seq) if seq <= MAX_BIGINT else None
        if event is None:
            raise NotFound
        data = AuditEventSerializer(event).data
        audit_read_record(
            tenant=self.tenant,
            actor=request.user,
            request=request._request,
            filters={"seq": seq},
            events=[event],
            via=self.via(),
        )
        return Response(data)


class VerifyRateThrottle(ManagementRateThrottle):
    """The management API's limits plus HUB_API_RATE_VERIFY per tenant: a verify re-hashes the whole chain
    inside the request, the dearest call there is."""

    def extra_limits(self, tenant: Tenant) -> list[tuple[str, TokenBucket]]:
        return [("audit_verify", api_bucket("audit-verify", tenant.pk, settings.HUB_API_RATE_VERIFY))]


@extend_schema(tags=["audit"], parameters=[TENANT_PARAM])
class AuditVerifyView(AuditView):
    """Recompute the tenant's chain, whole or a range, against its signed anchors."""

    serializer_class = VerifyResultSerializer
    throttle_classes = [VerifyRateThrottle]

    @extend_schema(
        summary="Verify the audit chain",
        description=(
            "Without a body, the whole chain: every link from the genesis (or the last purge checkpoint), "
            "and the signed anchors (a deleted tail is detected); an intact chain gets its head anchored. "
            "With `from_seq`/`to_seq` (either may be left out), only that range: its links, and that its "
            "first event links to the event before it. The check is recorded as an `audit.verified` event. "
            "A broken chain is still a 200 answer, with `ok: false`."
        ),
        request=VerifyRequestSerializer,
        responses={
            200: VerifyResultSerializer,
            **_errors(400, 401, 403, 404),
            429: OpenApiResponse(
                description=(
                    "Rate limit of the token (or user), of the tenant, or the tenant's stricter limit of "
                    "verifications reached; see `Retry-After`."
                )
            ),
        },
        examples=[
            OpenApiExample("A range", value={"from_seq": 1000, "to_seq": 2000}, request_only=True),
        ],
    )
    def post(self, request: Request, slug: str) -> Response:
        self.require(roles.VIEW_AUDIT)
        serializer = VerifyRequestSerializer(data=request.data or {})
        serializer.is_valid(raise_exception=True)
        first, last = serializer.validated_data.get("from_seq"), serializer.validated_data.get("to_seq")
        head = audit_head(tenant=self.tenant)
        result = audit_verify(
            tenant=self.tenant,
            actor=request.user,
            request=request._request,
            from_seq=first,
            to_seq=last,
            via=self.via(),
        )
        anchor = audit_latest_anchor(tenant=self.tenant)
        body = {
            "ok": result.ok,
            "checked": result.checked,
            "broken_seq": result.broken_seq,
            "reason": result.reason,
            "kind": result.kind,
            "from_seq": first,
            "to_seq": last,
            "head": {"seq": head[0], "hash": head[1]} if head else None,
            "anchor": AnchorSerializer(anchor).data if anchor is not None else None,
        }
        return Response(body)
