"""Management API of the access review: /api/v1/tenants/{slug}/access-review/ (`view_audit`).

The same report as the console page (JSON, with its digest and the last sign-off) and the same sign-off
action, for compliance officers and admins with a management token or a session.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.models import AccessReview
from apps.accounts.selectors import access_review_digest, access_review_list, access_review_report
from apps.accounts.services.access_review import (
    NOTE_MAX_LENGTH,
    access_review_complete,
    access_review_view_record,
)
from apps.core.context import tenant_context
from apps.tenants import roles
from apps.tenants.api_base import TENANT_PARAM, StrictSerializer, TenantScopedView, service_errors
from apps.tenants.api_base import error_responses as _errors


class AccessReviewGrantSerializer(serializers.Serializer):
    type = serializers.CharField(help_text="Kind of object, e.g. connection.")
    id = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # a field named like Field.label
    permission = serializers.CharField(help_text="Guardian permission codename.")


class AccessReviewPersonSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.CharField()
    last_sign_in = serializers.CharField(allow_null=True, help_text="Password or single sign-on, UTC.")
    two_factor = serializers.ListField(
        child=serializers.CharField(), help_text="Confirmed second factors: totp, backup_codes; empty: none."
    )
    active = serializers.BooleanField()


class AccessReviewMemberSerializer(AccessReviewPersonSerializer):
    role = serializers.CharField()
    permissions = serializers.ListField(child=serializers.CharField(), help_text="What the role grants.")
    member_since = serializers.CharField()
    object_grants = AccessReviewGrantSerializer(many=True)
    managed_by = serializers.CharField(help_text="local, sso or scim.")
    break_glass = serializers.BooleanField()
    flags = serializers.ListField(child=serializers.CharField(), help_text="missing_2fa, dormant.")


class AccessReviewCredentialSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="management, scim or chat_api_key.")
    id = serializers.CharField()
    name = serializers.CharField()
    prefix = serializers.CharField()
    owner = serializers.CharField()
    scope = serializers.CharField()
    created = serializers.CharField()
    expires = serializers.CharField(allow_null=True)
    last_used = serializers.CharField(allow_null=True)
    revoked = serializers.CharField(allow_null=True)
    active = serializers.BooleanField()
    flags = serializers.ListField(child=serializers.CharField(), help_text="token_unused, token_no_expiry.")


class AccessReviewSignOffSerializer(serializers.ModelSerializer):
    reviewer = serializers.CharField(source="reviewer_label")

    class Meta:
        model = AccessReview
        fields = ["id", "reviewer", "created_at", "digest", "counts", "flags_count", "note", "audit_seq"]
        read_only_fields = fields


class AccessReviewReportSerializer(serializers.Serializer):
    tenant = serializers.CharField()
    as_of = serializers.DateField()
    stale_days = serializers.IntegerField()
    members = AccessReviewMemberSerializer(many=True)
    operators = AccessReviewPersonSerializer(
        many=True, help_text="Platform operators: they can reach every tenant."
    )
    tokens = AccessReviewCredentialSerializer(many=True)
    counts = serializers.DictField(child=serializers.IntegerField())
    digest = serializers.CharField(help_text="SHA-256 of the report's canonical JSON (without these extras).")
    generated_at = serializers.DateTimeField()
    last_review = AccessReviewSignOffSerializer(allow_null=True)


class AccessReviewCompleteRequestSerializer(StrictSerializer):
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=NOTE_MAX_LENGTH)


@extend_schema(tags=["access-review"], parameters=[TENANT_PARAM])
class AccessReviewView(TenantScopedView):
    """Who can do what in the tenant (`view_audit`); recorded as `access_review.viewed`, repeats left out."""

    serializer_class = AccessReviewReportSerializer

    @extend_schema(
        summary="The access review report",
        description=(
            "Recorded as an `access_review.viewed` audit event with the report digest and `via`; the same "
            "caller through the same token (or session) again within HUB_AUDIT_READ_DEDUPE_SECONDS adds none."
        ),
        responses={200: AccessReviewReportSerializer, **_errors(401, 403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        self.require(roles.VIEW_AUDIT)
        report: dict[str, Any] = access_review_report(tenant=self.tenant)
        digest = access_review_digest(report)
        with tenant_context(self.tenant):
            reviews = access_review_list(limit=1)
        data = {
            **report,
            "digest": digest,
            "generated_at": timezone.now(),
            "last_review": reviews[0] if reviews else None,
        }
        access_review_view_record(
            tenant=self.tenant, actor=request.user, digest=digest, via=self.via(), request=request._request
        )
        return Response(AccessReviewReportSerializer(data).data)


@extend_schema(tags=["access-review"], parameters=[TENANT_PARAM])
class AccessReviewCompleteView(TenantScopedView):
    """Record the caller's sign-off on the report as it is now (`view_audit`)."""

    serializer_class = AccessReviewCompleteRequestSerializer

    @extend_schema(
        summary="Complete the access review (sign-off in the audit log)",
        request=AccessReviewCompleteRequestSerializer,
        responses={201: AccessReviewSignOffSerializer, **_errors(400, 401, 403, 404)},
    )
    def post(self, request: Request, slug: str) -> Response:
        self.require(roles.VIEW_AUDIT)
        note = self.validated(AccessReviewCompleteRequestSerializer)["note"]
        with service_errors():
            review = access_review_complete(tenant=self.tenant, note=note, **self.writer())
        return Response(AccessReviewSignOffSerializer(review).data, status=status.HTTP_201_CREATED)
