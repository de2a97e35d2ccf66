"""SAP S/4HANA OData: conformance suite, pyodata unchanged against the simulator, paging with equal
timestamps, CSRF refetch, OAuth refresh, SAP error JSON mapping, $batch results per record and bad config."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pyodata
import pytest
import requests

from connectors.base import Cursor
from connectors.errors import (
    AuthExpired,
    AuthFailed,
    ConnectorError,
    InvalidConfig,
    RateLimited,
    UnexpectedResponse,
    VendorUnavailable,
)
from connectors.sap_odata.connector import SapODataConnector, SapODataError
from connectors.sap_odata.simulator import BP, ROOT, SO, SapODataSimulator
from connectors.simulation import Simulator
from connectors.testing import ConnectorConformance, assert_no_secrets, simulator_session
from tests.fixtures.simulators import StartSimulator


def odata_config(sim: Simulator, *, auth: str = "oauth", **overrides: Any) -> dict[str, Any]:
    d = sim.describe()
    config: dict[str, Any] = {"host_url": d["host_url"], "sap_client": d["sap_client"], "auth": auth}
    if auth == "oauth":
        config |= {
            "token_url": d["token_url"],
            "client_id": d["client_id"],
            "client_secret": d["client_secret"],
        }
    else:
        config |= {"username": d["username"], "password": d["password"]}
    return {**config, **overrides}


def connector(sim: Simulator, **overrides: Any) -> SapODataConnector:
    return SapODataConnector(odata_config(sim, **overrides), session=simulator_session(sim))


class TestSapODataConformance(ConnectorConformance):
    connector_class = SapODataConnector
    read_stream = "contacts"
    write_stream = "contacts"
    page_size = 100
    read_operation = "A_BusinessPartner"
    expected_rate_limit = (7.0, "gateway")
    token_auth = True

    @pytest.fixture
    def simulator(self, sap_odata_sim: SapODataSimulator) -> SapODataSimulator:
        return sap_odata_sim

    def config(self, simulator: Simulator, **overrides: Any) -> dict[str, Any]:
        return odata_config(simulator, **overrides)

    def bad_credentials(self, simulator: Simulator) -> dict[str, Any]:
        return odata_config(simulator, client_secret="wrong-client-secret")

    def write_records(self, count: int, tag: str) -> list[dict[str, Any]]:
        return [
            {
                "external_id": f"H{tag}{i}",
                "fields": {"last_name": f"Müller {i}", "country": "DE", "email": f"m{tag}{i}@example.test"},
            }
            for i in range(count)
        ]


@pytest.fixture
def sim(simulator: StartSimulator) -> SapODataSimulator:
    """A fresh simulator for tests that change its data or its settings."""
    return simulator(SapODataSimulator, counts={"contacts": 250, "orders": 40, "accounts": 0})


# --- SAP's own client, unchanged --------------------------------------------------------------------


def pyodata_client(sim: SapODataSimulator, service: str) -> Any:
    session = requests.Session()
    session.auth = (sim.username, sim.password)
    return pyodata.Client(f"{sim.base_url}{ROOT}/{service}/", session)


def test_pyodata_builds_its_client_from_the_metadata(sap_odata_sim: SapODataSimulator) -> None:
    bp = pyodata_client(sap_odata_sim, BP)
    assert {s.name for s in bp.schema.entity_sets} >= {
        "A_BusinessPartner",
        "A_BusinessPartnerAddress",
        "A_AddressEmailAddress",
    }
    partner = bp.schema.entity_type("A_BusinessPartnerType")
    assert [p.name for p in partner.key_proprties] == ["BusinessPartner"]
    assert partner.proprty("LastChangeTime").typ.name == "Edm.Time"
    assert partner.proprty("BusinessPartner").label == "Business Partner"
    assert [n.name for n in partner.nav_proprties] == ["to_BusinessPartnerAddress"]
    so = pyodata_client(sap_odata_sim, SO)
    order = so.schema.entity_type("A_SalesOrderType")
    assert order.proprty("LastChangeDateTime").typ.name == "Edm.DateTimeOffset"
    assert [n.name for n in order.nav_proprties] == ["to_Item"]


def test_pyodata_queries_filter_order_expand_count(sap_odata_sim: SapODataSimulator) -> None:
    bp = pyodata_client(sap_odata_sim, BP)
    page = (
        bp.entity_sets.A_BusinessPartner.get_entities()
        .filter("LastChangeDate ge datetime'2024-01-01T00:00:00' and BusinessPartnerCategory eq '1'")
        .order_by("LastChangeDate,LastChangeTime,BusinessPartner")
        .expand("to_BusinessPartnerAddress/to_EmailAddress")
        .top(5)
        .count(inline=True)
        .execute()
    )
    assert len(page) == 5
    assert page.total_count == sap_odata_sim.count("contacts")
    first = page[0]
    row = sap_odata_sim.tables["contacts"].rows[first.BusinessPartner]
    assert first.to_BusinessPartnerAddress[0].to_EmailAddress[0].EmailAddress == row.data["EmailAddress"]
    one = bp.entity_sets.A_BusinessPartner.get_entity("1000001").execute()
    assert one.LastName
    so = pyodata_client(sap_odata_sim, SO)
    orders = (
        so.entity_sets.A_SalesOrder.get_entities().filter("SalesOrder eq '7'").expand("to_Item").execute()
    )
    assert [o.SalesOrder for o in orders] == ["7"]
    assert orders[0].OverallSDProcessStatus in ("A", "B", "C")
    assert orders[0].to_Item[0].SalesOrderItem == "10"


def test_pyodata_follows_server_driven_paging(sim: SapODataSimulator) -> None:
    sim.max_page_size = 100
    entities = pyodata_client(sim, BP).entity_sets.A_BusinessPartner
    seen, page = [], entities.get_entities().order_by("BusinessPartner").execute()
    seen += [e.BusinessPartner for e in page]
    while page.next_url:
        page = entities.get_entities().next_url(page.next_url).execute()
        seen += [e.BusinessPartner for e in page]
    assert len(seen) == len(set(seen)) == sim.count("contacts")


def test_pyodata_batch_changeset(sim: SapODataSimulator) -> None:
    """pyodata's own $batch works too (with the CSRF token it does not fetch by itself)."""
    session = requests.Session()
    session.auth = (sim.username, sim.password)
    url = f"{sim.base_url}{ROOT}/{BP}/"
    token = session.get(url, headers={"X-CSRF-Token": "Fetch"}).headers["x-csrf-token"]
    session.headers["X-CSRF-Token"] = token
    client = pyodata.Client(url, session)
    batch, changeset = client.create_batch(), client.create_changeset()
    create = client.entity_sets.A_BusinessPartner.create_entity().set(
        BusinessPartnerCategory="1", LastName="Größer", BusinessPartnerIDByExtSystem="PYO-1"
    )
    changeset.add_request(create)
    batch.add_request(changeset)
    [[created]] = batch.execute()
    assert created.LastName == "Größer"
    assert sim.tables["contacts"].find("BusinessPartnerIDByExtSystem", "PYO-1") is not None


