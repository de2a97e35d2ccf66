"""Schemathesis against the live OpenAPI schema: every /api/v1/ operation, bounded, in process (WSGI).

The schema is the one drf-spectacular serves at /api/schema/; the app is the project's WSGI application, so
requests go through the whole middleware stack on the test databases. Each operation gets a small,
derandomized set of valid (positive) and invalid (negative) examples, and every response is checked: no
5xx, a documented status code, the documented content type, headers and body schema, no answer without
credentials. Two default checks are left out because they judge the API's deliberate rules as faults:
`positive_data_acceptance` (a schema-valid body may still be refused: an unknown `message_id`, a whitespace
text that trims to nothing) and `negative_data_rejection` (413 for an oversized body is not in its list).

Chat operations send tenant A's channel key and one of its conversations; management operations send alice's
management token with tenant A's slug, and the ids of objects that exist (a channel, a second key, bob's
membership) where the path has one, so the fuzzing reaches the views' real work rather than 404s.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from apps.chat.models import Channel
from apps.tenants.models import Membership, Tenant
from apps.tenants.services import management_token_create
from tests.fixtures.chat import IssuedKey, issue_key

pytestmark = pytest.mark.django_db

MAX_EXAMPLES = 10  # per operation and generation mode: ~31 operations x 2 modes stay well under a minute
EXCLUDED_CHECKS = [positive_data_acceptance, negative_data_rejection]


@pytest.fixture
def conversations_a(api_key_a: IssuedKey, demo_kb_a: None) -> list[str]:
    """Two conversations of tenant A's channel started through the API: one for handoffs, one for the rest."""
    ids = []
    for _ in range(2):
        created = Client().post(
            "/api/v1/conversations", {"locale": "en"}, content_type="application/json", **api_key_a.headers
        )
        assert created.status_code == 201, created.content
        ids.append(str(created.json()["id"]))
    return ids


@pytest.fixture
def wsgi_app(conversations_a: list[str]) -> Iterator[Any]:
    """The project's WSGI app, keeping the test's database connection (as Django's test client does).

    Requested after every fixture that uses Django's test client (it reconnects the signals after each call).
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        with warnings.catch_warnings():  # whitenoise warns when collectstatic has not run (tests need none)
            warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)
            app = get_wsgi_application()
        yield app
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def _fixed_parameters(
    path: str,
    *,
    tenant: Tenant,
    channel: Channel,
    spare_key: IssuedKey,
    member: Membership,
    conversation: str,
) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if "{slug}" in path:
        params["slug"] = tenant.slug
    if "{conversation_id}" in path:
        params["conversation_id"] = conversation
    if "{id}" in path:
        if "/channels/{id}" in path:
            params["id"] = str(channel.pk)
        elif "/api-keys/{id}" in path:
            params["id"] = spare_key.key.pk
        elif "/members/{id}" in path:
            params["id"] = member.pk
    return params


def _fuzz(operation: Any, mode: GenerationMode, headers: dict[str, str], fixed: dict[str, Any]) -> int:
    """Call `operation` with up to MAX_EXAMPLES generated cases and check each response; return the count."""
    calls = 0
    # JSON bodies only: the chat API parses nothing else, and the management API's clients send JSON (a
    # malformed multipart body gets DRF's 415 there, which its operations do not document yet).
    media_type = "application/json" if operation.body else None
    strategy = operation.as_strategy(
        generation_mode=mode, path_parameters=fixed or None, media_type=media_type
    )

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: Any) -> None:
        nonlocal calls
        calls += 1
        case.call_and_validate(headers=headers, excluded_checks=EXCLUDED_CHECKS)

    check()
    return calls


def test_every_api_operation_conforms_to_the_schema(
    tenant_a: Tenant,
    alice: Any,
    bob: Any,
    channel_a: Channel,
    api_key_a: IssuedKey,
    conversations_a: list[str],
    wsgi_app: Any,
    settings: Any,
) -> None:
    settings.HUB_WIDGET_STREAM_SECONDS = 1  # the event stream (issue 18) ends after a second, not 55
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", wsgi_app)
    _token, management = management_token_create(tenant=tenant_a, user=alice, name="fuzz", expires_at=None)
    spare_key = issue_key(channel_a, name="fuzz spare")
    member = Membership.objects.get(tenant=tenant_a, user=bob)

    results = list(schema.get_all_operations())
    assert all(isinstance(result, Ok) for result in results), [r for r in results if not isinstance(r, Ok)]
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    paths = {op.path for op in operations}
    assert "/api/v1/conversations/{conversation_id}/messages" in paths
    assert "/api/v1/tenants/{slug}/channels/" in paths
    failures: list[str] = []
    called: dict[str, int] = {}
    for operation in operations:
        chat = operation.path.startswith("/api/v1/conversations")
        token = api_key_a.plaintext if chat else management
        headers = {"Authorization": f"Bearer {token}"}
        fixed = _fixed_parameters(
            operation.path,
            tenant=tenant_a,
            channel=channel_a,
            spare_key=spare_key,
            member=member,
            # A handoff turns every later message into "a colleague will reply": keep it apart.
            conversation=conversations_a[1 if operation.path.endswith("/handoff") else 0],
        )
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                called[f"{operation.label} {mode.value}"] = _fuzz(operation, mode, headers, fixed)
            except (Exception, BaseExceptionGroup) as exc:  # every operation's failures, then fail once
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
    assert len(called) == 2 * len(operations)
    assert all(called.values()), called


def test_nul_characters_in_metadata_are_refused_not_a_server_error(
    api_key_a: IssuedKey, tenant_a: Tenant
) -> None:
    """Found by the fuzzing above: PostgreSQL's jsonb cannot hold NUL, so it must be a field error."""
    from apps.chat.models import Conversation
    from apps.core.context import tenant_context

    client = Client()
    for metadata in ({"page": "a\x00b"}, {"k\x00": 1}, {"nested": [{"x": ["\x00"]}]}):
        response = client.post(
            "/api/v1/conversations",
            {"metadata": metadata},
            content_type="application/json",
            **api_key_a.headers,
        )
        assert response.status_code == 400, response.content
        assert response.json()["metadata"] == ["Metadata must not contain NUL characters."]
    ok = client.post(
        "/api/v1/conversations",
        {"metadata": {"page": "/help?q=\\u0000"}},
        content_type="application/json",
        **api_key_a.headers,
    )
    assert ok.status_code == 201, ok.content
    with tenant_context(tenant_a):
        assert list(Conversation.objects.values_list("metadata", flat=True)) == [{"page": "/help?q=\\u0000"}]
