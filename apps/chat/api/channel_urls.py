"""Channel and API-key management routes, mounted at /api/v1/ (the chat API itself: conversation_urls)."""

from django.urls import path

from apps.chat.api import channels as views

app_name = "channels-api"

urlpatterns = [
    path("tenants/<slug:slug>/channels/", views.ChannelListView.as_view(), name="channel-list"),
    path("tenants/<slug:slug>/channels/<uuid:id>/", views.ChannelDetailView.as_view(), name="channel-detail"),
    path(
        "tenants/<slug:slug>/channels/<uuid:id>/widget-key/rotate/",
        views.ChannelWidgetKeyRotateView.as_view(),
        name="channel-widget-key-rotate",
    ),
    path(
        "tenants/<slug:slug>/channels/<uuid:id>/keys/",
        views.ChannelKeyListView.as_view(),
        name="channel-key-list",
    ),
    path("tenants/<slug:slug>/api-keys/<int:id>/", views.ApiKeyDetailView.as_view(), name="api-key-detail"),
    path(
        "tenants/<slug:slug>/api-keys/<int:id>/revoke/",
        views.ApiKeyRevokeView.as_view(),
        name="api-key-revoke",
    ),
    path(
        "tenants/<slug:slug>/api-keys/<int:id>/rotate/",
        views.ApiKeyRotateView.as_view(),
        name="api-key-rotate",
    ),
]
