"""HubSpot: conformance suite, hubspot-api-client against the simulator, search cap, 207s and limits."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests
from hubspot import HubSpot
from hubspot.crm.contacts import (
    BatchInputSimplePublicObjectBatchInputUpsert,
    SimplePublicObjectBatchInputUpsert,
)

from connectors.errors import AuthFailed, ConnectorError, InvalidConfig, RateLimited
from connectors.http import Quota
from connectors.hubspot.connector import HubSpotConnector
from connectors.hubspot.simulator import HubSpotSimulator
from connectors.simulation import Simulator
from connectors.testing import ConnectorConformance, simulator_session


def hs_config(sim: Simulator, **overrides: Any) -> dict[str, Any]:
    d = sim.describe()
    return {"base_url": d["base_url"], "access_token": d["private_app_token"], **overrides}


def oauth_config(sim: Simulator, **overrides: Any) -> dict[str, Any]:
    d = sim.describe()
    return {"base_url": d["base_url"], "auth": "oauth", "client_id": d["client_id"],
            "client_secret": d["client_secret"], "refresh_token": d["refresh_token"],
            **overrides}  # fmt: skip


class TestHubSpotConformance(ConnectorConformance):
    connector_class = HubSpotConnector
    read_stream = "contacts"
    write_stream = "leads"
    page_size = 100
    read_operation = "contacts search"
    expected_rate_limit = (10.0, "ten_secondly")  # from X-HubSpot-RateLimit-Interval-Milliseconds
    reads_retry_transient = False  # incremental reads use POST search, which is never retried blindly

    @pytest.fixture
    def simulator(self, hubspot_sim: HubSpotSimulator) -> HubSpotSimulator:
        return hubspot_sim

    def config(self, simulator: Simulator, **overrides: Any) -> dict[str, Any]:
        return oauth_config(simulator, **overrides)

    def bad_credentials(self, simulator: Simulator) -> dict[str, Any]:
        return hs_config(simulator, access_token="pat-na1-wrong-token")

    def write_records(self, count: int, tag: str) -> list[dict[str, Any]]:
        return [
            {"external_id": f"lead-{tag}-{i}", "fields": {"name": f"Chat lead {i}"}} for i in range(count)
        ]


def connector(sim: HubSpotSimulator, **overrides: Any) -> HubSpotConnector:
    return HubSpotConnector(hs_config(sim, **overrides), session=simulator_session(sim))


def test_official_client_get_all_and_batch_upsert(hubspot_sim: HubSpotSimulator) -> None:
    client = HubSpot(access_token=hubspot_sim.private_app_token, host=hubspot_sim.base_url)
    contacts = client.crm.contacts.get_all(properties=["email", "firstname"])
    assert len(contacts) == hubspot_sim.count("contacts")
    assert contacts[0].properties["email"].startswith("contact")
    tag = uuid.uuid4().hex[:8]
    batch = BatchInputSimplePublicObjectBatchInputUpsert(
        inputs=[
            SimplePublicObjectBatchInputUpsert(id_property="email", id=f"{tag}@example.test",
                                               properties={"firstname": "Zoë"})
        ]
    )  # fmt: skip
    created = client.crm.contacts.batch_api.upsert(batch)
    assert created.status == "COMPLETE"
    assert created.results[0].new is True
    again = client.crm.contacts.batch_api.upsert(batch)
    assert again.results[0].new is False
    assert again.results[0].id == created.results[0].id


def test_search_cap_answers_400_and_connector_restarts(hubspot_sim: HubSpotSimulator) -> None:
    hubspot_sim.search_cap = 300
    try:
        response = requests.post(
            hubspot_sim.base_url + "/crm/v3/objects/contacts/search",
            json={"limit": 100, "after": "300"},
            headers={"Authorization": f"Bearer {hubspot_sim.private_app_token}"},
            timeout=5,
        )
        assert response.status_code == 400
        assert response.json()["category"] == "VALIDATION_ERROR"
        records = list(connector(hubspot_sim, search_cap=300, page_size=100).read("contacts"))
    finally:
        hubspot_sim.search_cap = 10_000
    ids = [r.external_id for r in records]
    assert len(ids) == len(set(ids)) == hubspot_sim.count("contacts")


def test_partial_failure_is_reported_per_record(hubspot_sim: HubSpotSimulator) -> None:
    tag = uuid.uuid4().hex[:8]
    result = connector(hubspot_sim).write(
        "contacts",
        [{"external_id": f"{tag}-ok", "fields": {"email": f"{tag}@example.test"}},
         {"external_id": f"{tag}-bad", "fields": {"email": "not-an-email"}}],
    )  # fmt: skip
    assert result.created == 1
    assert [o.external_id for o in result.failed] == [f"{tag}-bad"]
    assert "invalid email" in (result.failed[0].error or "")


def test_duplicate_ids_in_batch_are_a_permanent_error(hubspot_sim: HubSpotSimulator) -> None:
    record = {"external_id": "dup", "fields": {"name": "x"}}
    with pytest.raises(ConnectorError, match="Duplicate IDs") as info:
        connector(hubspot_sim).write("leads", [record, record])
    assert info.value.permanent


def test_daily_limit_waits_until_midnight(hubspot_sim: HubSpotSimulator) -> None:
    conn = connector(hubspot_sim)
    hubspot_sim.inject(rate_limit={"count": 1, "policy": "DAILY"})
    try:
        with pytest.raises(RateLimited) as info:
            list(conn.read("tickets"))
    finally:
        hubspot_sim.clear_faults()
    assert info.value.scope == "daily"
    assert info.value.retry_after is not None
    assert 0 < info.value.retry_after <= 86_400


def test_private_app_token_and_quota(hubspot_sim: HubSpotSimulator) -> None:
    conn = connector(hubspot_sim)
    conn.check_connection()
    assert isinstance(conn.session.last_quota, Quota)
    assert conn.session.last_quota.limit == 1_000_000
    with pytest.raises(AuthFailed, match="INVALID_AUTHENTICATION"):
        connector(hubspot_sim, access_token="pat-na1-nope").check_connection()


def test_oauth_reauth_once_after_expiry(hubspot_sim: HubSpotSimulator) -> None:
    conn = HubSpotConnector(oauth_config(hubspot_sim), session=simulator_session(hubspot_sim))
    conn.check_connection()
    issued = hubspot_sim.tokens.issued
    hubspot_sim.expire_tokens()
    assert len(list(conn.read("orders"))) == hubspot_sim.count("orders")
    assert hubspot_sim.tokens.issued == issued + 1


def test_field_map_checked_against_properties(hubspot_sim: HubSpotSimulator) -> None:
    conn = connector(hubspot_sim, field_map={"contacts": {"email": "e_mail"}})
    with pytest.raises(InvalidConfig, match="e_mail"):
        conn.check_connection()
