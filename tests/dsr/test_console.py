"""The register's console pages: list (deadlines highlighted, filters, pagination, empty state), the form,
detail with timeline and actions; who may read, who may act; bad input never a 500."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.core.context import tenant_context
from apps.policies.dsr import dsr_create, dsr_subject
from apps.policies.models import DataSubjectRequest, RequestStatus
from apps.tenants.models import Tenant
from tests.dsr.helpers import EMAIL
from tests.fixtures.auth import login_verified

pytestmark = pytest.mark.django_db


def url(name: str, tenant: Tenant, **kwargs: Any) -> str:
    return reverse(f"policies:{name}", kwargs={"tenant_slug": tenant.slug, **kwargs})


def test_empty_register(client: Client, tenant_a: Tenant, alice: Any) -> None:
    login_verified(client, alice)
    body = client.get(url("dsr-list", tenant_a)).content.decode()
    assert "No requests" in body and "Register a request" in body
    assert url("dsr-list", tenant_a) in client.get(url("detail", tenant_a)).content.decode()  # linked


def test_register_form_creates_and_shows_the_request(client: Client, tenant_a: Tenant, alice: Any) -> None:
    login_verified(client, alice)
    assert client.get(url("dsr-create", tenant_a)).status_code == 200
    response = client.post(
        url("dsr-create", tenant_a), {"kind": "erasure", "email": EMAIL, "notes": "by letter"}
    )
    with tenant_context(tenant_a):
        dsr = DataSubjectRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == url("dsr-detail", tenant_a, pk=dsr.pk)
    assert dsr.kind == "erasure" and dsr.created_by_id == alice.pk and dsr.notes == "by letter"
    body = client.get(response["Location"]).content.decode()
    assert EMAIL in body  # an admin sees the identifiers
    assert "dsr.created" in body  # the timeline
    assert "Erase and tell the vendors" in body


def test_register_form_refuses_bad_input(client: Client, tenant_a: Tenant, alice: Any) -> None:
    login_verified(client, alice)
    for data in (
        {"kind": "access"},  # no identifier
        {"kind": "nonsense", "email": EMAIL},
        {"kind": "access", "email": "not-an-address"},
        {"kind": "access", "email": EMAIL, "received_at": (timezone.now() + timedelta(days=3)).isoformat()},
        {"kind": "access", "user_ref": "x" * 500},
    ):
        response = client.post(url("dsr-create", tenant_a), data)
        assert response.status_code == 400, data
    with tenant_context(tenant_a):
        assert not DataSubjectRequest.objects.exists()


def test_register_form_identifies_as_the_erasure_page_plus_a_chat_user(
    client: Client, tenant_a: Tenant, alice: Any
) -> None:
    login_verified(client, alice)
    form = client.get(url("dsr-create", tenant_a)).context["form"]
    assert list(form.fields) == ["kind", "email", "phone", "external_id", "user_ref", "received_at", "notes"]
    refused = client.post(url("dsr-create", tenant_a), {"kind": "access"})
    assert refused.status_code == 400
    assert refused.context["form"].non_field_errors() == [
        "Give an e-mail address, a phone number, an external id or a chat user reference."
    ]
    response = client.post(url("dsr-create", tenant_a), {"kind": "access", "user_ref": " widget-42 "})
    assert response.status_code == 302  # a chat user reference alone identifies the subject
    with tenant_context(tenant_a):
        assert dsr_subject(DataSubjectRequest.objects.get()).identifiers() == {"user_ref": "widget-42"}


def test_list_highlights_overdue_and_due_soon_filters_and_pages(
    client: Client, tenant_a: Tenant, alice: Any
) -> None:
    now = timezone.now()
    late = dsr_create(
        tenant=tenant_a,
        kind="access",
        email="late@example.test",
        received_at=now - timedelta(days=40),
        actor=alice,
    )
    dsr_create(
        tenant=tenant_a,
        kind="erasure",
        email="soon@example.test",
        received_at=now - timedelta(days=27),
        actor=alice,
    )
    for i in range(30):
        dsr_create(tenant=tenant_a, kind="access", email=f"p{i}@example.test", actor=alice)
    login_verified(client, alice)
    body = client.get(url("dsr-list", tenant_a)).content.decode()
    assert body.count('data-deadline="overdue"') == 1 and body.count('data-deadline="due_soon"') == 1
    assert "Overdue" in body and "Due soon" in body
    assert body.index('data-deadline="overdue"') < body.index('data-deadline="due_soon"')  # most urgent first
    assert "late@example.test" not in body  # the list shows pseudonyms, never identifiers
    assert late.subject_key[:12] in body
    assert "Page 1 of 2" in body
    assert client.get(url("dsr-list", tenant_a) + "?page=2").status_code == 200
    erasures = client.get(url("dsr-list", tenant_a) + "?kind=erasure").content.decode()
    assert erasures.count('class="dsr-row') == 1
    assert client.get(url("dsr-list", tenant_a) + "?status=bogus").status_code == 400


def test_extend_reject_and_start_through_the_page(client: Client, tenant_a: Tenant, alice: Any) -> None:
    dsr = dsr_create(tenant=tenant_a, kind="access", email=EMAIL, actor=alice)
    other = dsr_create(tenant=tenant_a, kind="access", email="x@example.test", actor=alice)
    login_verified(client, alice)
    assert (
        client.post(url("dsr-extend", tenant_a, pk=dsr.pk), {"days": "61", "reason": "x"}).status_code == 400
    )
    assert (
        client.post(url("dsr-extend", tenant_a, pk=dsr.pk), {"days": "abc", "reason": "x"}).status_code == 400
    )
    response = client.post(
        url("dsr-extend", tenant_a, pk=dsr.pk), {"days": "14", "reason": "complex request"}
    )
    assert response.status_code == 302
    assert "Extended by 14 days: complex request" in client.get(response["Location"]).content.decode()
    assert client.post(url("dsr-reject", tenant_a, pk=other.pk), {"reason": ""}).status_code == 400
    assert (
        client.post(url("dsr-reject", tenant_a, pk=other.pk), {"reason": "identity not proven"}).status_code
        == 302
    )
    assert client.post(url("dsr-start", tenant_a, pk=dsr.pk)).status_code == 302
    with tenant_context(tenant_a):
        states = dict(DataSubjectRequest.objects.values_list("pk", "status"))
    assert states == {dsr.pk: RequestStatus.IN_PROGRESS, other.pk: RequestStatus.REJECTED}
    # Starting again or acting on a closed request is refused with a message, never a 500.
    assert client.post(url("dsr-start", tenant_a, pk=dsr.pk)).status_code == 302
    assert (
        client.post(url("dsr-extend", tenant_a, pk=other.pk), {"days": "5", "reason": "x"}).status_code == 400
    )
    assert (
        client.post(url("dsr-handle", tenant_a, pk=dsr.pk), {"notice": "1", "reason": "x"}).status_code == 400
    )


def test_erasure_needs_a_confirmation(client: Client, tenant_a: Tenant, alice: Any) -> None:
    dsr = dsr_create(tenant=tenant_a, kind="erasure", email=EMAIL, actor=alice)
    login_verified(client, alice)
    response = client.post(url("dsr-start", tenant_a, pk=dsr.pk), follow=True)
    assert "Confirm that this person" in response.content.decode()
    with tenant_context(tenant_a):
        assert DataSubjectRequest.objects.get(pk=dsr.pk).status == RequestStatus.RECEIVED
    client.post(url("dsr-start", tenant_a, pk=dsr.pk), {"confirm": "on"})
    with tenant_context(tenant_a):
        assert (
            DataSubjectRequest.objects.get(pk=dsr.pk).status == RequestStatus.COMPLETED
        )  # no vendor to tell


def test_readers_read_and_only_admins_act(
    client: Client, tenant_a: Tenant, alice: Any, officer: Any, connor: Any
) -> None:
    dsr = dsr_create(tenant=tenant_a, kind="access", email=EMAIL, actor=alice)
    login_verified(client, officer)
    assert client.get(url("dsr-list", tenant_a)).status_code == 200
    detail = client.get(url("dsr-detail", tenant_a, pk=dsr.pk)).content.decode()
    assert EMAIL not in detail and "Build the access archive" not in detail
    assert client.get(url("dsr-create", tenant_a)).status_code == 403
    for name in ("dsr-start", "dsr-extend", "dsr-reject", "dsr-handle"):
        assert client.post(url(name, tenant_a, pk=dsr.pk), {"days": "5", "reason": "x"}).status_code == 403
    login_verified(client, connor)  # no VIEW_POLICIES
    assert client.get(url("dsr-list", tenant_a)).status_code == 403
    with tenant_context(tenant_a):
        assert DataSubjectRequest.objects.get(pk=dsr.pk).status == RequestStatus.RECEIVED


def test_other_tenant_and_unknown_ids_get_404(
    client: Client, tenant_a: Tenant, alice: Any, charlie: Any
) -> None:
    dsr = dsr_create(tenant=tenant_a, kind="access", email=EMAIL, actor=alice)
    login_verified(client, alice)
    assert client.get(url("dsr-detail", tenant_a, pk=uuid.uuid4())).status_code == 404
    login_verified(client, charlie)
    assert client.get(url("dsr-list", tenant_a)).status_code == 404
    for name in ("dsr-detail", "dsr-download"):
        assert client.get(url(name, tenant_a, pk=dsr.pk)).status_code == 404
    for name in ("dsr-start", "dsr-extend", "dsr-reject", "dsr-handle"):
        assert client.post(url(name, tenant_a, pk=dsr.pk), {"days": "5", "reason": "x"}).status_code == 404


@pytest.mark.parametrize(
    ("language", "title", "overdue"),
    [
        ("de", "Betroffenenanfragen", "Überfällig"),
        ("fr", "Demandes des personnes concernées", "En retard"),
        ("es", "Solicitudes de interesados", "Vencida"),
        ("ja", "本人からの請求", "期限超過"),
    ],
)
def test_register_is_translated(
    client: Client, tenant_a: Tenant, alice: Any, language: str, title: str, overdue: str
) -> None:
    dsr_create(
        tenant=tenant_a,
        kind="access",
        email=EMAIL,
        received_at=timezone.now() - timedelta(days=31),
        actor=alice,
    )
    alice.language = language  # the console speaks the member's language
    alice.save(update_fields=["language"])
    login_verified(client, alice)
    body = client.get(url("dsr-list", tenant_a)).content.decode()
    assert title in body and overdue in body
