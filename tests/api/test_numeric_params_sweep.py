"""Fuzzing found `GET /api/v1/tenants/?limit=22013066172628920696832` to be a 500 (a database DataError).

This sweep takes every GET operation from the live OpenAPI schema (so endpoints added later are swept too),
management API with alice's token and chat API with tenant A's channel key, and sends each paging parameter
(`limit`, `offset`, `page`, `page_size`, `cursor`) and every integer query parameter the schema declares
with huge, negative, zero, fractional, exponent, non-numeric, other-script and 5,000-digit values; integer
path ids get a huge value too. Never a 500: a declared parameter's bad value is a 400 naming it; an
undeclared one is ignored. Transactional, so one database error cannot hide the requests after it.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient

from apps.chat.models import Channel
from apps.tenants.models import Membership, Tenant
from tests.fixtures.chat import IssuedKey, issue_key
from tests.sweep import (
    _business_hours_pk,
    _connection_pk,
    _dsr_with_archive_pk,
    _handoff_route_pk,
    _sso_pks,
)

pytestmark = pytest.mark.django_db(transaction=True)

HUGE = "22013066172628920696832"  # the value the fuzzer found: larger than a 64-bit integer
BAD_VALUES = [HUGE, "9" * 5000, "-1", "0", "1.5", "1e3", "abc", "+5", " 5", "١٢", "0x10", "5 OR 1=1"]
PAGING = ["limit", "offset", "page", "page_size", "cursor"]
LIST_PATHS = {
    "/api/v1/tenants/",
    "/api/v1/tenants/{slug}/members/",
    "/api/v1/tenants/{slug}/invitations/",
    "/api/v1/tenants/{slug}/channels/",
    "/api/v1/tenants/{slug}/channels/{id}/keys/",
    "/api/v1/tenants/{slug}/connections/",
    "/api/v1/tenants/{slug}/audit/events/",
    "/api/v1/tenants/{slug}/data-subject-requests/",  # issue 22 (dsrapi)
}


@pytest.fixture
def channel(tenant_a: Tenant) -> Channel:
    from apps.chat.models import Action
    from apps.chat.services.channels import channel_create

    return channel_create(tenant=tenant_a, name="Website", kind="web", allowed_actions=Action.values)


def _schema() -> dict[str, Any]:
    response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return dict(response.json())


def _path_values(path: str, *, tenant: Tenant, channel: Channel, key: IssuedKey, conversation: str) -> dict:
    member = Membership.objects.filter(tenant=tenant).first()
    assert member is not None
    # seq: an audit event (issue 22); tenant creation writes event #1.
    values: dict[str, Any] = {"slug": tenant.slug, "conversation_id": conversation, "seq": 1}
    if "/channels/{id}" in path:
        values["id"] = channel.pk
    elif "/api-keys/{id}" in path:
        values["id"] = key.key.pk
    elif "/members/{id}" in path:
        values["id"] = member.pk
    elif "/connections/{id}" in path:
        values["id"] = _connection_pk(tenant)  # created on first use; no vendor is called
    elif "/handoff-routes/{id}" in path:
        values["id"] = _handoff_route_pk(tenant)
    elif "/business-hours/{id}" in path:
        values["id"] = _business_hours_pk(tenant)
    elif "/identity-providers/{id}" in path:
        values["id"] = _sso_pks(tenant)["provider"]
    elif "/sso-domains/{id}" in path:
        values["id"] = _sso_pks(tenant)["domain"]
    elif "/role-mappings/{id}" in path:
        values["id"] = _sso_pks(tenant)["mapping"]
    elif "/data-subject-requests/{id}" in path:
        values["id"] = _dsr_with_archive_pk(tenant)  # issue 22 (dsrapi): its archive can be downloaded
    return values


def _fill(path: str, values: dict[str, Any]) -> str:
    for name, value in values.items():
        path = path.replace("{" + name + "}", str(value))
    assert "{" not in path, f"the sweep needs a value for a path parameter of {path}"
    return path


def test_no_paging_or_integer_parameter_value_reaches_the_database_as_an_error(
    tenant_a: Tenant, alice: Any, alice_api: APIClient, channel: Channel, settings: Any
) -> None:
    # Thousands of requests with one token: above the management API's rate limits (tests/api_ratelimit/).
    settings.HUB_API_RATE_PER_TOKEN = settings.HUB_API_RATE_PER_TENANT = (1_000_000, 60)
    key = issue_key(channel)
    chat = Client(HTTP_AUTHORIZATION=f"Bearer {key.plaintext}")
    started = chat.post("/api/v1/conversations", {}, content_type="application/json")
    assert started.status_code == 201, started.content
    conversation = started.json()["id"]
    schema = _schema()

    failures: list[str] = []
    swept: set[str] = set()
    requests = 0
    for path, operations in schema["paths"].items():
        operation = operations.get("get")
        if operation is None or path.endswith("/events"):
            continue  # event streams take no paging or integer parameters (tests/delivery/test_api.py)
        swept.add(path)
        client: Any = chat if path.startswith("/api/v1/conversations") else alice_api
        values = _path_values(path, tenant=tenant_a, channel=channel, key=key, conversation=conversation)
        url = _fill(path, values)
        declared = {
            p["name"]: p["schema"]
            for p in operation.get("parameters", [])
            if p["in"] == "query" and p["schema"].get("type") == "integer"
        }
        if "limit" in declared and "offset" in declared:  # the schema states the bounds (drf-spectacular)
            limit, offset = declared["limit"], declared["offset"]
            assert (limit["minimum"], limit["maximum"]) == (1, settings.HUB_API_MAX_LIMIT)
            assert (offset["minimum"], offset["maximum"]) == (0, settings.HUB_API_MAX_OFFSET)
        ok = client.get(url)
        assert ok.status_code == 200, (url, ok.status_code)
        for name in dict.fromkeys([*PAGING, *declared]):
            for value in BAD_VALUES:
                response = client.get(url, {name: value})
                requests += 1
                status = response.status_code
                if status >= 500:
                    failures.append(f"{url}?{name}={value[:30]} -> {status}")
                    continue
                # Of BAD_VALUES only "0" can be valid: for a parameter whose minimum is 0 (offset).
                in_range = value == "0" and declared.get(name, {}).get("minimum") == 0
                if name in declared and not in_range:
                    body = response.json()
                    if status != 400 or name not in body or "whole number" not in body[name][0]:
                        failures.append(f"{url}?{name}={value[:30]} -> {status} {body}")
                elif name not in declared and status != 200:
                    failures.append(f"{url}?{name}={value[:30]} -> {status} (unknown: to be ignored)")
        # Integer path ids (members/{id}, api-keys/{id}) with a value no database column holds: 404.
        if "/members/{id}" in path or "/api-keys/{id}" in path or "/audit/events/{seq}" in path:
            response = client.get(_fill(path, {"slug": tenant_a.slug, "id": HUGE, "seq": HUGE}))
            requests += 1
            if response.status_code != 404:
                failures.append(f"{path} with id={HUGE} -> {response.status_code}")
    assert not failures, "\n".join(failures)
    assert swept >= LIST_PATHS, LIST_PATHS - swept
    assert requests > 300


def test_limit_and_offset_bounds_are_served_exactly(tenant_a: Tenant, alice_api: APIClient) -> None:
    url = "/api/v1/tenants/"
    at_max = alice_api.get(url, {"limit": settings.HUB_API_MAX_LIMIT, "offset": settings.HUB_API_MAX_OFFSET})
    assert at_max.status_code == 200 and at_max.json()["results"] == []
    first = alice_api.get(url, {"limit": "1", "offset": "0"})
    assert first.status_code == 200 and [t["slug"] for t in first.json()["results"]] == [tenant_a.slug]
    over = alice_api.get(url, {"limit": settings.HUB_API_MAX_LIMIT + 1})
    assert over.status_code == 400
    assert over.json() == {"limit": [f"Enter a whole number from 1 to {settings.HUB_API_MAX_LIMIT}."]}
    assert alice_api.get(url, {"limit": ""}).status_code == 200  # empty means the default page size
