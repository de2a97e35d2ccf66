"""Connections console: create/edit/test per kind, write-only secrets, field map, access rules, queries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.core.confirm import CONFIRMED
from apps.core.context import tenant_context
from apps.integrations.demo import demo_config
from apps.integrations.models import Connection
from apps.integrations.services.connections import connection_grant
from apps.tenants.models import Tenant
from tests.fixtures.auth import login_verified
from tests.integrations.helpers import KINDS, make_connection

pytestmark = pytest.mark.django_db


def url(name: str, tenant: Tenant, connection: Connection | None = None) -> str:
    kwargs: dict[str, Any] = {"tenant_slug": tenant.slug}
    if connection is not None:
        kwargs["pk"] = connection.pk
    return reverse(f"integrations:{name}", kwargs=kwargs)


def all_secrets(sims: dict[str, Any]) -> list[str]:
    values = []
    for kind in KINDS:
        _settings, credentials = demo_config(kind, sims[kind])
        values += [v for v in credentials.values() if v]
    return values


def test_empty_state_and_navigation(connor_client: Client, tenant_a: Tenant) -> None:
    response = connor_client.get(url("connection-list", tenant_a))
    assert response.status_code == 200
    assert "No connections yet" in response.content.decode()
    assert url("connection-create", tenant_a) in response.content.decode()
    home = connor_client.get(reverse("console:tenant-home", kwargs={"tenant_slug": tenant_a.slug}))
    assert url("connection-list", tenant_a) in home.content.decode()


@pytest.mark.parametrize("kind", KINDS)
def test_create_edit_and_test_each_kind(
    connor_client: Client, tenant_a: Tenant, sims: dict[str, Any], kind: str
) -> None:
    picker = connor_client.get(url("connection-create", tenant_a))
    assert picker.status_code == 200
    assert f'value="{kind}"' in picker.content.decode()
    form_page = connor_client.get(url("connection-create", tenant_a), {"kind": kind})
    assert form_page.status_code == 200
    assert 'type="password"' in form_page.content.decode()
    label = {"salesforce": "Salesforce", "hubspot": "HubSpot", "servicenow": "ServiceNow", "sap": "SAP",
             "sap_odata": "SAP S/4HANA OData", "dynamics365": "Dynamics 365"}[kind]  # fmt: skip
    assert f"New {label}" in form_page.content.decode()
    settings, credentials = demo_config(kind, sims[kind])
    data = {"kind": kind, "name": f"My {kind}", "endpoint_region": "eu", **settings, **credentials}
    response = connor_client.post(url("connection-create", tenant_a), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    with tenant_context(tenant_a):
        connection = Connection.objects.get(name=f"My {kind}")
        assert connection.secrets == credentials
    edit = connor_client.get(response["Location"])
    page = edit.content.decode()
    assert edit.status_code == 200
    assert "Set — leave blank to keep it." in page
    assert f"<dd>{label}" in page
    for secret in credentials.values():
        assert secret not in page

    # Save with blank secrets: they stay as they were.
    response = connor_client.post(
        url("connection-edit", tenant_a, connection),
        {"name": f"My {kind} (EU)", "endpoint_region": "eu", **settings},
    )
    assert response.status_code == 302
    with tenant_context(tenant_a):
        connection.refresh_from_db()
        assert connection.secrets == credentials
    assert connection.name == f"My {kind} (EU)"

    # "Test connection" over htmx returns just the result fragment.
    fragment = connor_client.post(url("connection-test", tenant_a, connection), HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200
    body = fragment.content.decode()
    assert "Connection test passed" in body
    assert "<html" not in body


def test_wrong_password_is_shown_in_plain_words(
    connor_client: Client, tenant_a: Tenant, sims: dict[str, Any]
) -> None:
    connection = make_connection(tenant_a, sims, "servicenow")
    response = connor_client.post(
        url("connection-edit", tenant_a, connection),
        {
            "name": connection.name,
            "endpoint_region": "eu",
            "instance_url": sims["servicenow"]["instance_url"],
            "username": sims["servicenow"]["username"],
            "password": "not-the-password-42",
        },
    )
    assert response.status_code == 302
    response = connor_client.post(url("connection-test", tenant_a, connection), follow=True)
    page = response.content.decode()
    assert "The vendor refused the credentials" in page
    assert "User Not Authenticated" in page
    assert "not-the-password-42" not in page
    assert "Traceback" not in page


def test_secrets_never_appear_on_any_page(
    connor_client: Client, tenant_a: Tenant, sims: dict[str, Any]
) -> None:
    created = [make_connection(tenant_a, sims, kind) for kind in KINDS]
    pages = [connor_client.get(url("connection-list", tenant_a))]
    for connection in created:
        for name in ("connection-edit", "connection-field-map", "connection-delete"):
            pages.append(connor_client.get(url(name, tenant_a, connection)))
        pages.append(connor_client.post(url("connection-test", tenant_a, connection), HTTP_HX_REQUEST="true"))
        # A refused edit re-renders the form: the typed secret is not echoed back either.
        pages.append(
            connor_client.post(
                url("connection-edit", tenant_a, connection),
                {
                    "name": "",
                    "endpoint_region": "eu",
                    "password": "typed-secret-9",
                    "access_token": "typed-secret-9",
                },
            )
        )
    for response in pages:
        assert response.status_code in (200, 400)
        html = response.content.decode()
        for secret in [*all_secrets(sims), "typed-secret-9"]:
            assert secret not in html, (response.request["PATH_INFO"], secret)


def test_form_errors(connor_client: Client, tenant_a: Tenant, sims: dict[str, Any]) -> None:
    response = connor_client.post(
        url("connection-create", tenant_a),
        {"kind": "sap", "name": "", "endpoint_region": "eu", "endpoint_url": "", "username": "u"},
    )
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()


def test_field_map_editor(connor_client: Client, tenant_a: Tenant, sims: dict[str, Any]) -> None:
    connection = make_connection(tenant_a, sims, "salesforce")
    target = url("connection-field-map", tenant_a, connection)
    page = connor_client.get(target)
    assert page.status_code == 200
    assert "MailingCountry" in page.content.decode()  # the defaults are shown for reference
    bad = connor_client.post(target, {"field_map": "{not json"})
    assert bad.status_code == 400
    assert "Not valid JSON" in bad.content.decode()
    bad = connor_client.post(target, {"field_map": json.dumps({"invoices": {"x": "y"}})})
    assert bad.status_code == 400
    assert "Unknown stream" in bad.content.decode()
    good = connor_client.post(target, {"field_map": json.dumps({"contacts": {"phone": "MobilePhone"}})})
    assert good.status_code == 302
    with tenant_context(tenant_a):
        connection.refresh_from_db()
    assert connection.field_map == {"contacts": {"phone": "MobilePhone"}}
    typo = connor_client.post(target, {"field_map": json.dumps({"contacts": {"phone": "Phone_Typo__c"}})})
    assert typo.status_code == 302
    result = connor_client.post(url("connection-test", tenant_a, connection), HTTP_HX_REQUEST="true")
    assert "Phone_Typo__c" in result.content.decode()


def test_enable_disable_and_delete(connor_client: Client, tenant_a: Tenant, sims: dict[str, Any]) -> None:
    connection = make_connection(tenant_a, sims, "hubspot")
    assert connor_client.post(url("connection-enable", tenant_a, connection), CONFIRMED).status_code == 302
    with tenant_context(tenant_a):
        connection.refresh_from_db()
    assert connection.enabled is False
    page = connor_client.get(url("connection-list", tenant_a)).content.decode()
    assert "Disabled" in page
    connor_client.post(url("connection-enable", tenant_a, connection), {"enabled": "on"})
    with tenant_context(tenant_a):
        connection.refresh_from_db()
    assert connection.enabled is True
    confirm = connor_client.get(url("connection-delete", tenant_a, connection))
    assert "cannot be undone" in confirm.content.decode()
    assert connor_client.post(url("connection-delete", tenant_a, connection), CONFIRMED).status_code == 302
    with tenant_context(tenant_a):
        assert not Connection.objects.exists()


def test_password_flow_warning_is_shown(
    connor_client: Client, tenant_a: Tenant, sims: dict[str, Any]
) -> None:
    d = sims["salesforce"]
    data = {
        "kind": "salesforce",
        "name": "Legacy org",
        "endpoint_region": "eu",
        "login_url": d["login_url"],
        "auth": "password",
        "client_id": d["client_id"],
        "client_secret": d["client_secret"],
        "username": d["username"],
        "password": d["password"],
        "security_token": d["security_token"],
    }
    response = connor_client.post(url("connection-create", tenant_a), data, follow=True)
    assert "2027-02-20" in response.content.decode()


def test_residency_refusal_is_a_field_error(
    connor_client: Client, tenant_a: Tenant, sims: dict[str, Any]
) -> None:
    from apps.policies.services import policy_apply_preset

    policy_apply_preset(tenant=tenant_a, preset="strict")
    settings, credentials = demo_config("sap", sims["sap"])
    response = connor_client.post(
        url("connection-create", tenant_a),
        {"kind": "sap", "name": "ERP", "endpoint_region": "us", **settings, **credentials},
    )
    assert response.status_code == 400
    assert "refused by this tenant" in response.content.decode()


def test_viewer_gets_403_everywhere(client: Client, bob: Any, tenant_a: Tenant, sims: dict[str, Any]) -> None:
    connection = make_connection(tenant_a, sims, "sap")
    client.force_login(bob)
    assert client.get(url("connection-list", tenant_a)).status_code == 403
    assert client.get(url("connection-create", tenant_a)).status_code == 403
    for name in ("connection-edit", "connection-field-map", "connection-delete"):
        assert client.get(url(name, tenant_a, connection)).status_code == 403, name
    for name in ("connection-edit", "connection-test", "connection-enable", "connection-delete"):
        assert client.post(url(name, tenant_a, connection)).status_code == 403, name


def test_object_permission_opens_one_connection(
    client: Client, alice: Any, bob: Any, tenant_a: Tenant, sims: dict[str, Any]
) -> None:
    shared = make_connection(tenant_a, sims, "hubspot", name="Shared")
    other = make_connection(tenant_a, sims, "sap", name="Other")
    connection_grant(connection=shared, tenant=tenant_a, user=bob, actor=alice)
    client.force_login(bob)
    listing = client.get(url("connection-list", tenant_a))
    assert listing.status_code == 200
    assert "Shared" in listing.content.decode()
    assert "Other" not in listing.content.decode()
    assert url("connection-create", tenant_a) not in listing.content.decode()
    assert client.get(url("connection-edit", tenant_a, shared)).status_code == 200
    response = client.post(
        url("connection-edit", tenant_a, shared),
        {
            "name": "Shared CRM",
            "endpoint_region": "eu",
            "base_url": sims["hubspot"]["base_url"],
            "auth": "private_app",
        },
    )
    assert response.status_code == 302
    test = client.post(url("connection-test", tenant_a, shared), HTTP_HX_REQUEST="true")
    assert "Connection test passed" in test.content.decode()
    assert client.get(url("connection-edit", tenant_a, other)).status_code == 403
    assert client.post(url("connection-test", tenant_a, other)).status_code == 403
    assert client.get(url("connection-create", tenant_a)).status_code == 403
    assert client.post(url("connection-delete", tenant_a, shared)).status_code == 403


def test_admin_with_second_factor_manages_connections(client: Client, alice: Any, tenant_a: Tenant) -> None:
    login_verified(client, alice)
    assert client.get(url("connection-list", tenant_a)).status_code == 200


def test_charlie_gets_404(client: Client, charlie: Any, tenant_a: Tenant, sims: dict[str, Any]) -> None:
    connection = make_connection(tenant_a, sims, "sap")
    client.force_login(charlie)
    for name in ("connection-list", "connection-create"):
        assert client.get(url(name, tenant_a)).status_code == 404
    for name in (
        "connection-edit",
        "connection-test",
        "connection-enable",
        "connection-field-map",
        "connection-delete",
    ):
        assert client.get(url(name, tenant_a, connection)).status_code in (404, 405)
        assert client.post(url(name, tenant_a, connection)).status_code == 404


def test_other_tenants_connection_is_404_inside_own_tenant(
    connor_client: Client, tenant_a: Tenant, tenant_b: Tenant, sims: dict[str, Any]
) -> None:
    """A's manager asks for B's connection id under A's slug: it does not exist there."""
    foreign = make_connection(tenant_b, sims, "sap")
    assert connor_client.get(url("connection-edit", tenant_a, foreign)).status_code == 404
    assert connor_client.post(url("connection-test", tenant_a, foreign)).status_code == 404


