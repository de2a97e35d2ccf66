"""The SCIM endpoints: discovery, Users and Groups CRUD, filters, paging, errors and limits."""

from __future__ import annotations

import json
from typing import Any

import pytest

from apps.accounts.models import ScimUser

pytestmark = pytest.mark.django_db

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


def _error(response: Any, status: int, scim_type: str = "") -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/scim+json")
    body = response.json()
    assert body["schemas"] == [ERROR] and body["status"] == str(status)
    if scim_type:
        assert body["scimType"] == scim_type
    return body


def test_discovery_documents(scim_a: Any) -> None:
    spc = scim_a.call("GET", "ServiceProviderConfig")
    assert spc.status_code == 200 and spc["Content-Type"].startswith("application/scim+json")
    assert spc.json()["patch"]["supported"] is True and spc.json()["filter"]["maxResults"] == 200
    types = scim_a.call("GET", "ResourceTypes").json()
    assert {t["id"] for t in types["Resources"]} == {"User", "Group"}
    assert scim_a.call("GET", "ResourceTypes/User").json()["endpoint"] == "/Users"
    schemas = scim_a.call("GET", "Schemas").json()
    assert schemas["totalResults"] == 2
    user_schema = scim_a.call("GET", "Schemas/urn:ietf:params:scim:schemas:core:2.0:User").json()
    assert "userName" in {a["name"] for a in user_schema["attributes"]}
    _error(scim_a.call("GET", "Schemas/urn:nope"), 404)
    _error(scim_a.call("GET", "Nope"), 404)


def test_user_create_get_list_and_location(scim_a: Any, new_user: Any) -> None:
    created = scim_a.call("POST", "Users", new_user())
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["userName"] == "ann@acme.example" and body["active"] is True
    assert body["emails"] == [{"value": "ann@acme.example", "type": "work", "primary": True}]
    assert body["name"]["givenName"] == "Ann" and body["externalId"] == "ext-ann@acme.example"
    assert created["Location"].endswith(f"/scim/v2/Users/{body['id']}")
    assert scim_a.call("GET", f"Users/{body['id']}").json()["id"] == body["id"]
    listed = scim_a.call("GET", "Users").json()
    assert listed["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]
    assert listed["totalResults"] == 1 and listed["Resources"][0]["id"] == body["id"]


def test_paging_start_index_and_count(scim_a: Any, new_user: Any) -> None:
    for n in range(5):
        assert scim_a.call("POST", "Users", new_user(f"u{n}@acme.example")).status_code == 201
    page = scim_a.call("GET", "Users?startIndex=2&count=2").json()
    assert page["totalResults"] == 5 and page["startIndex"] == 2 and page["itemsPerPage"] == 2
    assert [r["userName"] for r in page["Resources"]] == ["u1@acme.example", "u2@acme.example"]
    assert scim_a.call("GET", "Users?count=0").json()["Resources"] == []
    assert scim_a.call("GET", "Users?startIndex=0&count=1").json()["startIndex"] == 1  # RFC: < 1 is 1
    assert scim_a.call("GET", "Users?count=100000").json()["itemsPerPage"] == 5  # capped, not refused
    _error(scim_a.call("GET", "Users?count=abc"), 400, "invalidValue")


def test_count_is_capped_at_200(scim_a: Any, tenant_a: Any, settings: Any, new_user: Any) -> None:
    settings.HUB_SCIM_MAX_RESULTS = 3
    for n in range(4):
        scim_a.call("POST", "Users", new_user(f"c{n}@acme.example"))
    page = scim_a.call("GET", "Users?count=200").json()
    assert page["itemsPerPage"] == 3 and page["totalResults"] == 4


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('userName eq "ann@acme.example"', ["ann"]),
        ('userName eq "ANN@ACME.EXAMPLE"', ["ann"]),  # userName is case-insensitive (RFC 7643)
        ('externalId eq "ext-bob@acme.example"', ["bob"]),
        ('emails[type eq "work"].value eq "bob@acme.example"', ["bob"]),
        ('emails[type eq "home"].value eq "bob@acme.example"', []),
        ('emails.value eq "ann@acme.example"', ["ann"]),
        ('name.givenName eq "Ann"', ["ann", "bob"]),
        ('userName eq "ann@acme.example" or userName eq "bob@acme.example"', ["ann", "bob"]),
        ('userName sw "ann" and active eq true', ["ann"]),
        ('not (userName eq "ann@acme.example")', ["bob"]),
        ('id eq "not-a-uuid"', []),
        ("externalId pr", ["ann", "bob"]),
    ],
)
def test_user_filters(scim_a: Any, new_user: Any, query: str, expected: list[str]) -> None:
    scim_a.call("POST", "Users", new_user("ann@acme.example"))
    scim_a.call("POST", "Users", new_user("bob@acme.example"))
    response = scim_a.find("Users", query)
    assert response.status_code == 200, response.content
    names = sorted(r["userName"].split("@")[0] for r in response.json()["Resources"])
    assert names == expected


