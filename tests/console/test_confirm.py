"""One confirmation step for every destructive console action (apps/core/confirm.py): a GET shows what is
affected and what follows; a POST without the confirmation is refused (400) and changes nothing; a confirmed
POST acts and is audited; another tenant's member gets 404 and a member without the permission 403."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from guardian.models import UserObjectPermission

from apps.audit.models import AuditEvent
from apps.chat.models import ApiKey, Channel, LlmProviderConfig
from apps.chat.services.channels import api_key_create, channel_create
from apps.core.confirm import CONFIRM_FIELD, CONFIRM_VALUE, CONFIRMED
from apps.core.context import tenant_context
from apps.integrations.models import Connection, DeadLetter, DeadLetterKind, DeadLetterStatus
from apps.integrations.services.connections import connection_grant
from apps.tenants.models import Invitation, ManagementToken, Membership, Role, Tenant
from apps.tenants.services import membership_add
from tests.console.helpers import servicenow
from tests.factories import UserFactory
from tests.fixtures.auth import login_verified

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Case:
    """One destructive action, set up on tenant A: where it is, what it posts, and whether it happened."""

    url: str
    label: str  # the object's name, shown on the confirmation page
    done: Callable[[], bool]
    fields: dict[str, Any]
    audit: str


def _url(name: str, tenant: Tenant, *args: Any) -> str:
    return reverse(name, args=[tenant.slug, *args])


def _key(tenant: Tenant) -> tuple[Channel, ApiKey]:
    channel = channel_create(tenant=tenant, name="Website")
    return channel, api_key_create(channel=channel, name="ci")[0]


def key_revoke(tenant: Tenant, bob: Any) -> Case:
    _channel, key = _key(tenant)
    return Case(
        _url("chat:key-revoke", tenant, key.pk),
        "ci",
        lambda: ApiKey.objects.get(pk=key.pk).revoked_at is not None,
        {},
        "api_key.revoked",
    )


def key_rotate(tenant: Tenant, bob: Any) -> Case:
    channel, key = _key(tenant)
    return Case(
        _url("chat:key-rotate", tenant, key.pk),
        "ci",
        lambda: ApiKey.objects.filter(channel=channel).count() == 2,
        {"overlap_hours": "24"},
        "api_key.rotated",
    )


def channel_disable(tenant: Tenant, bob: Any) -> Case:
    channel = channel_create(tenant=tenant, name="Website")
    return Case(
        _url("chat:channel-enable", tenant, channel.pk),
        "Website",
        lambda: not Channel.objects.get(pk=channel.pk).enabled,
        {},
        "channel.disabled",
    )


def llm_provider_delete(tenant: Tenant, bob: Any) -> Case:
    with tenant_context(tenant):
        config = LlmProviderConfig.objects.create(
            name="Writer", endpoint_region=tenant.region_code, base_url="https://llm.example/v1", model="m"
        )
    return Case(
        _url("chat:llm-provider-delete", tenant, config.pk),
        "Writer",
        lambda: not LlmProviderConfig.objects.filter(pk=config.pk).exists(),
        {},
        "chat.llm_provider_deleted",
    )


def connection_delete(tenant: Tenant, bob: Any) -> Case:
    connection = servicenow(tenant, name="Tickets")
    return Case(
        _url("integrations:connection-delete", tenant, connection.pk),
        "Tickets",
        lambda: not Connection.objects.filter(pk=connection.pk).exists(),
        {},
        "connection.deleted",
    )


def connection_disable(tenant: Tenant, bob: Any) -> Case:
    connection = servicenow(tenant, name="Tickets")
    return Case(
        _url("integrations:connection-enable", tenant, connection.pk),
        "Tickets",
        lambda: not Connection.objects.get(pk=connection.pk).enabled,
        {},
        "connection.disabled",
    )


def connection_access_revoke(tenant: Tenant, bob: Any) -> Case:
    connection = servicenow(tenant, name="Tickets")
    connection_grant(connection=connection, tenant=tenant, user=bob)
    return Case(
        _url("integrations:connection-revoke", tenant, connection.pk),
        "bob on “Tickets”",
        lambda: not UserObjectPermission.objects.filter(user=bob, object_pk=str(connection.pk)).exists(),
        {"user": str(bob.pk)},
        "member.object_permission_revoked",
    )


def deadletter_discard(tenant: Tenant, bob: Any) -> Case:
    connection = servicenow(tenant)
    with tenant_context(tenant):
        letter = DeadLetter.objects.create(kind=DeadLetterKind.SYNC, connection=connection, stream="tickets")
    return Case(
        _url("integrations:deadletter-discard", tenant, letter.pk),
        f"Dead letter #{letter.pk}",
        lambda: DeadLetter.objects.get(pk=letter.pk).status == DeadLetterStatus.DISCARDED,
        {},
        "deadletter.discarded",
    )


def webhook_secret_rotate(tenant: Tenant, bob: Any) -> Case:
    connection = servicenow(tenant, name="Tickets")
    return Case(
        _url("integrations:sync-webhook-rotate", tenant, connection.pk),
        "Tickets",
        lambda: bool(Connection.objects.get(pk=connection.pk).secrets.get("webhook_secret")),
        {},
        "connection.webhook_secret_rotated",
    )


def member_remove(tenant: Tenant, bob: Any) -> Case:
    dora = UserFactory.create(username="dora")
    membership = membership_add(tenant=tenant, user=dora, role=Role.VIEWER)
    return Case(
        _url("tenants:member-remove", tenant, membership.pk),
        "dora",
        lambda: not Membership.objects.filter(pk=membership.pk).exists(),
        {},
        "member.removed",
    )


def invitation_revoke(tenant: Tenant, bob: Any) -> Case:
    invitation = Invitation.objects.create(
        tenant=tenant, email="new@example.com", role="viewer", expires_at=timezone.now() + timedelta(days=1)
    )
    return Case(
        _url("tenants:invitation-revoke", tenant, invitation.pk),
        "new@example.com",
        lambda: Invitation.objects.get(pk=invitation.pk).revoked_at is not None,
        {},
        "member.invitation_revoked",
    )


def api_token_revoke(tenant: Tenant, bob: Any) -> Case:
    owner = Membership.objects.filter(tenant=tenant, role=Role.ADMIN).first()
    assert owner is not None
    token = ManagementToken.objects.create(
        tenant=tenant, user=owner.user, name="provisioning", prefix="conf0001", token_hash="0" * 64
    )
    return Case(
        _url("tenants:api-token-revoke", tenant, token.pk),
        "provisioning",
        lambda: ManagementToken.objects.get(pk=token.pk).revoked_at is not None,
        {},
        "api_token.revoked",
    )


ACTIONS = [
    key_revoke,
    key_rotate,
    channel_disable,
    llm_provider_delete,
    connection_delete,
    connection_disable,
    connection_access_revoke,
    deadletter_discard,
    webhook_secret_rotate,
    member_remove,
    invitation_revoke,
    api_token_revoke,
]


@pytest.fixture(params=ACTIONS, ids=lambda make: make.__name__)
def case(request: pytest.FixtureRequest, tenant_a: Tenant, alice: Any, bob: Any) -> Case:
    made: Case = request.param(tenant_a, bob)
    return made


@pytest.fixture
def admin(alice: Any) -> Client:
    client = Client()
    login_verified(client, alice)
    return client


def done(case: Case, tenant: Tenant) -> bool:
    with tenant_context(tenant):
        return case.done()


def audited(case: Case, tenant: Tenant) -> int:
    with tenant_context(tenant):
        return AuditEvent.objects.filter(action=case.audit).count()


def test_get_shows_what_is_affected_and_a_confirming_post_button(
    case: Case, admin: Client, tenant_a: Tenant
) -> None:
    response = admin.get(case.url, case.fields)
    assert response.status_code == 200
    html = response.content.decode()
    assert case.label in html
    assert 'class="confirm-consequence"' in html
    form = re.search(r'<form method="post" action="([^"]*)" class="card confirm"', html)
    assert form is not None and form.group(1) == case.url  # posts back to the action, not elsewhere
    assert f'<input type="hidden" name="{CONFIRM_FIELD}" value="{CONFIRM_VALUE}">' in html
    for name, value in case.fields.items():
        assert f'<input type="hidden" name="{name}" value="{value}">' in html
    assert not done(case, tenant_a)


def test_post_without_the_confirmation_is_refused_and_changes_nothing(
    case: Case, admin: Client, tenant_a: Tenant
) -> None:
    response = admin.post(case.url, case.fields)
    assert response.status_code == 400
    assert "Nothing was changed" in response.content.decode()
    assert admin.post(case.url, {**case.fields, CONFIRM_FIELD: "no"}).status_code == 400
    assert not done(case, tenant_a)
    assert audited(case, tenant_a) == 0


def test_confirmed_post_acts_and_is_audited(case: Case, admin: Client, tenant_a: Tenant) -> None:
    response = admin.post(case.url, {**CONFIRMED, **case.fields})
    assert response.status_code in (200, 201, 302)
    assert done(case, tenant_a)
    assert audited(case, tenant_a) == 1


def test_another_tenants_member_gets_404(case: Case, tenant_a: Tenant, charlie: Any) -> None:
    client = Client()
    client.force_login(charlie)
    assert client.get(case.url, case.fields).status_code == 404
    assert client.post(case.url, {**CONFIRMED, **case.fields}).status_code == 404
    assert not done(case, tenant_a)


def test_a_viewer_gets_403(case: Case, tenant_a: Tenant, bob: Any) -> None:
    client = Client()
    client.force_login(bob)
    assert client.get(case.url, case.fields).status_code == 403
    assert client.post(case.url, {**CONFIRMED, **case.fields}).status_code == 403
    assert not done(case, tenant_a)


# Forms that post straight to a destructive URL would skip the confirmation page.
DESTRUCTIVE_URL = re.compile(r"\{% url '([\w:-]*(?:revoke|rotate|discard|delete|remove))'")
POST_FORM = re.compile(r"<form[^>]*method=\"post\"[^>]*>", re.IGNORECASE)
#: Destructive forms that confirm by other means, with the reason.
CONFIRMED_OTHERWISE = {
    "accounts:twofactor-remove": "the form asks for a current authenticator or backup code",
}


def test_no_template_posts_straight_to_a_destructive_action() -> None:
    offenders = []
    for path in [*ROOT.glob("templates/**/*.html"), *ROOT.glob("apps/*/templates/**/*.html")]:
        for form in POST_FORM.findall(path.read_text()):
            target = DESTRUCTIVE_URL.search(form)
            if target and target.group(1) not in CONFIRMED_OTHERWISE:
                offenders.append(f"{path.relative_to(ROOT)}: {form}")
    assert offenders == []


def test_enabling_needs_no_confirmation(admin: Client, tenant_a: Tenant) -> None:
    """Only the destructive direction asks: switching a connection or channel back on happens at once."""
    connection = servicenow(tenant_a)
    with tenant_context(tenant_a):
        Connection.objects.filter(pk=connection.pk).update(enabled=False)
    channel = channel_create(tenant=tenant_a, name="Website")
    Channel.objects.filter(pk=channel.pk).update(enabled=False)
    for url in (
        _url("integrations:connection-enable", tenant_a, connection.pk),
        _url("chat:channel-enable", tenant_a, channel.pk),
    ):
        assert admin.post(url, {"enabled": "on"}).status_code == 302
    with tenant_context(tenant_a):
        assert Connection.objects.get(pk=connection.pk).enabled
    assert Channel.objects.get(pk=channel.pk).enabled
