"""ServiceNow: conformance suite, plain requests paging the Table API, OAuth and error mapping."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests

from connectors.errors import AuthFailed, ConnectorError, RateLimited
from connectors.servicenow.connector import ServiceNowConnector
from connectors.servicenow.simulator import ServiceNowSimulator
from connectors.simulation import Simulator
from connectors.testing import ConnectorConformance, simulator_session


def sn_config(sim: Simulator, **overrides: Any) -> dict[str, Any]:
    d = sim.describe()
    return {
        "instance_url": d["instance_url"],
        "username": d["username"],
        "password": d["password"],
        **overrides,
    }


class TestServiceNowConformance(ConnectorConformance):
    connector_class = ServiceNowConnector
    read_stream = "contacts"
    write_stream = "tickets"
    page_size = 100
    read_operation = "customer_contact table"
    expected_rate_limit = (7.0, "hourly")

    @pytest.fixture
    def simulator(self, servicenow_sim: ServiceNowSimulator) -> ServiceNowSimulator:
        return servicenow_sim

    def config(self, simulator: Simulator, **overrides: Any) -> dict[str, Any]:
        d = simulator.describe()
        oauth = {"auth": "oauth", "client_id": d["client_id"], "client_secret": d["client_secret"]}
        return sn_config(simulator, **oauth, **overrides)

    def bad_credentials(self, simulator: Simulator) -> dict[str, Any]:
        return sn_config(simulator, password="not-the-password")

    def write_records(self, count: int, tag: str) -> list[dict[str, Any]]:
        return [
            {
                "external_id": f"chat-{tag}-{i}",
                "fields": {"subject": f"Handoff {i}", "description": "from chat"},
            }
            for i in range(count)
        ]


def test_plain_requests_pages_with_link_header(servicenow_sim: ServiceNowSimulator) -> None:
    d = servicenow_sim.describe()
    session = requests.Session()
    session.auth = (d["username"], d["password"])
    url: str | None = f"{d['instance_url']}/api/now/table/incident"
    params: dict[str, Any] | None = {
        "sysparm_limit": 250,
        "sysparm_query": "ORDERBYsys_updated_on^ORDERBYsys_id",
    }
    seen: list[str] = []
    totals = set()
    while url:
        response = session.get(url, params=params, timeout=5)
        assert response.status_code == 200
        totals.add(response.headers["X-Total-Count"])
        seen += [row["sys_id"] for row in response.json()["result"]]
        url, params = response.links.get("next", {}).get("url"), None
    assert totals == {str(servicenow_sim.count("tickets"))}
    assert len(seen) == len(set(seen)) == servicenow_sim.count("tickets")


def test_error_envelopes(servicenow_sim: ServiceNowSimulator) -> None:
    d = servicenow_sim.describe()
    base = d["instance_url"] + "/api/now/table/incident"
    denied = requests.get(base, timeout=5)
    assert denied.status_code == 401
    assert denied.json() == {
        "error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
        "status": "failure",
    }
    missing = requests.get(base + "/" + "0" * 32, auth=(d["username"], d["password"]), timeout=5)
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "No Record found"


def test_encoded_query_keyset(servicenow_sim: ServiceNowSimulator) -> None:
    d = servicenow_sim.describe()
    rows = requests.get(
        d["instance_url"] + "/api/now/table/kb_knowledge",
        params={"sysparm_query": "language=ja^ORlanguage=de^ORDERBYsys_updated_on^ORDERBYsys_id",
                "sysparm_fields": "sys_id,language,short_description"},
        auth=(d["username"], d["password"]),
        timeout=5,
    ).json()["result"]  # fmt: skip
    assert {r["language"] for r in rows} == {"ja", "de"}
    assert len(rows) == 120
    assert set(rows[0]) == {"sys_id", "language", "short_description"}


def test_oauth_refresh_and_single_reauth(servicenow_sim: ServiceNowSimulator) -> None:
    d = servicenow_sim.describe()
    conn = ServiceNowConnector(
        sn_config(servicenow_sim, auth="oauth", client_id=d["client_id"], client_secret=d["client_secret"]),
        session=simulator_session(servicenow_sim),
    )
    conn.check_connection()
    issued = servicenow_sim.tokens.issued
    servicenow_sim.expire_tokens()  # access token expired; refresh token is also expired by expire_all
    assert len(list(conn.read("articles"))) == 300
    assert servicenow_sim.tokens.issued > issued


def test_basic_auth_failure_is_permanent(servicenow_sim: ServiceNowSimulator) -> None:
    conn = ServiceNowConnector(
        sn_config(servicenow_sim, password="wrong-pass"), session=simulator_session(servicenow_sim)
    )
    with pytest.raises(AuthFailed, match="User Not Authenticated") as info:
        conn.check_connection()
    assert info.value.permanent
    assert "wrong-pass" not in str(info.value)


def test_rate_limit_headers(servicenow_sim: ServiceNowSimulator) -> None:
    conn = ServiceNowConnector(sn_config(servicenow_sim), session=simulator_session(servicenow_sim))
    servicenow_sim.inject(rate_limit={"count": 1, "retry_after": 42})
    try:
        with pytest.raises(RateLimited) as info:
            conn.check_connection()
    finally:
        servicenow_sim.clear_faults()
    assert info.value.retry_after == 42
    assert info.value.code == "hub_integration_hourly"


def test_incident_upsert_by_correlation_id(servicenow_sim: ServiceNowSimulator) -> None:
    conn = ServiceNowConnector(sn_config(servicenow_sim), session=simulator_session(servicenow_sim))
    ext = f"conv-{uuid.uuid4().hex[:8]}"
    first = conn.write("tickets", [{"external_id": ext, "fields": {"subject": "Printer on fire"}}])
    second = conn.write("tickets", [{"external_id": ext, "fields": {"status": "2"}}])
    assert first.outcomes[0].created
    assert not second.outcomes[0].created
    row = servicenow_sim.tables["tickets"].rows[first.outcomes[0].vendor_id or ""]
    assert (row.data["short_description"], row.data["state"], row.data["correlation_id"]) == (
        "Printer on fire", "2", ext,
    )  # fmt: skip
    with pytest.raises(ConnectorError, match="must not contain"):
        conn.write("tickets", [{"external_id": "a^b", "fields": {}}])