# --- reads --------------------------------------------------------------------------------------------


def test_equal_timestamps_across_pages_lose_and_repeat_nothing(sim: SapODataSimulator) -> None:
    """Every row shares one second: keyset on (date, time, key) still reads each exactly once."""
    ids = list(sim.tables["contacts"].rows)
    sim.touch("contacts", ids=ids)
    conn = connector(sim, page_size=7)
    records = list(conn.read("contacts"))
    assert sorted(r.external_id for r in records) == sorted(ids)
    assert len({r.updated_at for r in records}) == 1
    cursor = Cursor()
    for record in records[:50]:
        cursor = cursor.advance(record)
    assert [r.external_id for r in conn.read("contacts", cursor=cursor)] == [
        r.external_id for r in records[50:]
    ]


def test_server_paging_below_top_is_followed(sim: SapODataSimulator) -> None:
    sim.max_page_size = 30
    conn = connector(sim, page_size=100)
    records = list(conn.read("contacts"))
    assert len(records) == len({r.external_id for r in records}) == sim.count("contacts")
    assert conn.last_total == sim.count("contacts")


def test_orders_carry_status_items_and_customer(sim: SapODataSimulator) -> None:
    orders = list(connector(sim, page_size=15).read("orders"))
    assert len(orders) == sim.count("orders")
    first = orders[0]
    row = sim.tables["orders"].rows[first.external_id]
    assert first.fields["number"] == first.external_id
    assert first.fields["customer_id"] == row.data["SoldToParty"]
    assert first.fields["status"] in ("Open", "In process", "Completed", "Rejected")
    assert len(first.raw["to_Item"]["results"]) == len(row.data["Items"])
    assert "__metadata" not in first.raw


