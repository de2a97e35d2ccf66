"""DRF glue shared by every API: errors as JSON with a message, never a stack trace; bounded pagination."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from apps.core import deadlines
from apps.core.errors import Conflict, NoTenantContext, NotFound, ValidationFailed
from apps.core.params import bounded_int
from apps.core.views import record_unavailable, unavailable_message


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Turn service errors into 4xx responses, a dependency that is down into 503 with Retry-After; let DRF
    handle its own; anything else reaches handler500 (apps/core/views.py)."""
    if isinstance(exc, ValidationFailed):
        return Response({"detail": str(exc), "errors": exc.errors}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, NotFound | NoTenantContext):
        return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, Conflict):
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    if record_unavailable(exc) is not None:  # Postgres, Redis or the broker is down or too slow
        seconds = str(deadlines.retry_after())
        headers = {"Retry-After": seconds, "Cache-Control": "no-store"}
        return Response({"detail": unavailable_message()}, status=503, headers=headers)
    return drf_exception_handler(exc, context)


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """`limit`/`offset` paging whose values are checked and bounded; the schema states the bounds.

    Out-of-range, negative, fractional or non-numeric values get a 400 naming the parameter (DRF silently
    used the default for those, and passed any large `limit` to the database: a 500). Refused rather than
    clamped, so a client learns the maximum at once instead of receiving fewer rows than it asked for.
    """

    def __init__(self) -> None:
        self.max_limit: int = settings.HUB_API_MAX_LIMIT
        self.max_offset: int = settings.HUB_API_MAX_OFFSET

    def get_default(self) -> int:
        return min(self.default_limit or self.max_limit, self.max_limit)

    def get_limit(self, request: Request) -> int:
        return bounded_int(
            request, self.limit_query_param, default=self.get_default(), minimum=1, maximum=self.max_limit
        )

    def get_offset(self, request: Request) -> int:
        return bounded_int(request, self.offset_query_param, default=0, minimum=0, maximum=self.max_offset)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().get_schema_operation_parameters(view)
        bounds = {
            self.limit_query_param: {"minimum": 1, "maximum": self.max_limit, "default": self.get_default()},
            self.offset_query_param: {"minimum": 0, "maximum": self.max_offset, "default": 0},
        }
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        return parameters
