"""The data-subject request API: the console's register over HTTP. Admins (manage_settings) register and act,
compliance officers (view_policies) read, viewers get 403, the other tenant 404. Identifiers go in and never
come out in full; every action is audited as in the console; bad input is a 400 with field errors."""

from __future__ import annotations

import io
import zipfile
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.integrations.models import Connection
from apps.policies.dsr import dsr_archive_build, dsr_create
from apps.policies.models import DataSubjectRequest
from apps.policies.services import pseudonym
from apps.tenants.models import Role, Tenant

pytestmark = pytest.mark.django_db

EMAIL = "jane.subject@example.test"
PHONE = "+49 170 5550123"
EXTERNAL_ID = "003SUBJECT0000001"


def base(tenant: Tenant) -> str:
    return f"/api/v1/tenants/{tenant.slug}/data-subject-requests/"


@pytest.fixture
def charlie_role() -> Role:
    """Admin of B: even an admin elsewhere reaches nothing of A."""
    return Role.ADMIN


def register(client: APIClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = client.post(base(tenant), {"kind": "access", "email": EMAIL, **body}, format="json")
    assert response.status_code == 201, response.content
    return dict(response.json())


def audit_actions(tenant: Tenant, dsr_id: str) -> list[str]:
    with tenant_context(tenant):
        return list(
            AuditEvent.objects.filter(target_type="data_subject_request", target_id=dsr_id)
            .order_by("seq")
            .values_list("action", flat=True)
        )


def test_register_returns_pseudonyms_and_masked_identifiers_never_the_identifiers(
    tenant_a: Tenant, alice: Any, alice_api: APIClient
) -> None:
    received = timezone.now() - timedelta(days=2)
    response = alice_api.post(
        base(tenant_a),
        {
            "kind": "erasure",
            "email": EMAIL,
            "phone": PHONE,
            "external_id": EXTERNAL_ID,
            "received_at": received.isoformat(),
            "notes": "By letter; ID checked.",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["kind"], body["status"], body["deadline"]) == ("erasure", "received", "")
    assert body["pseudonyms"] == {
        "email": pseudonym(tenant=tenant_a, kind="email", value=EMAIL),
        "phone": pseudonym(tenant=tenant_a, kind="phone", value="491705550123"),
        "external_id": pseudonym(tenant=tenant_a, kind="external_id", value=EXTERNAL_ID),
    }
    assert body["identifiers"] == {
        "email": "j***@example.test",
        "phone": "*********123",
        "external_id": "00*************01",
    }
    text = response.content.decode()
    for secret in (EMAIL, "jane.subject", "5550123", "491705550123", EXTERNAL_ID):
        assert secret not in text
    assert response["Cache-Control"] == "no-store"
    with tenant_context(tenant_a):
        stored = DataSubjectRequest.objects.get(pk=body["id"])
    assert abs((stored.due_at - (received + timedelta(days=30))).total_seconds()) < 1
    assert body["notes"] == "By letter; ID checked."
    assert audit_actions(tenant_a, body["id"]) == ["dsr.created"]

    detail = alice_api.get(f"{base(tenant_a)}{body['id']}/")
    assert detail.status_code == 200 and detail.json()["identifiers"] == body["identifiers"]
    assert EMAIL not in detail.content.decode()


def test_officer_reads_without_identifiers_and_may_not_act(
    tenant_a: Tenant, alice: Any, olivia_api: APIClient, bob_api: APIClient
) -> None:
    dsr = dsr_create(tenant=tenant_a, kind="access", email=EMAIL, actor=alice)
    url = f"{base(tenant_a)}{dsr.pk}/"
    listed = olivia_api.get(base(tenant_a))
    assert listed.status_code == 200 and [r["id"] for r in listed.json()["results"]] == [str(dsr.pk)]
    detail = olivia_api.get(url)
    assert detail.status_code == 200
    assert detail.json()["identifiers"] is None  # readers see pseudonyms only, as in the console
    assert detail.json()["pseudonyms"] == dsr.pseudonyms
    refused = [
        olivia_api.post(base(tenant_a), {"kind": "access", "email": EMAIL}, format="json"),
        olivia_api.post(f"{url}start/"),
        olivia_api.post(f"{url}extend/", {"days": 5, "reason": "Many records"}, format="json"),
        olivia_api.post(f"{url}reject/", {"reason": "No ID"}, format="json"),
        olivia_api.get(f"{url}archive/"),
    ]
    assert [r.status_code for r in refused] == [403] * 5
    assert bob_api.get(base(tenant_a)).status_code == 403  # a viewer may not even read
    assert bob_api.get(url).status_code == 403
    with tenant_context(tenant_a):
        assert DataSubjectRequest.objects.count() == 1
        assert DataSubjectRequest.objects.get(pk=dsr.pk).status == "received"
    assert audit_actions(tenant_a, str(dsr.pk)) == ["dsr.created"]


def test_other_tenant_gets_404_and_sees_nothing(
    tenant_a: Tenant, tenant_b: Tenant, alice: Any, charlie: Any, charlie_api: APIClient
) -> None:
    dsr = dsr_create(tenant=tenant_a, kind="access", email=EMAIL, actor=alice)
    mine = dsr_create(tenant=tenant_b, kind="access", email=EMAIL, actor=charlie)
    for slug_tenant in (tenant_a, tenant_b):  # A's slug, and A's id under B's own slug
        url = f"{base(slug_tenant)}{dsr.pk}/"
        for response in (
            charlie_api.get(url),
            charlie_api.post(f"{url}start/"),
            charlie_api.post(f"{url}extend/", {"days": 5, "reason": "x"}, format="json"),
            charlie_api.post(f"{url}reject/", {"reason": "x"}, format="json"),
            charlie_api.get(f"{url}archive/"),
        ):
            assert response.status_code == 404, (url, response.status_code)
    assert charlie_api.get(base(tenant_a)).status_code == 404
    # B's list holds B's request only.
    listed = charlie_api.get(base(tenant_b)).json()["results"]
    assert [r["id"] for r in listed] == [str(mine.pk)]
    assert audit_actions(tenant_a, str(dsr.pk)) == ["dsr.created"]


def test_malformed_or_unknown_id_is_404(tenant_a: Tenant, alice_api: APIClient) -> None:
    assert alice_api.get(f"{base(tenant_a)}not-a-uuid/").status_code == 404
    unknown = f"{base(tenant_a)}00000000-0000-4000-8000-000000000000/"
    assert alice_api.get(unknown).status_code == 404
    assert alice_api.post(f"{unknown}start/").status_code == 404
    assert alice_api.get(f"{unknown}archive/").status_code == 404


def test_list_filters_and_pages(tenant_a: Tenant, alice: Any, alice_api: APIClient) -> None:
    now = timezone.now()
    late = dsr_create(tenant=tenant_a, kind="access", email="a@example.test", actor=alice,
                      received_at=now - timedelta(days=40))  # fmt: skip
    soon = dsr_create(tenant=tenant_a, kind="erasure", phone="+1 555 0100", actor=alice,
                      received_at=now - timedelta(days=25))  # fmt: skip
    fresh = dsr_create(tenant=tenant_a, kind="access", user_ref="widget-1", actor=alice)
    rejected = dsr_create(tenant=tenant_a, kind="erasure", email="b@example.test", actor=alice,
                          received_at=now - timedelta(days=50))  # fmt: skip
    assert alice_api.post(f"{base(tenant_a)}{rejected.pk}/reject/", {"reason": "Identity not verified"},
                          format="json").status_code == 200  # fmt: skip

    def ids(**params: Any) -> list[str]:
        response = alice_api.get(base(tenant_a), params)
        assert response.status_code == 200, response.content
        return [r["id"] for r in response.json()["results"]]

    # Open ones by deadline first, then the closed one.
    assert ids() == [str(late.pk), str(soon.pk), str(fresh.pk), str(rejected.pk)]
    assert ids(kind="erasure") == [str(soon.pk), str(rejected.pk)]
    assert ids(status="rejected") == [str(rejected.pk)]
    assert ids(overdue="true") == [str(late.pk)]  # a closed request is never overdue
    assert ids(overdue="false") == [str(soon.pk), str(fresh.pk), str(rejected.pk)]
    assert ids(status="received", kind="access") == [str(late.pk), str(fresh.pk)]
    rows = {r["id"]: r for r in alice_api.get(base(tenant_a)).json()["results"]}
    assert rows[str(late.pk)]["deadline"] == "overdue"
    assert rows[str(soon.pk)]["deadline"] == "due_soon"
    assert rows[str(fresh.pk)]["deadline"] == "" and rows[str(rejected.pk)]["deadline"] == ""
    assert "identifiers" not in rows[str(late.pk)] and "a@example.test" not in str(rows)

    page = alice_api.get(base(tenant_a), {"limit": 2, "offset": 1}).json()
    assert page["count"] == 4 and [r["id"] for r in page["results"]] == [str(soon.pk), str(fresh.pk)]
    assert page["next"] and page["previous"] is not None

    for params, field in (
        ({"status": "lost"}, "status"),
        ({"kind": "deletion"}, "kind"),
        ({"overdue": "maybe"}, "overdue"),
        ({"limit": "abc"}, "limit"),
    ):
        response = alice_api.get(base(tenant_a), params)
        assert response.status_code == 400 and field in response.json(), (params, response.content)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "access"}, "non_field_errors"),  # no identifier
        ({"kind": "access", "email": "", "phone": ""}, "non_field_errors"),
        ({"kind": "deletion", "email": EMAIL}, "kind"),
        ({"email": EMAIL}, "kind"),
        ({"kind": "access", "email": "not-an-address"}, "email"),
        ({"kind": "access", "phone": "1" * 41}, "phone"),
        ({"kind": "access", "email": EMAIL, "received_at": "yesterday"}, "received_at"),
        ({"kind": "access", "email": EMAIL, "status": "completed"}, "status"),  # unknown field
        ({"kind": "access", "email": EMAIL, "notes": "x" * 2001}, "notes"),
    ],
)
def test_register_bad_input_is_400_with_field_errors(
    tenant_a: Tenant, alice_api: APIClient, body: dict[str, Any], field: str
) -> None:
    response = alice_api.post(base(tenant_a), body, format="json")
    assert response.status_code == 400 and field in response.json(), response.content
    with tenant_context(tenant_a):
        assert not DataSubjectRequest.objects.exists()