def test_sap_client_is_sent_and_checked(sim: SapODataSimulator) -> None:
    connector(sim, sap_client="100").check_connection()
    with pytest.raises(AuthFailed, match="Client 200 is not available") as info:
        connector(sim, sap_client="200").check_connection()
    assert info.value.permanent


# --- auth, CSRF ------------------------------------------------------------------------------------


def test_basic_auth(sim: SapODataSimulator) -> None:
    assert len(list(connector(sim, auth="basic", page_size=100).read("contacts"))) == sim.count("contacts")
    with pytest.raises(AuthFailed) as info:
        connector(sim, auth="basic", password="wrong-password").check_connection()
    assert info.value.permanent
    assert_no_secrets(info.value, {"password": "wrong-password"})


def test_oauth_token_is_cached_and_refreshed_on_401(sim: SapODataSimulator) -> None:
    conn = connector(sim, page_size=50)
    conn.check_connection()
    list(conn.read("orders"))
    assert sim.tokens.issued == 1
    sim.expire_tokens()
    assert len(list(conn.read("orders"))) == sim.count("orders")
    assert sim.tokens.issued == 2


def test_csrf_token_is_fetched_once_and_refetched_on_validation_failure(sim: SapODataSimulator) -> None:
    conn = connector(sim)
    records = [{"external_id": f"C{i}", "fields": {"last_name": f"Csrf {i}"}} for i in range(2)]
    assert conn.write("contacts", records).created == 2
    assert conn.write("contacts", records).updated == 2
    assert sim.csrf_fetches == 1
    sim.expire_csrf()
    result = conn.write("contacts", [{"external_id": "C0", "fields": {"last_name": "Csrf again"}}])
    assert (result.updated, result.failed) == (1, [])
    assert sim.csrf_fetches == 2


def test_modifying_request_without_csrf_token_is_refused(sim: SapODataSimulator) -> None:
    response = requests.post(
        f"{sim.base_url}{ROOT}/{BP}/A_BusinessPartner",
        json={"BusinessPartnerCategory": "1", "LastName": "X"},
        auth=(sim.username, sim.password),
        timeout=5,
    )
    assert response.status_code == 403
    assert response.headers["x-csrf-token"] == "Required"
    assert response.json()["error"]["message"]["value"] == "CSRF token validation failed"


# --- SAP error JSON → typed errors -------------------------------------------------------------------


def test_error_json_maps_to_typed_errors(sim: SapODataSimulator) -> None:
    conn = connector(sim)
    conn.check_connection()
    sim.inject(errors=[{"status": 400, "count": 1}])
    with pytest.raises(SapODataError) as bad:
        conn.check_connection()
    assert bad.value.permanent and bad.value.status == 400
    assert bad.value.code == "/IWFND/CM_MGW/025"
    assert str(bad.value).startswith("SAP S/4HANA OData: A_BusinessPartner failed: Injected failure")
    sim.inject(errors=[{"status": 404, "count": 1}])
    with pytest.raises(ConnectorError) as missing:
        conn.check_connection()
    assert missing.value.permanent and missing.value.status == 404
    sim.inject(errors=[{"status": 500, "count": 1}])
    with pytest.raises(VendorUnavailable) as down:
        conn.check_connection()
    assert not down.value.permanent and down.value.code == "/IWBEP/CM_MGW_RT/004"
    sim.inject(rate_limit={"count": 1, "retry_after": 12})
    with pytest.raises(RateLimited) as limited:
        conn.check_connection()
    assert limited.value.retry_after == 12.0


