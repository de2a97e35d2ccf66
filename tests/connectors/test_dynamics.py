"""Dynamics 365 (Dataverse Web API): conformance suite, MSAL against the simulator's Entra ID, paging, change
tracking with deletions and expired delta tokens, alternate-key upserts, $batch, service protection limits
and Dataverse's error JSON."""

from __future__ import annotations

import json
import uuid
from typing import Any

import msal
import pytest
import requests

from connectors.base import Cursor, Record
from connectors.dynamics.connector import DynamicsConnector
from connectors.dynamics.simulator import DynamicsSimulator
from connectors.errors import AuthFailed, ConnectorError, InvalidConfig, RateLimited, UnexpectedResponse
from connectors.simulation import Simulator
from connectors.testing import ConnectorConformance, assert_no_secrets, simulator_session
from tests.fixtures.simulators import StartSimulator

COUNTS = {"contacts": 1000, "accounts": 60, "tickets": 60, "orders": 60, "articles": 0, "leads": 30}


def dyn_config(sim: Simulator, **overrides: Any) -> dict[str, Any]:
    d = sim.describe()
    return {
        "org_url": d["org_url"],
        "authority_host": d["authority_host"],
        "tenant_id": d["tenant_id"],
        "client_id": d["client_id"],
        "client_secret": d["client_secret"],
        **overrides,
    }


@pytest.fixture(scope="module")
def dynamics_sim(session_simulator: StartSimulator) -> DynamicsSimulator:
    return session_simulator(DynamicsSimulator, counts=COUNTS)


@pytest.fixture
def sim(simulator: StartSimulator) -> DynamicsSimulator:
    """A fresh simulator for tests that change its data."""
    return simulator(DynamicsSimulator, counts={**COUNTS, "contacts": 25})


def make(sim: Simulator, **overrides: Any) -> DynamicsConnector:
    return DynamicsConnector(dyn_config(sim, **overrides), session=simulator_session(sim))


class TestDynamicsConformance(ConnectorConformance):
    connector_class = DynamicsConnector
    read_stream = "contacts"
    write_stream = "contacts"
    page_size = 200
    read_operation = "contacts"
    expected_rate_limit = (7.0, "requests")

    @pytest.fixture
    def simulator(self, dynamics_sim: DynamicsSimulator) -> DynamicsSimulator:
        return dynamics_sim

    def config(self, simulator: Simulator, **overrides: Any) -> dict[str, Any]:
        return dyn_config(simulator, **overrides)

    def bad_credentials(self, simulator: Simulator) -> dict[str, Any]:
        return dyn_config(simulator, client_secret="not-the-secret")

    def write_records(self, count: int, tag: str) -> list[dict[str, Any]]:
        return [
            {"external_id": f"hub-{tag}-{i}",
             "fields": {"first_name": "Ada", "last_name": f"Tester {i}", "email": f"{tag}-{i}@example.test"}}
            for i in range(count)
        ]  # fmt: skip


# --- Entra ID through MSAL ------------------------------------------------------------------------


def test_msal_gets_a_token_from_the_simulator_unchanged(dynamics_sim: DynamicsSimulator) -> None:
    d = dynamics_sim.describe()
    app = msal.ConfidentialClientApplication(
        d["client_id"],
        client_credential=d["client_secret"],
        authority=f"{d['authority_host']}/{d['tenant_id']}",
        instance_discovery=False,
        http_client=simulator_session(dynamics_sim),
    )
    result = app.acquire_token_for_client(scopes=[f"{d['org_url']}/.default"])
    assert result.get("token_type") == "Bearer", result.get("error_description")
    _, claims, _ = result["access_token"].split(".")
    payload = json.loads(__import__("base64").urlsafe_b64decode(claims + "=="))
    assert payload["aud"] == d["org_url"] and payload["tid"] == d["tenant_id"]
    assert payload["exp"] > payload["iat"]
    again = app.acquire_token_for_client(scopes=[f"{d['org_url']}/.default"])
    assert again["access_token"] == result["access_token"]  # from MSAL's token cache
    wrong = app.acquire_token_for_client(scopes=["https://other.crm.dynamics.com/.default"])
    assert wrong["error"] == "invalid_scope"