def test_future_receipt_is_refused_by_the_service_as_a_field_error(
    tenant_a: Tenant, alice_api: APIClient
) -> None:
    future = (timezone.now() + timedelta(days=1)).isoformat()
    response = alice_api.post(
        base(tenant_a), {"kind": "access", "email": EMAIL, "received_at": future}, format="json"
    )
    assert response.status_code == 400
    assert list(response.json()) == ["received_at"]
    assert EMAIL not in response.content.decode()


def test_extend_and_reject_follow_the_console_rules(
    tenant_a: Tenant, alice: Any, alice_api: APIClient
) -> None:
    created = register(alice_api, tenant_a)
    url = f"{base(tenant_a)}{created['id']}/"
    extended = alice_api.post(f"{url}extend/", {"days": 30, "reason": "Many systems"}, format="json")
    assert extended.status_code == 200, extended.content
    body = extended.json()
    assert (body["extension_days"], body["extension_reason"]) == (30, "Many systems")
    with tenant_context(tenant_a):
        stored = DataSubjectRequest.objects.get(pk=created["id"])
    assert stored.due_at == stored.received_at + timedelta(days=60)
    assert body["due_at"].startswith(stored.due_at.strftime("%Y-%m-%dT"))

    for payload, field in (
        ({"days": 31, "reason": "More"}, "days"),  # 60 days at most in all (the service's rule)
        ({"days": 0, "reason": "More"}, "days"),
        ({"days": 61, "reason": "More"}, "days"),
        ({"days": "ten", "reason": "More"}, "days"),
        ({"days": 5}, "reason"),
        ({"days": 5, "reason": "   "}, "reason"),
        ({"days": 5, "reason": "More", "due_at": "2099-01-01"}, "due_at"),
    ):
        response = alice_api.post(f"{url}extend/", payload, format="json")
        assert response.status_code == 400 and field in response.json(), (payload, response.content)
    missing = alice_api.post(f"{url}reject/", {}, format="json")
    assert missing.json() == {"reason": ["This field is required."]}

    rejected = alice_api.post(f"{url}reject/", {"reason": "Identity not verified"}, format="json")
    assert rejected.status_code == 200
    assert (rejected.json()["status"], rejected.json()["reason"]) == ("rejected", "Identity not verified")
    assert rejected.json()["completed_at"] is not None
    again = alice_api.post(f"{url}reject/", {"reason": "Again"}, format="json")
    assert again.status_code == 400 and "non_field_errors" in again.json()  # closed already
    start = alice_api.post(f"{url}start/")
    assert start.status_code == 400 and "non_field_errors" in start.json()
    assert audit_actions(tenant_a, created["id"]) == ["dsr.created", "dsr.extended", "dsr.rejected"]


