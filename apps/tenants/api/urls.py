"""Management API routes, mounted at /api/v1/."""

from django.urls import path

from apps.tenants.api import views

app_name = "tenants-api"

urlpatterns = [
    path("tenants/", views.TenantListView.as_view(), name="tenant-list"),
    path("tenants/<slug:slug>/", views.TenantDetailView.as_view(), name="tenant-detail"),
    path("tenants/<slug:slug>/members/", views.MemberListView.as_view(), name="member-list"),
    path("tenants/<slug:slug>/members/<int:id>/", views.MemberDetailView.as_view(), name="member-detail"),
    path("tenants/<slug:slug>/invitations/", views.InvitationListView.as_view(), name="invitation-list"),
    path(
        "tenants/<slug:slug>/invitations/<int:id>/revoke/",
        views.InvitationRevokeView.as_view(),
        name="invitation-revoke",
    ),
]
