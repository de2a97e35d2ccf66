"""`manage.py simulators up|status|down` and the demo connections seed_demo creates."""

from __future__ import annotations

import json
import logging
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from apps.core.context import tenant_context
from apps.integrations import demo
from apps.integrations.conf import build_connector
from apps.integrations.models import Connection
from apps.integrations.resilience import connection_session
from apps.integrations.services.connections import connection_test
from apps.tenants.models import Tenant
from connectors.simulation import admin_post


def _run(*args: str) -> str:
    out = StringIO()
    call_command("simulators", *args, stdout=out)
    return out.getvalue()


def test_simulators_up_status_down(settings: Any, tmp_path: Path) -> None:
    settings.HUB_HOME = tmp_path
    assert "simulators stopped" in _run("status")
    try:
        assert "simulators running" in _run("up", "--count", "20")
        status = json.loads(_run("status", "--json"))
        assert status["running"] is True
        sims = status["simulators"]
        assert {"salesforce", "hubspot", "servicenow", "sap", "slack", "teams"} <= set(sims)
        assert sims["salesforce"]["base_url"].startswith("https://127.0.0.1:")
        assert sims["salesforce"]["client_secret"]
        assert sims["hubspot"]["private_app_token"]
        assert sims["servicenow"]["password"]
        assert sims["sap"]["wsdl_url"].endswith("?wsdl")
        assert (tmp_path / "simulators" / "simulators.pid").exists()
        assert "simulators running" in _run("up")  # idempotent
    finally:
        assert "simulators stopped" in _run("down")
    assert json.loads(_run("status", "--json"))["running"] is False
    assert "were not running" in _run("down")


@pytest.mark.django_db
def test_seed_creates_one_connection_per_simulator_idempotently(
    monkeypatch: pytest.MonkeyPatch, tenant_a: Tenant, tenant_b: Tenant, sims: dict[str, Any]
) -> None:
    monkeypatch.setattr(demo.simulators, "status", lambda _state: {"running": True, "simulators": sims})
    assert len(demo.seed_demo_connections([tenant_a, tenant_b])) == 12
    assert len(demo.seed_demo_connections([tenant_a, tenant_b])) == 12
    for tenant in (tenant_a, tenant_b):
        with tenant_context(tenant):
            connections = list(Connection.objects.all())
            assert sorted(c.kind for c in connections) == [
                "dynamics365",
                "hubspot",
                "salesforce",
                "sap",
                "sap_odata",
                "servicenow",
            ]
            assert {c.endpoint_region for c in connections} == {tenant.region_code}
            for connection in connections:
                assert connection_test(connection=connection, tenant=tenant).ok


@pytest.mark.django_db
def test_seed_skips_when_simulators_are_down(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tenant_a: Tenant
) -> None:
    monkeypatch.setattr(demo.simulators, "status", lambda _state: {"running": False, "simulators": {}})
    with caplog.at_level(logging.WARNING, logger="apps.integrations.demo"):
        assert demo.seed_demo_connections([tenant_a]) == []
    assert "Simulators are not running" in caplog.text
    with tenant_context(tenant_a):
        assert not Connection.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_seed_points_the_ticketing_simulators_webhooks_at_the_first_tenant(
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
    live_server: Any,
    tenant_a: Tenant,
    tenant_b: Tenant,
    sims: dict[str, Any],
) -> None:
    """So an agent's reply in the demo arrives within seconds (issue 18): every ticketing simulator announces
    to tenant_a's connection, and the hub accepts the signed announcement (signature, org and secret as
    the hub checks them; a refusal would be 401)."""
    settings.HUB_CHANNELS_PUBLIC_URL = live_server.url
    monkeypatch.setattr(demo.simulators, "status", lambda _state: {"running": True, "simulators": sims})
    demo.seed_demo_connections([tenant_a, tenant_b])
    try:
        for kind in demo.TICKET_WEBHOOKS:
            with tenant_context(tenant_a):
                connection = Connection.objects.get(kind=kind)
                connector = build_connector(connection, session=connection_session(connection))
                ticket = next(iter(connector.read("tickets"))).external_id
            answer = admin_post(sims[kind], "agent", {"ticket": ticket, "body": "On it.", "public": True})
            webhook = answer["webhook"]
            assert webhook["url"].startswith(f"{live_server.url}/hooks/{kind}/{connection.pk}/")
            accepted = 200 if kind == "salesforce" else 204  # the SOAP Ack; JSON hooks have no body
            assert (webhook["status"], webhook["error"]) == (accepted, None), kind
    finally:
        for kind in demo.TICKET_WEBHOOKS:
            admin_post(sims[kind], "webhook", {"url": None})
