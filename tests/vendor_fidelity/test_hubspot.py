"""HubSpot simulator fidelity: the calls a typical integration makes, driven by hubspot-api-client."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests
from hubspot import HubSpot
from hubspot.crm.associations.v4 import ApiException as AssociationsApiException
from hubspot.crm.associations.v4 import AssociationSpec
from hubspot.crm.associations.v4.models import (
    BatchInputPublicFetchAssociationsBatchRequest,
    PublicFetchAssociationsBatchRequest,
)
from hubspot.crm.contacts import (
    ApiException,
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchInputSimplePublicObjectId,
    BatchReadInputSimplePublicObjectId,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInput,
    SimplePublicObjectBatchInputForCreate,
    SimplePublicObjectId,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)

from connectors.hubspot.simulator import HubSpotSimulator
from tests.fixtures.simulators import StartSimulator

COUNTS = {"contacts": 60, "accounts": 6, "tickets": 5, "orders": 5, "articles": 5, "leads": 0}


@pytest.fixture(scope="module")
def sim(session_simulator: StartSimulator) -> HubSpotSimulator:
    return session_simulator(HubSpotSimulator, counts=COUNTS)


@pytest.fixture(scope="module")
def client(sim: HubSpotSimulator) -> HubSpot:
    return HubSpot(access_token=sim.private_app_token, host=sim.base_url)


def error_body(exc: Exception) -> dict[str, Any]:
    body: Any = json.loads(getattr(exc, "body", "") or "{}")
    assert set(body) >= {"status", "message", "correlationId", "category"}
    return dict(body)


def new_contact(client: HubSpot, **props: str) -> str:
    email = f"{uuid.uuid4().hex[:10]}@fidelity.test"
    created = client.crm.contacts.basic_api.create(
        SimplePublicObjectInputForCreate(properties={"email": email, "firstname": "Fi", **props})
    )
    return str(created.id)


def test_crud_by_id(client: HubSpot) -> None:
    contact_id = new_contact(client, lastname="Delity")
    read = client.crm.contacts.basic_api.get_by_id(contact_id, properties=["firstname", "lastname"])
    assert read.properties["lastname"] == "Delity"
    updated = client.crm.contacts.basic_api.update(
        contact_id, SimplePublicObjectInput(properties={"lastname": "Neu"})
    )
    assert updated.properties["lastname"] == "Neu"
    assert (
        client.crm.contacts.basic_api.get_by_id(contact_id, properties=["lastname"]).properties["lastname"]
        == "Neu"
    )
    client.crm.contacts.basic_api.archive(contact_id)
    with pytest.raises(ApiException) as gone:
        client.crm.contacts.basic_api.get_by_id(contact_id)
    assert gone.value.status == 404
    assert error_body(gone.value)["category"] == "OBJECT_NOT_FOUND"
    archived = client.crm.contacts.basic_api.get_by_id(contact_id, archived=True)
    assert archived.archived is True
    listed = client.crm.contacts.basic_api.get_page(limit=100, archived=True)
    assert contact_id in {c.id for c in listed.results}


def test_update_by_id_property_and_errors(client: HubSpot) -> None:
    email = f"{uuid.uuid4().hex[:10]}@fidelity.test"
    client.crm.contacts.basic_api.create(SimplePublicObjectInputForCreate(properties={"email": email}))
    by_email = client.crm.contacts.basic_api.update(
        email, SimplePublicObjectInput(properties={"firstname": "Mail"}), id_property="email"
    )
    assert by_email.properties["firstname"] == "Mail"
    with pytest.raises(ApiException) as bad:
        client.crm.contacts.basic_api.update(by_email.id, SimplePublicObjectInput(properties={"nope": "x"}))
    assert bad.value.status == 400
    assert error_body(bad.value)["category"] == "VALIDATION_ERROR"
    other = new_contact(client)
    with pytest.raises(ApiException) as clash:
        client.crm.contacts.basic_api.update(other, SimplePublicObjectInput(properties={"email": email}))
    assert clash.value.status == 409
    assert error_body(clash.value)["category"] == "CONFLICT"
    with pytest.raises(ApiException) as missing:
        client.crm.contacts.basic_api.update(
            "99999999999", SimplePublicObjectInput(properties={"firstname": "x"})
        )
    assert missing.value.status == 404


def test_batch_create_read_update_archive(client: HubSpot, sim: HubSpotSimulator) -> None:
    tag = uuid.uuid4().hex[:8]
    created = client.crm.contacts.batch_api.create(
        BatchInputSimplePublicObjectBatchInputForCreate(
            inputs=[
                SimplePublicObjectBatchInputForCreate(properties={"email": f"{tag}-{i}@fidelity.test"})
                for i in range(3)
            ]
        )
    )
    assert created.status == "COMPLETE"
    ids = [r.id for r in created.results]
    assert len(set(ids)) == 3
    updated = client.crm.contacts.batch_api.update(
        BatchInputSimplePublicObjectBatchInput(
            inputs=[SimplePublicObjectBatchInput(id=i, properties={"lastname": "Batch"}) for i in ids]
        )
    )
    assert {r.properties["lastname"] for r in updated.results} == {"Batch"}
    read = client.crm.contacts.batch_api.read(
        BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id=i) for i in ids],
            properties=["lastname"],
            properties_with_history=[],
        )
    )
    assert sorted(r.id for r in read.results) == sorted(ids)
    client.crm.contacts.batch_api.archive(
        BatchInputSimplePublicObjectId(inputs=[SimplePublicObjectId(id=i) for i in ids])
    )
    assert all(sim.by_type["contacts"].rows[i].deleted for i in ids)
    with pytest.raises(ApiException) as invalid:  # one bad input fails the whole batch create
        client.crm.contacts.batch_api.create(
            BatchInputSimplePublicObjectBatchInputForCreate(
                inputs=[
                    SimplePublicObjectBatchInputForCreate(properties={"email": f"{tag}-ok@fidelity.test"}),
                    SimplePublicObjectBatchInputForCreate(properties={"email": "not-an-address"}),
                ]
            )
        )
    assert invalid.value.status == 400
    assert sim.by_type["contacts"].find("email", f"{tag}-ok@fidelity.test") is None


def test_batch_update_unknown_id_is_a_207(client: HubSpot) -> None:
    contact_id = new_contact(client)
    answer = client.crm.contacts.batch_api.update(
        BatchInputSimplePublicObjectBatchInput(
            inputs=[
                SimplePublicObjectBatchInput(id=contact_id, properties={"lastname": "Ok"}),
                SimplePublicObjectBatchInput(id="99999999999", properties={"lastname": "x"}),
            ]
        )
    )
    assert answer.num_errors == 1
    assert answer.errors[0].context == {"ids": ["99999999999"]}
    assert [r.id for r in answer.results] == [contact_id]


def test_search_filters_sorts_paging_and_cap(client: HubSpot, sim: HubSpotSimulator) -> None:
    german = PublicObjectSearchRequest(
        filter_groups=[FilterGroup(filters=[Filter(property_name="country", operator="EQ", value="DE")])],
        sorts=[{"propertyName": "email", "direction": "DESCENDING"}],
        properties=["email", "country"],
        limit=5,
    )
    first = client.crm.contacts.search_api.do_search(public_object_search_request=german)
    expected = [
        r for r in sim.by_type["contacts"].rows.values() if r.data.get("country") == "DE" and not r.deleted
    ]
    assert first.total == len(expected)
    emails = [r.properties["email"] for r in first.results]
    assert emails == sorted(emails, reverse=True)
    assert first.paging.next.after == "5"
    german.after = first.paging.next.after
    second = client.crm.contacts.search_api.do_search(public_object_search_request=german)
    assert not {r.id for r in first.results} & {r.id for r in second.results}
    either = PublicObjectSearchRequest(
        filter_groups=[
            FilterGroup(
                filters=[Filter(property_name="email", operator="EQ", value="contact1@example-de.test")]
            ),
            FilterGroup(
                filters=[Filter(property_name="email", operator="CONTAINS_TOKEN", value="contact2@*")]
            ),
        ],
        limit=10,
    )
    assert client.crm.contacts.search_api.do_search(public_object_search_request=either).total == 2
    text = client.crm.contacts.search_api.do_search(
        public_object_search_request=PublicObjectSearchRequest(query="contact3@example", limit=10)
    )
    assert [r.id for r in text.results] == ["10000003"]
    with pytest.raises(ApiException) as capped:
        client.crm.contacts.search_api.do_search(
            public_object_search_request=PublicObjectSearchRequest(limit=100, after="9950")
        )
    assert capped.value.status == 400
    too_many = [FilterGroup(filters=[Filter(property_name="country", operator="HAS_PROPERTY")])] * 6
    with pytest.raises(ApiException):
        client.crm.contacts.search_api.do_search(
            public_object_search_request=PublicObjectSearchRequest(filter_groups=too_many)
        )


def test_search_between_and_not_has_property(client: HubSpot) -> None:
    contact_id = new_contact(client)
    no_phone = PublicObjectSearchRequest(
        filter_groups=[FilterGroup(filters=[Filter(property_name="phone", operator="NOT_HAS_PROPERTY")])],
        limit=200,
    )
    assert contact_id in {
        r.id for r in client.crm.contacts.search_api.do_search(public_object_search_request=no_phone).results
    }
    window = PublicObjectSearchRequest(
        filter_groups=[
            FilterGroup(
                filters=[
                    Filter(
                        property_name="lastmodifieddate",
                        operator="BETWEEN",
                        value="2024-01-01T00:00:00Z",
                        high_value="2024-01-01T00:01:00Z",
                    )
                ]
            )
        ],
        limit=100,
    )
    found = client.crm.contacts.search_api.do_search(public_object_search_request=window)
    assert [r.id for r in found.results] == [
        "10000000",
        "10000001",
        "10000002",
        "10000003",
        "10000004",
        "10000005",
    ]


def test_associations_v4_read_create_delete(client: HubSpot, sim: HubSpotSimulator) -> None:
    v4 = client.crm.associations.v4
    companies = v4.basic_api.get_page("contacts", "10000000", "companies")
    assert len(companies.results) == 1
    types = {(t.type_id, t.label) for t in companies.results[0].association_types}
    assert types == {(279, None), (1, "Primary")}
    company_id = str(companies.results[0].to_object_id)
    back = v4.basic_api.get_page("companies", company_id, "contacts", limit=500)
    assert "10000000" in {str(r.to_object_id) for r in back.results}
    contact_id = new_contact(client)
    made = v4.basic_api.create_default("contacts", contact_id, "companies", company_id)
    assert made.results[0].association_spec.association_type_id == 279
    labelled = v4.basic_api.create(
        "contact", contact_id, "company", company_id,
        [AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=1)],
    )  # fmt: skip
    assert labelled.labels == ["Primary"]
    linked = v4.basic_api.get_page("companies", company_id, "contacts").results
    assert contact_id in {str(r.to_object_id) for r in linked}
    with pytest.raises(AssociationsApiException) as bad_type:
        v4.basic_api.create(
            "contacts", contact_id, "companies", company_id,
            [AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=228)],
        )  # fmt: skip
    assert bad_type.value.status == 400
    v4.basic_api.archive("contacts", contact_id, "companies", company_id)
    assert v4.basic_api.get_page("contacts", contact_id, "companies").results == []
    with pytest.raises(AssociationsApiException) as missing:
        v4.basic_api.create_default("contacts", "99999999999", "companies", company_id)
    assert missing.value.status == 404


def test_associations_v4_batch_read(client: HubSpot) -> None:
    lonely = new_contact(client)
    inputs = [
        PublicFetchAssociationsBatchRequest(id="10000001"),
        PublicFetchAssociationsBatchRequest(id=lonely),
    ]
    answer = client.crm.associations.v4.batch_api.get_page(
        "contacts", "companies", BatchInputPublicFetchAssociationsBatchRequest(inputs=inputs)
    )
    assert [r._from.id for r in answer.results] == ["10000001"]
    assert len(answer.results[0].to) == 1
    assert answer.num_errors == 1
    assert answer.errors[0].sub_category == "crm.associations.NO_ASSOCIATIONS_FOUND"


def test_properties_list_and_one(client: HubSpot) -> None:
    properties = client.crm.properties.core_api.get_all("contacts")
    by_name = {p.name: p for p in properties.results}
    assert by_name["email"].has_unique_value is True
    assert by_name["lastmodifieddate"].type == "datetime"
    one = client.crm.properties.core_api.get_by_name("contacts", "email")
    assert one.name == "email"
    with pytest.raises(Exception) as missing:  # noqa: PT011 - the properties module's own ApiException
        client.crm.properties.core_api.get_by_name("contacts", "nope")
    assert getattr(missing.value, "status", None) == 404


def test_rate_limit_429_headers_and_error_shape(sim: HubSpotSimulator) -> None:
    sim.inject(rate_limit={"count": 1, "policy": "DAILY"})
    try:
        response = requests.get(
            f"{sim.base_url}/crm/v3/objects/contacts",
            headers={"Authorization": f"Bearer {sim.private_app_token}"},
            timeout=5,
        )
    finally:
        sim.clear_faults()
    assert response.status_code == 429
    body = response.json()
    assert (body["policyName"], body["errorType"], body["status"]) == ("DAILY", "RATE_LIMIT", "error")
    assert body["correlationId"]
    assert int(response.headers["X-HubSpot-RateLimit-Daily"]) >= int(
        response.headers["X-HubSpot-RateLimit-Daily-Remaining"]
    )


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"inputs": "x"}', b'{"inputs": [1]}'])
def test_batch_endpoints_refuse_malformed_bodies(sim: HubSpotSimulator, body: bytes) -> None:
    for path in (
        "/crm/v3/objects/contacts/batch/create",
        "/crm/v4/associations/contacts/companies/batch/read",
    ):
        response = requests.post(
            sim.base_url + path, data=body, timeout=5,
            headers={"Authorization": f"Bearer {sim.private_app_token}", "Content-Type": "application/json"},
        )  # fmt: skip
        assert response.status_code == 400
        assert response.json()["category"] == "VALIDATION_ERROR"


def test_reads_with_associations_parameter(client: HubSpot, sim: HubSpotSimulator) -> None:
    one = client.crm.contacts.basic_api.get_by_id("10000000", associations=["companies"])
    types = sorted(r.type for r in one.associations["companies"].results)
    assert types == ["contact_to_company", "contact_to_company_unlabeled"]
    page = client.crm.contacts.basic_api.get_page(limit=3, associations=["companies"])
    assert all(len({r.id for r in c.associations["companies"].results}) == 1 for c in page.results)
    lonely = new_contact(client)
    assert client.crm.contacts.basic_api.get_by_id(lonely, associations=["companies"]).associations is None


def test_archived_contact_frees_its_email(client: HubSpot) -> None:
    email = f"{uuid.uuid4().hex[:10]}@fidelity.test"
    first = client.crm.contacts.basic_api.create(
        SimplePublicObjectInputForCreate(properties={"email": email})
    )
    with pytest.raises(ApiException) as clash:
        client.crm.contacts.basic_api.create(SimplePublicObjectInputForCreate(properties={"email": email}))
    assert clash.value.status == 409
    client.crm.contacts.basic_api.archive(first.id)
    second = client.crm.contacts.basic_api.create(
        SimplePublicObjectInputForCreate(properties={"email": email})
    )
    assert second.id != first.id
    found = client.crm.contacts.basic_api.get_by_id(email, id_property="email")
    assert found.id == second.id
