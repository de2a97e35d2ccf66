from django.urls import path

from apps.policies import views

app_name = "policies"

urlpatterns = [
    path("t/<slug:tenant_slug>/policies/", views.policy_detail_view, name="detail"),
    path("t/<slug:tenant_slug>/policies/preset/", views.policy_preset_view, name="preset"),
    path("t/<slug:tenant_slug>/policies/erasure/", views.erasure_view, name="erasure"),
]
