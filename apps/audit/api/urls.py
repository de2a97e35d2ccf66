"""Audit API routes, mounted at /api/v1/."""

from django.urls import path

from apps.audit.api import views

app_name = "audit-api"

urlpatterns = [
    path("tenants/<slug:slug>/audit/events/", views.AuditEventListView.as_view(), name="event-list"),
    path(
        "tenants/<slug:slug>/audit/events/<int:seq>/",
        views.AuditEventDetailView.as_view(),
        name="event-detail",
    ),
    path("tenants/<slug:slug>/audit/verify/", views.AuditVerifyView.as_view(), name="verify"),
]
