"""The requests Okta and Microsoft Entra ID actually send, taken from their documentation.

Okta: "SCIM 2.0 protocol reference", https://developer.okta.com/docs/api/openapi/okta-scim/guides/scim-20/
Entra: "Tutorial: Develop and plan provisioning for a SCIM endpoint" (request examples),
https://learn.microsoft.com/en-us/entra/identity/app-provisioning/use-scim-to-provision-users-and-groups
and "Known issues and resolutions with SCIM 2.0 protocol compliance" (capitalised ops, "False" strings,
members[value eq "..."] paths),
https://learn.microsoft.com/en-us/entra/identity/app-provisioning/application-provisioning-config-problem-scim-compatibility
"""

from __future__ import annotations

from typing import Any

import pytest

from apps.accounts.models import ScimGroup, ScimUser

pytestmark = pytest.mark.django_db

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


# --- Okta --------------------------------------------------------------------------------------------------
def okta_user(login: str = "test.user@acme.example") -> dict[str, Any]:
    """Okta's "Create the user" body (with its password and locale, which we do not keep)."""
    return {
        "schemas": [USER],
        "userName": login,
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": True, "value": login, "type": "work"}],
        "displayName": "Test User",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": True,
    }


def test_okta_test_connection_and_lookup_before_create(scim_a: Any) -> None:
    assert scim_a.call("GET", "Users?startIndex=1&count=2").json()["totalResults"] == 0
    found = scim_a.find("Users", 'userName eq "test.user@acme.example"', startIndex=1, count=100)
    assert found.status_code == 200 and found.json()["Resources"] == []


def test_okta_create_patch_deactivate_and_reactivate(scim_a: Any) -> None:
    created = scim_a.call("POST", "Users", okta_user())
    assert created.status_code == 201, created.content
    user_id = created.json()["id"]
    assert scim_a.find("Users", 'userName eq "test.user@acme.example"').json()["totalResults"] == 1
    deactivate = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}
    patched = scim_a.call("PATCH", f"Users/{user_id}", deactivate)
    assert patched.status_code == 200 and patched.json()["active"] is False
    assert not ScimUser.objects.get(scim_id=user_id).user.is_active
    reactivate = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": True}}]}
    assert scim_a.call("PATCH", f"Users/{user_id}", reactivate).json()["active"] is True
    assert ScimUser.objects.get(scim_id=user_id).user.is_active


def test_okta_put_deactivates(scim_a: Any) -> None:
    """Okta apps without PATCH send the whole user with active false."""
    user_id = scim_a.call("POST", "Users", okta_user()).json()["id"]
    body = {**okta_user(), "id": user_id, "active": False}
    replaced = scim_a.call("PUT", f"Users/{user_id}", body)
    assert replaced.status_code == 200 and replaced.json()["active"] is False
    assert not ScimUser.objects.get(scim_id=user_id).active


def test_okta_group_push(scim_a: Any) -> None:
    user_id = scim_a.call("POST", "Users", okta_user()).json()["id"]
    created = scim_a.call("POST", "Groups", {"schemas": [GROUP], "displayName": "Test SCIMv2", "members": []})
    assert created.status_code == 201, created.content
    group_id = created.json()["id"]
    rename = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "value": {"id": group_id, "displayName": "Hub Viewers"}}],
    }
    assert scim_a.call("PATCH", f"Groups/{group_id}", rename).json()["displayName"] == "Hub Viewers"
    add = {
        "schemas": [PATCH_OP],
        "Operations": [
            {
                "op": "add",
                "path": "members",
                "value": [{"value": user_id, "display": "test.user@acme.example"}],
            }
        ],
    }
    assert [m["value"] for m in scim_a.call("PATCH", f"Groups/{group_id}", add).json()["members"]] == [
        user_id
    ]
    remove = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "remove", "path": f'members[value eq "{user_id}"]'}],
    }
    assert scim_a.call("PATCH", f"Groups/{group_id}", remove).json()["members"] == []
    assert scim_a.call("DELETE", f"Groups/{group_id}").status_code == 204


