"""The URL configuration of a help center custom domain (HelpCenterHostMiddleware sets it): the public
pages at "/", nothing else of the hub (no console, API or admin on a tenant's domain)."""

from django.urls import path

from apps.helpcenter import views

app_name = "helpcenter"

urlpatterns = [
    path("", views.site_root_view, name="root"),
    path("sitemap.xml", views.sitemap_index_view, name="sitemap-index"),
    path("robots.txt", views.robots_view, name="robots"),
    path("region/", views.region_view, name="region"),
    path("<str:locale>/", views.home_view, name="home"),
    path("<str:locale>/search/", views.search_view, name="search"),
    path("<str:locale>/sitemap.xml", views.sitemap_view, name="sitemap"),
    path("<str:locale>/articles/<str:key>/", views.article_view, name="article"),
]
handler404 = "apps.helpcenter.views.not_found_view"
# A dependency that is down answers 503 with Retry-After here too (Django would fall back to a plain 500).
handler500 = "apps.core.views.server_error"