@contextmanager
def count_queries() -> Iterator[list[CaptureQueriesContext]]:
    with ExitStack() as stack:
        yield [stack.enter_context(CaptureQueriesContext(connections[a])) for a in ("default", "region_eu")]


def _list_queries(client: Client, tenant: Tenant) -> int:
    with count_queries() as contexts:
        assert client.get(url("connection-list", tenant)).status_code == 200
    return sum(len(c.captured_queries) for c in contexts)


def test_list_query_count_does_not_grow(
    client: Client, connor: Any, bob: Any, alice: Any, tenant_a: Tenant, sims: dict[str, Any]
) -> None:
    first = [make_connection(tenant_a, sims, "sap", name=f"ERP {i:02}") for i in range(3)]
    client.force_login(connor)
    few = _list_queries(client, tenant_a)
    for i in range(3, 20):
        make_connection(tenant_a, sims, "sap", name=f"ERP {i:02}")
    assert _list_queries(client, tenant_a) == few
    # The same for a member who sees connections through object permissions.
    for connection in first:
        connection_grant(connection=connection, tenant=tenant_a, user=bob, actor=alice)
    client.force_login(bob)
    granted = _list_queries(client, tenant_a)
    with tenant_context(tenant_a):
        for connection in Connection.objects.exclude(pk__in=[c.pk for c in first])[:10]:
            connection_grant(connection=connection, tenant=tenant_a, user=bob, actor=alice)
    assert _list_queries(client, tenant_a) == granted


