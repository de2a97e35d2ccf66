"""DRF glue shared by every API: errors as JSON with a message, never a stack trace."""

from __future__ import annotations

from typing import Any

from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from apps.core.errors import Conflict, NoTenantContext, NotFound, ValidationFailed


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Turn service errors into 4xx responses; let DRF handle its own; anything else stays a logged 500."""
    if isinstance(exc, ValidationFailed):
        return Response({"detail": str(exc), "errors": exc.errors}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, NotFound | NoTenantContext):
        return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, Conflict):
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    return drf_exception_handler(exc, context)
