from django.urls import path

from apps.tenants import views

app_name = "tenants"

urlpatterns = [
    path("operator/tenants/", views.tenant_list_view, name="tenant-list"),
    path("operator/tenants/new/", views.tenant_create_view, name="tenant-create"),
    path("t/<slug:tenant_slug>/settings/", views.tenant_settings_view, name="settings"),
    path("t/<slug:tenant_slug>/members/", views.member_list_view, name="members"),
    path("t/<slug:tenant_slug>/members/invite/", views.member_invite_view, name="member-invite"),
    path("t/<slug:tenant_slug>/members/<int:pk>/", views.member_edit_view, name="member-edit"),
    path("t/<slug:tenant_slug>/members/<int:pk>/remove/", views.member_remove_view, name="member-remove"),
    path(
        "t/<slug:tenant_slug>/invitations/<int:pk>/revoke/",
        views.invitation_revoke_view,
        name="invitation-revoke",
    ),
    path("t/<slug:tenant_slug>/api-tokens/", views.token_list_view, name="api-tokens"),
    path(
        "t/<slug:tenant_slug>/api-tokens/<int:pk>/revoke/", views.token_revoke_view, name="api-token-revoke"
    ),
]
