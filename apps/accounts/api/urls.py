"""Management API routes of accounts (SSO setup, SCIM tokens), mounted at /api/v1/."""

from django.urls import path

from apps.accounts.api import access_review, scim_tokens, views

app_name = "accounts-api"

urlpatterns = [
    path("tenants/<slug:slug>/identity-providers/", views.ProviderListView.as_view(), name="provider-list"),
    path(
        "tenants/<slug:slug>/identity-providers/<int:id>/",
        views.ProviderDetailView.as_view(),
        name="provider-detail",
    ),
    path(
        "tenants/<slug:slug>/identity-providers/<int:id>/check/",
        views.ProviderCheckView.as_view(),
        name="provider-check",
    ),
    path("tenants/<slug:slug>/sso-domains/", views.DomainListView.as_view(), name="domain-list"),
    path("tenants/<slug:slug>/sso-domains/<int:id>/", views.DomainDetailView.as_view(), name="domain-detail"),
    path(
        "tenants/<slug:slug>/sso-domains/<int:id>/verify/",
        views.DomainVerifyView.as_view(),
        name="domain-verify",
    ),
    path("tenants/<slug:slug>/role-mappings/", views.MappingListView.as_view(), name="mapping-list"),
    path(
        "tenants/<slug:slug>/role-mappings/preview/",
        views.MappingPreviewView.as_view(),
        name="mapping-preview",
    ),
    path(
        "tenants/<slug:slug>/role-mappings/<int:id>/",
        views.MappingDetailView.as_view(),
        name="mapping-detail",
    ),
    path(
        "tenants/<slug:slug>/role-mappings/<int:id>/move/",
        views.MappingMoveView.as_view(),
        name="mapping-move",
    ),
    path("tenants/<slug:slug>/sso-settings/", views.SsoSettingsView.as_view(), name="settings"),
    path("tenants/<slug:slug>/scim-tokens/", scim_tokens.ScimTokenListView.as_view(), name="scim-token-list"),
    path(
        "tenants/<slug:slug>/scim-tokens/<int:id>/revoke/",
        scim_tokens.ScimTokenRevokeView.as_view(),
        name="scim-token-revoke",
    ),
]

# Access review (issue 22): the report and the reviewer's sign-off.
urlpatterns += [
    path(
        "tenants/<slug:slug>/access-review/", access_review.AccessReviewView.as_view(), name="access-review"
    ),
    path(
        "tenants/<slug:slug>/access-review/complete/",
        access_review.AccessReviewCompleteView.as_view(),
        name="access-review-complete",
    ),
]