def test_invalid_filter_is_sap_error_json(sap_odata_sim: SapODataSimulator) -> None:
    response = requests.get(
        f"{sap_odata_sim.base_url}{ROOT}/{BP}/A_BusinessPartner",
        params={"$filter": "LastName zz 'x'"},
        auth=(sap_odata_sim.username, sap_odata_sim.password),
        timeout=5,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "/IWBEP/CM_MGW_RT/022"
    assert error["innererror"]["errordetails"][0]["message"] == error["message"]["value"]


def test_token_that_expires_at_once_is_auth_expired(sim: SapODataSimulator) -> None:
    conn = connector(sim)
    conn.check_connection()
    sim.inject(token_ttl=0, expire_tokens=True)
    with pytest.raises(AuthExpired):
        list(conn.read("orders"))


# --- $batch writes ---------------------------------------------------------------------------------


def test_batch_write_reports_each_record(sim: SapODataSimulator) -> None:
    conn = connector(sim)
    tag = uuid.uuid4().hex[:6]
    records = [
        {"external_id": f"OK{tag}", "fields": {"last_name": "Dupont", "email": f"d{tag}@example.test"}},
        {"external_id": f"NO{tag}", "fields": {"first_name": "No last name"}},
        {"external_id": f"BAD{tag}", "fields": {"last_name": "Bad mail", "email": "not-an-address"}},
        {"external_id": "X" * 21, "fields": {"last_name": "Too long"}},
    ]
    before = sim.count("contacts")
    result = conn.write("contacts", records)
    assert [o.external_id for o in result.outcomes] == [r["external_id"] for r in records]
    assert result.created == 1
    errors = {o.external_id: o.error for o in result.failed}
    assert errors[f"NO{tag}"] == "SAP R1/086: Enter a last name"
    assert errors[f"BAD{tag}"] == "SAP AM/230: E-mail address not-an-address is not valid"
    assert "1 to 20 characters" in str(errors["X" * 21])
    assert sim.count("contacts") == before + 1
    assert sim.batches == 1
    # an update changes the name, the address and the e-mail, each in the record's own change set
    update = {
        "external_id": f"OK{tag}",
        "fields": {"last_name": "Dupont-Moreau", "country": "FR", "email": f"dm{tag}@example.test"},
    }
    result = conn.write("contacts", [update])
    assert (result.updated, result.failed) == (1, [])
    row = sim.tables["contacts"].find("BusinessPartnerIDByExtSystem", f"OK{tag}")
    assert row is not None
    assert (row.data["LastName"], row.data["Country"], row.data["EmailAddress"]) == (
        "Dupont-Moreau",
        "FR",
        f"dm{tag}@example.test",
    )


def test_batch_answer_missing_parts_is_unexpected(sim: SapODataSimulator) -> None:
    conn = connector(sim)
    conn.write("contacts", [{"external_id": "warm", "fields": {"last_name": "Warm"}}])  # token and lookups
    original = sim.malformed

    def only_batch(request: Any, response: Any, kind: str) -> Any:
        return original(request, response, kind) if request.path.endswith("$batch") else response

    sim.malformed = only_batch  # type: ignore[method-assign]
    sim.inject(malformed={"kind": "missing"})
    with pytest.raises(UnexpectedResponse, match=r"\$batch with 0 parts for 1 change sets"):
        conn.write("contacts", [{"external_id": "next", "fields": {"last_name": "Next"}}])


# --- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"auth": "basic"}, "needs setting"),
        ({"client_secret": ""}, "client_secret"),
        ({"sap_client": "1a0"}, "three digits"),
        ({"page_size": "many"}, "whole number"),
        ({"page_size": 0}, "between 1 and 5000"),
        ({"no_such": 1}, "no_such"),
    ],
)
def test_bad_config_is_invalid_config(
    sap_odata_sim: SapODataSimulator, overrides: dict[str, Any], match: str
) -> None:
    with pytest.raises(InvalidConfig, match=match):
        SapODataConnector(
            {**odata_config(sap_odata_sim), **overrides}, session=simulator_session(sap_odata_sim)
        )


def test_field_map_checked_against_the_system_metadata(sap_odata_sim: SapODataSimulator) -> None:
    conn = connector(sap_odata_sim, field_map={"contacts": {"phone": "PhoneNumber"}})
    with pytest.raises(InvalidConfig, match="PhoneNumber"):
        conn.check_connection()
    connector(
        sap_odata_sim, field_map={"orders": {"customer_reference": "SalesOrderType"}}
    ).check_connection()


