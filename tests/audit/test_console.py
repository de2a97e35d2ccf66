"""The compliance console: event list, filters, detail with the diff, chain verification, signed exports."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.audit import signing
from apps.audit.models import AuditEvent
from apps.audit.selectors import audit_verify_export
from apps.audit.services import audit_record
from apps.core.context import tenant_context
from apps.tenants.models import Role, Tenant
from tests.fixtures.auth import login_verified, session_client
from tests.fixtures.cache import kill_redis
from tests.fixtures.database import SuperuserSql

pytestmark = pytest.mark.django_db


def url(name: str, tenant: Tenant, **kwargs: Any) -> str:
    return reverse(name, kwargs={"tenant_slug": tenant.slug, **kwargs})


@pytest.fixture
def events(tenant_a: Tenant, alice: Any, bob: Any) -> Tenant:
    """A few events of different actors, actions, targets and outcomes."""
    audit_record(
        "connection.updated",
        tenant=tenant_a,
        actor=alice,
        target_type="connection",
        target_id=7,
        target_label="Salesforce EU",
        changes={"name": ["CRM", "Salesforce EU"], "client_secret": ["old-secret", "new-secret"]},
    )
    audit_record(
        "connection.tested",
        tenant=tenant_a,
        actor=bob,
        target_type="connection",
        target_id=7,
        target_label="Salesforce EU",
        outcome="failure",
    )
    audit_record(
        "knowledge.published", tenant=tenant_a, actor=alice, target_type="article", target_label="FAQ"
    )
    return tenant_a


def seqs(client: Client, tenant: Tenant, **params: str) -> list[int]:
    """The sequence numbers the (htmx) event list shows for these filters."""
    response = client.get(url("audit:event-list", tenant), params, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    return [event.seq for event in response.context["page_obj"]]


def actions_by_seq(tenant: Tenant) -> dict[str, int]:
    with tenant_context(tenant):
        return dict(AuditEvent.objects.values_list("action", "seq"))


def event_count(tenant: Tenant) -> int:
    with tenant_context(tenant):
        return AuditEvent.objects.count()


# --- access ------------------------------------------------------------------------------------------------
def test_compliance_officer_and_admin_see_the_log(
    client: Client, officer: Any, alice: Any, events: Tenant
) -> None:
    for user in (officer, alice):
        login_verified(client, user)
        response = client.get(url("audit:event-list", events))
        assert response.status_code == 200
        body = response.content.decode()
        assert "connection.updated" in body and "knowledge.published" in body
        assert "Salesforce EU" in body
        assert "audit_verify --export FILE" in body

        assert signing.public_key_b64() in body
        assert f'href="{url("audit:event-list", events)}" aria-current="page"' in body  # the nav entry
        client.logout()


def test_viewer_gets_403_everywhere(client: Client, bob: Any, tenant_a: Tenant) -> None:
    client.force_login(bob)
    assert client.get(url("audit:event-list", tenant_a)).status_code == 403
    assert client.get(url("audit:event-detail", tenant_a, seq=1)).status_code == 403
    assert client.post(url("audit:verify", tenant_a)).status_code == 403
    assert client.post(url("audit:export", tenant_a), {"format": "csv"}).status_code == 403
    with tenant_context(tenant_a):
        assert not AuditEvent.objects.filter(action__in=["audit.verified", "audit.export"]).exists()
    assert "/audit/" not in client.get(url("console:tenant-home", tenant_a)).content.decode()


def test_charlie_gets_404_on_every_audit_url(client: Client, charlie: Any, tenant_a: Tenant) -> None:
    client.force_login(charlie)
    for path in (
        url("audit:event-list", tenant_a),
        url("audit:event-detail", tenant_a, seq=1),
        url("audit:verify", tenant_a),
        url("audit:export", tenant_a),
    ):
        assert client.get(path).status_code == 404, path
        assert client.post(path, {"format": "csv"}).status_code == 404, path


def test_the_placeholder_area_is_gone() -> None:
    from django.urls import NoReverseMatch

    with pytest.raises(NoReverseMatch):
        reverse("console:area-audit", kwargs={"tenant_slug": "x"})


# --- list and filters --------------------------------------------------------------------------------------
def test_filters_return_the_right_rows(client: Client, officer: Any, events: Tenant) -> None:
    login_verified(client, officer)
    seq = actions_by_seq(events)
    assert seqs(client, events, actor="bob") == [seq["connection.tested"]]
    assert seqs(client, events, action="connection.") == [seq["connection.tested"], seq["connection.updated"]]
    assert seqs(client, events, target="FAQ") == [seq["knowledge.published"]]
    assert seqs(client, events, target="7", outcome="success") == [seq["connection.updated"]]
    assert seqs(client, events, outcome="failure") == [seq["connection.tested"]]
    assert seqs(client, events, q="published") == [seq["knowledge.published"]]
    assert seqs(client, events, q="nothing-like-this") == []
    today = timezone.localdate()
    shown = seqs(client, events, date_from=str(today), date_to=str(today))
    assert len(shown) == event_count(events) - 1  # all but the read event of this very page
    assert seqs(client, events, date_to=str(today - timedelta(days=1))) == []
    assert seqs(client, events, date_from=str(today + timedelta(days=1))) == []


def test_htmx_returns_only_the_rows_and_an_empty_state(client: Client, officer: Any, events: Tenant) -> None:
    login_verified(client, officer)
    response = client.get(url("audit:event-list", events), {"action": "knowledge."}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert "<table>" in body and "<html" not in body and "knowledge.published" in body
    assert "connection.updated" not in body
    # The export form travels with the rows, so it always carries the filters currently shown.
    assert '<input type="hidden" name="action" value="knowledge.">' in body
    empty = client.get(url("audit:event-list", events), {"actor": "nobody"}, HTTP_HX_REQUEST="true")
    assert "No events match these filters." in empty.content.decode()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"date_from": "2024-13-45"}, "date_from"),
        ({"date_to": "yesterday"}, "date_to"),
        ({"date_from": "2024-05-02", "date_to": "2024-05-01"}, "date_to"),
        ({"outcome": "maybe"}, "outcome"),
    ],
)
def test_bad_filter_input_shows_a_field_error(
    client: Client, officer: Any, events: Tenant, params: dict[str, str], field: str
) -> None:
    login_verified(client, officer)
    response = client.get(url("audit:event-list", events), params)
    assert response.status_code == 400
    assert field in response.context["filter_form"].errors
    assert f'id="id_{field}_error"' in response.content.decode()
    assert response.context["page_obj"] is None  # no results under filters that do not parse
    fragment = client.get(url("audit:event-list", events), params, HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200  # htmx only swaps 2xx answers
    assert 'role="alert"' in fragment.content.decode()


def test_dates_are_shown_in_the_users_time_zone(client: Client, officer: Any, events: Tenant) -> None:
    officer.time_zone = "Asia/Tokyo"
    officer.save(update_fields=["time_zone"])
    login_verified(client, officer)
    body = client.get(url("audit:event-list", events)).content.decode()
    assert 'datetime="' in body and "+09:00" in body


def test_list_paginates_without_n_plus_one(
    client: Client, officer: Any, tenant_a: Tenant, django_assert_max_num_queries: Any
) -> None:
    for i in range(60):
        audit_record("test.event", tenant=tenant_a, actor=officer, target_type="thing", target_label=f"t{i}")
    login_verified(client, officer)
    with django_assert_max_num_queries(12):
        first = client.get(url("audit:event-list", tenant_a))
    body = first.content.decode()
    assert "Page 1 of 2" in body
    assert len(first.context["page_obj"].object_list) == 50
    second = client.get(url("audit:event-list", tenant_a), {"page": "2"}, HTTP_HX_REQUEST="true")
    assert [e.seq for e in second.context["page_obj"]][-1] == 1


# --- detail ----------------------------------------------------------------------------------------------
def test_detail_shows_all_fields_and_the_diff(client: Client, officer: Any, events: Tenant) -> None:
    login_verified(client, officer)
    seq = actions_by_seq(events)["connection.updated"]
    response = client.get(url("audit:event-detail", events, seq=seq))
    assert response.status_code == 200
    body = response.content.decode()
    assert "connection.updated" in body and "alice" in body
    assert '<th scope="col">Before</th>' in body
    assert "<del>CRM</del>" in body and "<ins>Salesforce EU</ins>" in body
    assert "<del>***</del>" in body and "<ins>***</ins>" in body
    assert "secret" in body and "old-secret" not in body and "new-secret" not in body
    with tenant_context(events):
        event = AuditEvent.objects.get(seq=seq)
    assert event.hash in body and event.prev_hash in body


def test_detail_of_a_creation_shows_plain_values(client: Client, officer: Any, tenant_a: Tenant) -> None:
    login_verified(client, officer)
    body = client.get(url("audit:event-detail", tenant_a, seq=1)).content.decode()
    assert "tenant.created" in body
    assert "Before" not in body and "Value" in body
    assert "Tenant A" in body


def test_detail_of_an_unknown_event_is_404(client: Client, officer: Any, tenant_a: Tenant) -> None:
    login_verified(client, officer)
    assert client.get(url("audit:event-detail", tenant_a, seq=9999)).status_code == 404


# --- verification ------------------------------------------------------------------------------------------
def test_verify_button_reports_an_intact_chain_and_is_audited(
    client: Client, officer: Any, events: Tenant
) -> None:
    login_verified(client, officer)
    count = event_count(events)
    response = client.post(url("audit:verify", events))
    assert response.status_code == 200
    assert f"The chain is intact: {count} events verified." in response.content.decode()
    with tenant_context(events):
        record = AuditEvent.objects.get(action="audit.verified")
    assert (record.outcome, record.actor_label, record.changes["checked"]) == ("success", "olivia", count)
    assert client.get(url("audit:verify", events)).status_code == 405


@pytest.mark.django_db(transaction=True)
def test_verify_button_names_the_first_broken_link(
    client: Client, officer: Any, events: Tenant, superuser_sql: SuperuserSql
) -> None:
    login_verified(client, officer)
    seq = actions_by_seq(events)["connection.tested"]
    superuser_sql(
        "region_eu",
        "UPDATE audit_auditevent SET actor_label = 'mallory' WHERE tenant_id = %s AND seq = %s",
        [events.id, seq],
    )
    response = client.post(url("audit:verify", events))
    body = response.content.decode()
    assert f"The chain is broken at event #{seq}." in body
    assert f"Event #{seq} was changed after it was recorded" in body
    assert url("audit:event-detail", events, seq=seq) in body
    with tenant_context(events):
        record = AuditEvent.objects.get(action="audit.verified")
    assert (record.outcome, record.changes["broken_seq"]) == ("failure", seq)


@pytest.mark.django_db(transaction=True)
def test_verify_button_names_a_deleted_event(
    client: Client, officer: Any, events: Tenant, superuser_sql: SuperuserSql
) -> None:
    login_verified(client, officer)
    superuser_sql("region_eu", "DELETE FROM audit_auditevent WHERE tenant_id = %s AND seq = 2", [events.id])
    body = client.post(url("audit:verify", events)).content.decode()
    assert "Event #2 is missing" in body


@pytest.mark.django_db(transaction=True)
def test_verify_button_reports_a_truncated_tail_through_the_anchor(
    client: Client, officer: Any, events: Tenant, superuser_sql: SuperuserSql
) -> None:
    login_verified(client, officer)
    assert "The chain is intact" in client.post(url("audit:verify", events)).content.decode()  # anchors it
    head = max(actions_by_seq(events).values())
    superuser_sql(
        "region_eu", "DELETE FROM audit_auditevent WHERE tenant_id = %s AND seq >= %s", [events.id, head - 1]
    )
    response = client.post(url("audit:verify", events))
    body = response.content.decode()
    assert response.status_code == 200
    assert f"The chain is broken at event #{head - 1}." in body
    # Anchored at head - 1 (audit.verified came after the anchor): the reason names the missing range.
    assert f"events #{head - 1} to #{head - 1} are missing" in body
    assert url("audit:event-detail", events, seq=head - 1) not in body  # no link to an event that is gone


# --- export ------------------------------------------------------------------------------------------------
def _download(response: Any, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    path = tmp_path / "export.zip"
    path.write_bytes(response.content)
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    return path, manifest


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_downloads_a_zip_that_verifies(
    client: Client, officer: Any, events: Tenant, tmp_path: Path, fmt: str
) -> None:
    login_verified(client, officer)
    count = event_count(events)
    response = client.post(url("audit:export", events), {"format": fmt})
    disposition = response["Content-Disposition"]
    assert disposition.startswith('attachment; filename="audit-tenant-a-')
    assert disposition.endswith(f'-{fmt}.zip"')
    path, manifest = _download(response, tmp_path)
    assert (manifest["format"], manifest["count"], manifest["filters"]) == (fmt, count, {})
    result = audit_verify_export(path)
    assert (result.ok, result.checked) == (True, count)
    with tenant_context(events):
        record = AuditEvent.objects.get(action="audit.export")
    assert (record.actor_label, record.changes["format"]) == ("olivia", fmt)


def test_export_with_filters_records_them_in_the_manifest(
    client: Client, officer: Any, events: Tenant, tmp_path: Path
) -> None:
    officer.time_zone = "Europe/Berlin"
    officer.save(update_fields=["time_zone"])
    login_verified(client, officer)
    today = timezone.localdate()
    data = {"format": "jsonl", "action": "connection.", "actor": "", "date_from": str(today)}
    path, manifest = _download(client.post(url("audit:export", events), data), tmp_path)
    assert manifest["count"] == 2
    assert manifest["filters"]["action"] == "connection."
    assert manifest["filters"]["since"].startswith(f"{today.isoformat()}T00:00:00+0")  # Berlin, +01 or +02
    assert "actor" not in manifest["filters"]
    assert audit_verify_export(path).ok
    with zipfile.ZipFile(path) as zf:
        lines = zf.read("events.jsonl").decode().splitlines()
    assert sorted(json.loads(line)["action"] for line in lines) == ["connection.tested", "connection.updated"]


def test_export_refuses_bad_input_with_field_errors(client: Client, officer: Any, events: Tenant) -> None:
    login_verified(client, officer)
    response = client.post(url("audit:export", events), {"format": "xml"})
    assert response.status_code == 400
    assert "format" in response.context["export_form"].errors
    response = client.post(url("audit:export", events), {"format": "csv", "date_from": "not-a-date"})
    assert response.status_code == 400
    assert "date_from" in response.context["filter_form"].errors
    with tenant_context(events):
        assert not AuditEvent.objects.filter(action="audit.export").exists()


# --- reading the log is audited, like through the API ------------------------------------------------------
def _reads(tenant: Tenant) -> list[AuditEvent]:
    with tenant_context(tenant):
        return list(AuditEvent.objects.filter(action="audit.read").order_by("seq"))


def test_a_page_shown_is_one_read_event_with_its_filters_and_seq_range(
    officer_client: Client, events: Tenant
) -> None:
    response = officer_client.get(url("audit:event-list", events), {"action": "connection.", "actor": ""})
    shown = [event.seq for event in response.context["page_obj"]]
    [read] = _reads(events)
    assert (read.actor_label, read.target_type, read.changes["via"]) == ("olivia", "audit_log", "console")
    assert read.changes["filters"] == {"action": "connection."}
    assert (read.changes["first_seq"], read.changes["last_seq"], read.changes["count"]) == (
        shown[0],
        shown[-1],
        2,
    )
    assert read.seq > max(shown)  # recorded after the page was built


def test_a_reload_within_the_window_adds_nothing_other_filters_or_pages_do(
    officer_client: Client, officer: Any, tenant_a: Tenant
) -> None:
    for i in range(60):
        audit_record("test.event", tenant=tenant_a, actor=officer, target_type="thing", target_label=f"t{i}")
    for _ in range(3):  # the page, its htmx refresh, a reload
        assert officer_client.get(url("audit:event-list", tenant_a)).status_code == 200
        seqs(officer_client, tenant_a)
    assert len(_reads(tenant_a)) == 1
    seqs(officer_client, tenant_a, page="2")  # older events: something not seen yet
    seqs(officer_client, tenant_a, action="test.")
    seqs(officer_client, tenant_a, action="test.")
    reads = _reads(tenant_a)
    assert [r.changes["filters"] for r in reads] == [{}, {}, {"action": "test."}]
    assert reads[1].changes["last_seq"] == 1


def test_an_event_detail_is_recorded_once_per_window(officer_client: Client, tenant_a: Tenant) -> None:
    for _ in range(3):
        assert officer_client.get(url("audit:event-detail", tenant_a, seq=1)).status_code == 200
    [read] = _reads(tenant_a)
    assert (read.changes["filters"], read.changes["first_seq"], read.changes["count"]) == ({"seq": 1}, 1, 1)
    assert officer_client.get(url("audit:event-detail", tenant_a, seq=9999)).status_code == 404
    assert len(_reads(tenant_a)) == 1


@pytest.mark.parametrize("charlie_role", [Role.COMPLIANCE_OFFICER])
def test_refused_pages_record_nothing_in_either_chain(
    client: Client, bob: Any, charlie: Any, officer: Any, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    login_verified(client, charlie)  # another tenant's compliance officer
    assert client.get(url("audit:event-list", tenant_a)).status_code == 404
    assert client.get(url("audit:event-detail", tenant_a, seq=1)).status_code == 404
    client.logout()
    login_verified(client, bob)  # a viewer of A, without `view_audit`
    assert client.get(url("audit:event-list", tenant_a)).status_code == 403
    assert client.get(url("audit:event-detail", tenant_a, seq=1)).status_code == 403
    assert _reads(tenant_a) == [] and _reads(tenant_b) == []
    client.logout()
    login_verified(client, officer)
    assert client.get(url("audit:event-list", tenant_a)).status_code == 200  # the one read that counts
    assert len(_reads(tenant_a)) == 1 and _reads(tenant_b) == []


def test_bad_filters_show_no_events_and_record_nothing(officer_client: Client, events: Tenant) -> None:
    assert officer_client.get(url("audit:event-list", events), {"outcome": "maybe"}).status_code == 400
    assert _reads(events) == []
    assert officer_client.get(url("audit:event-list", events), {"outcome": "failure"}).status_code == 200
    assert [r.changes["filters"] for r in _reads(events)] == [{"outcome": "failure"}]


def test_with_redis_down_every_page_is_still_recorded(
    officer_client: Client, tenant_a: Tenant, settings: Any, redis_seen_up: None
) -> None:
    kill_redis(settings)
    for _ in range(2):
        assert officer_client.get(url("audit:event-list", tenant_a)).status_code == 200
        assert officer_client.get(url("audit:event-detail", tenant_a, seq=1)).status_code == 200
    assert [r.changes["filters"] for r in _reads(tenant_a)] == [{}, {"seq": 1}] * 2


def test_console_and_api_are_two_channels(officer_client: Client, officer: Any, tenant_a: Tenant) -> None:
    session_client(officer).get(f"/api/v1/tenants/{tenant_a.slug}/audit/events/")
    officer_client.get(url("audit:event-list", tenant_a))
    assert [r.changes["via"] for r in _reads(tenant_a)] == ["session", "console"]


def test_an_export_is_recorded_once_as_an_export(officer_client: Client, events: Tenant) -> None:
    assert officer_client.get(url("audit:event-list", events)).status_code == 200
    for _ in range(2):  # never deduplicated, never a read as well
        assert officer_client.post(url("audit:export", events), {"format": "csv"}).status_code == 200
    with tenant_context(events):
        actions = list(
            AuditEvent.objects.filter(action__startswith="audit.")
            .order_by("seq")
            .values_list("action", flat=True)
        )
    assert actions == ["audit.read", "audit.export", "audit.export"]