# --- Microsoft Entra ID ------------------------------------------------------------------------------------
def entra_user(upn: str = "Test_User_ab64@acme.example") -> dict[str, Any]:
    """Entra's "Create User" request: userName is the UPN, the enterprise extension schema, roles."""
    return {
        "schemas": [USER, ENTERPRISE],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": upn,
        "active": True,
        "emails": [{"primary": True, "type": "work", "value": "Test_User_fd0e@acme.example"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": [],
        ENTERPRISE: {"employeeNumber": "99887766", "department": "Sales"},
    }


def test_entra_create_and_the_queries_it_makes(scim_a: Any) -> None:
    assert scim_a.find("Users", 'userName eq "Test_User_ab64@acme.example"').json()["totalResults"] == 0
    created = scim_a.call("POST", "Users", entra_user())
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["userName"] == "Test_User_ab64@acme.example"  # the UPN, kept as sent
    assert body["emails"][0]["value"] == "test_user_fd0e@acme.example"  # the address is the work e-mail
    for query in (
        'userName eq "Test_User_ab64@acme.example"',
        'externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"',
        'emails[type eq "work"].value eq "Test_User_fd0e@acme.example"',
    ):
        assert [r["id"] for r in scim_a.find("Users", query).json()["Resources"]] == [body["id"]], query


def test_entra_patch_multi_and_single_valued_with_capitalised_ops(scim_a: Any) -> None:
    user_id = scim_a.call("POST", "Users", entra_user()).json()["id"]
    body = {
        "schemas": [PATCH_OP],
        "Operations": [
            {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "updatedEmail@acme.example"},
            {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
            {"op": "Add", "path": "title", "value": "scim tester"},  # an attribute we do not keep
            {"op": "Replace", "path": f"{ENTERPRISE}:employeeNumber", "value": "1"},
            {"op": "Add", "path": 'phoneNumbers[type eq "work"].value', "value": "+1 555 0100"},
            {"op": "Add", "path": 'addresses[type eq "work"].streetAddress', "value": "1 Main St"},
        ],
    }
    patched = scim_a.call("PATCH", f"Users/{user_id}", body)
    assert patched.status_code == 200, patched.content
    assert patched.json()["emails"][0]["value"] == "updatedemail@acme.example"
    assert patched.json()["name"]["familyName"] == "updatedFamilyName"
    rename = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "Replace", "path": "userName", "value": "5b50@acme.example"}],
    }
    assert scim_a.call("PATCH", f"Users/{user_id}", rename).json()["userName"] == "5b50@acme.example"
    # Entra's "Add" for a changed address (learn.microsoft.com Q&A 1684621) works as a replace.
    add = {
        "Operations": [{"op": "Add", "path": 'emails[type eq "work"].value', "value": "again@acme.example"}]
    }
    assert scim_a.call("PATCH", f"Users/{user_id}", add).json()["emails"][0]["value"] == "again@acme.example"
    # a new address must stay in a verified domain
    away = {
        "Operations": [{"op": "Replace", "path": 'emails[type eq "work"].value', "value": "x@evil.example"}]
    }
    assert scim_a.call("PATCH", f"Users/{user_id}", away).status_code == 400


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "Replace", "path": "active", "value": False},
        {"op": "Replace", "path": "active", "value": "False"},  # the string Entra sends (compatibility page)
        {"op": "Replace", "value": {"active": "False"}},
    ],
)
def test_entra_disable_user(scim_a: Any, operation: dict[str, Any]) -> None:
    user_id = scim_a.call("POST", "Users", entra_user()).json()["id"]
    patched = scim_a.call("PATCH", f"Users/{user_id}", {"schemas": [PATCH_OP], "Operations": [operation]})
    assert patched.status_code == 200, patched.content
    assert patched.json()["active"] is False
    enable = {"Operations": [{"op": "Replace", "path": "active", "value": "True"}]}
    assert scim_a.call("PATCH", f"Users/{user_id}", enable).json()["active"] is True


def test_entra_groups(scim_a: Any) -> None:
    user_id = scim_a.call("POST", "Users", entra_user()).json()["id"]
    created = scim_a.call(
        "POST",
        "Groups",
        {
            "schemas": [GROUP, "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
            "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
            "displayName": "displayName",
            "meta": {"resourceType": "Group"},
        },
    )
    assert created.status_code == 201, created.content
    group_id = created.json()["id"]
    got = scim_a.call("GET", f"Groups/{group_id}?excludedAttributes=members").json()
    assert got["displayName"] == "displayName" and "members" not in got
    listed = scim_a.find("Groups", 'displayName eq "displayName"', excludedAttributes="members").json()
    assert [g["id"] for g in listed["Resources"]] == [group_id] and "members" not in listed["Resources"][0]
    rename = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "Replace", "path": "displayName", "value": "Hub Admins"}],
    }
    assert scim_a.call("PATCH", f"Groups/{group_id}", rename).status_code == 200
    add = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "Add", "path": "members", "value": [{"$ref": None, "value": user_id}]}],
    }
    assert scim_a.call("PATCH", f"Groups/{group_id}", add).status_code == 200
    assert ScimGroup.objects.get(scim_id=group_id).members.count() == 1
    assert scim_a.find("Groups", f'members[value eq "{user_id}"]').json()["totalResults"] == 1
    remove = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "Remove", "path": "members", "value": [{"$ref": None, "value": user_id}]}],
    }
    assert scim_a.call("PATCH", f"Groups/{group_id}", remove).status_code == 200
    assert ScimGroup.objects.get(scim_id=group_id).members.count() == 0
    scim_a.call("PATCH", f"Groups/{group_id}", add)
    by_filter = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "Remove", "path": f'members[value eq "{user_id}"]'}],
    }
    assert scim_a.call("PATCH", f"Groups/{group_id}", by_filter).status_code == 200
    assert ScimGroup.objects.get(scim_id=group_id).members.count() == 0
    assert scim_a.call("DELETE", f"Groups/{group_id}").status_code == 204
