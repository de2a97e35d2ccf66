"""Invitations endpoints: manage_members lists, invites and revokes; viewers see none of it. The generic
resource checks come from tests/fixtures/api.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.tenants.models import Invitation, Role, Tenant
from apps.tenants.services import invitation_create
from tests.fixtures.api import CreateTests, ListTests

pytestmark = pytest.mark.django_db

INVITATIONS = "/api/v1/tenants/tenant-a/invitations/"


def invite(tenant: Tenant, email: str, by: Any) -> Invitation:
    return invitation_create(
        tenant=tenant, email=email, role=Role.VIEWER, invited_by=by, base_url="http://t/"
    )


class TestInvitationsAPI(ListTests, CreateTests):
    list_view = "tenants-api:invitation-list"
    actions = ("tenants-api:invitation-revoke",)
    instance_data = {"email": "x@example.com", "status": "open"}
    viewer_reads = False
    create_data = {"email": "New.Person@Example.com", "role": "connector_manager"}
    created = {
        "email": "new.person@example.com",
        "role": "connector_manager",
        "invited_by": "alice",
        "status": "open",
    }

    @pytest.fixture
    def instance(self, tenant_a: Tenant, alice: Any) -> Invitation:
        return invite(tenant_a, "x@example.com", alice)

    def assert_created(self, body: dict[str, Any], client: APIClient, tenant: Tenant) -> None:
        listed = client.get(INVITATIONS).json()
        assert sorted(i["id"] for i in listed["results"]) == sorted(
            [body["id"], Invitation.objects.get(email="x@example.com").pk]
        )

    def test_inviting_a_member_is_400(self, alice_api: APIClient, bob: Any) -> None:
        response = alice_api.post(INVITATIONS, {"email": bob.email}, format="json")
        assert response.status_code == 400
        assert "email" in response.json()

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"email": "nope"}, "email"),
            ({"email": "a@example.com", "role": "god"}, "role"),
            ({"email": "a@example.com", "expires_at": "2099-01-01"}, "expires_at"),
        ],
    )
    def test_invite_rejects_bad_input(self, alice_api: APIClient, body: dict[str, Any], field: str) -> None:
        response = alice_api.post(INVITATIONS, body, format="json")
        assert response.status_code == 400
        assert field in response.json()

    @pytest.mark.parametrize("client_name", ["alice_api", "alice_session"])
    def test_admin_revokes(
        self, client_name: str, request: pytest.FixtureRequest, tenant_a: Tenant, alice: Any
    ) -> None:
        invitation = invite(tenant_a, "x@example.com", alice)
        client: APIClient = request.getfixturevalue(client_name)
        response = client.post(f"{INVITATIONS}{invitation.pk}/revoke/")
        assert response.status_code == 200
        assert response.json()["status"] == "revoked"
        invitation.refresh_from_db()
        assert invitation.revoked_at is not None
        # Revoking twice changes nothing and is not an error.
        assert client.post(f"{INVITATIONS}{invitation.pk}/revoke/").json()["status"] == "revoked"

    def test_revoke_is_post_only(self, alice_api: APIClient, tenant_a: Tenant, alice: Any) -> None:
        invitation = invite(tenant_a, "x@example.com", alice)
        assert alice_api.get(f"{INVITATIONS}{invitation.pk}/revoke/").status_code == 405

    def test_invitation_status_filter(
        self, alice_api: APIClient, tenant_a: Tenant, alice: Any, django_assert_max_num_queries: Any
    ) -> None:
        open_one = invite(tenant_a, "open@example.com", alice)
        expired = invite(tenant_a, "expired@example.com", alice)
        Invitation.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))
        revoked = invite(tenant_a, "revoked@example.com", alice)
        Invitation.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
        for n in range(10):
            invite(tenant_a, f"bulk{n}@example.com", alice)

        def ids(status: str) -> list[int]:
            response = alice_api.get(INVITATIONS, {"status": status, "email": "@"})
            assert response.status_code == 200
            return [i["id"] for i in response.json()["results"]]

        assert open_one.pk in ids("open")
        assert ids("expired") == [expired.pk]
        assert ids("revoked") == [revoked.pk]
        assert ids("accepted") == []
        assert alice_api.get(INVITATIONS, {"status": "lost"}).status_code == 400
        with django_assert_max_num_queries(6):
            assert alice_api.get(INVITATIONS).json()["count"] == 13
