"""Management API routes of accounts, mounted at /api/v1/."""

from django.urls import path

from apps.accounts.api import scim_tokens

app_name = "accounts-api"

urlpatterns = [
    path("tenants/<slug:slug>/scim-tokens/", scim_tokens.ScimTokenListView.as_view(), name="scim-token-list"),
    path(
        "tenants/<slug:slug>/scim-tokens/<int:id>/revoke/",
        scim_tokens.ScimTokenRevokeView.as_view(),
        name="scim-token-revoke",
    ),
]
