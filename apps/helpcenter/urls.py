"""Help center URLs: the public pages under /help/<tenant>/<handle>/ and the console's settings form.

The public pages name the tenant `org`, not `tenant_slug`: the tenant middleware (members only) must not
apply to them. A custom domain serves the same views at "/" (host_urls.py).
"""

from django.urls import path

from apps.helpcenter import console_views, views

app_name = "helpcenter"

_SITE = "help/<slug:org>/<slug:handle>/"
urlpatterns = [
    path(_SITE, views.site_root_view, name="root"),
    path(_SITE + "sitemap.xml", views.sitemap_index_view, name="sitemap-index"),
    path(_SITE + "robots.txt", views.robots_view, name="robots"),
    path(_SITE + "region/", views.region_view, name="region"),
    path(_SITE + "<str:locale>/", views.home_view, name="home"),
    path(_SITE + "<str:locale>/search/", views.search_view, name="search"),
    path(_SITE + "<str:locale>/sitemap.xml", views.sitemap_view, name="sitemap"),
    path(_SITE + "<str:locale>/articles/<str:key>/", views.article_view, name="article"),
    path(
        "t/<slug:tenant_slug>/knowledge/<uuid:kb_id>/helpcenter/",
        console_views.kb_settings_view,
        name="kb-settings",
    ),
]
