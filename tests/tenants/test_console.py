"""Console pages for members, invitations, tenant settings and the operators' tenant list."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from apps.core.confirm import CONFIRMED
from apps.core.context import tenant_context
from apps.tenants.models import Invitation, Membership, Region, RegionTenant, Role, Tenant
from apps.tenants.services import membership_add
from tests.factories import UserFactory
from tests.fixtures.auth import login_verified

pytestmark = pytest.mark.django_db


def url(name: str, tenant: Tenant, **kwargs: Any) -> str:
    return reverse(name, kwargs={"tenant_slug": tenant.slug, **kwargs})


def rows(client: Client, tenant: Tenant, **params: str) -> str:
    """The member table alone, as the HTMX filter requests it."""
    return str(client.get(url("tenants:members", tenant), params, HTTP_HX_REQUEST="true").content.decode())


def test_admin_sees_members_and_can_filter(client: Client, alice: Any, bob: Any, tenant_a: Tenant) -> None:
    login_verified(client, alice)
    response = client.get(url("tenants:members", tenant_a))
    assert response.status_code == 200
    body = response.content.decode()
    assert "alice" in body and "bob" in body
    assert reverse("tenants:member-invite", kwargs={"tenant_slug": tenant_a.slug}) in body
    filtered = rows(client, tenant_a, role="viewer")
    assert ">bob<" in filtered and ">alice<" not in filtered
    searched = rows(client, tenant_a, q="ali")
    assert ">alice<" in searched and ">bob<" not in searched


def test_member_list_paginates_without_n_plus_one(
    client: Client, alice: Any, tenant_a: Tenant, django_assert_max_num_queries: Any
) -> None:
    for i in range(30):
        membership_add(tenant=tenant_a, user=UserFactory.create(username=f"member{i:02d}"), role=Role.VIEWER)
    login_verified(client, alice)
    with django_assert_max_num_queries(12):
        first = client.get(url("tenants:members", tenant_a))
    assert "Page 1 of 2" in first.content.decode()
    second = rows(client, tenant_a, page="2")
    assert "member29" in second and "member00" not in second


def test_htmx_filter_returns_only_rows(client: Client, alice: Any, bob: Any, tenant_a: Tenant) -> None:
    login_verified(client, alice)
    response = client.get(url("tenants:members", tenant_a), {"q": "bob"}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert "<table>" in body and "<html" not in body and "bob" in body


def test_viewer_reads_members_but_cannot_manage(
    client: Client, bob: Any, bob_membership: Membership, tenant_a: Tenant
) -> None:
    client.force_login(bob)
    body = client.get(url("tenants:members", tenant_a)).content.decode()
    assert "bob" in body
    assert "Invite member" not in body
    assert client.get(url("tenants:member-invite", tenant_a)).status_code == 403
    assert (
        client.post(url("tenants:member-edit", tenant_a, pk=bob_membership.pk), {"role": "admin"}).status_code
        == 403
    )
    bob_membership.refresh_from_db()
    assert bob_membership.role == Role.VIEWER
    assert client.get(url("tenants:settings", tenant_a)).status_code == 403


def test_invite_sends_an_expiring_link(client: Client, alice: Any, tenant_a: Tenant) -> None:
    login_verified(client, alice)
    response = client.post(
        url("tenants:member-invite", tenant_a), {"email": "New.Person@Example.com", "role": "viewer"}
    )
    assert response.status_code == 302
    invitation = Invitation.objects.get(tenant=tenant_a)
    assert invitation.email == "new.person@example.com"
    assert len(mail.outbox) == 1
    assert "/accounts/invitations/" in mail.outbox[0].body
    assert mail.outbox[0].to == ["new.person@example.com"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"email": "not-an-email", "role": "viewer"}, "email"),
        ({"email": "x@example.com", "role": "king"}, "role"),
    ],
)
def test_invite_bad_input_shows_field_errors(
    client: Client, alice: Any, tenant_a: Tenant, data: dict[str, str], field: str
) -> None:
    login_verified(client, alice)
    response = client.post(url("tenants:member-invite", tenant_a), data)
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert not Invitation.objects.exists()


def test_invite_existing_member_is_refused(client: Client, alice: Any, bob: Any, tenant_a: Tenant) -> None:
    login_verified(client, alice)
    response = client.post(url("tenants:member-invite", tenant_a), {"email": bob.email, "role": "viewer"})
    assert response.status_code == 400
    assert "already a member" in response.content.decode()


def test_role_change_and_removal(
    client: Client, alice: Any, bob: Any, bob_membership: Membership, tenant_a: Tenant
) -> None:
    login_verified(client, alice)
    response = client.post(
        url("tenants:member-edit", tenant_a, pk=bob_membership.pk),
        {"role": "localization_editor", "locales": "de, fr-CA", "regions": ["eu"]},
    )
    assert response.status_code == 302
    bob_membership.refresh_from_db()
    assert (bob_membership.role, bob_membership.locales, bob_membership.regions) == (
        "localization_editor",
        ["de", "fr-CA"],
        ["eu"],
    )
    bad = client.post(
        url("tenants:member-edit", tenant_a, pk=bob_membership.pk), {"role": "viewer", "locales": "Deutsch"}
    )
    assert bad.status_code == 400
    assert "locales" in bad.context["form"].errors
    assert (
        client.post(url("tenants:member-remove", tenant_a, pk=bob_membership.pk), CONFIRMED).status_code
        == 302
    )
    assert not Membership.objects.filter(pk=bob_membership.pk).exists()


def test_last_admin_cannot_be_demoted_or_removed(client: Client, alice: Any, tenant_a: Tenant) -> None:
    login_verified(client, alice)
    own = Membership.objects.get(user=alice, tenant=tenant_a)
    response = client.post(url("tenants:member-edit", tenant_a, pk=own.pk), {"role": "viewer"})
    assert response.status_code == 400
    assert "at least one admin" in response.content.decode()
    response = client.post(url("tenants:member-remove", tenant_a, pk=own.pk), CONFIRMED, follow=True)
    assert "last admin" in response.content.decode()
    own.refresh_from_db()
    assert own.role == Role.ADMIN


def test_settings_edit_and_bad_locale(
    client: Client, alice: Any, tenant_a: Tenant, region_eu: Region
) -> None:
    login_verified(client, alice)
    data = {
        "name": "Tenant A renamed",
        "home_region": region_eu.pk,
        "default_locale": "fr",
        "enabled_locales": "en, de",
        "require_2fa": "on",
    }
    assert client.post(url("tenants:settings", tenant_a), data).status_code == 302
    tenant_a.refresh_from_db()
    assert (tenant_a.name, tenant_a.default_locale, tenant_a.enabled_locales, tenant_a.require_2fa) == (
        "Tenant A renamed",
        "fr",
        ["fr", "en", "de"],
        True,
    )
    bad = client.post(url("tenants:settings", tenant_a), {**data, "enabled_locales": "en, Klingon!"})
    assert bad.status_code == 400
    assert "enabled_locales" in bad.context["form"].errors


def test_home_region_is_not_editable_in_settings(
    client: Client, alice: Any, tenant_a: Tenant, region_us: Region
) -> None:
    login_verified(client, alice)
    page = client.get(url("tenants:settings", tenant_a)).content.decode()
    assert "data migration" in page
    data = {
        "name": tenant_a.name,
        "home_region": region_us.pk,
        "default_locale": "en",
        "enabled_locales": "en",
    }
    assert client.post(url("tenants:settings", tenant_a), data).status_code == 302
    tenant_a.refresh_from_db()
    assert tenant_a.region_code == "eu"


def test_operators_list_and_create_tenants(
    client: Client, operator: Any, tenant_a: Tenant, region_us: Region
) -> None:
    login_verified(client, operator)
    listing = client.get(reverse("tenants:tenant-list"))
    assert "Tenant A" in listing.content.decode()
    response = client.post(
        reverse("tenants:tenant-create"),
        {
            "name": "Initech",
            "slug": "initech",
            "home_region": region_us.pk,
            "default_locale": "en",
            "enabled_locales": "en, es",
        },
    )
    assert response.status_code == 302
    created = Tenant.objects.get(slug="initech")
    assert (created.region_code, created.enabled_locales) == ("us", ["en", "es"])
    with tenant_context(created):
        assert RegionTenant.objects.get().slug == "initech"


@pytest.mark.parametrize(("slug", "error_field"), [("Bad Slug!", "slug"), ("tenant-a", "slug")])
def test_tenant_create_bad_input(
    client: Client, operator: Any, tenant_a: Tenant, region_us: Region, slug: str, error_field: str
) -> None:
    login_verified(client, operator)
    response = client.post(
        reverse("tenants:tenant-create"),
        {
            "name": "X",
            "slug": slug,
            "home_region": region_us.pk,
            "default_locale": "en",
            "enabled_locales": "",
        },
    )
    assert response.status_code == 400
    assert error_field in response.context["form"].errors
    assert Tenant.objects.count() == 1


def test_non_operators_do_not_see_tenant_admin(client: Client, alice: Any) -> None:
    login_verified(client, alice)
    assert client.get(reverse("tenants:tenant-list")).status_code == 404
    assert client.post(reverse("tenants:tenant-create"), {"name": "X"}).status_code == 404


def test_console_shell_shows_navigation_for_role(client: Client, bob: Any, tenant_a: Tenant) -> None:
    client.force_login(bob)
    body = client.get(url("console:tenant-home", tenant_a)).content.decode()
    assert "Tenants &amp; members" in body and "Dashboards" in body
    assert "Connectors" not in body and "Audit" not in body


def test_membership_changes_are_audited_with_the_diff(
    client: Client, alice: Any, bob: Any, bob_membership: Membership, tenant_a: Tenant
) -> None:
    from apps.audit.models import AuditEvent
    from apps.audit.selectors import audit_verify_chain

    login_verified(client, alice)
    client.post(
        url("tenants:member-edit", tenant_a, pk=bob_membership.pk),
        {"role": "connector_manager"},
        HTTP_X_REQUEST_ID="req-role-change-1",
    )
    with tenant_context(tenant_a):
        event = AuditEvent.objects.get(action="member.role_changed")
    assert (event.actor_label, event.target_label, event.request_id) == ("alice", "bob", "req-role-change-1")
    assert event.changes == {"role": ["viewer", "connector_manager"]}
    assert audit_verify_chain(tenant=tenant_a).ok
