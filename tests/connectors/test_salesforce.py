"""Salesforce: conformance suite, simple-salesforce against the simulator, and error mapping."""

from __future__ import annotations

import time
import uuid
from typing import Any, cast

import pytest
import requests
from simple_salesforce import Salesforce, SFType, format_soql
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceResourceNotFound

from connectors.errors import AuthFailed, InvalidConfig, RateLimited
from connectors.http import Quota
from connectors.salesforce.connector import SalesforceConnector
from connectors.salesforce.simulator import SalesforceSimulator
from connectors.simulation import Simulator
from connectors.testing import ConnectorConformance, simulator_session


def sf_config(sim: Simulator, **overrides: Any) -> dict[str, Any]:
    d = sim.describe()
    return {
        "login_url": d["login_url"],
        "client_id": d["client_id"],
        "client_secret": d["client_secret"],
        **overrides,
    }


class TestSalesforceConformance(ConnectorConformance):
    connector_class = SalesforceConnector
    read_stream = "contacts"
    write_stream = "leads"
    page_size = 200  # Salesforce's minimum batchSize
    read_operation = "Contact query"
    expected_rate_limit = (3600.0, "daily")  # 403 REQUEST_LIMIT_EXCEEDED carries no Retry-After

    @pytest.fixture
    def simulator(self, salesforce_sim: SalesforceSimulator) -> SalesforceSimulator:
        return salesforce_sim

    def config(self, simulator: Simulator, **overrides: Any) -> dict[str, Any]:
        return sf_config(simulator, **overrides)

    def bad_credentials(self, simulator: Simulator) -> dict[str, Any]:
        return sf_config(simulator, client_secret="wrong-secret-value")

    def write_records(self, count: int, tag: str) -> list[dict[str, Any]]:
        return [
            {
                "external_id": f"lead-{tag}-{i}",
                "fields": {"last_name": f"Lead {i}", "company": "Acme", "email": None},
            }
            for i in range(count)
        ]


# --- the vendor's own client, unchanged ---------------------------------------------------------


@pytest.fixture(scope="module")
def sf(salesforce_sim: SalesforceSimulator) -> Salesforce:
    """simple-salesforce with a token from the OAuth endpoint (its own login targets *.salesforce.com)."""
    d = salesforce_sim.describe()
    session = requests.Session()
    session.verify = d["ca_bundle"]
    token = session.post(
        d["login_url"] + "/services/oauth2/token",
        data={
            "grant_type": "password",
            "client_id": d["client_id"],
            "client_secret": d["client_secret"],
            "username": d["username"],
            "password": d["password"] + d["security_token"],
        },
        verify=d["ca_bundle"],
    ).json()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise override session.verify
    return Salesforce(instance_url=token["instance_url"], session_id=token["access_token"], session=session)


def contact_type(sf: Salesforce) -> SFType:
    return cast(SFType, sf.Contact)  # simple-salesforce types attribute access as a union


def test_simple_salesforce_pages_with_next_records_url(
    sf: Salesforce, salesforce_sim: SalesforceSimulator
) -> None:
    first = sf.query("SELECT Id, Email FROM Contact ORDER BY SystemModstamp, Id")
    assert first["totalSize"] == 10_000
    assert len(first["records"]) == 2000
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    records = sf.query_all("SELECT Id, Email, SystemModstamp FROM Contact")["records"]
    assert len(records) == 10_000
    assert len({r["Id"] for r in records}) == 10_000
    assert records[0]["attributes"]["type"] == "Contact"


