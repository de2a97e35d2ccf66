"""Who may read the OpenAPI schema and Swagger UI (drf-spectacular's SERVE_PERMISSIONS; hub/urls.py)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.permissions import BasePermission


class ApiDocsAccess(BasePermission):
    """Anyone when HUB_API_DOCS_PUBLIC is on; otherwise signed-in users and management-token holders (401)."""

    def has_permission(self, request: Any, view: Any) -> bool:
        if settings.HUB_API_DOCS_PUBLIC:
            return True
        return bool(request.user and request.user.is_authenticated)