# --- per-connection access, granted and revoked on the connection page -------------------------------


def _access_events(tenant: Tenant) -> list[str]:
    from apps.audit.models import AuditEvent

    with tenant_context(tenant):
        return list(
            AuditEvent.objects.filter(action__startswith="member.object_permission_")
            .order_by("seq")
            .values_list("action", flat=True)
        )


def test_admin_grants_and_revokes_one_connection_on_its_page(
    client: Client, alice: Any, bob: Any, connor: Any, tenant_a: Tenant, sims: dict[str, Any]
) -> None:
    connection = make_connection(tenant_a, sims, "servicenow", name="Tickets")
    login_verified(client, alice)
    page = client.get(url("connection-edit", tenant_a, connection)).content.decode()
    assert url("connection-grant", tenant_a, connection) in page
    # Only members whose role does not already manage every connection are offered.
    assert f'<option value="{bob.pk}">bob</option>' in page
    assert f'value="{connor.pk}"' not in page
    assert f'value="{alice.pk}"' not in page

    bob_client = Client()
    bob_client.force_login(bob)
    assert bob_client.get(url("connection-edit", tenant_a, connection)).status_code == 403

    granted = client.post(url("connection-grant", tenant_a, connection), {"user": bob.pk})
    assert granted.status_code == 302
    assert bob_client.get(url("connection-edit", tenant_a, connection)).status_code == 200
    page = client.get(url("connection-edit", tenant_a, connection)).content.decode()
    assert "bob may now manage “Tickets”." in page
    assert url("connection-revoke", tenant_a, connection) in page
    assert f'<option value="{bob.pk}">' not in page  # already granted: no longer a candidate

    revoked = client.post(url("connection-revoke", tenant_a, connection), {**CONFIRMED, "user": bob.pk})
    assert revoked.status_code == 302
    assert bob_client.get(url("connection-edit", tenant_a, connection)).status_code == 403
    assert _access_events(tenant_a) == [
        "member.object_permission_granted",
        "member.object_permission_revoked",
    ]


