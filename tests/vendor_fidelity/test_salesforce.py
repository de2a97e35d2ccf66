"""Salesforce simulator fidelity: the calls a typical integration makes, driven by simple-salesforce."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any, cast

import pytest
import requests
from simple_salesforce import Salesforce, SFType, format_soql
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceResourceNotFound

from connectors.salesforce.simulator import SalesforceSimulator
from tests.fixtures.simulators import StartSimulator

V = "/services/data/v59.0"
COUNTS = {"contacts": 30, "accounts": 5, "tickets": 5, "orders": 5, "articles": 5, "leads": 0}


@pytest.fixture(scope="module")
def sim(session_simulator: StartSimulator) -> SalesforceSimulator:
    return session_simulator(SalesforceSimulator, counts=COUNTS)


@pytest.fixture(scope="module")
def sf(sim: SalesforceSimulator) -> Salesforce:
    """simple-salesforce, unchanged, with a token from the simulator's OAuth endpoint."""
    d = sim.describe()
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise override session.verify
    session.verify = d["ca_bundle"]
    token = session.post(
        d["login_url"] + "/services/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": d["client_id"],
              "client_secret": d["client_secret"]},
    ).json()  # fmt: skip
    return Salesforce(instance_url=token["instance_url"], session_id=token["access_token"], session=session)


def sobject(sf: Salesforce, name: str) -> SFType:
    return cast(SFType, getattr(sf, name))


def new_contact(sf: Salesforce, **fields: Any) -> str:
    created = sobject(sf, "Contact").create({"LastName": "Fidelity", **fields})
    assert created["success"] is True
    return str(created["id"])


