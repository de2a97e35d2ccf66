"""Connections API routes, mounted at /api/v1/."""

from django.urls import path

from apps.integrations.api import views

app_name = "integrations-api"

urlpatterns = [
    path("tenants/<slug:slug>/connections/", views.ConnectionListView.as_view(), name="connection-list"),
    path(
        "tenants/<slug:slug>/connections/<uuid:id>/",
        views.ConnectionDetailView.as_view(),
        name="connection-detail",
    ),
    path(
        "tenants/<slug:slug>/connections/<uuid:id>/test/",
        views.ConnectionTestView.as_view(),
        name="connection-test",
    ),
]