def test_grant_refuses_users_outside_the_candidates(
    client: Client, alice: Any, connor: Any, charlie: Any, tenant_a: Tenant, sims: dict[str, Any]
) -> None:
    connection = make_connection(tenant_a, sims, "sap")
    login_verified(client, alice)
    for user in (charlie, connor, alice):  # another tenant's user; roles that manage all already
        response = client.post(url("connection-grant", tenant_a, connection), {"user": user.pk}, follow=True)
        assert "Choose a member from the list." in response.content.decode()
    assert client.post(url("connection-revoke", tenant_a, connection), {"user": "x"}).status_code == 302
    assert _access_events(tenant_a) == []


def test_only_admins_grant_access(
    client: Client, alice: Any, bob: Any, connor: Any, tenant_a: Tenant, sims: dict[str, Any]
) -> None:
    """Connector managers manage connections, not people; a granted member cannot pass access on."""
    connection = make_connection(tenant_a, sims, "hubspot")
    client.force_login(connor)
    page = client.get(url("connection-edit", tenant_a, connection)).content.decode()
    assert url("connection-grant", tenant_a, connection) not in page
    assert client.post(url("connection-grant", tenant_a, connection), {"user": bob.pk}).status_code == 403
    connection_grant(connection=connection, tenant=tenant_a, user=bob, actor=alice)
    client.force_login(bob)
    assert client.get(url("connection-edit", tenant_a, connection)).status_code == 200
    assert client.post(url("connection-revoke", tenant_a, connection), {"user": bob.pk}).status_code == 403
    assert client.get(url("connection-edit", tenant_a, connection)).status_code == 200


def test_charlie_gets_404_on_access_changes(
    client: Client, charlie: Any, bob: Any, tenant_a: Tenant, sims: dict[str, Any]
) -> None:
    connection = make_connection(tenant_a, sims, "sap")
    client.force_login(charlie)
    for name in ("connection-grant", "connection-revoke"):
        assert client.post(url(name, tenant_a, connection), {"user": bob.pk}).status_code == 404, name
        assert client.get(url(name, tenant_a, connection)).status_code in (404, 405), name
