"""Data-subject request API: the console's register over HTTP, with the same services and permissions.

Compliance officers read (`view_policies`); admins register and act (`manage_settings`, as the console).
Identifiers go in, never out: responses name the subject by pseudonym, or masked to those who may act.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from django.db.models import QuerySet
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.mixins import ListModelMixin
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.context import tenant_context
from apps.core.errors import ValidationFailed
from apps.policies.api.serializers import (
    DsrCreateSerializer,
    DsrDetailSerializer,
    DsrExtendSerializer,
    DsrFilterSerializer,
    DsrHandleSerializer,
    DsrRejectSerializer,
    DsrSerializer,
)
from apps.policies.dsr import (
    dsr_archive_download,
    dsr_create,
    dsr_extend,
    dsr_notification_handle,
    dsr_reject,
    dsr_start,
)
from apps.policies.dsr_selectors import (
    dsr_deadline,
    dsr_get,
    dsr_has_archive,
    dsr_list,
    dsr_masked_identifiers,
)
from apps.policies.models import DataSubjectRequest
from apps.tenants import roles
from apps.tenants.api_base import TENANT_PARAM, TenantScopedView
from apps.tenants.api_base import error_responses as _errors

ID_PARAM = OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="Request id.")
TAGS = ["data-subject-requests"]
A = TypeVar("A", bound="DsrActionView")


@contextmanager
def dsr_errors() -> Iterator[None]:
    """A service's refusal as a 400 with field errors (its form-wide errors as `non_field_errors`)."""
    try:
        yield
    except ValidationFailed as exc:
        errors = {
            ("non_field_errors" if field == "__all__" else field): messages
            for field, messages in (exc.errors or {"__all__": [str(exc)]}).items()
        }
        raise serializers.ValidationError(errors) from None


class DsrScopedView(TenantScopedView):
    """A tenant-scoped endpoint of the register; reads need `view_policies`, actions `manage_settings`."""

    # The default django-filter backend would build a queryset outside the tenant context.
    filter_backends: list[Any] = []

    def get_dsr(self) -> DataSubjectRequest:
        with tenant_context(self.tenant):
            dsr = dsr_get(pk=self.kwargs["id"])
        if dsr is None:
            raise NotFound
        return dsr

    def detail(self, dsr: DataSubjectRequest, *, code: int = status.HTTP_200_OK) -> Response:
        """The detail body as the caller may see it (masked identifiers only to those who act)."""
        manager = roles.can(self.request.user, self.membership, roles.MANAGE_SETTINGS)
        with tenant_context(self.tenant):
            dsr = dsr_get(pk=dsr.pk) or dsr
            context = {
                "deadlines": {dsr.pk: dsr_deadline(dsr)},
                "identifiers": dsr_masked_identifiers(dsr) if manager else None,
                "has_archive": dsr_has_archive(pk=dsr.pk),
            }
        response = Response(DsrDetailSerializer(dsr, context=context).data, status=code)
        response["Cache-Control"] = "no-store"
        return response


