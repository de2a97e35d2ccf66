"""Demo connections for `seed_demo`: one per simulator for each demo tenant, refreshed on every run.

The simulators pick free ports each time they start, so an existing demo connection gets the current URLs.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from django.urls import reverse

from apps.core.context import tenant_context
from apps.core.public import public_base_url
from apps.integrations.conf import simulators_state_dir
from apps.integrations.models import Connection
from apps.integrations.services.connections import connection_create, connection_update
from connectors import simulators
from connectors.simulation import SimulatorAdminError, admin_post

logger = logging.getLogger(__name__)

DEMO_NAMES = {
    "salesforce": "Salesforce (simulator)",
    "hubspot": "HubSpot (simulator)",
    "servicenow": "ServiceNow (simulator)",
    "sap": "SAP S/4HANA (simulator)",
    "sap_odata": "SAP S/4HANA OData (simulator)",
    "dynamics365": "Dynamics 365 (simulator)",
}


def demo_config(kind: str, d: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(settings, credentials) that log in to the `kind` simulator described by `d`."""
    if kind == "salesforce":
        return (
            {"login_url": d["login_url"], "auth": "client_credentials", "client_id": d["client_id"]},
            {"client_secret": d["client_secret"]},
        )
    if kind == "hubspot":
        return {"base_url": d["base_url"], "auth": "private_app"}, {"access_token": d["private_app_token"]}
    if kind == "servicenow":
        return {"instance_url": d["instance_url"], "username": d["username"]}, {"password": d["password"]}
    if kind == "dynamics365":
        settings = {k: d[k] for k in ("org_url", "authority_host", "tenant_id", "client_id")}
        return settings, {"client_secret": d["client_secret"]}
    if kind == "sap_odata":
        settings = {"host_url": d["host_url"], "sap_client": d["sap_client"], "auth": "oauth"}
        settings |= {"token_url": d["token_url"], "client_id": d["client_id"]}
        return settings, {"client_secret": d["client_secret"]}
    return {"endpoint_url": d["endpoint_url"], "username": d["username"]}, {"password": d["password"]}


def seed_demo_connections(tenants: list[Any]) -> list[dict[str, str]]:
    """Create or refresh the demo connections; skip (with a logged line) when the simulators are not up."""
    state = simulators.status(simulators_state_dir())
    if not state["running"]:
        logger.warning(
            "Simulators are not running: demo connections skipped (run `manage.py simulators up`)."
        )
        return []
    seeded: list[dict[str, str]] = []
    for tenant in tenants:
        for kind, name in DEMO_NAMES.items():
            description = state["simulators"].get(kind)
            if description is None:
                continue
            settings, credentials = demo_config(kind, description)
            with tenant_context(tenant):
                existing = Connection.objects.filter(name=name).first()
            if existing is None:
                connection_create(
                    tenant=tenant,
                    kind=kind,
                    name=name,
                    endpoint_region=tenant.region_code,
                    settings=settings,
                    credentials=credentials,
                )
            else:
                connection_update(
                    connection=existing, tenant=tenant, settings=settings, credentials=credentials
                )
            if kind in TICKET_WEBHOOKS and tenant is tenants[0]:
                with tenant_context(tenant):
                    _register_ticket_webhook(Connection.objects.get(name=name), description)
            seeded.append({"tenant": tenant.slug, "kind": kind, "name": name})
    return seeded


#: Ticketing simulators that announce an agent's comments to the hub (issue 18: the handoff round trip).
TICKET_WEBHOOKS = ("servicenow", "salesforce", "hubspot")


def _register_ticket_webhook(connection: Connection, description: dict[str, Any]) -> bool:
    """Point the simulator's agent webhooks at the first demo tenant's connection (a simulator announces to
    one hub endpoint; the other tenants' handoffs are found by the poll). Returns False when it fails."""
    stored = connection.secrets
    secret = str(stored.get("webhook_secret") or "") or secrets.token_urlsafe(32)
    if connection.kind == "hubspot":
        # HubSpot signs with the app's client secret, not one the hub chooses.
        secret = str(description.get("client_secret") or "")
        connection.set_secrets({**stored, "client_secret": secret})
    else:
        connection.set_secrets({**stored, "webhook_secret": secret})
    if connection.kind == "salesforce":
        connection.settings = {**connection.settings, "webhook_org_id": description["organization_id"]}
        kwargs: dict[str, Any] = {"connection_id": connection.pk, "token": secret}
    else:
        kwargs = {"connection_id": connection.pk}
    connection.save(update_fields=["credentials", "settings", "updated_at"])
    url = public_base_url() + reverse(f"integrations:webhook-{connection.kind}", kwargs=kwargs)
    try:
        admin_post(description, "webhook", {"url": url, "secret": secret})
    except SimulatorAdminError as exc:
        logger.warning("demo: could not register the %s webhook: %s", connection.kind, exc)
        return False
    return True
