"""Reading the audit log is audited, batched: one `audit.read` per page served, repeats left out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.core import deadlines
from apps.core.context import tenant_context
from apps.tenants.models import Tenant
from tests.fixtures.auth import issue_token, session_client, token_client

pytestmark = pytest.mark.django_db

URL = "/api/v1/tenants/tenant-a/audit/events/"

Append = Callable[..., list[int]]  # the `append` fixture (conftest.py)


def _reads(tenant: Tenant) -> list[AuditEvent]:
    with tenant_context(tenant):
        return list(AuditEvent.objects.filter(action="audit.read").order_by("seq"))


def test_one_event_per_page_with_what_was_served(
    olivia_api: APIClient, tenant_a: Tenant, append: Append
) -> None:
    append(tenant_a, 250)
    body = olivia_api.get(URL, {"limit": "100", "action": "test.*", "outcome": "success"}).json()
    page_2 = olivia_api.get(body["next"]).json()
    reads = _reads(tenant_a)
    assert len(reads) == 2
    first = reads[0]
    assert first.actor_label == "olivia" and first.target_type == "audit_log"
    assert first.changes["count"] == 100
    assert (first.changes["first_seq"], first.changes["last_seq"]) == (
        body["results"][0]["seq"],
        body["results"][-1]["seq"],
    )
    assert first.changes["filters"] == {"action": "test.*", "outcome": "success"}
    assert first.changes["order"] == "newest"
    assert first.changes["via"] == "token" and isinstance(first.changes["via_id"], int)
    assert reads[1].changes["first_seq"] == page_2["results"][0]["seq"]
    # The page never contains its own read event: it is appended after the page is built.
    assert all(e["action"] != "audit.read" for e in body["results"])


def test_the_same_read_again_adds_nothing_until_there_is_something_new(
    olivia_api: APIClient, tenant_a: Tenant, append: Append
) -> None:
    append(tenant_a, 20)
    for _ in range(5):  # a poller reading the newest page every few seconds
        assert olivia_api.get(URL).status_code == 200
    assert len(_reads(tenant_a)) == 1
    append(tenant_a, 1, action="test.new")  # something new: the next read is recorded
    olivia_api.get(URL)
    olivia_api.get(URL)
    assert len(_reads(tenant_a)) == 2
    olivia_api.get(URL, {"action": "test.*"})  # other filters: another read
    assert len(_reads(tenant_a)) == 3


def test_the_same_events_in_the_other_order_are_nothing_new(
    olivia_api: APIClient, tenant_a: Tenant, append: Append
) -> None:
    append(tenant_a, 20)
    olivia_api.get(URL, {"limit": "1000"})
    olivia_api.get(URL, {"limit": "1000", "order": "oldest"})
    olivia_api.get(URL, {"limit": "5", "order": "oldest", "after": "3"})  # a part of what was served
    assert len(_reads(tenant_a)) == 1


def test_a_poller_following_its_cursor_does_not_loop_on_its_own_reads(
    olivia_api: APIClient, tenant_a: Tenant, append: Append
) -> None:
    """Oldest first with `after=<last seq>`: each page would contain the read event of the one before."""
    append(tenant_a, 10)
    after = "0"
    for _ in range(6):
        body = olivia_api.get(URL, {"order": "oldest", "after": after}).json()
        if body["results"]:
            after = str(body["results"][-1]["seq"])
    reads = _reads(tenant_a)
    assert len(reads) == 1, [r.changes for r in reads]
    new = append(tenant_a, 3)
    body = olivia_api.get(URL, {"order": "oldest", "after": after}).json()
    assert [e["seq"] for e in body["results"]][-3:] == new
    assert len(_reads(tenant_a)) == 2


def test_two_pollers_do_not_record_each_others_reads_for_ever(
    tenant_a: Tenant, alice: Any, officer: Any, append: Append
) -> None:
    append(tenant_a, 10)
    olivia, alice_client = token_client(issue_token(tenant_a, officer)), session_client(alice)
    for _ in range(4):
        olivia.get(URL)
        alice_client.get(URL)
    reads = _reads(tenant_a)
    assert len(reads) == 2
    assert {r.actor_label for r in reads} == {"olivia", "alice"}
    assert {r.changes["via"] for r in reads} == {"token", "session"}


def test_a_different_token_of_the_same_person_is_another_reader(
    tenant_a: Tenant, officer: Any, append: Append
) -> None:
    append(tenant_a, 5)
    token_client(issue_token(tenant_a, officer)).get(URL)
    token_client(issue_token(tenant_a, officer)).get(URL)
    assert len(_reads(tenant_a)) == 2


def test_reading_one_event_is_recorded_once(olivia_api: APIClient, tenant_a: Tenant) -> None:
    for _ in range(3):
        assert olivia_api.get(f"{URL}1/").status_code == 200
    reads = _reads(tenant_a)
    assert len(reads) == 1 and reads[0].changes["filters"] == {"seq": 1}
    assert (reads[0].changes["first_seq"], reads[0].changes["count"]) == (1, 1)


def test_dedupe_off_records_every_page(
    olivia_api: APIClient, tenant_a: Tenant, settings: Any, append: Append
) -> None:
    settings.HUB_AUDIT_READ_DEDUPE_SECONDS = 0
    for _ in range(3):
        olivia_api.get(URL)
    assert len(_reads(tenant_a)) == 3


def test_with_redis_down_every_page_is_still_recorded(
    olivia_api: APIClient, tenant_a: Tenant, settings: Any
) -> None:
    dead = "redis://127.0.0.1:9/0"  # nothing listens on the discard port
    settings.CACHES = {"default": {**django_settings.CACHES["default"], "LOCATION": dead}}
    try:
        for _ in range(2):
            response = olivia_api.get(URL)
            assert response.status_code == 200, response.content
    finally:
        deadlines.redis_health.succeeded()
    assert len(_reads(tenant_a)) == 2


def test_refused_reads_record_nothing(bob_api: APIClient, charlie_api: APIClient, tenant_a: Tenant) -> None:
    assert bob_api.get(URL).status_code == 403
    assert charlie_api.get(URL).status_code == 404
    assert _reads(tenant_a) == []
