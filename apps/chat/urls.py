"""Console routes of channels and API keys."""

from django.urls import path

from apps.chat import views

app_name = "chat"

urlpatterns = [
    path("t/<slug:tenant_slug>/channels/", views.channel_list_view, name="channel-list"),
    path("t/<slug:tenant_slug>/channels/new/", views.channel_create_view, name="channel-create"),
    path("t/<slug:tenant_slug>/channels/<uuid:pk>/", views.channel_detail_view, name="channel-detail"),
    path("t/<slug:tenant_slug>/channels/<uuid:pk>/enable/", views.channel_enable_view, name="channel-enable"),
    path("t/<slug:tenant_slug>/channels/<uuid:pk>/keys/", views.key_create_view, name="channel-key-create"),
    path("t/<slug:tenant_slug>/api-keys/<int:pk>/revoke/", views.key_revoke_view, name="key-revoke"),
    path("t/<slug:tenant_slug>/api-keys/<int:pk>/rotate/", views.key_rotate_view, name="key-rotate"),
]
