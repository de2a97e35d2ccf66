"""Connection services against the running simulators: create, edit, test, secrets at rest, audit."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connections

from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.core.errors import ValidationFailed
from apps.integrations.demo import demo_config
from apps.integrations.models import Connection
from apps.integrations.selectors.connections import connection_warnings, secrets_status
from apps.integrations.services.connections import (
    connection_create,
    connection_delete,
    connection_set_enabled,
    connection_test,
    connection_update,
)
from apps.policies.services import policy_apply_preset
from apps.tenants.models import Tenant
from tests.integrations.helpers import KINDS, make_connection, secret_of

pytestmark = pytest.mark.django_db


def _events(tenant: Tenant, action: str) -> list[AuditEvent]:
    with tenant_context(tenant):
        return list(AuditEvent.objects.filter(action=action).order_by("seq"))


@pytest.mark.parametrize("kind", KINDS)
def test_create_and_test_ok(tenant_a: Tenant, alice: Any, sims: dict[str, Any], kind: str) -> None:
    connection = make_connection(tenant_a, sims, kind)
    result = connection_test(connection=connection, tenant=tenant_a, actor=alice)
    assert result.ok, result.message
    with tenant_context(tenant_a):
        stored = Connection.objects.get(pk=connection.pk)
    assert stored.last_test_ok is True
    assert stored.last_test_at is not None
    (event,) = _events(tenant_a, "connection.tested")
    assert event.outcome == "success"
    assert event.actor_id == alice.pk


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_password_shows_the_vendor_error_and_is_audited(
    tenant_a: Tenant, alice: Any, sims: dict[str, Any], kind: str
) -> None:
    settings, credentials = demo_config(kind, sims[kind])
    field, right = secret_of(kind, credentials)
    wrong = "wrong-" + right[:4] + "-Zq9x"
    connection = connection_create(
        tenant=tenant_a,
        kind=kind,
        name="bad",
        endpoint_region="eu",
        settings=settings,
        credentials={field: wrong},
    )
    result = connection_test(connection=connection, tenant=tenant_a, actor=alice)
    assert not result.ok
    expected = {
        "salesforce": "invalid client credentials",
        "hubspot": "authentication credentials",
        "servicenow": "User Not Authenticated",
        "sap": "401",
        "sap_odata": "refused the client credentials",
        "dynamics365": "AADSTS7000215: Invalid client secret",
    }[kind]
    assert expected.lower() in result.message.lower(), result.message
    assert "The vendor" in result.message
    assert wrong not in result.message and right not in result.message
    assert "Traceback" not in result.message
    (event,) = _events(tenant_a, "connection.tested")
    assert event.outcome == "failure"
    assert event.changes["message"] == result.message
    assert wrong not in str(event.changes)


def test_credentials_are_encrypted_at_rest(tenant_a: Tenant, sims: dict[str, Any]) -> None:
    connection = make_connection(tenant_a, sims, "servicenow")
    password = sims["servicenow"]["password"]
    with connections["region_eu"].cursor() as cursor:
        cursor.execute("SELECT credentials FROM integrations_connection WHERE id = %s", [connection.pk])
        (raw,) = cursor.fetchone()
    assert raw.startswith("hub1$")
    assert password not in raw
    with tenant_context(tenant_a):
        assert Connection.objects.get(pk=connection.pk).secrets == {"password": password}
    # Nor does the audit trail hold it.
    (created,) = _events(tenant_a, "connection.created")
    assert password not in str(created.changes)
    assert created.changes["sensitive_fields_set"] == ["password"]


def test_blank_secret_keeps_the_stored_one(tenant_a: Tenant, alice: Any, sims: dict[str, Any]) -> None:
    connection = make_connection(tenant_a, sims, "hubspot")
    token = sims["hubspot"]["private_app_token"]
    connection_update(
        connection=connection,
        tenant=tenant_a,
        name="HubSpot EU",
        credentials={"access_token": ""},
        actor=alice,
    )
    with tenant_context(tenant_a):
        stored = Connection.objects.get(pk=connection.pk)
        assert stored.secrets == {"access_token": token}
        assert stored.name == "HubSpot EU"
        assert secrets_status(stored) == {
            "access_token": True,
            "client_secret": False,
            "refresh_token": False,
        }
    assert _events(tenant_a, "connection.credentials_changed") == []
    (updated,) = _events(tenant_a, "connection.updated")
    assert updated.changes == {"name": ["hubspot demo", "HubSpot EU"]}


def test_credential_change_is_its_own_audited_action(
    tenant_a: Tenant, alice: Any, sims: dict[str, Any]
) -> None:
    connection = make_connection(tenant_a, sims, "sap")
    connection_test(connection=connection, tenant=tenant_a)
    connection_update(
        connection=connection, tenant=tenant_a, credentials={"password": "n3w-Secret!"}, actor=alice
    )
    (event,) = _events(tenant_a, "connection.credentials_changed")
    assert event.changes == {"fields": ["password"]}
    assert "n3w-Secret!" not in str(event.changes)
    assert _events(tenant_a, "connection.updated") == []
    with tenant_context(tenant_a):
        stored = Connection.objects.get(pk=connection.pk)
        assert stored.secrets == {"password": "n3w-Secret!"}
    assert stored.last_test_ok is None  # the tested configuration is gone


def test_field_map_validation(tenant_a: Tenant, sims: dict[str, Any]) -> None:
    settings, credentials = demo_config("salesforce", sims["salesforce"])
    bad_maps: list[tuple[Any, str]] = [
        ({"invoices": {"number": "Name"}}, "Unknown stream"),
        ({"contacts": {"shoe_size": "Shoe__c"}}, "no canonical field"),
        ({"contacts": {"email": ""}}, "needs a vendor field"),
        ({"contacts": {"email": "Email; DROP"}}, "not field names"),
        (["contacts"], "must be an object"),
    ]
    for field_map, message in bad_maps:
        with pytest.raises(ValidationFailed) as info:
            connection_create(
                tenant=tenant_a,
                kind="salesforce",
                name="sf",
                endpoint_region="eu",
                settings=settings,
                credentials=credentials,
                field_map=field_map,
            )
        assert message in " ".join(info.value.errors["field_map"]), (field_map, info.value.errors)


def test_unknown_vendor_field_is_surfaced_by_the_test(tenant_a: Tenant, sims: dict[str, Any]) -> None:
    connection = make_connection(
        tenant_a, sims, "salesforce", field_map={"contacts": {"email": "Email_Typo__c"}}
    )
    result = connection_test(connection=connection, tenant=tenant_a)
    assert not result.ok
    assert "Email_Typo__c" in result.message


def test_settings_are_checked_against_the_schema(tenant_a: Tenant, sims: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed) as info:
        connection_create(
            tenant=tenant_a,
            kind="servicenow",
            name="sn",
            endpoint_region="mars",
            settings={"instance_url": "", "colour": "red", "page_size": "many", "auth": "kerberos"},
            credentials={"pin": "1"},
        )
    errors = info.value.errors
    assert set(errors) >= {
        "endpoint_region",
        "instance_url",
        "colour",
        "page_size",
        "auth",
        "username",
        "pin",
    }
    assert "password" in errors  # required secret
    with pytest.raises(ValidationFailed) as info:
        connection_create(tenant=tenant_a, kind="oracle", name="x", endpoint_region="eu")
    assert "kind" in info.value.errors


def test_names_are_unique_per_tenant(tenant_a: Tenant, tenant_b: Tenant, sims: dict[str, Any]) -> None:
    make_connection(tenant_a, sims, "sap", name="ERP")
    with pytest.raises(ValidationFailed) as info:
        make_connection(tenant_a, sims, "sap", name="ERP")
    assert "name" in info.value.errors
    make_connection(tenant_b, sims, "sap", name="ERP")  # another tenant may


def test_residency_policy_refuses_a_foreign_endpoint(
    tenant_a: Tenant, alice: Any, sims: dict[str, Any]
) -> None:
    policy_apply_preset(tenant=tenant_a, preset="strict")
    settings, credentials = demo_config("sap", sims["sap"])
    with pytest.raises(ValidationFailed) as info:
        connection_create(
            tenant=tenant_a,
            kind="sap",
            name="ERP US",
            endpoint_region="us",
            settings=settings,
            credentials=credentials,
        )
    assert "endpoint_region" in info.value.errors
    assert _events(tenant_a, "policy.transfer_refused")
    make_connection(tenant_a, sims, "sap")  # the home region is always allowed


def test_enable_disable_and_delete_are_audited(tenant_a: Tenant, alice: Any, sims: dict[str, Any]) -> None:
    connection = make_connection(tenant_a, sims, "hubspot")
    connection_set_enabled(connection=connection, tenant=tenant_a, enabled=False, actor=alice)
    connection_set_enabled(connection=connection, tenant=tenant_a, enabled=False, actor=alice)  # no-op
    connection_set_enabled(connection=connection, tenant=tenant_a, enabled=True, actor=alice)
    assert len(_events(tenant_a, "connection.disabled")) == 1
    assert len(_events(tenant_a, "connection.enabled")) == 1
    connection_delete(connection=connection, tenant=tenant_a, actor=alice)
    with tenant_context(tenant_a):
        assert not Connection.objects.exists()
    assert _events(tenant_a, "connection.deleted")


def test_password_flow_warns_about_its_retirement(tenant_a: Tenant, sims: dict[str, Any]) -> None:
    d = sims["salesforce"]
    connection = connection_create(
        tenant=tenant_a,
        kind="salesforce",
        name="sf password",
        endpoint_region="eu",
        settings={
            "login_url": d["login_url"],
            "auth": "password",
            "client_id": d["client_id"],
            "username": d["username"],
        },
        credentials={
            "client_secret": d["client_secret"],
            "password": d["password"],
            "security_token": d["security_token"],
        },
    )
    with tenant_context(tenant_a):
        assert any("2027-02-20" in w for w in connection_warnings(connection))
    result = connection_test(connection=connection, tenant=tenant_a)
    assert result.ok, result.message
    assert any("2027-02-20" in w for w in result.warnings)


def test_unreachable_vendor_is_a_plain_failure(tenant_a: Tenant) -> None:
    connection = connection_create(
        tenant=tenant_a,
        kind="servicenow",
        name="down",
        endpoint_region="eu",
        settings={"instance_url": "http://127.0.0.1:9", "username": "admin"},
        credentials={"password": "pw-123456"},
    )
    result = connection_test(connection=connection, tenant=tenant_a)
    assert not result.ok
    assert "could not be reached" in result.message
    assert "pw-123456" not in result.message