def test_keyset_filter_keeps_sub_second_change_times(sap_odata_sim: SapODataSimulator) -> None:
    """LastChangeDateTime has 7 digits: the next page starts after the last row's exact time, not its second
    (truncating would read that second's rows again)."""
    conn = connector(sap_odata_sim)
    moment = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
    assert conn._filter("orders", None, (moment, "42")) == (
        "(LastChangeDateTime gt datetimeoffset'2024-05-06T07:08:09.123Z' or "
        "(LastChangeDateTime eq datetimeoffset'2024-05-06T07:08:09.123Z' and SalesOrder gt '42'))"
    )
    assert conn._filter("contacts", moment.replace(microsecond=0), None) == (
        "BusinessPartnerCategory eq '1' and (LastChangeDate gt datetime'2024-05-06T00:00:00' or "
        "(LastChangeDate eq datetime'2024-05-06T00:00:00' and LastChangeTime ge time'PT07H08M09S'))"
    )
    assert "O''Brien" in conn._filter("contacts", None, (moment.replace(microsecond=0), "O'Brien"))


def test_token_endpoint_rate_limit_is_rate_limited(sim: SapODataSimulator) -> None:
    sim.inject(rate_limit={"count": 1, "retry_after": 5})
    with pytest.raises(RateLimited) as info:
        connector(sim).check_connection()
    assert (info.value.retry_after, info.value.permanent) == (5.0, False)
    assert str(info.value).startswith("SAP S/4HANA OData: the token endpoint")
    connector(sim).check_connection()


def test_string_functions_in_filters_through_pyodata(sap_odata_sim: SapODataSimulator) -> None:
    """substringof/startswith/endswith/tolower/toupper, as UI5 and pyodata users write them."""
    rows = [r for r in sap_odata_sim.tables["contacts"].rows.values() if r.data.get("LastName")]
    last = str(rows[0].data["LastName"])
    entities = pyodata_client(sap_odata_sim, BP).entity_sets.A_BusinessPartner

    def names(expression: str) -> set[str]:
        return {e.BusinessPartner for e in entities.get_entities().filter(expression).top(1000).execute()}

    def expected(test: Any) -> set[str]:
        return {r.id for r in rows if test(str(r.data["LastName"]))}

    middle = last[1:3]
    assert names(f"substringof('{middle}', LastName)") == expected(lambda n: middle in n)
    assert names(f"substringof('{middle}', LastName) eq true") == expected(lambda n: middle in n)
    assert names(f"substringof('{middle}', LastName) eq false") == expected(lambda n: middle not in n)
    assert names(f"startswith(LastName, '{last[:2]}')") == expected(lambda n: n.startswith(last[:2]))
    assert names(f"endswith(LastName, '{last[-2:]}') and not startswith(LastName, 'Zz')") == expected(
        lambda n: n.endswith(last[-2:])
    )
    assert names(f"tolower(LastName) eq '{last.lower()}'") == expected(lambda n: n.lower() == last.lower())
    assert names(f"toupper(LastName) eq '{last.upper()}'") == expected(lambda n: n.upper() == last.upper())
    assert names(f"startswith(LastName, '{last[:2]}')")  # not empty: the seeded name is there


@pytest.mark.parametrize(
    "expression",
    [
        "substringof('a')",  # one argument
        "startswith(LastName 'a')",  # no comma
        "substringof('a', LastName) eq 'yes'",  # compared with a non-boolean
        "LastName eq substringof('a', LastName)",  # a boolean function as a value
        "tolower(LastName",  # unclosed
    ],
)
def test_malformed_function_calls_are_sap_error_json(
    sap_odata_sim: SapODataSimulator, expression: str
) -> None:
    response = requests.get(
        f"{sap_odata_sim.base_url}{ROOT}/{BP}/A_BusinessPartner",
        params={"$filter": expression},
        auth=(sap_odata_sim.username, sap_odata_sim.password),
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "/IWBEP/CM_MGW_RT/022"