def test_connector_token_is_cached_and_refreshed_on_401(sim: DynamicsSimulator) -> None:
    connector = make(sim)
    connector.check_connection()
    issued = sim.token_requests
    connector.check_connection()
    assert sim.token_requests == issued  # MSAL's cache answered
    sim.expire_tokens()
    assert len(list(connector.read("contacts"))) == 25
    assert sim.token_requests == issued + 1


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ({"client_secret": "wrong-secret-value"}, "invalid_client"),
        ({"client_id": str(uuid.uuid4())}, "unauthorized_client"),
        ({"tenant_id": "not-a-tenant"}, "invalid_request"),
    ],
)
def test_refused_credentials_are_auth_failed_and_redacted(
    dynamics_sim: DynamicsSimulator, override: dict[str, str], error: str
) -> None:
    connector = make(dynamics_sim, **override)
    with pytest.raises(AuthFailed) as info:
        connector.check_connection()
    assert info.value.permanent and info.value.code == error
    assert_no_secrets(info.value, {"secret": dyn_config(dynamics_sim, **override)["client_secret"]})


@pytest.mark.parametrize(
    "override",
    [
        {"org_url": "not a url"},
        {"tenant_id": "a/b"},
        {"page_size": 0},
        {"page_size": "100"},
        {"batch_size": 5000},
        {"key_column": "hub id; drop"},
        {"contact_key": "telephone1"},
        {"org_url": ""},
        {"case_customer": "Contoso Ltd"},
    ],
)
def test_bad_config_is_refused(dynamics_sim: DynamicsSimulator, override: dict[str, Any]) -> None:
    with pytest.raises(InvalidConfig):
        make(dynamics_sim, **override)


# --- reads: paging and change tracking --------------------------------------------------------------


