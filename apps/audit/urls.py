from django.urls import path

from apps.audit import views

app_name = "audit"

urlpatterns = [
    path("t/<slug:tenant_slug>/audit/", views.event_list_view, name="event-list"),
    path("t/<slug:tenant_slug>/audit/<int:seq>/", views.event_detail_view, name="event-detail"),
    path("t/<slug:tenant_slug>/audit/verify/", views.verify_view, name="verify"),
    path("t/<slug:tenant_slug>/audit/export/", views.export_view, name="export"),
]
