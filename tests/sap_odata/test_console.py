"""The console offers the SAP OData kind with its own setup help, translated, on its form and settings."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.core.context import tenant_context
from apps.integrations.models import Connection
from apps.tenants.models import Tenant
from connectors.sap_odata.simulator import SapODataSimulator
from tests.fixtures.integrations import demo_connection
from tests.fixtures.simulators import StartSimulator

pytestmark = pytest.mark.django_db


def test_form_shows_the_kind_its_fields_and_setup_help(connor_client: Client, tenant_a: Tenant) -> None:
    create = reverse("integrations:connection-create", kwargs={"tenant_slug": tenant_a.slug})
    assert 'value="sap_odata"' in connor_client.get(create).content.decode()
    page = connor_client.get(create, {"kind": "sap_odata"}).content.decode()
    assert "New SAP S/4HANA OData connection" in page
    assert "Setting up SAP S/4HANA (OData)" in page
    for name in ("host_url", "sap_client", "token_url", "client_id", "client_secret", "password"):
        assert f'name="{name}"' in page
    other = connor_client.get(create, {"kind": "servicenow"}).content.decode()
    assert "Setting up SAP S/4HANA (OData)" not in other


@pytest.mark.parametrize(
    ("language", "heading"),
    [("de", "SAP S/4HANA (OData) einrichten"), ("fr", "Configurer SAP S/4HANA (OData)"),
     ("es", "Configurar SAP S/4HANA (OData)"), ("ja", "SAP S/4HANA（OData）の設定")],  # noqa: RUF001
)  # fmt: skip
def test_setup_help_is_translated(
    connor_client: Client, connor: Any, tenant_a: Tenant, language: str, heading: str
) -> None:
    connor.language = language
    connor.save(update_fields=["language"])
    create = reverse("integrations:connection-create", kwargs={"tenant_slug": tenant_a.slug})
    page = connor_client.get(create, {"kind": "sap_odata"}).content.decode()
    assert heading in page


def test_settings_page_shows_the_help_and_other_tenant_gets_404(
    connor_client: Client, tenant_a: Tenant, tenant_b: Tenant, simulator: StartSimulator
) -> None:
    sim = simulator(SapODataSimulator, counts={"contacts": 5, "orders": 5, "accounts": 0})
    connection = demo_connection(tenant_a, "sap_odata", sim.describe(), name="S/4HANA")
    edit = reverse("integrations:connection-edit", kwargs={"tenant_slug": tenant_a.slug, "pk": connection.pk})
    page = connor_client.get(edit).content.decode()
    assert "Setting up SAP S/4HANA (OData)" in page
    assert sim.client_secret not in page
    elsewhere = reverse(
        "integrations:connection-edit", kwargs={"tenant_slug": tenant_b.slug, "pk": connection.pk}
    )
    assert connor_client.get(elsewhere).status_code == 404
    with tenant_context(tenant_a):
        assert Connection.objects.filter(kind="sap_odata").count() == 1
