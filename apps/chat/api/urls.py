"""Chat API routes under /api/v1/: channel management (console users) and the channel-facing chat API."""

from django.conf import settings
from django.urls import include, path

urlpatterns = [
    path("", include("apps.chat.api.conversation_urls")),  # the channels' calls first (resolved in order)
    path("", include("apps.chat.api.channel_urls")),
    path("", include("apps.chat.api.routing_urls")),
    *([path("", include("apps.chat.api.bench_views"))] if settings.HUB_BENCH_ENDPOINTS else []),
]
