"""What SCIM changes do to access: roles follow groups at once, deactivation ends everything, reactivation
restores; audited (actor = the token) and counted."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from apps.accounts.models import ScimUser
from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.tenants.models import ManagementToken, Membership, MembershipSource, Role
from apps.tenants.services import membership_add
from tests.fixtures.auth import issue_token, login_verified, token_client
from tests.fixtures.metrics import scrape

pytestmark = pytest.mark.django_db

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def _provision(scim: Any, new_user: Any, group: str = "Hub Admins") -> tuple[str, str, Any]:
    """A SCIM user in a SCIM group; (user id, group id, account)."""
    user_id = scim.call("POST", "Users", new_user()).json()["id"]
    group_id = scim.call("POST", "Groups", {"displayName": group, "members": [{"value": user_id}]}).json()[
        "id"
    ]
    return user_id, group_id, ScimUser.objects.get(scim_id=user_id).user


def _membership(tenant: Any, user: Any) -> Membership | None:
    return Membership.objects.filter(tenant=tenant, user=user).first()


def test_no_group_no_membership_and_no_entry(scim_a: Any, tenant_a: Any, new_user: Any) -> None:
    user_id = scim_a.call("POST", "Users", new_user()).json()["id"]
    user = ScimUser.objects.get(scim_id=user_id).user
    assert _membership(tenant_a, user) is None
    client = Client()
    client.force_login(user)
    assert client.get("/t/tenant-a/").status_code == 404
    scim_a.call("POST", "Groups", {"displayName": "Unmapped", "members": [{"value": user_id}]})
    assert _membership(tenant_a, user) is None


def test_group_changes_recompute_the_role_at_once(scim_a: Any, tenant_a: Any, new_user: Any) -> None:
    user_id, admins, user = _provision(scim_a, new_user, "Hub Admins")
    membership = _membership(tenant_a, user)
    assert (
        membership is not None
        and membership.role == Role.ADMIN
        and membership.source == MembershipSource.SCIM
    )
    viewers = scim_a.call(
        "POST", "Groups", {"displayName": "Hub Viewers", "members": [{"value": user_id}]}
    ).json()["id"]
    remove = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "remove", "path": f'members[value eq "{user_id}"]'}],
    }
    scim_a.call("PATCH", f"Groups/{admins}", remove)
    assert _membership(tenant_a, user).role == Role.VIEWER  # type: ignore[union-attr]
    # renaming the group to an unmapped name drops the role; deleting a mapped group too
    rename = {"Operations": [{"op": "replace", "path": "displayName", "value": "Former Viewers"}]}
    scim_a.call("PATCH", f"Groups/{viewers}", rename)
    assert _membership(tenant_a, user) is None
    scim_a.call(
        "PATCH",
        f"Groups/{viewers}",
        {"Operations": [{"op": "replace", "path": "displayName", "value": "Hub Viewers"}]},
    )
    assert _membership(tenant_a, user).role == Role.VIEWER  # type: ignore[union-attr]
    assert scim_a.call("DELETE", f"Groups/{viewers}").status_code == 204
    assert _membership(tenant_a, user) is None
    client = Client()
    login_verified(client, user)
    assert client.get("/t/tenant-a/").status_code == 404


def test_deactivation_logs_out_revokes_tokens_and_disables(scim_a: Any, tenant_a: Any, new_user: Any) -> None:
    user_id, _group, user = _provision(scim_a, new_user)
    browser = Client()
    login_verified(browser, user)
    assert browser.get("/t/tenant-a/").status_code == 200
    api = token_client(issue_token(tenant_a, user))
    assert api.get("/api/v1/tenants/tenant-a/members/").status_code == 200
    deactivate = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}
    assert scim_a.call("PATCH", f"Users/{user_id}", deactivate).status_code == 200
    # the very next request of the signed-in browser is anonymous
    response = browser.get("/t/tenant-a/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert api.get("/api/v1/tenants/tenant-a/members/").status_code == 401
    assert not ManagementToken.objects.filter(user=user, revoked_at__isnull=True).exists()
    assert _membership(tenant_a, user) is None
    user.refresh_from_db()
    assert not user.is_active
    # reactivation restores the account and the role its groups grant
    reactivate = {"Operations": [{"op": "Replace", "path": "active", "value": "True"}]}
    assert scim_a.call("PATCH", f"Users/{user_id}", reactivate).json()["active"] is True
    user.refresh_from_db()
    assert user.is_active and _membership(tenant_a, user).role == Role.ADMIN  # type: ignore[union-attr]
    with tenant_context(tenant_a):
        actions = list(
            AuditEvent.objects.filter(tenant_id=tenant_a.pk, action__startswith="scim.user")
            .order_by("seq")
            .values_list("action", "actor_label", "target_id")
        )
    assert [a for a, _l, _t in actions] == ["scim.user_created", "scim.user_updated", "scim.user_deactivated",
                                            "scim.user_updated", "scim.user_reactivated"]  # fmt: skip
    assert all(label.startswith("scim:hubs_") and target == str(user.pk) for _a, label, target in actions)


def test_delete_deactivates_like_active_false(scim_a: Any, tenant_a: Any, new_user: Any) -> None:
    user_id, _group, user = _provision(scim_a, new_user)
    browser = Client()
    login_verified(browser, user)
    assert scim_a.call("DELETE", f"Users/{user_id}").status_code == 204
    assert browser.get("/t/tenant-a/").status_code == 302
    user.refresh_from_db()
    assert not user.is_active and _membership(tenant_a, user) is None
    assert not ScimUser.objects.filter(scim_id=user_id).exists()


def test_member_elsewhere_keeps_the_account(scim_a: Any, tenant_a: Any, tenant_b: Any, new_user: Any) -> None:
    user_id, _group, user = _provision(scim_a, new_user)
    membership_add(tenant=tenant_b, user=user, role=Role.VIEWER)
    b_token = issue_token(tenant_b, user)
    scim_a.call(
        "PATCH", f"Users/{user_id}", {"Operations": [{"op": "replace", "path": "active", "value": False}]}
    )
    user.refresh_from_db()
    assert user.is_active  # still a member of B
    assert _membership(tenant_a, user) is None and _membership(tenant_b, user) is not None
    assert (
        token_client(b_token).get("/api/v1/tenants/tenant-b/members/").status_code != 401
    )  # B's token lives


def test_break_glass_admin_is_untouched(scim_a: Any, tenant_a: Any, new_user: Any) -> None:
    user_id, _group, user = _provision(scim_a, new_user)
    Membership.objects.filter(tenant=tenant_a, user=user).update(is_break_glass=True)
    token = issue_token(tenant_a, user)
    scim_a.call("DELETE", f"Users/{user_id}")
    user.refresh_from_db()
    assert user.is_active and _membership(tenant_a, user) is not None
    assert token_client(token).get("/api/v1/tenants/tenant-a/members/").status_code == 200


def test_requests_are_counted_by_operation_and_outcome(scim_a: Any, new_user: Any) -> None:
    def count(action: str, outcome: str) -> float:
        samples = scrape().get("hub_scim_requests_total", [])
        return sum(s.value for s in samples if s.labels == {"action": action, "outcome": outcome})

    created, refused = count("user_create", "ok"), count("user_create", "invalid")
    scim_a.call("POST", "Users", new_user())
    scim_a.call("POST", "Users", new_user("x@nowhere.example"))
    assert count("user_create", "ok") == created + 1 and count("user_create", "invalid") == refused + 1


def test_no_personal_data_in_scim_error_bodies(scim_a: Any, new_user: Any) -> None:
    body = scim_a.call("POST", "Users", new_user("secret.person@nowhere.example")).content.decode()
    assert "secret.person" not in body and "nowhere" not in body
    assert get_user_model().objects.filter(email__icontains="secret.person").count() == 0


def test_groups_of_the_last_sso_sign_in_count_too(scim_a: Any, tenant_a: Any, new_user: Any) -> None:
    """A SCIM group change recomputes from the SCIM groups and the groups the IdP sent at the last sign-in."""
    from apps.accounts.models import ExternalIdentity, IdentityProvider

    user_id = scim_a.call("POST", "Users", new_user()).json()["id"]
    user = ScimUser.objects.get(scim_id=user_id).user
    provider = IdentityProvider.objects.get(tenant=tenant_a)
    ExternalIdentity.objects.create(
        identity_provider=provider, user=user, subject="s-1", groups=["Hub Admins"]
    )
    scim_a.call("POST", "Groups", {"displayName": "Hub Viewers", "members": [{"value": user_id}]})
    assert _membership(tenant_a, user).role == Role.ADMIN  # type: ignore[union-attr]  # first mapping wins
