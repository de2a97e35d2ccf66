from django.urls import path

from apps.chat.api import conversations as views
from apps.chat.api import messages

urlpatterns = [
    path("conversations", views.ConversationCreateView.as_view(), name="chat-conversation-create"),
    path(
        "conversations/<str:conversation_id>",
        views.ConversationDetailView.as_view(),
        name="chat-conversation",
    ),
    path(
        "conversations/<str:conversation_id>/messages",
        messages.MessagesView.as_view(),  # POST: a turn; GET: later messages (issue 18)
        name="chat-message-create",
    ),
    path(
        "conversations/<str:conversation_id>/events",
        messages.ConversationEventsView.as_view(),
        name="chat-conversation-events",
    ),
    path(
        "conversations/<str:conversation_id>/feedback",
        views.FeedbackCreateView.as_view(),
        name="chat-feedback-create",
    ),
    path(
        "conversations/<str:conversation_id>/handoff",
        views.HandoffCreateView.as_view(),
        name="chat-handoff-create",
    ),
    path(
        "conversations/<str:conversation_id>/csat",
        views.CsatCreateView.as_view(),
        name="chat-csat-create",
    ),
    path(
        "conversations/<str:conversation_id>/identify",
        views.IdentifyView.as_view(),
        name="chat-conversation-identify",
    ),
]