@extend_schema(tags=TAGS, parameters=[TENANT_PARAM])
class DsrListView(ListModelMixin, DsrScopedView):
    """The request register: open requests by deadline first, then closed ones, latest first."""

    serializer_class = DsrSerializer

    def get_queryset(self) -> QuerySet[DataSubjectRequest]:
        if getattr(self, "swagger_fake_view", False):
            return DataSubjectRequest.all_tenants.none()
        filters = DsrFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return dsr_list(**filters.validated_data)

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "deadlines": getattr(self, "_deadlines", {})}

    @extend_schema(
        summary="List data-subject requests",
        parameters=[DsrFilterSerializer],
        responses={200: DsrSerializer(many=True), **_errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        self.require(roles.VIEW_POLICIES)
        with tenant_context(self.tenant):
            page = self.paginate_queryset(self.get_queryset())
            rows = list(page) if page is not None else []
            now = timezone.now()
            self._deadlines = {dsr.pk: dsr_deadline(dsr, now=now) for dsr in rows}
        return self.get_paginated_response(self.get_serializer(rows, many=True).data)

    @extend_schema(
        summary="Register a data-subject request",
        description="Due 30 days after it was received (GDPR art. 12(3)). Give at least one identifier; "
        "they are stored encrypted and never returned (the response names the subject by pseudonym).",
        request=DsrCreateSerializer,
        responses={201: DsrDetailSerializer, **_errors(400, 401, 403, 404)},
    )
    def post(self, request: Request, slug: str) -> Response:
        self.require(roles.MANAGE_SETTINGS)
        data = self.validated(DsrCreateSerializer)
        with dsr_errors():
            # Empty identifiers are absent ones (Subject.of).
            dsr = dsr_create(tenant=self.tenant, **data, **self.writer())
        return self.detail(dsr, code=status.HTTP_201_CREATED)


@extend_schema(tags=TAGS, parameters=[TENANT_PARAM, ID_PARAM])
class DsrDetailView(DsrScopedView):
    """One request: status, deadlines, evidence and the vendor notifications' states."""

    serializer_class = DsrDetailSerializer

    @extend_schema(
        summary="Get a data-subject request", responses={200: DsrDetailSerializer, **_errors(401, 403, 404)}
    )
    def get(self, request: Request, slug: str, id: str) -> Response:
        self.require(roles.VIEW_POLICIES)
        return self.detail(self.get_dsr())


class DsrActionView(DsrScopedView):
    """An action on one request (`manage_settings`), as the console's forms: `input_serializer` checks the
    body (None: the action takes none), `act` calls the service; a service's refusal is a 400 with field
    errors, else the answer is the request's detail."""

    input_serializer: type[serializers.Serializer] | None = None

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return self.input_serializer or DsrDetailSerializer

    def act(self, dsr: DataSubjectRequest, data: dict[str, Any]) -> DataSubjectRequest | None:
        """Call the action's service with the checked body (None: the request to show is `dsr` itself)."""
        raise NotImplementedError

    def post(self, request: Request, slug: str, id: str) -> Response:
        self.require(roles.MANAGE_SETTINGS)
        dsr = self.get_dsr()
        data = self.validated(self.input_serializer) if self.input_serializer else {}
        with dsr_errors():
            dsr = self.act(dsr, data) or dsr
        return self.detail(dsr)


def action_schema(summary: str, description: str | None = None) -> Callable[[type[A]], type[A]]:
    """Document a `DsrActionView`'s POST: its `input_serializer` in, the request's detail out."""

    def decorate(view: type[A]) -> type[A]:
        responses = {200: DsrDetailSerializer, **_errors(400, 401, 403, 404)}
        operation = extend_schema(
            summary=summary, description=description, request=view.input_serializer, responses=responses
        )
        return extend_schema_view(post=operation)(view)

    return decorate


@extend_schema(tags=TAGS, parameters=[TENANT_PARAM, ID_PARAM])
@action_schema(
    "Start a data-subject request",
    "Access: the archive is built in the background (the request completes then). Erasure: the hub's data "
    "is erased now and each connected vendor is asked to erase; the request completes once every vendor is "
    "done. A request in progress without its result may be started again.",
)
class DsrStartView(DsrActionView):
    """Act on a request: queue the access archive, or erase the subject and tell the vendors."""

    def act(self, dsr: DataSubjectRequest, data: dict[str, Any]) -> DataSubjectRequest:
        return dsr_start(tenant=self.tenant, dsr=dsr, **self.writer())


@extend_schema(tags=TAGS, parameters=[TENANT_PARAM, ID_PARAM])
@action_schema("Extend a data-subject request's deadline")
class DsrExtendView(DsrActionView):
    """Push an open request's deadline back, with a reason (60 days at most in all)."""

    input_serializer = DsrExtendSerializer

    def act(self, dsr: DataSubjectRequest, data: dict[str, Any]) -> DataSubjectRequest:
        return dsr_extend(
            tenant=self.tenant, dsr=dsr, days=data["days"], reason=data["reason"], **self.writer()
        )


@extend_schema(tags=TAGS, parameters=[TENANT_PARAM, ID_PARAM])
@action_schema("Reject a data-subject request")
class DsrRejectView(DsrActionView):
    """Close a received request without acting on it, with the reason."""

    input_serializer = DsrRejectSerializer

    def act(self, dsr: DataSubjectRequest, data: dict[str, Any]) -> DataSubjectRequest:
        return dsr_reject(tenant=self.tenant, dsr=dsr, reason=data["reason"], **self.writer())


@extend_schema(tags=TAGS, parameters=[TENANT_PARAM, ID_PARAM])
@action_schema(
    "Mark a vendor notification of an erasure as handled",
    "E.g. the person was erased by hand in the vendor's system. The request completes once every vendor "
    "notification is delivered or handled.",
)
class DsrHandleView(DsrActionView):
    """Settle a vendor notification that could not be delivered (dead) or has no mechanism (manual)."""

    input_serializer = DsrHandleSerializer

    def act(self, dsr: DataSubjectRequest, data: dict[str, Any]) -> None:
        dsr_notification_handle(
            tenant=self.tenant, dsr=dsr, notice_id=data["notice"], reason=data["reason"], **self.writer()
        )


@extend_schema(tags=TAGS, parameters=[TENANT_PARAM, ID_PARAM])
class DsrArchiveView(DsrScopedView):
    """Download an access request's archive: a zip with one JSON file per category and a signed manifest."""

    serializer_class = None

    @extend_schema(
        summary="Download a data-subject request's access archive",
        description="Every download is audited (`dsr.archive_downloaded`, with the archive's sha256). 404 "
        "once the archive expired or before it was built.",
        responses={
            (200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY, description="The archive."),
            **_errors(401, 403, 404),
        },
    )
    def get(self, request: Request, slug: str, id: str) -> HttpResponse:
        self.require(roles.MANAGE_SETTINGS)
        dsr = self.get_dsr()
        content = dsr_archive_download(
            tenant=self.tenant, dsr=dsr, actor=request.user, request=request._request
        )
        if content is None:
            raise NotFound
        response = HttpResponse(content, content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="subject-access-{dsr.pk}.zip"'
        response["Cache-Control"] = "no-store"
        return response
