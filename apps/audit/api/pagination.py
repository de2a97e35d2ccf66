"""Keyset paging by chain position: `after`/`before` a sequence number, never OFFSET.

A page is the next `limit` events past the cursor in `order`; events appended meanwhile land above every
cursor, so paging oldest first reaches them at the end and paging newest first never sees them shift the
pages it is walking: no gap, no duplicate.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext as _
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from apps.audit.api.filters import MAX_BIGINT
from apps.core.params import bounded_int

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
ORDERS = {"newest": "-seq", "oldest": "seq"}


class SeqCursorPagination(BasePagination):
    after: int | None
    before: int | None
    order: str
    limit: int

    def paginate(self, queryset: QuerySet[Any], request: Request) -> list[Any]:
        """The page the request asks for (DRF's paginate_queryset also takes lists, which have no seq)."""
        self.request = request
        self.limit = bounded_int(request, "limit", default=DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
        self.after = self._cursor(request, "after", minimum=0)
        self.before = self._cursor(request, "before", minimum=1)
        self.order = request.query_params.get("order") or "newest"
        if self.order not in ORDERS:
            message = _("Choose newest or oldest.")
            raise ValidationError({"order": [message]})
        if self.after is not None:
            queryset = queryset.filter(seq__gt=self.after)
        if self.before is not None:
            queryset = queryset.filter(seq__lt=self.before)
        rows = list(queryset.order_by(ORDERS[self.order])[: self.limit + 1])
        self.has_more = len(rows) > self.limit
        self.page = rows[: self.limit]
        return self.page

    @staticmethod
    def _cursor(request: Request, name: str, *, minimum: int) -> int | None:
        if request.query_params.get(name) in (None, ""):
            return None
        return bounded_int(request, name, default=minimum, minimum=minimum, maximum=MAX_BIGINT)

    def next_link(self) -> str | None:
        if not self.has_more:
            return None
        url = self.request.build_absolute_uri()
        cursor = "after" if self.order == "oldest" else "before"
        return replace_query_param(url, cursor, self.page[-1].seq)

    def get_paginated_response(self, data: Any) -> Response:
        return Response({"next": self.next_link(), "results": data})

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["next", "results"],
            "properties": {
                "next": {
                    "type": "string",
                    "format": "uri",
                    "nullable": True,
                    "description": "The next page (the cursor moved past this one); null at the end.",
                },
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        def integer(name: str, minimum: int, description: str, **extra: Any) -> dict[str, Any]:
            schema = {"type": "integer", "minimum": minimum, "maximum": extra.pop("maximum", MAX_BIGINT)}
            return {
                "name": name,
                "in": "query",
                "required": False,
                "description": description,
                "schema": schema | extra,
            }

        return [
            integer("after", 0, "Only events with a larger seq (the cursor of `order=oldest`)."),
            integer("before", 1, "Only events with a smaller seq (the cursor of `order=newest`)."),
            integer("limit", 1, "Events per page.", maximum=MAX_LIMIT, default=DEFAULT_LIMIT),
            {
                "name": "order",
                "in": "query",
                "required": False,
                "description": "newest first (default) or oldest first, by seq.",
                "schema": {"type": "string", "enum": list(ORDERS), "default": "newest"},
            },
        ]
