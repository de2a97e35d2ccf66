from django.urls import path

from apps.policies import dsr_views, views

app_name = "policies"

urlpatterns = [
    path("t/<slug:tenant_slug>/policies/", views.policy_detail_view, name="detail"),
    path("t/<slug:tenant_slug>/policies/preset/", views.policy_preset_view, name="preset"),
    path("t/<slug:tenant_slug>/policies/erasure/", views.erasure_view, name="erasure"),
]

# Data-subject requests (issue 22, slice "dsr")
urlpatterns += [
    path("t/<slug:tenant_slug>/policies/requests/", dsr_views.dsr_list_view, name="dsr-list"),
    path("t/<slug:tenant_slug>/policies/requests/new/", dsr_views.dsr_create_view, name="dsr-create"),
    path("t/<slug:tenant_slug>/policies/requests/<uuid:pk>/", dsr_views.dsr_detail_view, name="dsr-detail"),
    path(
        "t/<slug:tenant_slug>/policies/requests/<uuid:pk>/start/", dsr_views.dsr_start_view, name="dsr-start"
    ),
    path(
        "t/<slug:tenant_slug>/policies/requests/<uuid:pk>/extend/",
        dsr_views.dsr_extend_view,
        name="dsr-extend",
    ),
    path(
        "t/<slug:tenant_slug>/policies/requests/<uuid:pk>/reject/",
        dsr_views.dsr_reject_view,
        name="dsr-reject",
    ),
    path(
        "t/<slug:tenant_slug>/policies/requests/<uuid:pk>/handled/",
        dsr_views.dsr_handle_view,
        name="dsr-handle",
    ),
    path(
        "t/<slug:tenant_slug>/policies/requests/<uuid:pk>/archive/",
        dsr_views.dsr_download_view,
        name="dsr-download",
    ),
]