def test_filter_by_id(scim_a: Any, new_user: Any) -> None:
    user_id = scim_a.call("POST", "Users", new_user()).json()["id"]
    found = scim_a.find("Users", f'id eq "{user_id}"').json()
    assert [r["id"] for r in found["Resources"]] == [user_id]


@pytest.mark.parametrize(
    "query",
    [
        'title eq "x"',  # an attribute we do not filter on
        'userName gt "a"',  # an operator userName does not support here
        'active eq "yes"',
        "userName eq",
        '((userName eq "a"',
        'userName eq "a" garbage',
        'emails[value co "x"].value eq "a"',
        'urn:other:schema:userName eq "x"',
        'userName eq "' + "a" * 3000 + '"',  # too long
        "(" * 990 + 'userName eq "a"' + ")" * 990,  # nested deeper than the translator goes
    ],
)
def test_bad_filters_are_400_invalid_filter(scim_a: Any, query: str) -> None:
    _error(scim_a.find("Users", query), 400, "invalidFilter")


def test_user_must_be_in_a_verified_domain(scim_a: Any, scim_b: Any, tenant_a: Any, new_user: Any) -> None:
    """One tenant's SCIM client cannot create or link an account in a domain it has not verified."""
    _error(scim_a.call("POST", "Users", new_user("eve@globex.example")), 400, "invalidValue")
    _error(scim_a.call("POST", "Users", new_user("eve@unverified.example")), 400, "invalidValue")
    _error(scim_a.call("POST", "Users", new_user("no-email", emails=[])), 400, "invalidValue")
    assert not ScimUser.objects.filter(tenant=tenant_a).exists()


def test_existing_account_is_linked_not_duplicated(scim_a: Any, tenant_a: Any, new_user: Any) -> None:
    from django.contrib.auth import get_user_model

    existing = get_user_model().objects.create_user(
        username="ann", email="Ann@acme.example", password="x" * 20
    )
    body = scim_a.call("POST", "Users", new_user()).json()
    assert ScimUser.objects.get(scim_id=body["id"]).user_id == existing.pk
    assert get_user_model().objects.filter(email__iexact="ann@acme.example").count() == 1
    _error(scim_a.call("POST", "Users", new_user()), 409, "uniqueness")  # same userName again
    _error(scim_a.call("POST", "Users", new_user("ANN@acme.example", externalId="other")), 409, "uniqueness")


def test_put_replaces_the_user(scim_a: Any, new_user: Any) -> None:
    user_id = scim_a.call("POST", "Users", new_user()).json()["id"]
    body = new_user(name={"givenName": "Annie", "familyName": "Lee-Smith"}, externalId="ext-2")
    replaced = scim_a.call("PUT", f"Users/{user_id}", body)
    assert replaced.status_code == 200, replaced.content
    assert replaced.json()["name"]["givenName"] == "Annie" and replaced.json()["externalId"] == "ext-2"


def test_delete_user_then_404(scim_a: Any, new_user: Any) -> None:
    user_id = scim_a.call("POST", "Users", new_user()).json()["id"]
    assert scim_a.call("DELETE", f"Users/{user_id}").status_code == 204
    _error(scim_a.call("GET", f"Users/{user_id}"), 404)
    _error(scim_a.call("DELETE", f"Users/{user_id}"), 404)


