"""Console pages for conversations (transcripts) and language-model providers."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.chat.auth import lookup
from apps.chat.models import LlmProviderConfig
from apps.chat.services.conversations import conversation_start, message_post
from apps.core.confirm import CONFIRMED
from apps.core.context import tenant_context
from apps.tenants.models import Role, Tenant
from apps.tenants.services import management_token_hash, membership_add
from tests.factories import UserFactory
from tests.fixtures.auth import login_verified
from tests.fixtures.chat import IssuedKey

pytestmark = pytest.mark.django_db


def _conversation(tenant: Tenant, key: IssuedKey, *texts: str) -> Any:
    entry = lookup(management_token_hash(key.plaintext))
    assert entry is not None
    with tenant_context(tenant):
        conversation = conversation_start(principal=entry.principal, user_ref="+4917012345678", locale="de")
        for text in texts:
            message_post(principal=entry.principal, conversation=conversation, text=text)
    return conversation


def test_admin_lists_and_reads_a_transcript_and_the_read_is_audited(
    client: Client, alice: Any, tenant_a: Tenant, api_key_a: IssuedKey
) -> None:
    conversation = _conversation(tenant_a, api_key_a, "Hallo", "Meine Karte 4111 1111 1111 1111 geht nicht")
    login_verified(client, alice)
    listing = client.get(reverse("chat:conversation-list", kwargs={"tenant_slug": tenant_a.slug}))
    assert listing.status_code == 200
    assert b"Website" in listing.content
    url = reverse("chat:conversation-detail", kwargs={"tenant_slug": tenant_a.slug, "pk": conversation.pk})
    page = client.get(url)
    assert page.status_code == 200
    assert "Hallo" in page.content.decode()
    assert "4111" not in page.content.decode()  # stored redacted
    with tenant_context(tenant_a):
        assert (
            AuditEvent.objects.filter(action="chat.transcript_viewed", target_id=str(conversation.pk)).count()
            == 1
        )


def test_filters_and_empty_state(client: Client, alice: Any, tenant_a: Tenant, api_key_a: IssuedKey) -> None:
    login_verified(client, alice)
    url = reverse("chat:conversation-list", kwargs={"tenant_slug": tenant_a.slug})
    assert "No conversations yet" in client.get(url).content.decode()
    _conversation(tenant_a, api_key_a, "Hallo")
    assert "No conversations yet" in client.get(url, {"status": "handoff"}).content.decode()
    assert "No conversations yet" not in client.get(url, {"status": "open"}).content.decode()
    assert client.get(url, {"status": "bogus"}).status_code == 200  # a bad filter is ignored, not a 500


def test_viewers_cannot_read_transcripts_but_compliance_officers_can(
    client: Client, bob: Any, tenant_a: Tenant, api_key_a: IssuedKey
) -> None:
    conversation = _conversation(tenant_a, api_key_a, "Hallo")
    url = reverse("chat:conversation-detail", kwargs={"tenant_slug": tenant_a.slug, "pk": conversation.pk})
    login_verified(client, bob)
    assert client.get(url).status_code == 403
    officer = UserFactory.create(username="cora2")
    membership_add(tenant=tenant_a, user=officer, role=Role.COMPLIANCE_OFFICER)
    officer_client = Client()
    login_verified(officer_client, officer)
    assert officer_client.get(url).status_code == 200


def test_llm_provider_console_create_edit_keeps_key_and_shows_errors(
    client: Client, alice: Any, tenant_a: Tenant
) -> None:
    login_verified(client, alice)
    create = reverse("chat:llm-provider-create", kwargs={"tenant_slug": tenant_a.slug})
    bad = client.post(create, {"name": "", "base_url": "nope", "model": "", "endpoint_region": "eu"})
    assert bad.status_code == 400
    assert b"has-error" in bad.content
    data = {"name": "Model", "base_url": "https://llm.example/v1", "model": "m1", "endpoint_region": "eu",
            "api_key": "sk-secret-123", "enabled": "on"}  # fmt: skip
    assert client.post(create, data).status_code == 302
    with tenant_context(tenant_a):
        config = LlmProviderConfig.objects.get()
        assert str(config.api_key) == "sk-secret-123"
    edit = reverse("chat:llm-provider-edit", kwargs={"tenant_slug": tenant_a.slug, "pk": config.pk})
    page = client.get(edit)
    assert b"sk-secret-123" not in page.content
    assert client.post(edit, {**data, "api_key": "", "model": "m2"}).status_code == 302
    with tenant_context(tenant_a):
        config.refresh_from_db()
        assert (config.model, str(config.api_key)) == ("m2", "sk-secret-123")
    refused = client.post(edit, {**data, "endpoint_region": "us"})  # the policy allows only the home region
    assert refused.status_code == 400
    assert b"refused" in refused.content
    delete = reverse("chat:llm-provider-delete", kwargs={"tenant_slug": tenant_a.slug, "pk": config.pk})
    assert client.post(delete, CONFIRMED).status_code == 302
    with tenant_context(tenant_a):
        assert not LlmProviderConfig.objects.exists()
