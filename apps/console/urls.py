from django.urls import path

from apps.console import views

app_name = "console"

urlpatterns = [
    path("", views.home, name="home"),
    path("switch/", views.switch, name="switch"),
    path("t/<slug:tenant_slug>/", views.tenant_home, name="tenant-home"),
    path("t/<slug:tenant_slug>/dashboard/", views.dashboard, name="dashboard"),
    path("operator/dashboard/", views.platform_dashboard_view, name="platform-dashboard"),
    *[
        path(f"t/<slug:tenant_slug>/{key}/", view, name=f"area-{key}")
        for key, view in views.area_views.items()
    ],
]
