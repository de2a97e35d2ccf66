"""Console pages of a tenant's single sign-on setup, under /t/<slug>/sso/ (sso_config_views)."""

from django.urls import path

from apps.accounts import sso_config_views as views

app_name = "sso-config"

urlpatterns = [
    path("t/<slug:tenant_slug>/sso/", views.overview_view, name="overview"),
    path("t/<slug:tenant_slug>/sso/providers/new/", views.provider_edit_view, name="provider-create"),
    path("t/<slug:tenant_slug>/sso/providers/<int:pk>/", views.provider_edit_view, name="provider-edit"),
    path(
        "t/<slug:tenant_slug>/sso/providers/<int:pk>/check/", views.provider_check_view, name="provider-check"
    ),
    path(
        "t/<slug:tenant_slug>/sso/providers/<int:pk>/delete/",
        views.provider_delete_view,
        name="provider-delete",
    ),
    path("t/<slug:tenant_slug>/sso/domains/new/", views.domain_add_view, name="domain-add"),
    path("t/<slug:tenant_slug>/sso/domains/<int:pk>/", views.domain_detail_view, name="domain-detail"),
    path("t/<slug:tenant_slug>/sso/domains/<int:pk>/verify/", views.domain_verify_view, name="domain-verify"),
    path(
        "t/<slug:tenant_slug>/sso/domains/<int:pk>/mark-verified/",
        views.domain_mark_verified_view,
        name="domain-mark-verified",
    ),
    path("t/<slug:tenant_slug>/sso/domains/<int:pk>/delete/", views.domain_delete_view, name="domain-delete"),
    path("t/<slug:tenant_slug>/sso/mappings/new/", views.mapping_edit_view, name="mapping-create"),
    path("t/<slug:tenant_slug>/sso/mappings/preview/", views.mapping_preview_view, name="mapping-preview"),
    path("t/<slug:tenant_slug>/sso/mappings/<int:pk>/", views.mapping_edit_view, name="mapping-edit"),
    path(
        "t/<slug:tenant_slug>/sso/mappings/<int:pk>/delete/", views.mapping_delete_view, name="mapping-delete"
    ),
    path("t/<slug:tenant_slug>/sso/mappings/<int:pk>/move/", views.mapping_move_view, name="mapping-move"),
    path("t/<slug:tenant_slug>/sso/enforcement/", views.enforcement_view, name="enforcement"),
    path("t/<slug:tenant_slug>/sso/break-glass/", views.break_glass_view, name="break-glass"),
]
