"""The public web widget API, /widget/v1/<channel id>/... (apps/chat/api/widget.py)."""

from django.urls import path

from apps.chat.api import widget as views

urlpatterns = [
    path("<str:channel_id>/conversations", views.conversation_start_view, name="widget-conversation-start"),
    path(
        "<str:channel_id>/conversations/<str:conversation_id>/messages",
        views.messages_view,
        name="widget-messages",
    ),
    path(
        "<str:channel_id>/conversations/<str:conversation_id>/stream",
        views.stream_view,
        name="widget-stream",
    ),
]