def test_access_request_started_archive_downloaded_and_audited(
    tenant_a: Tenant, alice: Any, alice_api: APIClient, olivia_api: APIClient
) -> None:
    created = register(alice_api, tenant_a)
    url = f"{base(tenant_a)}{created['id']}/"
    assert alice_api.get(f"{url}archive/").status_code == 404  # not built yet
    started = alice_api.post(f"{url}start/")
    assert started.status_code == 200 and started.json()["status"] == "in_progress"
    assert alice_api.post(f"{url}reject/", {"reason": "Late"}, format="json").status_code == 400
    assert dsr_archive_build(tenant=tenant_a, request_id=created["id"]) is not None  # the queued task's work

    detail = olivia_api.get(url).json()
    assert detail["status"] == "completed" and detail["archive_available"] is True
    assert set(detail["archive"]) == {"sha256", "size", "counts", "truncated", "built_at"}
    assert detail["archive"]["counts"]["synced_records"] == 0

    response = alice_api.get(f"{url}archive/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip" and response["Cache-Control"] == "no-store"
    assert response["Content-Disposition"] == f'attachment; filename="subject-access-{created["id"]}.zip"'
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert "manifest.json" in archive.namelist()
    with tenant_context(tenant_a):
        downloaded = AuditEvent.objects.get(action="dsr.archive_downloaded", target_id=created["id"])
    assert downloaded.actor_label == "alice"
    assert downloaded.changes["sha256"] == detail["archive"]["sha256"]
    assert olivia_api.get(f"{url}archive/").status_code == 403
    assert audit_actions(tenant_a, created["id"]).count("dsr.archive_downloaded") == 1


def test_erasure_started_shows_each_vendor_notice_state(
    tenant_a: Tenant, alice_api: APIClient, offline_sf_conn: Connection
) -> None:
    created = register(alice_api, tenant_a, kind="erasure", phone=PHONE)
    started = alice_api.post(f"{base(tenant_a)}{created['id']}/start/")
    assert started.status_code == 200, started.content
    body = started.json()
    assert body["status"] == "in_progress"
    assert [(n["connection"], n["kind"], n["state"]) for n in body["notifications"]] == [
        ("Salesforce", "salesforce", "pending")
    ]
    assert body["erasure"]["total"] == sum(body["erasure"]["counts"].values())
    assert "5550123" not in started.content.decode()
    again = alice_api.post(f"{base(tenant_a)}{created['id']}/start/")
    assert again.status_code == 400 and "non_field_errors" in again.json()
    assert audit_actions(tenant_a, created["id"]) == ["dsr.created", "dsr.started", "dsr.erased"]


def test_session_callers_get_the_same_answers(tenant_a: Tenant, alice: Any, alice_session: APIClient) -> None:
    created = register(alice_session, tenant_a)
    assert alice_session.get(f"{base(tenant_a)}{created['id']}/").status_code == 200


def test_a_manual_vendor_notice_is_handled_and_the_erasure_completes(
    tenant_a: Tenant, alice_api: APIClient, olivia_api: APIClient, offline_sf_conn: Connection
) -> None:
    with tenant_context(tenant_a):  # a disabled connection delivers nothing: an operator settles it
        Connection.objects.filter(pk=offline_sf_conn.pk).update(enabled=False)
    created = register(alice_api, tenant_a, kind="erasure")
    url = f"{base(tenant_a)}{created['id']}/"
    started = alice_api.post(f"{url}start/").json()
    [notice] = started["notifications"]
    assert (notice["kind"], notice["state"]) == ("salesforce", "manual")
    assert started["status"] == "in_progress"
    body = {"notice": notice["id"], "reason": "Deleted by hand in Salesforce"}
    assert olivia_api.post(f"{url}handle/", body, format="json").status_code == 403
    for bad, field in (
        ({"notice": notice["id"]}, "reason"),
        ({"notice": "no-such-notice", "reason": "x"}, "non_field_errors"),
        ({**body, "state": "handled"}, "state"),
    ):
        response = alice_api.post(f"{url}handle/", bad, format="json")
        assert response.status_code == 400 and field in response.json(), (bad, response.content)
    handled = alice_api.post(f"{url}handle/", body, format="json")
    assert handled.status_code == 200, handled.content
    done = handled.json()
    assert done["status"] == "completed"
    assert [(n["state"], n["handled_reason"]) for n in done["notifications"]] == [
        ("handled", "Deleted by hand in Salesforce")
    ]
    again = alice_api.post(f"{url}handle/", body, format="json")
    assert again.status_code == 400 and "non_field_errors" in again.json()  # closed now
    actions = audit_actions(tenant_a, created["id"])
    assert actions[-2:] == ["dsr.notification_handled", "dsr.completed"]
