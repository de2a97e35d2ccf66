"""The policies console page: plain-words explanation, edit form, presets, erasure, permissions."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.core.context import tenant_context
from apps.policies.selectors import policy_get
from apps.policies.services import policy_apply_preset
from apps.security.models import VaultEntry
from apps.security.services import vault_tokenize
from apps.tenants.models import Tenant
from tests.fixtures.auth import login_verified

pytestmark = pytest.mark.django_db


def url(name: str, tenant: Tenant) -> str:
    return reverse(name, kwargs={"tenant_slug": tenant.slug})


def valid_form(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "redact_transcripts": "on",
        "transcript_retention_days": "30",
        "synced_record_retention_days": "",
        "sync_log_retention_days": "90",
        "audit_retention_days": "",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_page_explains_the_policy_in_plain_words(client: Client, alice: Any, tenant_a: Tenant) -> None:
    policy_apply_preset(tenant=tenant_a, preset="strict")
    login_verified(client, alice)
    response = client.get(url("policies:detail", tenant_a))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Data may only be sent to: EU" in body
    assert "Conversation transcripts are deleted 30 days after the conversation ends." in body
    assert "Audit events are deleted 365 days after they were recorded" in body
    assert "removed from conversation transcripts before they are stored" in body
    assert 'aria-current="page"' in body  # the Policies area is highlighted in the navigation


def test_lenient_policy_explained(client: Client, alice: Any, tenant_a: Tenant) -> None:
    policy_apply_preset(tenant=tenant_a, preset="lenient")
    login_verified(client, alice)
    body = client.get(url("policies:detail", tenant_a)).content.decode()
    assert "Data may only be sent to: EU (European Union), US (United States)" in body
    assert "stored as written" in body
    assert "Audit events are kept forever." in body


def test_edit_saves_and_audits(client: Client, alice: Any, tenant_a: Tenant) -> None:
    login_verified(client, alice)
    response = client.post(url("policies:detail", tenant_a), valid_form(allowed_regions=["us"]))
    assert response.status_code == 302
    policy = policy_get(tenant=tenant_a)
    assert policy.allowed_regions == ["us"]
    assert policy.transcript_retention_days == 30
    with tenant_context(tenant_a):
        event = AuditEvent.objects.filter(action="policy.updated").get()
    assert event.changes["transcript_retention_days"] == [365, 30]
    assert event.actor_id == alice.pk


def test_unchecked_redaction_turns_it_off(client: Client, alice: Any, tenant_a: Tenant) -> None:
    login_verified(client, alice)
    client.post(url("policies:detail", tenant_a), valid_form(redact_transcripts=None))
    assert policy_get(tenant=tenant_a).redact_transcripts is False


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("transcript_retention_days", "-5"),
        ("sync_log_retention_days", "abc"),
        ("audit_retention_days", "30"),
        ("allowed_regions", ["mars"]),
    ],
)
def test_edit_shows_field_errors_never_500(
    client: Client, alice: Any, tenant_a: Tenant, field: str, value: Any
) -> None:
    login_verified(client, alice)
    response = client.post(url("policies:detail", tenant_a), valid_form(**{field: value}))
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert f'id="id_{field}_error"' in response.content.decode() or field == "allowed_regions"
    assert policy_get(tenant=tenant_a).transcript_retention_days == 365  # nothing saved


def test_preset_buttons(client: Client, alice: Any, tenant_a: Tenant) -> None:
    login_verified(client, alice)
    response = client.post(url("policies:preset", tenant_a), {"preset": "strict"})
    assert response.status_code == 302
    assert policy_get(tenant=tenant_a).transcript_retention_days == 30
    client.post(url("policies:preset", tenant_a), {"preset": "bogus"})
    assert policy_get(tenant=tenant_a).transcript_retention_days == 30


def test_erasure_form_shows_the_report(client: Client, alice: Any, tenant_a: Tenant) -> None:
    with tenant_context(tenant_a):
        vault_tokenize(value="jane.doe@example.com", kind="email")
    login_verified(client, alice)
    assert client.get(url("policies:erasure", tenant_a)).status_code == 200
    response = client.post(
        url("policies:erasure", tenant_a), {"email": "jane.doe@example.com", "confirm": "on"}
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "Erasure report" in body and "1 item was erased." in body
    assert "jane.doe@example.com" not in body  # the form is cleared, the identifier not echoed
    assert response["Cache-Control"] == "no-store"
    with tenant_context(tenant_a):
        assert not VaultEntry.objects.exists()


def test_erasure_form_errors(client: Client, alice: Any, tenant_a: Tenant) -> None:
    login_verified(client, alice)
    response = client.post(url("policies:erasure", tenant_a), {"confirm": "on"})
    assert response.status_code == 400
    assert "Give an e-mail address" in response.content.decode()
    response = client.post(url("policies:erasure", tenant_a), {"email": "x@example.com"})
    assert response.status_code == 400
    assert "confirm" in response.context["form"].errors
    with tenant_context(tenant_a):
        assert not AuditEvent.objects.filter(action="policy.erasure").exists()


@pytest.mark.parametrize("name", ["policies:detail", "policies:erasure"])
def test_viewer_gets_403(client: Client, bob: Any, tenant_a: Tenant, name: str) -> None:
    login_verified(client, bob)
    assert client.get(url(name, tenant_a)).status_code == 403
    assert client.post(url(name, tenant_a), valid_form()).status_code == 403
    assert client.post(url("policies:preset", tenant_a), {"preset": "lenient"}).status_code == 403
    assert policy_get(tenant=tenant_a).redact_transcripts is True


@pytest.mark.parametrize("name", ["policies:detail", "policies:preset", "policies:erasure"])
def test_charlie_gets_404(client: Client, charlie: Any, tenant_a: Tenant, name: str) -> None:
    login_verified(client, charlie)
    assert client.get(url(name, tenant_a)).status_code == 404
    assert client.post(url(name, tenant_a), {"preset": "lenient"}).status_code == 404


def test_navigation_links_to_the_policies_page(
    client: Client, alice: Any, bob: Any, tenant_a: Tenant
) -> None:
    login_verified(client, alice)
    home = client.get(reverse("console:tenant-home", kwargs={"tenant_slug": tenant_a.slug}))
    assert url("policies:detail", tenant_a) in home.content.decode()
    client.logout()
    login_verified(client, bob)
    home = client.get(reverse("console:tenant-home", kwargs={"tenant_slug": tenant_a.slug}))
    assert url("policies:detail", tenant_a) not in home.content.decode()


def test_compliance_officer_reads_the_policy_but_cannot_change_it(
    client: Client, tenant_a: Tenant, alice: Any
) -> None:
    from apps.tenants.models import Role
    from apps.tenants.services import membership_add
    from tests.factories import UserFactory

    cora = UserFactory.create(username="cora")
    membership_add(tenant=tenant_a, user=cora, role=Role.COMPLIANCE_OFFICER)
    login_verified(client, cora)
    page = client.get(reverse("policies:detail", kwargs={"tenant_slug": tenant_a.slug}))
    assert page.status_code == 200
    body = page.content.decode()
    assert "What this policy does" in body
    assert "Change the policy" not in body
    denied = client.post(
        reverse("policies:detail", kwargs={"tenant_slug": tenant_a.slug}), {"redact_transcripts": ""}
    )
    assert denied.status_code == 403
    assert client.get(reverse("policies:erasure", kwargs={"tenant_slug": tenant_a.slug})).status_code == 403