def test_malformed_bodies_are_400(scim_a: Any, new_user: Any) -> None:
    _error(scim_a.call("POST", "Users", "{not json"), 400, "invalidSyntax")
    _error(scim_a.call("POST", "Users", json.dumps([1, 2])), 400, "invalidSyntax")
    _error(scim_a.call("POST", "Users", {"userName": 5}), 400, "invalidValue")
    _error(scim_a.call("POST", "Users", new_user(active="maybe")), 400, "invalidValue")
    _error(scim_a.call("POST", "Users", new_user(name="Ann")), 400, "invalidValue")
    user_id = scim_a.call("POST", "Users", new_user()).json()["id"]
    _error(scim_a.call("PATCH", f"Users/{user_id}", {"Operations": "x"}), 400, "invalidSyntax")
    _error(scim_a.call("PATCH", f"Users/{user_id}", {"Operations": [{"op": "move"}]}), 400, "invalidSyntax")
    bad_path = {"Operations": [{"op": "replace", "path": "nonsense", "value": "x"}]}
    _error(scim_a.call("PATCH", f"Users/{user_id}", bad_path), 400, "invalidPath")
    unknown = {"Operations": [{"op": "replace", "path": "active", "value": 3}]}
    _error(scim_a.call("PATCH", f"Users/{user_id}", unknown), 400, "invalidValue")


def test_oversized_body_is_413(scim_a: Any, settings: Any, new_user: Any) -> None:
    settings.HUB_SCIM_MAX_BODY_BYTES = 2048
    body = new_user(displayName="x" * 4000)
    _error(scim_a.call("POST", "Users", body), 413)
    assert not ScimUser.objects.exists()


def test_group_create_get_list_exclude_members_and_filters(scim_a: Any, new_user: Any) -> None:
    ann = scim_a.call("POST", "Users", new_user()).json()["id"]
    created = scim_a.call(
        "POST",
        "Groups",
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Hub Viewers",
            "externalId": "g-1",
            "members": [{"value": ann}],
        },
    )
    assert created.status_code == 201, created.content
    group = created.json()
    assert group["displayName"] == "Hub Viewers" and [m["value"] for m in group["members"]] == [ann]
    assert "members" not in scim_a.call("GET", f"Groups/{group['id']}?excludedAttributes=members").json()
    listed = scim_a.call("GET", "Groups?excludedAttributes=members").json()
    assert listed["totalResults"] == 1 and "members" not in listed["Resources"][0]
    for query, count in (
        ('displayName eq "hub viewers"', 1),
        ('displayName eq "Other"', 0),
        ('externalId eq "g-1"', 1),
        (f'members[value eq "{ann}"]', 1),
        (f'displayName eq "Hub Viewers" and members[value eq "{ann}"]', 1),
        ('members[value eq "00000000-0000-4000-8000-000000000000"]', 0),
        (f'id eq "{group["id"]}"', 1),
    ):
        found = scim_a.find("Groups", query).json()
        assert found["totalResults"] == count, query
    _error(scim_a.find("Groups", 'userName eq "x"'), 400, "invalidFilter")
    # the user shows their group
    assert scim_a.call("GET", f"Users/{ann}").json()["groups"][0]["display"] == "Hub Viewers"
    _error(scim_a.call("POST", "Groups", {"displayName": "Hub Viewers"}), 409, "uniqueness")
    _error(
        scim_a.call("POST", "Groups", {"displayName": "X", "members": [{"value": "nope"}]}),
        400,
        "invalidValue",
    )
    assert scim_a.call("DELETE", f"Groups/{group['id']}").status_code == 204
    _error(scim_a.call("GET", f"Groups/{group['id']}"), 404)


