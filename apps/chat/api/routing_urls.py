"""Handoff routing management routes (routes, business hours, preview), mounted at /api/v1/."""

from django.urls import path

from apps.chat.api import routing as views

app_name = "routing-api"

urlpatterns = [
    path("tenants/<slug:slug>/handoff-routes/", views.RouteListView.as_view(), name="route-list"),
    path(
        "tenants/<slug:slug>/handoff-routes/preview/", views.RoutePreviewView.as_view(), name="route-preview"
    ),
    path(
        "tenants/<slug:slug>/handoff-routes/<uuid:id>/", views.RouteDetailView.as_view(), name="route-detail"
    ),
    path(
        "tenants/<slug:slug>/handoff-routes/<uuid:id>/move/", views.RouteMoveView.as_view(), name="route-move"
    ),
    path("tenants/<slug:slug>/business-hours/", views.HoursListView.as_view(), name="hours-list"),
    path(
        "tenants/<slug:slug>/business-hours/<uuid:id>/", views.HoursDetailView.as_view(), name="hours-detail"
    ),
]
