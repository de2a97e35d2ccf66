"""Bench-only baselines for bench/bench_chat.py; mounted only when HUB_BENCH_ENDPOINTS is on.

Both go through the chat API's own view base (API-key authentication, chat scope, the per-key and
per-tenant throttles, the body-size check), so a chat turn measured next to them differs only by the
turn's own work:
- `GET /api/v1/bench/ping`: nothing else (the trivial authenticated DRF endpoint);
- `GET /api/v1/bench/select/<id>`: one SELECT by primary key of a conversation (tenant's region database);
- `GET /api/v1/bench/search?q=…&locale=…`: the knowledge search of the channel's knowledge base, as JSON
  (what bench/bench_helpcenter.py compares the public help center's search page with).

Never enable them in a real deployment: they are cheap to call and would only add attack surface.
"""

from __future__ import annotations

import uuid

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from apps.chat.api.conversations import ChatView
from apps.chat.auth import principal_of
from apps.chat.models import Conversation
from apps.knowledge.selectors import knowledge_search


class PingView(ChatView):
    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        return Response({"ok": True})


class SelectView(ChatView):
    @extend_schema(exclude=True)
    def get(self, request: Request, conversation_id: str) -> Response:
        try:
            pk = uuid.UUID(conversation_id)
        except ValueError:
            return Response({"detail": "not found"}, status=404)
        row = (
            Conversation.objects.filter(pk=pk, channel_id=principal_of(request).channel.id)
            .values("id", "turns")
            .first()
        )
        if row is None:
            return Response({"detail": "not found"}, status=404)
        return Response({"id": str(row["id"]), "turns": row["turns"]})


class SearchView(ChatView):
    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        channel = principal_of(request).channel
        hits = knowledge_search(
            tenant=principal_of(request).tenant,
            query=request.query_params.get("q", ""),
            locale=request.query_params.get("locale", "en"),
            region=request.query_params.get("region") or None,
            k=10,
            kb=str(channel.knowledge_base_id) if channel.knowledge_base_id else None,
        )
        results = [{"title": h.title, "url": h.citation_url, "text": h.text[:300]} for h in hits]
        return Response({"results": results})


urlpatterns = [
    path("bench/ping", PingView.as_view(), name="chat-bench-ping"),
    path("bench/select/<str:conversation_id>", SelectView.as_view(), name="chat-bench-select"),
    path("bench/search", SearchView.as_view(), name="chat-bench-search"),
]