def test_group_put_renames_and_sets_members(scim_a: Any, new_user: Any) -> None:
    ann = scim_a.call("POST", "Users", new_user()).json()["id"]
    bob = scim_a.call("POST", "Users", new_user("bob@acme.example")).json()["id"]
    group = scim_a.call("POST", "Groups", {"displayName": "G", "members": [{"value": ann}]}).json()["id"]
    replaced = scim_a.call("PUT", f"Groups/{group}", {"displayName": "G2", "members": [{"value": bob}]})
    assert replaced.status_code == 200, replaced.content
    assert replaced.json()["displayName"] == "G2"
    assert [m["value"] for m in replaced.json()["members"]] == [bob]


def test_operator_accounts_are_never_linked(scim_a: Any, new_user: Any) -> None:
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user(username="op", email="op@acme.example", is_staff=True)
    _error(scim_a.call("POST", "Users", new_user("op@acme.example")), 409, "uniqueness")
    assert not ScimUser.objects.exists()


def test_hostile_values_are_400_never_500(scim_a: Any, new_user: Any) -> None:
    _error(scim_a.call("POST", "Users", new_user("nul\u0000@acme.example")), 400, "invalidValue")
    _error(
        scim_a.call("POST", "Users", new_user("not an address", emails=[{"value": "a b@acme.example"}])), 400
    )
    _error(scim_a.find("Users", 'userName eq "a\u0000b"'), 400, "invalidFilter")
    _error(scim_a.call("GET", "Users?startIndex=99999999999999999999999"), 400, "invalidValue")
    _error(scim_a.call("POST", "Users", new_user(emails="ann@acme.example")), 400, "invalidValue")
    _error(scim_a.call("POST", "Groups", {"displayName": ["x"]}), 400, "invalidValue")
    _error(scim_a.call("POST", "Groups", {"displayName": "x", "members": "all"}), 400, "invalidValue")
    user_id = scim_a.call("POST", "Users", new_user()).json()["id"]
    group_id = scim_a.call("POST", "Groups", {"displayName": "G"}).json()["id"]
    group_bodies: list[Any] = [
        {"Operations": [{"op": "add", "path": "members", "value": [{"value": "x" * 500}]}]},
        {"Operations": [{"op": "replace", "path": 'members[value eq "x"]', "value": []}]},
        {"Operations": [{"op": "remove", "path": "displayName"}]},
        {"Operations": [{"op": "add", "path": "nonsense", "value": 1}]},
        {"Operations": [None]},
    ]
    for body in group_bodies:
        assert scim_a.call("PATCH", f"Groups/{group_id}", body).status_code == 400, body
    user_bodies: list[Any] = [
        {"Operations": [{"op": "remove", "path": "emails"}]},
        {"Operations": [{"op": "remove", "path": "userName"}]},
        {"Operations": [{"op": "replace", "value": "x"}]},
        {"Operations": [{"op": "replace", "path": 5, "value": "x"}]},
        {"Operations": []},
    ]
    for body in user_bodies:
        assert scim_a.call("PATCH", f"Users/{user_id}", body).status_code == 400, body


def test_put_without_emails_keeps_the_address(scim_a: Any, new_user: Any) -> None:
    user_id = scim_a.call("POST", "Users", new_user()).json()["id"]
    body = {"userName": "Ann.Lee", "name": {"givenName": "Ann"}, "active": True}
    replaced = scim_a.call("PUT", f"Users/{user_id}", body)
    assert replaced.status_code == 200, replaced.content
    assert (
        replaced.json()["emails"][0]["value"] == "ann@acme.example"
        and replaced.json()["userName"] == "Ann.Lee"
    )


def test_lists_do_not_grow_queries_with_rows(
    scim_a: Any, tenant_a: Any, new_user: Any, django_assert_max_num_queries: Any
) -> None:
    ids = [scim_a.call("POST", "Users", new_user(f"q{n}@acme.example")).json()["id"] for n in range(12)]
    scim_a.call("POST", "Groups", {"displayName": "Big", "members": [{"value": i} for i in ids]})
    with django_assert_max_num_queries(12):
        assert scim_a.call("GET", "Users").json()["totalResults"] == 12
    with django_assert_max_num_queries(12):
        assert len(scim_a.call("GET", "Groups").json()["Resources"][0]["members"]) == 12
