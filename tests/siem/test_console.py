"""The SIEM console page: compliance officers see the delivery state, admins configure; secrets are
write-only; every change is audited; other tenants get 404; bad input answers 400, never 500."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.core.confirm import CONFIRMED
from apps.core.context import tenant_context
from apps.siem.models import SiemDestination, SiemKind
from apps.tenants.models import Tenant
from tests.fixtures.auth import login_verified

pytestmark = pytest.mark.django_db

SECRET = "console-webhook-secret-42"


def url(name: str, tenant: Tenant, **kwargs: Any) -> str:
    return reverse(f"siem:{name}", kwargs={"tenant_slug": tenant.slug, **kwargs})


def form(receiver: Any, pki: Any, **extra: str) -> dict[str, Any]:
    receiver.secret = SECRET  # the receiver checks signatures with the secret entered here
    return {"name": "SOC", "kind": SiemKind.WEBHOOK, "url": receiver.url, "hmac_secret": SECRET,
            "ca_bundle": pki.ca_pem, "start": "now", **extra}  # fmt: skip


def actions(tenant: Tenant) -> list[str]:
    with tenant_context(tenant):
        events = AuditEvent.objects.filter(action__startswith="siem.").order_by("seq")
        return list(events.values_list("action", flat=True))


def the_destination(tenant: Tenant) -> SiemDestination:
    with tenant_context(tenant):
        return SiemDestination.objects.get()


def secret_of(tenant: Tenant) -> str | None:
    with tenant_context(tenant):
        return SiemDestination.objects.get().hmac_secret


def test_admin_configures_a_destination_and_every_change_is_audited(
    alice_client: Client, tenant_a: Tenant, webhook: Any, pki: Any
) -> None:
    assert alice_client.get(url("destination-create", tenant_a)).status_code == 200
    response = alice_client.post(url("destination-create", tenant_a), form(webhook, pki))
    assert response.status_code == 302
    destination = the_destination(tenant_a)
    assert secret_of(tenant_a) == SECRET and destination.enabled
    page = alice_client.get(url("destination-list", tenant_a)).content.decode()
    assert "SOC" in page and SECRET not in page
    edit = alice_client.get(url("destination-edit", tenant_a, pk=destination.pk)).content.decode()
    # The CA bundle is public and shown again; the secret never.
    assert SECRET not in edit and "BEGIN CERTIFICATE" in edit

    # An empty secret keeps the stored one.
    data = form(webhook, pki, name="SOC 2", hmac_secret="")
    assert alice_client.post(url("destination-edit", tenant_a, pk=destination.pk), data).status_code == 302
    assert secret_of(tenant_a) == SECRET and the_destination(tenant_a).name == "SOC 2"

    assert alice_client.post(url("destination-toggle", tenant_a, pk=destination.pk)).status_code == 302
    assert not the_destination(tenant_a).enabled
    assert alice_client.post(url("destination-toggle", tenant_a, pk=destination.pk)).status_code == 302
    assert the_destination(tenant_a).enabled

    cursor = the_destination(tenant_a).delivered_seq
    done = alice_client.post(url("destination-test", tenant_a, pk=destination.pk), follow=True)
    assert "Test line delivered." in done.content.decode(), done.content.decode()[-3000:]
    (line,) = webhook.received()
    assert line["test"] is True and line["action"] == "siem.test"
    assert the_destination(tenant_a).delivered_seq == cursor  # a test line is not an audit event

    delete = url("destination-delete", tenant_a, pk=destination.pk)
    assert alice_client.get(delete).status_code == 200  # the confirmation page
    assert alice_client.post(delete).status_code == 400  # not confirmed: nothing happens
    assert the_destination(tenant_a)
    assert alice_client.post(delete, CONFIRMED).status_code == 302
    with tenant_context(tenant_a):
        assert not SiemDestination.objects.exists()
    assert actions(tenant_a) == [
        "siem.destination_created", "siem.destination_updated", "siem.destination_paused",
        "siem.destination_resumed", "siem.test_sent", "siem.destination_deleted",
    ]  # fmt: skip
    with tenant_context(tenant_a):
        created = AuditEvent.objects.get(action="siem.destination_created")
    assert created.changes["write_only_fields_entered"] == ["hmac_secret"]
    assert SECRET not in str(created.changes)


def test_a_failed_test_line_shows_the_error_without_the_secret(
    alice_client: Client, tenant_a: Tenant, webhook: Any, pki: Any
) -> None:
    alice_client.post(url("destination-create", tenant_a), form(webhook, pki))
    destination = the_destination(tenant_a)
    webhook.stop()
    response = alice_client.post(url("destination-test", tenant_a, pk=destination.pk), follow=True)
    page = response.content.decode()
    assert response.status_code == 200 and "not delivered" in page and SECRET not in page
    with tenant_context(tenant_a):
        assert AuditEvent.objects.get(action="siem.test_sent").outcome == "failure"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"url": "http://127.0.0.1:9/hook"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"kind": "carrier-pigeon"}, "kind"),
        ({"hmac_secret": ""}, "hmac_secret"),
        ({"client_cert": "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----"}, "client_cert"),
        ({"client_key": "garbage"}, "client_key"),
        ({"ca_bundle": "garbage"}, "ca_bundle"),
        ({"kind": SiemKind.SYSLOG_TLS, "host": ""}, "host"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_input_answers_400_with_the_field_error(
    alice_client: Client, tenant_a: Tenant, webhook: Any, pki: Any, changes: dict[str, str], field: str
) -> None:
    response = alice_client.post(url("destination-create", tenant_a), {**form(webhook, pki), **changes})
    assert response.status_code == 400
    assert field in response.context["form"].errors
    with tenant_context(tenant_a):
        assert not SiemDestination.objects.exists()


def test_duplicate_names_are_refused(alice_client: Client, tenant_a: Tenant, webhook: Any, pki: Any) -> None:
    assert alice_client.post(url("destination-create", tenant_a), form(webhook, pki)).status_code == 302
    response = alice_client.post(url("destination-create", tenant_a), form(webhook, pki))
    assert response.status_code == 400 and "name" in response.context["form"].errors


def test_compliance_officer_sees_status_but_cannot_configure(
    client: Client, officer: Any, tenant_a: Tenant, webhook: Any, pki: Any, make_destination: Any
) -> None:
    destination = make_destination(tenant_a, SiemKind.WEBHOOK, webhook, pki)
    login_verified(client, officer)
    page = client.get(url("destination-list", tenant_a))
    assert page.status_code == 200 and destination.name in page.content.decode()
    assert "Send test event" not in page.content.decode()
    for name in ("destination-edit", "destination-toggle", "destination-delete", "destination-test"):
        assert client.post(url(name, tenant_a, pk=destination.pk)).status_code == 403
    assert client.get(url("destination-create", tenant_a)).status_code == 403
    assert the_destination(tenant_a).enabled


def test_viewer_without_audit_access_is_refused(client: Client, bob: Any, tenant_a: Tenant) -> None:
    login_verified(client, bob)
    assert client.get(url("destination-list", tenant_a)).status_code == 403


def test_another_tenant_gets_404_everywhere(
    client: Client, charlie: Any, tenant_a: Tenant, webhook: Any, pki: Any, make_destination: Any
) -> None:
    destination = make_destination(tenant_a, SiemKind.WEBHOOK, webhook, pki)
    login_verified(client, charlie)
    assert client.get(url("destination-list", tenant_a)).status_code == 404
    for name in ("destination-edit", "destination-toggle", "destination-delete", "destination-test"):
        assert client.post(url(name, tenant_a, pk=destination.pk)).status_code == 404
    assert the_destination(tenant_a).enabled and webhook.received() == []


def test_admin_of_another_tenant_cannot_reach_a_destination_by_id(
    alice_client: Client, tenant_a: Tenant, tenant_b: Tenant, webhook: Any, pki: Any, make_destination: Any
) -> None:
    """alice is an admin of A only; B's destination id under A's URL is not found either."""
    other = make_destination(tenant_b, SiemKind.WEBHOOK, webhook, pki)
    for name in ("destination-edit", "destination-toggle", "destination-delete", "destination-test"):
        assert alice_client.post(url(name, tenant_a, pk=other.pk)).status_code == 404
    with tenant_context(tenant_b):
        assert SiemDestination.objects.get(pk=other.pk).enabled