def test_update_by_id_answers_204_and_changes_the_record(sf: Salesforce) -> None:
    contact_id = new_contact(sf, FirstName="Anna")
    assert sobject(sf, "Contact").update(contact_id, {"FirstName": "Änne", "Phone": "+49 1"}) == 204
    record = sobject(sf, "Contact").get(contact_id)
    assert (record["FirstName"], record["Phone"], record["LastName"]) == ("Änne", "+49 1", "Fidelity")
    with pytest.raises(SalesforceMalformedRequest) as bad:
        sobject(sf, "Contact").update(contact_id, {"Nope__c": "x"})
    assert cast(Any, bad.value.content)[0]["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceResourceNotFound) as missing:
        sobject(sf, "Contact").update("003Hb9999999999AAA", {"FirstName": "x"})
    assert cast(Any, missing.value.content)[0]["errorCode"] == "NOT_FOUND"


def test_delete_by_id_then_not_found_shapes(sf: Salesforce) -> None:
    contact_id = new_contact(sf)
    assert sobject(sf, "Contact").delete(contact_id) == 204
    with pytest.raises(SalesforceResourceNotFound) as gone:
        sobject(sf, "Contact").get(contact_id)
    assert cast(Any, gone.value.content) == [
        {"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}
    ]
    with pytest.raises(SalesforceResourceNotFound) as again:
        sobject(sf, "Contact").delete(contact_id)
    assert cast(Any, again.value.content)[0]["errorCode"] == "ENTITY_IS_DELETED"
    with pytest.raises(SalesforceResourceNotFound) as unknown:
        sobject(sf, "Contact").delete("003Hb9999999999AAA")
    assert cast(Any, unknown.value.content)[0]["errorCode"] == "NOT_FOUND"


def test_count_queries(sf: Salesforce, sim: SalesforceSimulator) -> None:
    live = sim.count("contacts")
    counted = sf.query("SELECT COUNT() FROM Contact")
    assert counted == {"totalSize": live, "done": True, "records": []}
    aggregate = sf.query("SELECT COUNT(Id) FROM Contact")
    assert aggregate["totalSize"] == 1
    assert aggregate["records"][0]["expr0"] == live
    assert aggregate["records"][0]["attributes"]["type"] == "AggregateResult"
    named = sf.query("SELECT COUNT(Id) total FROM Contact WHERE MailingCountry = 'DE'")
    rows = sim.tables["contacts"].rows.values()
    german = sum(1 for r in rows if not r.deleted and r.data.get("MailingCountry") == "DE")
    assert named["records"][0]["total"] == german > 0
    with pytest.raises(SalesforceMalformedRequest) as bad:
        sf.query("SELECT COUNT(Nope__c) FROM Contact")
    assert cast(Any, bad.value.content)[0]["errorCode"] == "INVALID_FIELD"


def test_query_all_includes_deleted_rows_and_count_sees_them(sf: Salesforce) -> None:
    tag = uuid.uuid4().hex[:8]
    contact_id = new_contact(sf, Ext_Id__c=f"del-{tag}")
    sobject(sf, "Contact").delete(contact_id)
    soql = format_soql("SELECT Id, IsDeleted FROM Contact WHERE Ext_Id__c = {}", f"del-{tag}")
    assert sf.query(soql)["totalSize"] == 0
    every = sf.query_all(soql, include_deleted=True)
    assert [(r["Id"], r["IsDeleted"]) for r in every["records"]] == [(contact_id, True)]
    count = format_soql("SELECT COUNT() FROM Contact WHERE Ext_Id__c = {}", f"del-{tag}")
    assert sf.query(count)["totalSize"] == 0
    assert sf.query(count, include_deleted=True)["totalSize"] == 1  # query_all recounts the records


def test_query_more_follows_next_records_url(sf: Salesforce, sim: SalesforceSimulator) -> None:
    first = sf.query("SELECT Id FROM Contact", headers={"Sforce-Query-Options": "batchSize=200"})
    assert first["done"] is (sim.count("contacts") <= 200)
    all_rows = sf.query_all("SELECT Id FROM Contact")
    assert len(all_rows["records"]) == sim.count("contacts")


def test_upsert_by_external_id_and_get_by_custom_id(sf: Salesforce) -> None:
    ext = f"fid-{uuid.uuid4().hex[:8]}"
    assert sobject(sf, "Contact").upsert(f"Ext_Id__c/{ext}", {"LastName": "Upserted"}) == 201
    assert sobject(sf, "Contact").upsert(f"Ext_Id__c/{ext}", {"FirstName": "Again"}) == 200
    found = sobject(sf, "Contact").get_by_custom_id("Ext_Id__c", ext)
    assert (found["FirstName"], found["LastName"], found["Ext_Id__c"]) == ("Again", "Upserted", ext)
    with pytest.raises(SalesforceResourceNotFound):
        sobject(sf, "Contact").get_by_custom_id("Ext_Id__c", "no-such-" + ext)
    with pytest.raises(SalesforceResourceNotFound) as bad_field:
        sobject(sf, "Contact").upsert(f"Email/{ext}", {"LastName": "x"})
    assert cast(Any, bad_field.value.content)[0]["errorCode"] == "NOT_FOUND"


def test_get_with_fields_parameter(sf: Salesforce) -> None:
    contact_id = new_contact(sf, Email="f@example.test")
    record = sf.restful(f"sobjects/Contact/{contact_id}", params={"fields": "Email,LastName"})
    assert record is not None
    assert set(record) == {"attributes", "Email", "LastName"}


def test_describe_global_and_object(sf: Salesforce) -> None:
    described = sf.describe()
    assert described is not None
    names = {o["name"]: o for o in described["sobjects"]}
    assert {"Contact", "Account", "Case", "Lead"} <= set(names)
    assert names["Contact"]["keyPrefix"] == "003"
    assert names["Contact"]["urls"]["describe"] == "/services/data/v59.0/sobjects/Contact/describe"
    contact = sobject(sf, "Contact").describe()
    fields = {f["name"]: f for f in contact["fields"]}
    assert fields["Ext_Id__c"]["externalId"] is True
    assert fields["Id"]["type"] == "id"
    assert (fields["Email"]["type"], fields["Phone"]["type"], fields["IsDeleted"]["type"]) == (
        "email", "phone", "boolean")  # fmt: skip
    assert (fields["AccountId"]["type"], fields["AccountId"]["referenceTo"]) == ("reference", ["Account"])
    assert fields["SystemModstamp"]["type"] == "datetime"
    assert fields["LastName"]["nillable"] is False and fields["LastName"]["createable"] is True
    assert fields["SystemModstamp"]["updateable"] is False
    assert contact["keyPrefix"] == "003"


def test_limits_and_limit_info_header(sf: Salesforce, sim: SalesforceSimulator) -> None:
    limits = sf.limits()
    assert limits["DailyApiRequests"]["Max"] == sim.api_limit
    assert 0 < limits["DailyApiRequests"]["Remaining"] < sim.api_limit
    sf.query("SELECT COUNT() FROM Contact")
    usage = sf.api_usage["api-usage"]
    assert (usage.used, usage.total) == (sim.api_used, sim.api_limit)


def test_composite_with_references(sf: Salesforce, sim: SalesforceSimulator) -> None:
    tag = uuid.uuid4().hex[:8]
    answer = sf.restful("composite", method="POST", json={
        "allOrNone": True,
        "compositeRequest": [
            {"method": "POST", "url": V + "/sobjects/Account", "referenceId": "acct",
             "body": {"Name": f"Composite {tag}"}},
            {"method": "POST", "url": V + "/sobjects/Contact", "referenceId": "person",
             "body": {"LastName": "Ref", "AccountId": "@{acct.id}"}},
            {"method": "GET", "url": V + "/sobjects/Contact/@{person.id}", "referenceId": "read"},
        ],
    })  # fmt: skip
    assert answer is not None
    results = answer["compositeResponse"]
    assert [r["httpStatusCode"] for r in results] == [201, 201, 200]
    assert results[2]["body"]["AccountId"] == results[0]["body"]["id"]
    assert results[0]["httpHeaders"]["Location"].endswith(results[0]["body"]["id"])


def test_composite_all_or_none_rolls_back(sf: Salesforce, sim: SalesforceSimulator) -> None:
    tag = uuid.uuid4().hex[:8]
    before = sim.count("accounts")
    answer = sf.restful("composite", method="POST", json={
        "allOrNone": True,
        "compositeRequest": [
            {"method": "POST", "url": V + "/sobjects/Account", "referenceId": "ok",
             "body": {"Name": f"Rolled {tag}"}},
            {"method": "POST", "url": V + "/sobjects/Contact", "referenceId": "bad",
             "body": {"FirstName": "no last name"}},
            {"method": "GET", "url": V + "/sobjects/Account/@{ok.id}", "referenceId": "after"},
        ],
    })  # fmt: skip
    assert answer is not None
    results = answer["compositeResponse"]
    assert [r["httpStatusCode"] for r in results] == [400, 400, 400]
    assert results[0]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert results[1]["body"][0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert sim.count("accounts") == before
    assert (
        sf.query(format_soql("SELECT COUNT() FROM Account WHERE Name = {}", f"Rolled {tag}"))["totalSize"]
        == 0
    )
    # Without allOrNone the good subrequest stays; the one referring to a failed one is halted.
    partial = sf.restful("composite", method="POST", json={
        "allOrNone": False,
        "compositeRequest": [
            {"method": "POST", "url": V + "/sobjects/Contact", "referenceId": "bad",
             "body": {"FirstName": "x"}},
            {"method": "POST", "url": V + "/sobjects/Account", "referenceId": "ok",
             "body": {"Name": f"Kept {tag}"}},
            {"method": "GET", "url": V + "/sobjects/Contact/@{bad.id}", "referenceId": "ref"},
        ],
    })  # fmt: skip
    assert partial is not None
    assert [r["httpStatusCode"] for r in partial["compositeResponse"]] == [400, 201, 400]
    assert partial["compositeResponse"][2]["body"][0]["errorCode"] == "PROCESSING_HALTED"


def test_sobject_collections_create_update_get_delete(sf: Salesforce, sim: SalesforceSimulator) -> None:
    created = sf.restful("composite/sobjects", method="POST", json={
        "allOrNone": False,
        "records": [
            {"attributes": {"type": "Contact"}, "LastName": "Coll A"},
            {"attributes": {"type": "Account"}, "Name": "Coll Co"},
            {"attributes": {"type": "Contact"}, "FirstName": "no last name"},
        ],
    })  # fmt: skip
    assert created is not None
    assert [r["success"] for r in created] == [True, True, False]
    assert created[2]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    contact_id = created[0]["id"]
    updated = sf.restful("composite/sobjects", method="PATCH", json={
        "allOrNone": False,
        "records": [{"attributes": {"type": "Contact"}, "Id": contact_id, "FirstName": "Bea"},
                    {"attributes": {"type": "Contact"}, "Id": "003Hb9999999999AAA", "FirstName": "x"}],
    })  # fmt: skip
    assert updated is not None
    assert [r["success"] for r in updated] == [True, False]
    read = sf.restful("composite/sobjects/Contact", params={"ids": f"{contact_id},003Hb9999999999AAA",
                                                            "fields": "FirstName,LastName"})  # fmt: skip
    assert read is not None
    assert read[0]["FirstName"] == "Bea"
    assert read[1] is None
    deleted = sf.restful("composite/sobjects", method="DELETE", params={"ids": contact_id})
    assert deleted == [{"id": contact_id, "success": True, "errors": []}]
    assert sim.tables["contacts"].rows[contact_id].deleted


def test_sobject_collections_all_or_none(sf: Salesforce, sim: SalesforceSimulator) -> None:
    before = sim.count("contacts")
    answer = sf.restful("composite/sobjects", method="POST", json={
        "allOrNone": True,
        "records": [{"attributes": {"type": "Contact"}, "LastName": "Kept?"},
                    {"attributes": {"type": "Contact"}, "Nope__c": "x"}],
    })  # fmt: skip
    assert answer is not None
    assert answer[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert answer[1]["errors"][0]["statusCode"] == "INVALID_FIELD"
    assert sim.count("contacts") == before
    with pytest.raises(SalesforceMalformedRequest):
        sf.restful("composite/sobjects", method="POST", json={"records": [{}] * 201})


@pytest.mark.parametrize("body", [b"not json", b"[1,2]", b'{"compositeRequest": "x"}'])
def test_composite_refuses_malformed_bodies(sf: Salesforce, sim: SalesforceSimulator, body: bytes) -> None:
    response = sf.session.post(
        f"{sim.base_url}/services/data/v59.0/composite",
        data=body,
        headers={"Authorization": f"Bearer {sf.session_id}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "JSON_PARSER_ERROR"


def test_updated_and_deleted_ids(sf: Salesforce) -> None:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    kept, gone = new_contact(sf), new_contact(sf)
    sobject(sf, "Contact").delete(gone)
    end = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)
    updated = sobject(sf, "Contact").updated(start, end)
    assert kept in updated["ids"]
    assert gone not in updated["ids"]
    deleted = sobject(sf, "Contact").deleted(start, end)
    assert gone in [d["id"] for d in deleted["deletedRecords"]]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000\+0000", deleted["latestDateCovered"])
    with pytest.raises(SalesforceMalformedRequest) as old:
        sobject(sf, "Contact").updated(start - dt.timedelta(days=31), end)
    assert cast(Any, old.value.content)[0]["errorCode"] == "INVALID_REPLICATION_DATE"


def test_limit_and_offset(sf: Salesforce, sim: SalesforceSimulator) -> None:
    every = [r["Id"] for r in sf.query_all("SELECT Id FROM Contact ORDER BY Id")["records"]]
    window = sf.query("SELECT Id FROM Contact ORDER BY Id LIMIT 5 OFFSET 3")["records"]
    assert [r["Id"] for r in window] == every[3:8]
    with pytest.raises(SalesforceMalformedRequest) as bad:
        sf.query("SELECT Id FROM Contact LIMIT 5 OFFSET 2001")
    assert cast(Any, bad.value.content)[0]["errorCode"] == "NUMBER_OUTSIDE_VALID_RANGE"


def test_where_or_like_not_in_and_quoted_keywords(sf: Salesforce) -> None:
    tag = uuid.uuid4().hex[:8]
    a = new_contact(sf, FirstName="Ann", Ext_Id__c=f"or-{tag}-a")
    b = new_contact(sf, FirstName="Bob AND Sons", Ext_Id__c=f"or-{tag}-b")
    new_contact(sf, FirstName="Cy", Ext_Id__c=f"or-{tag}-c")

    def ids(where: str, *args: Any) -> set[str]:
        return {
            r["Id"]
            for r in sf.query_all(format_soql("SELECT Id FROM Contact WHERE " + where, *args))["records"]  # noqa: S608 - format_soql quotes the values
        }

    assert ids("Ext_Id__c = {} OR Ext_Id__c = {}", f"or-{tag}-a", f"or-{tag}-b") == {a, b}
    assert ids("FirstName = {} AND Ext_Id__c LIKE {}", "Bob AND Sons", f"or-{tag}-%") == {b}
    assert ids("Ext_Id__c LIKE {} AND FirstName NOT IN {}", f"OR-{tag}-_", ["Cy"]) == {a, b}
