"""The access review report (issue 22): the values of each column, the flags, the tokens, constant queries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.accounts.models import ExternalIdentity, IdentityProvider, ScimToken, ScimUser
from apps.accounts.selectors import access_review_digest, access_review_report
from apps.accounts.services.scim import scim_token_create
from apps.integrations.services.connections import connection_grant
from apps.tenants.models import ManagementToken, Membership, Role, Tenant
from apps.tenants.roles import permissions_for
from apps.tenants.services import management_token_create
from tests.fixtures.auth import enroll
from tests.fixtures.chat import issue_key, web_channel
from tests.fixtures.integrations import offline_connection

pytestmark = pytest.mark.django_db


def _member(report: dict[str, Any], username: str) -> dict[str, Any]:
    return next(row for row in report["members"] if row["username"] == username)


def _token(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(row for row in report["tokens"] if row["name"] == name)


def test_member_columns(
    tenant_a: Tenant, alice: Any, bob: Any, officer: Any, charlie: Any, operator: Any
) -> None:
    enroll(officer)
    connection = offline_connection(tenant_a, "servicenow", name="ServiceNow EU")
    connection_grant(connection=connection, tenant=tenant_a, user=bob)
    signed_in = timezone.now() - timedelta(days=3)
    type(alice).objects.filter(pk=alice.pk).update(last_login=signed_in)
    provider = IdentityProvider.objects.create(tenant=tenant_a, name="Okta", protocol="oidc")
    sso_at = timezone.now() - timedelta(hours=1)
    ExternalIdentity.objects.create(identity_provider=provider, user=bob, subject="b", last_sign_in_at=sso_at)

    report = access_review_report(tenant=tenant_a)

    assert [row["username"] for row in report["members"]] == ["alice", "bob", "olivia"]
    row = _member(report, "alice")
    assert row["role"] == Role.ADMIN
    assert row["permissions"] == sorted(permissions_for(Role.ADMIN))
    assert row["email"] == "alice@example.com"
    assert row["last_sign_in"] == signed_in.isoformat().replace("+00:00", "Z")
    assert row["two_factor"] == []
    assert row["flags"] == ["missing_2fa"]
    assert row["managed_by"] == "local" and row["active"] is True
    since = Membership.objects.get(tenant=tenant_a, user=alice).created_at
    assert row["member_since"] == since.isoformat().replace("+00:00", "Z")

    bob_row = _member(report, "bob")
    assert bob_row["permissions"] == sorted(permissions_for(Role.VIEWER))
    assert bob_row["object_grants"] == [
        {
            "type": "connection",
            "id": str(connection.pk),
            "label": "ServiceNow EU",
            "permission": "change_connection",
        }
    ]
    assert bob_row["last_sign_in"] == sso_at.isoformat().replace("+00:00", "Z")  # single sign-on counts
    assert bob_row["flags"] == []  # a viewer needs no second factor; signed in today

    olivia = _member(report, "olivia")
    assert olivia["two_factor"] == ["totp"] and olivia["flags"] == []
    assert olivia["last_sign_in"] is None

    # Tenant B's member is not listed; the platform operator is listed apart.
    assert "charlie" not in {row["username"] for row in report["members"]}
    assert [row["username"] for row in report["operators"]] == ["operator"]
    assert report["counts"] == {"members": 3, "operators": 1, "api_access": 0, "flags": 1}


def test_other_tenants_object_grants_are_not_listed(
    tenant_a: Tenant, tenant_b: Tenant, alice: Any, member: Any
) -> None:
    """A person in both tenants: the grant on B's connection does not show in A's report."""
    both = member("dora", Role.VIEWER, tenant=tenant_a)
    Membership.objects.create(tenant=tenant_b, user=both, role=Role.VIEWER)
    connection_grant(
        connection=offline_connection(tenant_b, "servicenow", name="B CRM"), tenant=tenant_b, user=both
    )
    assert _member(access_review_report(tenant=tenant_a), "dora")["object_grants"] == []
    assert [g["label"] for g in _member(access_review_report(tenant=tenant_b), "dora")["object_grants"]] == [
        "B CRM"
    ]


def test_flags_dormant_member_and_deactivated(tenant_a: Tenant, alice: Any, bob: Any, member: Any) -> None:
    old = timezone.now() - timedelta(days=120)
    Membership.objects.filter(tenant=tenant_a, user=bob).update(created_at=old)
    type(alice).objects.filter(pk=alice.pk).update(last_login=timezone.now() - timedelta(days=91))
    gone = member("gone", Role.VIEWER, tenant=tenant_a)
    type(gone).objects.filter(pk=gone.pk).update(is_active=False)
    Membership.objects.filter(tenant=tenant_a, user=gone).update(created_at=old)
    new = member("newbie", Role.VIEWER, tenant=tenant_a)  # never signed in, but joined today

    report = access_review_report(tenant=tenant_a)
    assert _member(report, "bob")["flags"] == ["dormant"]
    assert _member(report, "alice")["flags"] == ["missing_2fa", "dormant"]
    assert _member(report, "gone")["active"] is False and _member(report, "gone")["flags"] == []
    assert _member(report, new.username)["flags"] == []


def test_tenant_wide_2fa_and_idp_mfa(tenant_a: Tenant, alice: Any, bob: Any) -> None:
    tenant_a.require_2fa = True
    tenant_a.save()
    assert "missing_2fa" in _member(access_review_report(tenant=tenant_a), "bob")["flags"]
    # Members the IdP manages bring its MFA when the tenant accepts it; local members still need ours.
    IdentityProvider.objects.create(tenant=tenant_a, name="Okta", protocol="oidc", accept_idp_mfa=True)
    Membership.objects.filter(tenant=tenant_a, user=bob).update(source="sso")
    report = access_review_report(tenant=tenant_a)
    assert _member(report, "bob")["flags"] == [] and _member(report, "bob")["managed_by"] == "sso"
    assert _member(report, "alice")["flags"] == ["missing_2fa"]


def test_tokens_table_and_flags(tenant_a: Tenant, tenant_b: Tenant, alice: Any, charlie: Any) -> None:
    now = timezone.now()
    stale, _ = management_token_create(tenant=tenant_a, user=alice, name="stale", expires_at=None)
    ManagementToken.objects.filter(pk=stale.pk).update(created_at=now - timedelta(days=100))
    used, _ = management_token_create(
        tenant=tenant_a, user=alice, name="used", expires_at=now + timedelta(days=30)
    )
    ManagementToken.objects.filter(pk=used.pk).update(last_used_at=now - timedelta(days=2))
    revoked, _ = management_token_create(tenant=tenant_a, user=alice, name="revoked", expires_at=None)
    ManagementToken.objects.filter(pk=revoked.pk).update(revoked_at=now)
    management_token_create(tenant=tenant_b, user=charlie, name="charlie's", expires_at=None)
    scim, _ = scim_token_create(tenant=tenant_a, name="okta", expires_at=None, actor=alice)
    ScimToken.objects.filter(pk=scim.pk).update(last_used_at=now - timedelta(days=95))
    key = issue_key(web_channel(tenant_a, name="Website"), name="widget", expires_at=now + timedelta(days=9))
    type(key.key).objects.filter(pk=key.key.pk).update(last_used_at=now - timedelta(minutes=5))

    report = access_review_report(tenant=tenant_a)
    assert {(row["kind"], row["name"]) for row in report["tokens"]} == {
        ("management", "stale"),
        ("management", "used"),
        ("management", "revoked"),
        ("scim", "okta"),
        ("chat_api_key", "widget"),
    }
    assert _token(report, "stale")["flags"] == ["token_unused", "token_no_expiry"]
    assert _token(report, "stale")["owner"] == "alice" and _token(report, "stale")["last_used"] is None
    assert _token(report, "used")["flags"] == []
    assert _token(report, "used")["last_used"] == (now - timedelta(days=2)).isoformat().replace("+00:00", "Z")
    assert _token(report, "revoked")["flags"] == [] and _token(report, "revoked")["active"] is False
    assert _token(report, "okta")["flags"] == ["token_unused", "token_no_expiry"]
    assert _token(report, "okta")["owner"] == "alice"
    widget = _token(report, "widget")
    assert widget["flags"] == [] and widget["scope"] == "Website: chat transcripts"
    assert widget["last_used"] is not None and widget["prefix"] == key.key.prefix
    assert report["counts"]["api_access"] == 5
    assert report["counts"]["flags"] == 1 + 4  # alice's missing 2FA, two flags on each of two tokens


def test_digest_is_stable_and_follows_changes(tenant_a: Tenant, alice: Any, bob: Any) -> None:
    first = access_review_digest(access_review_report(tenant=tenant_a))
    assert access_review_digest(access_review_report(tenant=tenant_a)) == first
    Membership.objects.filter(tenant=tenant_a, user=bob).update(role=Role.ADMIN)
    assert access_review_digest(access_review_report(tenant=tenant_a)) != first


def _count(tenant: Tenant) -> int:
    with (
        CaptureQueriesContext(connections["default"]) as control,
        CaptureQueriesContext(connections[tenant.home_region.db_alias]) as region,
    ):
        access_review_report(tenant=tenant)
    return len(control) + len(region)


def test_query_count_does_not_grow_with_members(tenant_a: Tenant, alice: Any, member: Any) -> None:
    def add(n: int) -> None:
        connection = offline_connection(tenant_a, "servicenow", name=f"crm{n}")
        user = member(f"m{n}", Role.LOCALIZATION_EDITOR, tenant=tenant_a)
        enroll(user)
        connection_grant(connection=connection, tenant=tenant_a, user=user)
        management_token_create(tenant=tenant_a, user=user, name=f"t{n}", expires_at=None)
        issue_key(web_channel(tenant_a, name=f"site{n}"))

    add(0)
    baseline = _count(tenant_a)
    for n in range(1, 8):
        add(n)
    assert _count(tenant_a) == baseline
    assert baseline <= 14


def test_scim_deactivated_member_is_shown_deactivated(tenant_a: Tenant, alice: Any, bob: Any) -> None:
    ScimUser.objects.create(tenant=tenant_a, user=bob, user_name="bob@example.com", active=False)
    Membership.objects.filter(tenant=tenant_a, user=bob).update(source="scim")
    row = _member(access_review_report(tenant=tenant_a), "bob")
    assert row["active"] is False and row["managed_by"] == "scim"
