"""Account pages: sign-in with lockout and a second factor, password pages, profile, invitations; and the
admin's unlock of a member's account, under the tenant's pages."""

from django.urls import include, path

from apps.accounts import access_review_views, oidc_views, saml_views, scim_views, sso_views, views

app_name = "accounts"

account_patterns = [
    path("login/", views.login_view, name="login"),
    path("login/verify/", views.otp_verify_view, name="otp-verify"),
    path("logout/", views.logout_view, name="logout"),
    path("profile/", views.profile_view, name="profile"),
    path("password/", views.password_change_view, name="password-change"),
    path("password/reset/", views.password_reset_view, name="password-reset"),
    path("password/reset/sent/", views.password_reset_done_view, name="password-reset-done"),
    path(
        "password/reset/<uidb64>/<token>/",
        views.password_reset_confirm_view,
        name="password-reset-confirm",
    ),
    path("password/reset/done/", views.password_reset_complete_view, name="password-reset-complete"),
    path("two-factor/", views.twofactor_view, name="twofactor"),
    path("two-factor/enroll/", views.twofactor_enroll_view, name="twofactor-enroll"),
    path(
        "two-factor/backup-codes/regenerate/",
        views.backup_codes_regenerate_view,
        name="twofactor-backup-codes-regenerate",
    ),
    path("two-factor/remove/", views.twofactor_remove_view, name="twofactor-remove"),
    path("invitations/<str:token>/", views.invitation_accept_view, name="invitation-accept"),
    # single sign-on (shared); protocol views: oidc_views, saml_views
    path("sso/<int:provider_id>/start/", sso_views.sso_start_view, name="sso-start"),
    # `organisation`, not `tenant_slug`: signing in to a tenant is not one of its pages (the tenant middleware
    # would ask for a member and, for a member of an enforcing tenant, send them back here in a loop).
    path("sso/t/<slug:organisation>/", sso_views.sso_tenant_view, name="sso-tenant"),
    path("sso/organisation/", views.sso_organisation_view, name="sso-organisation"),
    # --- OIDC (oidc_views) ---
    path("sso/oidc/callback/", oidc_views.oidc_callback_view, name="oidc-callback"),
    # --- SAML (saml_views) ---
    path("sso/<int:provider_id>/saml/acs/", saml_views.acs_view, name="saml-acs"),
    path("sso/<int:provider_id>/saml/metadata/", saml_views.metadata_view, name="saml-metadata"),
]

urlpatterns = [
    path("accounts/", include(account_patterns)),
    path("t/<slug:tenant_slug>/members/<int:pk>/unlock/", views.member_unlock_view, name="member-unlock"),
    # SCIM provisioning (scim_views); the API is /scim/v2/ (apps/accounts/api/scim_urls.py)
    path("t/<slug:tenant_slug>/sso/scim/", scim_views.scim_console_view, name="scim"),
    path("t/<slug:tenant_slug>/sso/scim/groups/", scim_views.scim_groups_view, name="scim-groups"),
    path(
        "t/<slug:tenant_slug>/sso/scim/tokens/<int:pk>/revoke/",
        scim_views.scim_token_revoke_view,
        name="scim-token-revoke",
    ),
]

# Access review (issue 22): the report, its signed export and the reviewer's sign-off (access_review_views).
urlpatterns += [
    path("t/<slug:tenant_slug>/access-review/", access_review_views.access_review_view, name="access-review"),
    path(
        "t/<slug:tenant_slug>/access-review/export/",
        access_review_views.access_review_export_view,
        name="access-review-export",
    ),
    path(
        "t/<slug:tenant_slug>/access-review/complete/",
        access_review_views.access_review_complete_view,
        name="access-review-complete",
    ),
]
