"""Who looked at the access review: `access_review.viewed` (page and API, repeats within
HUB_AUDIT_READ_DEDUPE_SECONDS left out) and `access_review.exported` (every download)."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from apps.accounts.selectors import access_review_digest, access_review_report
from apps.audit.models import AuditEvent
from apps.core import deadlines
from apps.core.context import tenant_context
from apps.tenants.models import Role, Tenant
from tests.fixtures.auth import issue_token, login_verified, session_client, token_client
from tests.fixtures.cache import run_keys_delete

pytestmark = pytest.mark.django_db

VIEWED, EXPORTED = "access_review.viewed", "access_review.exported"


@pytest.fixture
def charlie_role() -> Role:
    """Admin of B: even an admin elsewhere sees nothing of A."""
    return Role.ADMIN


def page(tenant: Tenant) -> str:
    return reverse("accounts:access-review", kwargs={"tenant_slug": tenant.slug})


def export(tenant: Tenant) -> str:
    return reverse("accounts:access-review-export", kwargs={"tenant_slug": tenant.slug})


def api(tenant: Tenant) -> str:
    return reverse("accounts-api:access-review", kwargs={"slug": tenant.slug})


def _events(tenant: Tenant, *actions: str) -> list[AuditEvent]:
    with tenant_context(tenant):
        return list(AuditEvent.objects.filter(action__in=actions or (VIEWED, EXPORTED)).order_by("seq"))


def test_viewing_the_page_is_recorded_once_per_window(
    officer_client: Client, tenant_a: Tenant, officer: Any
) -> None:
    digest = access_review_digest(access_review_report(tenant=tenant_a))
    assert officer_client.get(page(tenant_a)).status_code == 200
    (event,) = _events(tenant_a, VIEWED)
    assert (event.actor_id, event.actor_label) == (officer.pk, "olivia")
    target = (event.target_type, event.target_id, event.target_label)
    assert target == ("tenant", str(tenant_a.pk), "Tenant A")
    assert event.changes == {"digest": digest, "via": "console"}
    # Reloading, filtering and paging within the window are the same look.
    for query in ({}, {"flag": "missing_2fa"}, {"sort": "role"}, {"page": "2"}):
        assert officer_client.get(page(tenant_a), query).status_code == 200
    assert len(_events(tenant_a, VIEWED)) == 1
    run_keys_delete()  # the window has passed
    officer_client.get(page(tenant_a))
    assert len(_events(tenant_a, VIEWED)) == 2


def test_another_reader_is_recorded_even_within_the_window(
    officer_client: Client, tenant_a: Tenant, alice: Any
) -> None:
    officer_client.get(page(tenant_a))
    admin = Client()
    login_verified(admin, alice)
    admin.get(page(tenant_a))
    assert [e.actor_label for e in _events(tenant_a, VIEWED)] == ["olivia", "alice"]


def test_window_zero_records_every_view(officer_client: Client, tenant_a: Tenant, settings: Any) -> None:
    settings.HUB_AUDIT_READ_DEDUPE_SECONDS = 0
    for _ in range(3):
        officer_client.get(page(tenant_a))
    assert len(_events(tenant_a, VIEWED)) == 3


def test_api_view_is_recorded_once_per_window_and_token(
    olivia_api: APIClient, tenant_a: Tenant, officer: Any
) -> None:
    body = olivia_api.get(api(tenant_a)).json()
    olivia_api.get(api(tenant_a))
    (event,) = _events(tenant_a, VIEWED)
    assert event.actor_id == officer.pk and event.target_type == "tenant"
    assert event.changes["digest"] == body["digest"]
    assert event.changes["via"] == "token" and isinstance(event.changes["via_id"], int)
    # Another token of the same person, or her session, is another channel: recorded.
    token_client(issue_token(tenant_a, officer)).get(api(tenant_a))
    session_client(officer).get(api(tenant_a))
    events = _events(tenant_a, VIEWED)
    assert [e.changes["via"] for e in events] == ["token", "token", "session"]
    assert events[0].changes["via_id"] != events[1].changes["via_id"]
    run_keys_delete()
    olivia_api.get(api(tenant_a))
    assert len(_events(tenant_a, VIEWED)) == 4


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_every_export_is_recorded_with_the_signed_digest(
    officer_client: Client, tenant_a: Tenant, officer: Any, fmt: str
) -> None:
    manifests = []
    for _ in range(2):  # never de-duplicated: each download is evidence
        response = officer_client.post(export(tenant_a), {"format": fmt})
        assert response.status_code == 200
        with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
            manifests.append(json.loads(zf.read("manifest.json")))
    events = _events(tenant_a, EXPORTED)
    assert len(events) == 2
    for event, manifest in zip(events, manifests, strict=True):
        assert event.actor_id == officer.pk
        assert event.changes["format"] == fmt
        assert event.changes["digest"] == manifest["report_digest"]
    assert _events(tenant_a, VIEWED) == []  # a download is not a view


def test_other_tenants_admin_gets_404_and_nothing_is_recorded(
    client: Client, tenant_a: Tenant, tenant_b: Tenant, officer: Any, charlie: Any
) -> None:
    login_verified(client, charlie)
    assert client.get(page(tenant_a)).status_code == 404
    assert client.post(export(tenant_a), {"format": "json"}).status_code == 404
    assert token_client(issue_token(tenant_b, charlie)).get(api(tenant_a)).status_code == 404
    assert session_client(charlie).get(api(tenant_a)).status_code == 404
    assert _events(tenant_a) == [] and _events(tenant_b) == []


def test_refused_viewer_records_nothing(client: Client, tenant_a: Tenant, bob: Any) -> None:
    """A 403 shows nothing of the report, so it is not a view (as for `audit.read`)."""
    login_verified(client, bob)
    assert client.get(page(tenant_a)).status_code == 403
    assert client.post(export(tenant_a), {"format": "csv"}).status_code == 403
    assert token_client(issue_token(tenant_a, bob)).get(api(tenant_a)).status_code == 403
    assert _events(tenant_a) == []


def test_with_redis_down_every_view_is_still_recorded(
    olivia_api: APIClient, officer_client: Client, tenant_a: Tenant, settings: Any
) -> None:
    dead = "redis://127.0.0.1:9/0"  # nothing listens on the discard port
    settings.CACHES = {"default": {**django_settings.CACHES["default"], "LOCATION": dead}}
    try:
        for _ in range(2):
            response = olivia_api.get(api(tenant_a))
            assert response.status_code == 200, response.content
            assert officer_client.get(page(tenant_a)).status_code == 200
    finally:
        deadlines.redis_health.succeeded()
    assert [e.changes["via"] for e in _events(tenant_a, VIEWED)] == ["token", "console"] * 2
