"""Identity events (SSO sign-ins and denials, SSO settings and mappings, SCIM, memberships) are findable
in the compliance console with the "Identity" category, and stay in their tenant."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.accounts.models import IdentityProvider
from apps.accounts.services.sso import SsoClaims, SsoRefused
from apps.audit.models import AuditEvent
from apps.audit.selectors import audit_event_list
from apps.audit.services import audit_record
from apps.core.context import tenant_context
from apps.tenants.models import Tenant
from tests.fixtures.auth import login_verified

pytestmark = pytest.mark.django_db


def events_url(tenant: Tenant) -> str:
    return reverse("audit:event-list", kwargs={"tenant_slug": tenant.slug})


def shown(client: Client, tenant: Tenant, **params: str) -> list[str]:
    response = client.get(events_url(tenant), params, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    return [event.action for event in response.context["page_obj"]]


@pytest.fixture
def identity_events(sso_login: Any, idp_a: IdentityProvider, tenant_a: Tenant, alice: Any) -> Tenant:
    idp_a.default_role = "viewer"
    idp_a.save()
    sso_login(idp_a, SsoClaims(subject="s-1", email="ann@acme.example"))
    with pytest.raises(SsoRefused):
        sso_login(idp_a, SsoClaims(subject="s-2", email="eve@elsewhere.example"))
    audit_record("sso.mapping_created", tenant=tenant_a, actor=alice, changes={"group": ["", "acme-admins"]})
    audit_record("scim.user_deactivated", tenant=tenant_a, target_type="user", target_id=1)
    audit_record("connection.updated", tenant=tenant_a, actor=alice)
    return tenant_a


def test_identity_category_shows_sign_ins_denials_mappings_scim_and_members(
    client: Client, officer: Any, identity_events: Tenant
) -> None:
    login_verified(client, officer)
    actions = shown(client, identity_events, category="identity")
    assert "connection.updated" not in actions
    assert {"security.sso_login", "member.added", "sso.mapping_created", "scim.user_deactivated"} <= set(
        actions
    )
    assert actions.count("security.sso_login") == 2
    denied = shown(client, identity_events, category="identity", outcome="denied")
    assert denied == ["security.sso_login"]
    page = client.get(events_url(identity_events), {"category": "identity"}).content.decode()
    assert 'name="category"' in page and "Identity" in page


def test_the_denial_reason_is_on_the_event_page(
    client: Client, officer: Any, identity_events: Tenant
) -> None:
    login_verified(client, officer)
    with tenant_context(identity_events):
        denied = AuditEvent.objects.get(action="security.sso_login", outcome="denied")
    detail = reverse("audit:event-detail", kwargs={"tenant_slug": identity_events.slug, "seq": denied.seq})
    body = client.get(detail).content.decode()
    assert "domain_not_verified" in body
    assert "eve@elsewhere.example" not in body  # no personal data of the refused person


def test_an_unknown_category_is_a_form_error_not_a_500(
    client: Client, officer: Any, tenant_a: Tenant
) -> None:
    login_verified(client, officer)
    response = client.get(events_url(tenant_a), {"category": "nope"})
    assert response.status_code in (200, 400)
    assert response.context["filter_form"].errors


def test_the_identity_events_stay_in_their_tenant(
    client: Client, charlie: Any, identity_events: Tenant, tenant_b: Tenant
) -> None:
    login_verified(client, charlie)
    assert client.get(events_url(identity_events), {"category": "identity"}).status_code == 404
    with tenant_context(tenant_b):
        assert not AuditEvent.objects.filter(action__startswith="security.sso").exists()


def test_the_export_keeps_the_category(client: Client, officer: Any, identity_events: Tenant) -> None:
    login_verified(client, officer)
    export = reverse("audit:export", kwargs={"tenant_slug": identity_events.slug})
    response = client.post(export, {"format": "jsonl", "category": "identity"})
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["filters"]["category"] == "identity"
    with tenant_context(identity_events):
        everything = AuditEvent.objects.count()
        identity = audit_event_list(filters={"category": "identity"}).count()
    assert manifest["count"] == identity < everything
