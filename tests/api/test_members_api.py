"""Members endpoints: every member reads, manage_members writes (adding someone is an invitation), the
last admin stays; the generic resource checks come from tests/fixtures/api.py."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlparse

import pytest
from django.core import mail
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.tenants.models import Invitation, Membership, Role, Tenant
from apps.tenants.services import membership_add
from tests.factories import UserFactory
from tests.fixtures.api import APIResourceTests
from tests.fixtures.auth import session_client

pytestmark = pytest.mark.django_db

MEMBERS = "/api/v1/tenants/tenant-a/members/"


def member_url(membership: Membership) -> str:
    return f"{MEMBERS}{membership.pk}/"


@pytest.fixture
def alice_membership(tenant_a: Tenant, alice: Any) -> Membership:
    return Membership.objects.get(tenant=tenant_a, user=alice)


# --- add or invite ----------------------------------------------------------------------------------------
INVITATION_FIELDS = {"id", "email", "role", "status", "invited_by", "expires_at", "accepted_at"}
INVITATION_FIELDS |= {"revoked_at", "created_at"}


def _shape(value: Any) -> Any:
    """The structure of a JSON value: keys and value types, not the values."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(item) for item in value]
    return type(value).__name__


class TestMembersAPI(APIResourceTests):
    list_view = "tenants-api:member-list"
    detail_view = "tenants-api:member-detail"
    instance_data = {"user": {"username": "bob"}, "role": "viewer"}
    # Adding a member by email is an invitation (202): no membership until the person accepts.
    create_data = {"email": "new@example.com", "role": "viewer"}
    created = {"email": "new@example.com", "role": "viewer", "status": "open"}
    create_status = 202
    update_data = {"role": "compliance_officer"}

    @pytest.fixture
    def instance(self, bob_membership: Membership) -> Membership:
        return bob_membership

    def state(self, instance: Any, tenant: Tenant, request: pytest.FixtureRequest) -> Any:
        return {**super().state(instance, tenant, request), "invitations": Invitation.objects.count()}

    def assert_created(self, body: dict[str, Any], client: APIClient, tenant: Tenant) -> None:
        assert Invitation.objects.get(tenant=tenant).email == "new@example.com"
        assert len(mail.outbox) == 1

    # --- list -----------------------------------------------------------------------------------------------
    @pytest.mark.parametrize("client_name", ["bob_session", "bob_api", "alice_session", "alice_api"])
    def test_members_list_for_viewers_and_admins(
        self, client_name: str, request: pytest.FixtureRequest, bob: Any
    ) -> None:
        client: APIClient = request.getfixturevalue(client_name)
        response = client.get(MEMBERS)
        assert response.status_code == 200
        body = response.json()
        assert body["count"] == 2
        assert [(m["user"]["username"], m["role"]) for m in body["results"]] == [
            ("alice", "admin"),
            ("bob", "viewer"),
        ]

    def test_members_filter_by_role_and_search(self, bob_api: APIClient) -> None:
        assert [
            m["user"]["username"] for m in bob_api.get(MEMBERS, {"role": "viewer"}).json()["results"]
        ] == ["bob"]
        assert [m["user"]["username"] for m in bob_api.get(MEMBERS, {"q": "ALI"}).json()["results"]] == [
            "alice"
        ]
        assert bob_api.get(MEMBERS, {"role": "emperor"}).status_code == 400

    def test_member_list_has_no_n_plus_1(
        self, tenant_a: Tenant, alice_api: APIClient, bob: Any, django_assert_max_num_queries: Any
    ) -> None:
        for _n in range(25):
            membership_add(tenant=tenant_a, user=UserFactory.create(), role=Role.VIEWER)
        # token, membership check, last-use write, membership in the tenant, count, page: flat in the size
        with django_assert_max_num_queries(6):
            response = alice_api.get(MEMBERS, {"limit": 100})
        assert response.json()["count"] == 27
        assert len(response.json()["results"]) == 27

    def test_member_list_is_paginated(self, tenant_a: Tenant, bob_api: APIClient) -> None:
        for _n in range(3):
            membership_add(tenant=tenant_a, user=UserFactory.create(), role=Role.VIEWER)
        body = bob_api.get(MEMBERS, {"limit": 2, "offset": 2}).json()
        assert body["count"] == 5
        assert len(body["results"]) == 2
        assert body["previous"] is not None

    def test_adding_by_email_never_tells_whether_the_person_has_an_account(
        self, alice_api: APIClient, tenant_a: Tenant, tenant_b: Tenant
    ) -> None:
        """The enumeration attack: an admin of A probes an address of a user of B and an unknown address."""
        dora = UserFactory.create(username="dora", email="dora@example.com", first_name="Dora")
        membership_add(tenant=tenant_b, user=dora, role=Role.ADMIN)
        with tenant_context(tenant_a):
            audit_before = AuditEvent.objects.filter(action="member.invited").count()

        known = alice_api.post(MEMBERS, {"email": "DORA@example.com", "role": "admin"}, format="json")
        unknown = alice_api.post(MEMBERS, {"email": "nobody@example.com", "role": "admin"}, format="json")

        assert known.status_code == unknown.status_code == 202, (known.content, unknown.content)
        assert known.headers["Content-Type"] == unknown.headers["Content-Type"]
        assert _shape(known.json()) == _shape(unknown.json())
        assert set(known.json()) == INVITATION_FIELDS
        # Nothing of the account comes back: no user id, username or name.
        assert "Dora" not in known.content.decode()
        # No membership until dora accepts in the console; both invitations are recorded and audited.
        assert not Membership.objects.filter(tenant=tenant_a, user=dora).exists()
        assert set(Invitation.objects.filter(tenant=tenant_a).values_list("email", flat=True)) == {
            "dora@example.com",
            "nobody@example.com",
        }
        assert len(mail.outbox) == 2
        with tenant_context(tenant_a):
            assert AuditEvent.objects.filter(action="member.invited").count() == audit_before + 2

        link = re.search(r"https?://\S+/accounts/invitations/\S+/", str(mail.outbox[0].body))
        assert link is not None
        # dora is an admin of B: her session has passed a second factor.
        response = session_client(dora).post(urlparse(link[0]).path)
        assert response.status_code == 302, response.content
        assert Membership.objects.get(tenant=tenant_a, user=dora).role == Role.ADMIN

    def test_adding_an_existing_member_is_400(self, alice_api: APIClient, bob: Any) -> None:
        response = alice_api.post(MEMBERS, {"email": bob.email, "role": "admin"}, format="json")
        assert response.status_code == 400
        assert "email" in response.json()
        assert Membership.objects.get(user=bob).role == Role.VIEWER

    def test_invitation_cannot_carry_locales(self, alice_api: APIClient) -> None:
        response = alice_api.post(MEMBERS, {"email": "new@example.com", "locales": ["de"]}, format="json")
        assert response.status_code == 400
        assert "locales" in response.json()

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"email": "not-an-email"}, "email"),
            ({"email": "x@example.com", "role": "emperor"}, "role"),
            ({"email": "x@example.com", "regions": ["mars"]}, "regions"),
            ({"email": "x@example.com", "locales": ["english"]}, "locales"),
            ({"email": "x@example.com", "is_admin": True}, "is_admin"),
            ({}, "email"),
        ],
    )
    def test_add_rejects_bad_input(self, alice_api: APIClient, body: dict[str, Any], field: str) -> None:
        response = alice_api.post(MEMBERS, body, format="json")
        assert response.status_code == 400, response.content
        assert field in response.json()

    # --- detail, role change, removal ---------------------------------------------------------------------
    def test_admin_sets_locales_without_changing_the_role(
        self, alice_api: APIClient, bob_membership: Membership
    ) -> None:
        response = alice_api.patch(member_url(bob_membership), {"locales": ["fr-CA"]}, format="json")
        assert response.status_code == 200, response.content
        assert response.json()["role"] == "viewer"
        assert response.json()["locales"] == ["fr-CA"]

    @pytest.mark.parametrize(
        ("body", "field"),
        [({"role": "emperor"}, "role"), ({"user": 5}, "user"), ({"tenant": "tenant-b"}, "tenant")],
    )
    def test_role_change_rejects_bad_input(
        self, alice_api: APIClient, bob_membership: Membership, body: dict[str, Any], field: str
    ) -> None:
        response = alice_api.patch(member_url(bob_membership), body, format="json")
        assert response.status_code == 400
        assert field in response.json()

    def test_last_admin_cannot_be_demoted_or_removed(
        self, alice_api: APIClient, alice_membership: Membership
    ) -> None:
        response = alice_api.patch(member_url(alice_membership), {"role": "viewer"}, format="json")
        assert response.status_code == 409
        assert "admin" in response.json()["detail"]
        response = alice_api.delete(member_url(alice_membership))
        assert response.status_code == 409
        assert "last admin" in response.json()["detail"]
        alice_membership.refresh_from_db()
        assert alice_membership.role == Role.ADMIN

    def test_unknown_member_id_is_404(self, alice_api: APIClient) -> None:
        assert alice_api.get(f"{MEMBERS}999999/").status_code == 404
        assert alice_api.get(f"{MEMBERS}abc/").status_code == 404
