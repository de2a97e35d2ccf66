"""Keyset paging by seq across 2,500 events: no gap, no duplicate, stable while events are appended."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from rest_framework.test import APIClient

from apps.audit.chain import link_hash
from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.tenants.models import Tenant

pytestmark = pytest.mark.django_db

URL = "/api/v1/tenants/tenant-a/audit/events/"

Append = Callable[..., list[int]]  # the `append` fixture (conftest.py)


def _walk(client: APIClient, params: dict[str, str], between: Any = None) -> tuple[list[int], int]:
    """Follow `next` from the first page; call `between()` after each page. Returns seqs and page count."""
    response = client.get(URL, params)
    seqs: list[int] = []
    pages = 0
    while True:
        assert response.status_code == 200, response.content
        body = response.json()
        seqs += [event["seq"] for event in body["results"]]
        pages += 1
        if between is not None:
            between()
        if body["next"] is None:
            return seqs, pages
        assert urlsplit(body["next"]).path == URL
        response = client.get(body["next"])


def test_oldest_first_walks_every_event_once_while_events_are_appended(
    olivia_api: APIClient, tenant_a: Tenant, append: Append
) -> None:
    append(tenant_a, 2500)
    with tenant_context(tenant_a):
        initial = list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))
    seqs, pages = _walk(
        olivia_api,
        {"order": "oldest", "limit": "300"},
        between=lambda: append(tenant_a, 7, action="test.late"),
    )
    assert len(seqs) == len(set(seqs)), "a duplicate"
    assert seqs == sorted(seqs)
    # Everything there at the start, and everything appended while paging (reads included), no gap.
    assert seqs[: len(initial)] == initial
    assert seqs == list(range(seqs[0], seqs[-1] + 1))
    assert pages >= 2500 // 300


def test_newest_first_is_not_shifted_by_appends(
    olivia_api: APIClient, tenant_a: Tenant, append: Append
) -> None:
    append(tenant_a, 2500)
    with tenant_context(tenant_a):
        initial = list(AuditEvent.objects.order_by("-seq").values_list("seq", flat=True))
    seqs, pages = _walk(olivia_api, {"limit": "1000"}, between=lambda: append(tenant_a, 50))
    assert seqs == initial  # appended events are above the first page: never seen, never shifting a page
    assert pages == 3


def test_default_and_maximum_page_size_and_the_next_link(
    olivia_api: APIClient, tenant_a: Tenant, append: Append
) -> None:
    appended = append(tenant_a, 1200)
    body = olivia_api.get(URL).json()
    assert len(body["results"]) == 100
    last = body["results"][-1]["seq"]
    assert parse_qs(urlsplit(body["next"]).query) == {"before": [str(last)]}
    assert len(olivia_api.get(URL, {"limit": "1000"}).json()["results"]) == 1000
    assert olivia_api.get(URL, {"limit": "1001"}).status_code == 400
    # The cursor keeps the other parameters and replaces an earlier cursor.
    body = olivia_api.get(URL, {"order": "oldest", "after": "5", "limit": "3", "action": "test.*"}).json()
    assert [e["seq"] for e in body["results"]] == [seq for seq in appended if seq > 5][:3]
    query = parse_qs(urlsplit(body["next"]).query)
    assert query["after"] == [str(body["results"][-1]["seq"])]
    assert query["action"] == ["test.*"] and query["order"] == ["oldest"] and query["limit"] == ["3"]


def test_a_range_between_after_and_before(olivia_api: APIClient, tenant_a: Tenant, append: Append) -> None:
    append(tenant_a, 50)
    body = olivia_api.get(URL, {"after": "10", "before": "15"}).json()
    assert [e["seq"] for e in body["results"]] == [14, 13, 12, 11]
    assert body["next"] is None
    empty = olivia_api.get(URL, {"order": "oldest", "after": "100000"}).json()
    assert empty == {"next": None, "results": []}


def test_a_page_verifies_offline_with_the_chain_rules(
    olivia_api: APIClient, tenant_a: Tenant, alice: Any, append: Append
) -> None:
    """Each event as served recomputes to its hash, and each links to the one before it."""
    append(tenant_a, 30, changes={"note": "é ✓", "nested": {"a": [1, 2]}})
    events = olivia_api.get(URL, {"order": "oldest", "limit": "1000"}).json()["results"]
    assert events[0]["seq"] == 1 and events[0]["action"] == "tenant.created"
    for before, event in zip([None, *events], events, strict=False):
        assert link_hash(event["prev_hash"], event) == event["hash"], event["seq"]
        if before is not None:
            assert event["prev_hash"] == before["hash"]
    assert events[0]["occurred_at"].endswith("Z")


def test_query_count_is_constant_per_page(
    olivia_api: APIClient, tenant_a: Tenant, append: Append, django_assert_max_num_queries: Any
) -> None:
    append(tenant_a, 1500)
    with django_assert_max_num_queries(20) as small:
        assert olivia_api.get(URL, {"limit": "5", "action": "test.*"}).status_code == 200
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert olivia_api.get(URL, {"limit": "1000", "action": "test.*", "after": "3"}).status_code == 200
