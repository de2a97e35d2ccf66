"""Console routes of channels and API keys."""

from django.urls import path

from apps.chat import views, webhook_views

app_name = "chat"

urlpatterns = [
    # Messaging platforms' webhook (webhook_views.py): public, signed; the channel id names the tenant.
    path("hooks/channels/<uuid:channel_id>/", webhook_views.channel_webhook_view, name="channel-webhook"),
    path("t/<slug:tenant_slug>/channels/", views.channel_list_view, name="channel-list"),
    path("t/<slug:tenant_slug>/channels/new/", views.channel_create_view, name="channel-create"),
    path("t/<slug:tenant_slug>/channels/<uuid:pk>/", views.channel_detail_view, name="channel-detail"),
    path(
        "t/<slug:tenant_slug>/channels/<uuid:pk>/platform/",
        views.channel_platform_view,
        name="channel-platform",
    ),
    path(
        "t/<slug:tenant_slug>/channels/<uuid:pk>/platform/test/",
        views.channel_platform_test_view,
        name="channel-platform-test",
    ),
    path(
        "t/<slug:tenant_slug>/channels/<uuid:pk>/undelivered/retry/",
        views.channel_undelivered_retry_view,
        name="channel-undelivered-retry",
    ),
    path(
        "t/<slug:tenant_slug>/channels/<uuid:pk>/origins/", views.channel_origins_view, name="channel-origins"
    ),
    path(
        "t/<slug:tenant_slug>/channels/<uuid:pk>/identity/",
        views.channel_identity_view,
        name="channel-identity",
    ),
    path(
        "t/<slug:tenant_slug>/channels/<uuid:pk>/identity/secret/",
        views.channel_identity_secret_view,
        name="channel-identity-secret",
    ),
    path(
        "t/<slug:tenant_slug>/channels/<uuid:pk>/widget-key/rotate/",
        views.channel_widget_rotate_view,
        name="channel-widget-rotate",
    ),
    path(
        "t/<slug:tenant_slug>/channels/<uuid:pk>/preview/", views.channel_preview_view, name="channel-preview"
    ),
    path("t/<slug:tenant_slug>/channels/<uuid:pk>/enable/", views.channel_enable_view, name="channel-enable"),
    path("t/<slug:tenant_slug>/channels/<uuid:pk>/keys/", views.key_create_view, name="channel-key-create"),
    path("t/<slug:tenant_slug>/api-keys/<int:pk>/revoke/", views.key_revoke_view, name="key-revoke"),
    path("t/<slug:tenant_slug>/api-keys/<int:pk>/rotate/", views.key_rotate_view, name="key-rotate"),
    path("t/<slug:tenant_slug>/conversations/", views.conversation_list_view, name="conversation-list"),
    path(
        "t/<slug:tenant_slug>/conversations/<uuid:pk>/",
        views.conversation_detail_view,
        name="conversation-detail",
    ),
    path("t/<slug:tenant_slug>/language-models/", views.llm_provider_list_view, name="llm-provider-list"),
    path(
        "t/<slug:tenant_slug>/language-models/new/", views.llm_provider_edit_view, name="llm-provider-create"
    ),
    path(
        "t/<slug:tenant_slug>/language-models/<uuid:pk>/",
        views.llm_provider_edit_view,
        name="llm-provider-edit",
    ),
    path(
        "t/<slug:tenant_slug>/language-models/<uuid:pk>/delete/",
        views.llm_provider_delete_view,
        name="llm-provider-delete",
    ),
]
