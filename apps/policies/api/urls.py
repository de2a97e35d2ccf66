"""Data-subject request API routes, mounted at /api/v1/."""

from django.urls import path

from apps.policies.api import views

app_name = "dsr-api"

BASE = "tenants/<slug:slug>/data-subject-requests/"

urlpatterns = [
    path(BASE, views.DsrListView.as_view(), name="list"),
    path(f"{BASE}<uuid:id>/", views.DsrDetailView.as_view(), name="detail"),
    path(f"{BASE}<uuid:id>/start/", views.DsrStartView.as_view(), name="start"),
    path(f"{BASE}<uuid:id>/extend/", views.DsrExtendView.as_view(), name="extend"),
    path(f"{BASE}<uuid:id>/reject/", views.DsrRejectView.as_view(), name="reject"),
    path(f"{BASE}<uuid:id>/handle/", views.DsrHandleView.as_view(), name="handle"),
    path(f"{BASE}<uuid:id>/archive/", views.DsrArchiveView.as_view(), name="archive"),
]
