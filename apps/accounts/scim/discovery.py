"""The SCIM discovery documents (RFC 7644 §4): what this server supports, for clients that read them."""

from __future__ import annotations

from typing import Any

from apps.accounts.scim.filters import GROUP_SCHEMA, USER_SCHEMA

SPC_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
RESOURCE_TYPE_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SCHEMA_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"


def service_provider_config(*, base: str, max_results: int, max_bytes: int) -> dict[str, Any]:
    return {
        "schemas": [SPC_SCHEMA],
        "documentationUri": f"{base.rsplit('/scim/', 1)[0]}/api/docs/",
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": max_results},
        "changePassword": {"supported": False},
        "sort": {"supported": False},
        "etag": {"supported": False},
        "authenticationSchemes": [
            {
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "A tenant's SCIM token (hubs_...), created by a tenant admin in the console.",
                "primary": True,
            }
        ],
        "meta": {"resourceType": "ServiceProviderConfig", "location": f"{base}/ServiceProviderConfig"},
        "maxPayloadSize": max_bytes,
    }


def resource_types(*, base: str) -> list[dict[str, Any]]:
    return [
        {
            "schemas": [RESOURCE_TYPE_SCHEMA],
            "id": name,
            "name": name,
            "endpoint": f"/{name}s",
            "schema": schema,
            "meta": {"resourceType": "ResourceType", "location": f"{base}/ResourceTypes/{name}"},
        }
        for name, schema in (("User", USER_SCHEMA), ("Group", GROUP_SCHEMA))
    ]


def _attr(name: str, kind: str = "string", **extra: Any) -> dict[str, Any]:
    attribute = {
        "name": name,
        "type": kind,
        "multiValued": False,
        "required": False,
        "caseExact": False,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": "none",
    }
    attribute.update(extra)
    return attribute


def schemas(*, base: str) -> list[dict[str, Any]]:
    user = [
        _attr("userName", required=True, uniqueness="server"),
        _attr("externalId", caseExact=True),
        _attr(
            "name",
            "complex",
            subAttributes=[
                _attr("givenName"),
                _attr("familyName"),
                _attr("formatted", mutability="readOnly"),
            ],
        ),
        _attr("displayName", mutability="readOnly"),
        _attr(
            "emails",
            "complex",
            multiValued=True,
            subAttributes=[_attr("value"), _attr("type"), _attr("primary", "boolean")],
        ),
        _attr("active", "boolean"),
        _attr(
            "groups",
            "complex",
            multiValued=True,
            mutability="readOnly",
            subAttributes=[_attr("value"), _attr("display")],
        ),
    ]
    group = [
        _attr("displayName", required=True, uniqueness="server"),
        _attr("externalId", caseExact=True),
        _attr("members", "complex", multiValued=True, subAttributes=[_attr("value"), _attr("display")]),
    ]
    return [
        {
            "schemas": [SCHEMA_SCHEMA],
            "id": schema,
            "name": name,
            "attributes": attributes,
            "meta": {"resourceType": "Schema", "location": f"{base}/Schemas/{schema}"},
        }
        for schema, name, attributes in ((USER_SCHEMA, "User", user), (GROUP_SCHEMA, "Group", group))
    ]