def test_paging_follows_next_links_with_maxpagesize(dynamics_sim: DynamicsSimulator) -> None:
    seen: list[str] = []
    original = requests.Session.request

    def spy(self: requests.Session, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        response = original(self, method, url, *args, **kwargs)
        if "/api/data/v9.2/contacts" in url:
            seen.append(kwargs.get("headers", {}).get("Prefer", ""))
        return response

    connector = make(dynamics_sim, page_size=150)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(requests.Session, "request", spy)
        records = list(connector.read("contacts"))
    total = dynamics_sim.count("contacts")
    assert len(records) == total and len({r.external_id for r in records}) == total
    assert len(seen) == -(-total // 150)
    assert all("odata.maxpagesize=150" in p and "odata.track-changes" in p for p in seen)
    assert all(
        r.fields["email"].startswith("contact") or "@example.test" in r.fields["email"] for r in records
    )
    assert records[-1].cursor_token and "$deltatoken=" in records[-1].cursor_token
    assert records[149].cursor_token and "$skiptoken=" in records[149].cursor_token


def test_plain_requests_reads_the_same_pages(dynamics_sim: DynamicsSimulator) -> None:
    d = dynamics_sim.describe()
    token = requests.post(
        f"{d['authority_host']}/{d['tenant_id']}/oauth2/v2.0/token", verify=dynamics_sim.ca_bundle, timeout=5,
        data={"grant_type": "client_credentials", "client_id": d["client_id"],
              "client_secret": d["client_secret"], "scope": f"{d['org_url']}/.default"},
    ).json()["access_token"]  # fmt: skip
    headers = {"Authorization": f"Bearer {token}", "Prefer": "odata.maxpagesize=400"}
    url: str | None = f"{d['org_url']}/api/data/v9.2/contacts?$select=contactid,fullname"
    ids: list[str] = []
    while url:
        body = requests.get(url, headers=headers, verify=dynamics_sim.ca_bundle, timeout=5).json()
        ids += [row["contactid"] for row in body["value"]]
        assert set(body["value"][0]) == {"@odata.etag", "contactid", "fullname"}
        url = body.get("@odata.nextLink")
    assert len(ids) == len(set(ids)) == dynamics_sim.count("contacts")


def test_filter_subset_and_formatted_values(dynamics_sim: DynamicsSimulator) -> None:
    connector = make(dynamics_sim)
    response = connector.request(
        "GET", "/salesorders", params={"$select": "ordernumber,statuscode,totalamount",
                                       "$filter": "ordernumber eq 'ORD-00003-D7N4M5'"},
        headers={"Prefer": 'odata.include-annotations="OData.Community.Display.V1.FormattedValue"'},
    )  # fmt: skip
    (order,) = response.json()["value"]
    assert order["statuscode@OData.Community.Display.V1.FormattedValue"] in {
        "New",
        "Pending",
        "In Progress",
        "Complete",
        "Invoiced",
    }
    with pytest.raises(ConnectorError) as info:
        connector.request("GET", "/contacts", params={"$filter": "nosuchcolumn eq 1"})
    assert info.value.permanent and info.value.code == "0x80060888" and info.value.status == 400


def test_change_tracking_delta_with_changes_and_deletions(sim: DynamicsSimulator) -> None:
    connector = make(sim, page_size=10)
    cursor = Cursor()
    for record in connector.read("contacts"):
        cursor = cursor.advance(record)
    assert cursor.token and "$deltatoken=" in cursor.token
    changed = sim.touch("contacts", count=2)
    gone = next(iter(sim.tables["contacts"].rows))
    sim.delete("contacts", gone)
    delta = list(connector.read("contacts", cursor=cursor))
    assert sorted(r.external_id for r in delta if not r.deleted) == sorted(set(changed) - {gone})
    (deleted,) = [r for r in delta if r.deleted]
    assert deleted.external_id == gone and deleted.raw["@odata.context"].endswith("$deletedEntity")
    for record in delta:
        cursor = cursor.advance(record)
    assert list(connector.read("contacts", cursor=cursor)) == []
    # Cursor JSON round trip keeps the delta link (the engine stores it)
    assert Cursor.from_json(cursor.to_json()) == cursor


def test_expired_delta_token_reads_everything_again(sim: DynamicsSimulator) -> None:
    connector = make(sim)
    cursor = Cursor()
    for record in connector.read("contacts"):
        cursor = cursor.advance(record)
    sim.expire_delta_tokens()
    raw = requests.get(cursor.token or "", headers=connector.auth_headers(refresh=False), timeout=5,
                       verify=sim.ca_bundle)  # fmt: skip
    assert raw.status_code == 410 and raw.json()["error"]["code"] == "0x80044352"
    again = list(connector.read("contacts", cursor=cursor))
    assert len(again) == 25 and not any(r.deleted for r in again)
    assert again[-1].cursor_token and again[-1].cursor_token != cursor.token


def test_foreign_links_are_refused(sim: DynamicsSimulator) -> None:
    connector = make(sim)
    # A stored token for another environment is ignored: a full read, never a request elsewhere.
    stray = Cursor(token="https://evil.example/api/data/v9.2/contacts?$deltatoken=1")
    assert len(list(connector.read("contacts", cursor=stray))) == 25
    original = DynamicsSimulator._tracked

    def foreign(self: DynamicsSimulator, *args: Any) -> Any:
        response = original(self, *args)
        body = json.loads(response.body)
        body["@odata.deltaLink"] = "https://evil.example/api/data/v9.2/contacts?$deltatoken=9"
        response.body = json.dumps(body).encode()
        return response

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(DynamicsSimulator, "_tracked", foreign)
        with pytest.raises(UnexpectedResponse, match="outside"):
            list(connector.read("contacts"))


def test_untracked_table_is_a_clear_permanent_error_and_time_mode_works(sim: DynamicsSimulator) -> None:
    sim.untracked.add("contacts")
    with pytest.raises(ConnectorError, match="Track changes") as info:
        list(make(sim).read("contacts"))
    assert info.value.permanent
    by_time = make(sim, change_tracking=False, page_size=7)
    records = list(by_time.read("contacts"))
    assert len(records) == 25
    cursor = Cursor()
    for record in records[:10]:
        cursor = cursor.advance(record)
    assert [r.external_id for r in by_time.read("contacts", cursor=cursor)] == [
        r.external_id for r in records[10:]
    ]


# --- writes: alternate keys and $batch ----------------------------------------------------------------


def test_alternate_key_upsert_creates_then_updates(sim: DynamicsSimulator) -> None:
    connector = make(sim)
    record: dict[str, Any] = {"external_id": "c-1", "fields": {"first_name": "Zoë", "last_name": "O'Neil",
                                               "email": "zoe.o'neil+x@example.test"}}  # fmt: skip
    first = connector.write("contacts", [record])
    assert (first.created, first.updated, first.failed) == (1, 0, [])
    record["fields"]["last_name"] = "O'Neill"
    second = connector.write("contacts", [record])
    assert (second.created, second.updated) == (0, 1)
    assert first.outcomes[0].vendor_id == second.outcomes[0].vendor_id
    row = sim.tables["contacts"].rows[str(first.outcomes[0].vendor_id)]
    assert (row.data["lastname"], row.data["emailaddress1"]) == ("O'Neill", "zoe.o'neil+x@example.test")
    by_id = make(sim, contact_key="external_id").write(
        "contacts", [{"external_id": "x'1", "fields": {"last_name": "K"}}]
    )
    assert by_id.created == 1
    assert sim.tables["contacts"].find("hub_externalid", "x'1") is not None
    missing = connector.write("contacts", [{"external_id": "n", "fields": {"last_name": "No mail"}}])
    assert missing.failed and "e-mail" in str(missing.failed[0].error)


def test_if_match_and_if_none_match_semantics(sim: DynamicsSimulator) -> None:
    connector = make(sim)
    url = "/contacts(emailaddress1='new%40example.test')"
    with pytest.raises(ConnectorError) as info:
        connector.request("PATCH", url, json={"lastname": "A"}, headers={"If-Match": "*"})
    assert info.value.status == 404 and info.value.code == "0x80040217"
    created = connector.request("PATCH", url, json={"lastname": "A"}, headers={"If-None-Match": "*"})
    assert created.status_code == 204 and "contacts(" in created.headers["OData-EntityId"]
    with pytest.raises(ConnectorError) as info:
        connector.request("PATCH", url, json={"lastname": "B"}, headers={"If-None-Match": "*"})
    assert info.value.status == 412
    updated = connector.request("PATCH", url, json={"lastname": "C"}, headers={"If-Match": "*"})
    assert updated.status_code == 204
    with pytest.raises(ConnectorError) as info:
        connector.request("PATCH", "/contacts(telephone1='1')", json={"lastname": "D"})
    assert info.value.status == 400


def test_batch_gives_a_result_per_record(sim: DynamicsSimulator) -> None:
    connector = make(sim, batch_size=3)
    records: list[dict[str, Any]] = [
        {"external_id": f"t-{i}", "fields": {"subject": f"Case {i}", "description": "d", "priority": "2"}}
        for i in range(5)
    ]
    records[2]["fields"]["priority"] = "9"  # outside the option set: this one fails alone
    first = connector.write("tickets", records)
    assert (first.created, first.updated) == (4, 0)
    (failed,) = first.failed
    assert failed.external_id == "t-2" and "outside the valid range" in str(failed.error)
    second = connector.write("tickets", [r for r in records if r["external_id"] != "t-2"])
    assert (second.created, second.updated, second.failed) == (0, 4, [])
    table = sim.tables["tickets"]
    assert table.find("hub_externalid", "t-2") is None
    assert table.find("hub_externalid", "t-4").data["prioritycode"] == 2  # type: ignore[union-attr]


def test_change_set_is_all_or_nothing(sim: DynamicsSimulator) -> None:
    connector = make(sim)
    boundary, changeset = "batch_x", "changeset_y"

    def part(cid: int, key: str, body: dict[str, Any]) -> str:
        return (
            f"--{changeset}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
            f"Content-ID: {cid}\r\n\r\nPATCH {connector.base_url}/leads(hub_externalid='{key}') HTTP/1.1\r\n"
            f"Content-Type: application/json\r\n\r\n{json.dumps(body)}\r\n"
        )

    payload = (f"--{boundary}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n"
               + part(1, "ok-1", {"lastname": "A"}) + part(2, "bad", {"nosuch": 1})
               + f"--{changeset}--\r\n--{boundary}--\r\n")  # fmt: skip
    before = sim.count("leads")
    response = connector.request(
        "POST",
        "/$batch",
        data=payload.encode(),
        headers={"Content-Type": f"multipart/mixed; boundary={boundary}"},
    )
    assert response.status_code == 200 and "HTTP/1.1 400" in response.text
    assert sim.count("leads") == before
    assert sim.tables["leads"].find("hub_externalid", "ok-1") is None


# --- service protection limits and errors -------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "scope", "code"),
    [("requests", "requests", "0x80072322"), ("execution_time", "execution_time", "0x80072321"),
     ("concurrency", "concurrency", "0x80072326")],
)  # fmt: skip
def test_service_protection_429_is_rate_limited(
    sim: DynamicsSimulator, policy: str, scope: str, code: str
) -> None:
    connector = make(sim)
    connector.check_connection()
    sim.inject(rate_limit={"count": 1, "retry_after": 42, "policy": policy})
    with pytest.raises(RateLimited) as info:
        list(connector.read("contacts"))
    assert (info.value.retry_after, info.value.scope, info.value.code) == (42.0, scope, code)
    assert not info.value.permanent


def test_request_limit_window_answers_retry_after(sim: DynamicsSimulator) -> None:
    connector = make(sim)
    sim.inject(service_protection={"requests": 3, "window": 120})
    for _ in range(3):
        connector.request("GET", "/WhoAmI")
    with pytest.raises(RateLimited) as info:
        connector.request("GET", "/WhoAmI")
    assert info.value.code == "0x80072322" and 100 <= (info.value.retry_after or 0) <= 120
    sim.clear_faults()
    connector.request("GET", "/WhoAmI")


def test_batch_inner_429_raises_rate_limited(sim: DynamicsSimulator) -> None:
    connector = make(sim)
    original = DynamicsSimulator.upsert_row

    def limited(self: DynamicsSimulator, request: Any, undo: Any = None) -> Any:
        return self._limit_response("requests", 5)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(DynamicsSimulator, "upsert_row", limited)
        with pytest.raises(RateLimited):
            connector.write(
                "leads", [{"external_id": f"l{i}", "fields": {"last_name": "L"}} for i in range(2)]
            )
    assert original is DynamicsSimulator.upsert_row


def test_error_json_maps_to_typed_errors(sim: DynamicsSimulator) -> None:
    connector = make(sim)
    with pytest.raises(ConnectorError) as info:
        connector.request("GET", "/contacts(00000000-0000-0000-0000-000000000001)")
    assert (info.value.status, info.value.code, info.value.permanent) == (404, "0x80040217", True)
    assert str(info.value).startswith("Dynamics 365: contact With Id")
    with pytest.raises(ConnectorError) as info:
        connector.request("GET", "/nosuchset")
    assert info.value.status == 404
    sim.inject(errors=[{"status": 500}])
    with pytest.raises(ConnectorError) as info:
        connector.request("GET", "/WhoAmI")
    assert not info.value.permanent and info.value.code == "0x80040216"


def test_case_customer_binds_new_cases_to_an_account(sim: DynamicsSimulator) -> None:
    account = next(iter(sim.tables["accounts"].rows))
    connector = make(sim, case_customer=account)
    connector.write("tickets", [{"external_id": "case-1", "fields": {"subject": "S", "contact_id": ""}}])
    case = sim.tables["tickets"].find("hub_externalid", "case-1")
    assert case is not None and case.data["_customerid_value"] == account


def test_records_and_streams_map_to_canonical(dynamics_sim: DynamicsSimulator) -> None:
    connector = make(dynamics_sim)
    orders = list(connector.read("orders"))
    assert len(orders) == 60
    first = orders[0].fields
    assert first["number"].startswith("ORD-") and first["status"] and first["currency"] in {
        "Euro", "US Dollar", "Japanese Yen", "Pound Sterling"}  # fmt: skip
    assert uuid.UUID(first["contact_id"])
    tickets = list(connector.read("tickets"))
    assert tickets[0].fields["number"].startswith("CAS-") and tickets[0].fields["subject"]
    leads = list(connector.read("leads"))
    assert len(leads) == 30 and leads[0].fields["email"]
    with pytest.raises(ConnectorError):
        connector.write("orders", [{"external_id": "o", "fields": {}}])


def test_record_token_helpers() -> None:
    record = Record(
        "a",
        __import__("datetime").datetime(2024, 1, 1, tzinfo=__import__("datetime").UTC),
        {},
        {},
        cursor_token="https://x/api/data/v9.2/contacts?$deltatoken=1",
    )
    cursor = Cursor().advance(record)
    assert cursor.token == record.cursor_token
    assert Cursor.from_json({"value": None, "seen_ids": [], "token": "t"}) == Cursor(token="t")
    assert "token" not in Cursor().to_json()


def test_no_secret_or_token_in_any_log_line(sim: DynamicsSimulator, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    connector = make(sim)
    connector.check_connection()
    sim.expire_tokens()
    list(connector.read("contacts"))
    connector.write(
        "contacts", [{"external_id": "l", "fields": {"last_name": "L", "email": "l@example.test"}}]
    )
    with pytest.raises(AuthFailed):
        make(sim, client_secret="wrong-secret-value").check_connection()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert logged  # the HTTP layer and MSAL did log
    for secret in [sim.client_secret, "wrong-secret-value", *connector.session.secrets]:
        assert secret not in logged


def test_patch_by_a_new_guid_creates_that_row_and_a_changed_key_finds_the_new_value(
    sim: DynamicsSimulator,
) -> None:
    connector = make(sim)
    new_id = str(uuid.uuid4())
    created = connector.request(
        "PATCH", f"/contacts({new_id})", json={"lastname": "G", "emailaddress1": "g@x.test"}
    )
    assert created.status_code == 204 and new_id in created.headers["OData-EntityId"]
    connector.request(
        "PATCH", f"/contacts({new_id})", json={"emailaddress1": "h@x.test"}, headers={"If-Match": "*"}
    )
    with pytest.raises(ConnectorError) as info:  # the old e-mail no longer names the contact
        connector.request("GET", "/contacts(emailaddress1='g%40x.test')")
    assert info.value.status == 404
    found = connector.request("GET", "/contacts(emailaddress1='h%40x.test')", params={"$select": "contactid"})
    assert found.json()["contactid"] == new_id
    again = connector.request("PATCH", "/contacts(emailaddress1='g%40x.test')", json={"lastname": "New G"})
    assert again.status_code == 204 and new_id not in again.headers["OData-EntityId"]