def test_simple_salesforce_query_throughput(sf: Salesforce, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.perf_counter()
    count = sum(
        1 for _ in sf.query_all_iter("SELECT Id, FirstName, LastName, Email, SystemModstamp FROM Contact")
    )
    elapsed = time.perf_counter() - started
    assert count == 10_000
    with capsys.disabled():
        print(f"\nsimple-salesforce paging: {count / elapsed:,.0f} records/s")  # noqa: T201
    assert count / elapsed > 10_000


def test_simple_salesforce_upsert_create_then_update(sf: Salesforce) -> None:
    ext = f"Ext_Id__c/c-{uuid.uuid4().hex[:8]}"
    assert contact_type(sf).upsert(ext, {"LastName": "Größer", "Email": "g@example.test"}) == 201
    assert contact_type(sf).upsert(ext, {"FirstName": "Jürgen"}) == 200
    found = sf.query(
        format_soql("SELECT Id, FirstName, LastName FROM Contact WHERE Ext_Id__c = {}", ext[10:])
    )
    assert found["totalSize"] == 1
    assert (found["records"][0]["FirstName"], found["records"][0]["LastName"]) == ("Jürgen", "Größer")


def test_simple_salesforce_typed_errors(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.query("SELECT Id, Nope__c FROM Contact")
    content: Any = info.value.content
    assert content[0]["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceResourceNotFound):
        contact_type(sf).get("003Hb9999999999AAA")
    assert contact_type(sf).describe()["name"] == "Contact"
    assert sf.limits()["DailyApiRequests"]["Max"] == 5_000_000


def test_collections_upsert_endpoint(sf: Salesforce) -> None:
    tag = uuid.uuid4().hex[:8]
    payload = {
        "allOrNone": False,
        "records": [
            {"attributes": {"type": "Lead"}, "Ext_Id__c": f"{tag}-1", "LastName": "A", "Company": "C"},
            {"attributes": {"type": "Lead"}, "Ext_Id__c": f"{tag}-2", "Company": "C"},  # LastName missing
        ],
    }
    results = sf.restful("composite/sobjects/Lead/Ext_Id__c", method="PATCH", json=payload)
    assert results is not None
    assert results[0]["success"]
    assert results[0]["created"]
    assert results[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"


# --- connector specifics -------------------------------------------------------------------------


def connector(sim: SalesforceSimulator, **overrides: Any) -> SalesforceConnector:
    return SalesforceConnector(sf_config(sim, **overrides), session=simulator_session(sim))


def test_jwt_bearer_and_password_flows(salesforce_sim: SalesforceSimulator) -> None:
    d = salesforce_sim.describe()
    with open(d["jwt_private_key_path"]) as fh:
        key = fh.read()
    jwt_conn = connector(salesforce_sim, auth="jwt_bearer", username=d["username"], private_key=key)
    jwt_conn.check_connection()
    assert jwt_conn.warnings == []
    pw = connector(
        salesforce_sim, auth="password", username=d["username"], password=d["password"],
        security_token=d["security_token"],
    )  # fmt: skip
    pw.check_connection()
    assert "2027-02-20" in pw.warnings[0]
    bad = connector(salesforce_sim, auth="password", username=d["username"], password="nope-nope")
    with pytest.raises(AuthFailed, match="authentication failure") as info:
        bad.check_connection()
    assert "nope-nope" not in str(info.value)


def test_invalid_client_id_message(salesforce_sim: SalesforceSimulator) -> None:
    with pytest.raises(AuthFailed, match="client identifier invalid"):
        connector(salesforce_sim, client_id="unknown").check_connection()


def test_field_map_checked_against_org(salesforce_sim: SalesforceSimulator) -> None:
    bad = connector(salesforce_sim, field_map={"contacts": {"email": "Email_Address__c"}})
    with pytest.raises(InvalidConfig, match="No such column 'Email_Address__c'"):
        bad.check_connection()
    with pytest.raises(InvalidConfig, match="not field names"):
        connector(salesforce_sim, field_map={"contacts": {"email": "Email FROM User --"}})


def test_field_map_override_changes_canonical_fields(salesforce_sim: SalesforceSimulator) -> None:
    conn = connector(salesforce_sim, field_map={"accounts": {"name": "Website"}})
    first = next(iter(conn.read("accounts")))
    assert first.fields["name"] == first.raw["Website"]


def test_reauth_happens_once_per_expiry(salesforce_sim: SalesforceSimulator) -> None:
    conn = connector(salesforce_sim)
    conn.check_connection()
    issued = salesforce_sim.tokens.issued
    salesforce_sim.expire_tokens()
    assert len(list(conn.read("articles"))) == 300
    assert salesforce_sim.tokens.issued == issued + 1


def test_request_limit_exceeded_is_rate_limited(salesforce_sim: SalesforceSimulator) -> None:
    conn = connector(salesforce_sim)
    conn.check_connection()
    salesforce_sim.inject(rate_limit={"count": 1})
    try:
        with pytest.raises(RateLimited) as info:
            list(conn.read("accounts"))
    finally:
        salesforce_sim.clear_faults()
    assert info.value.code == "REQUEST_LIMIT_EXCEEDED"
    assert info.value.status == 403


def test_limit_info_is_recorded(salesforce_sim: SalesforceSimulator) -> None:
    conn = connector(salesforce_sim)
    list(conn.read("articles"))
    quota = conn.session.last_quota
    assert isinstance(quota, Quota)
    assert quota.limit == 5_000_000
    assert quota.used is not None
    assert 0 < quota.used <= salesforce_sim.api_used


def test_query_all_reports_deletions(salesforce_sim: SalesforceSimulator) -> None:
    conn = connector(salesforce_sim)
    victim = next(iter(conn.read("tickets"))).external_id
    salesforce_sim.delete("tickets", victim)
    records = {r.external_id: r for r in conn.read("tickets")}
    assert records[victim].deleted
    live = connector(salesforce_sim, include_deleted=False)
    assert victim not in {r.external_id for r in live.read("tickets")}


def test_batches_of_200_and_per_record_errors(salesforce_sim: SalesforceSimulator) -> None:
    conn = connector(salesforce_sim)
    tag = uuid.uuid4().hex[:8]
    records = [
        {"external_id": f"{tag}-{i}", "fields": {"last_name": f"L{i}", "company": "Co"}} for i in range(250)
    ]
    records.append({"external_id": f"{tag}-bad", "fields": {"company": "Co"}})
    result = conn.write("leads", records)
    assert (result.created, result.updated) == (250, 0)
    assert [o.external_id for o in result.failed] == [f"{tag}-bad"]
    assert "REQUIRED_FIELD_MISSING" in (result.failed[0].error or "")
