"""`user_ref_hash` is keyed with HUB_USER_REF_KEYS, not SECRET_KEY: rotating either keeps erasure working.

Conversations are started through the chat API (real database); the erasure is the policies service an
operator runs. Rotating the user reference key (new key first, old one kept) must still find the person's
older conversations; hashes stored by the old code (SECRET_KEY-keyed) must still be found, and re-keyed by
`rehash_user_refs`; changing SECRET_KEY must not change any hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client, override_settings

from apps.chat.models import Conversation
from apps.chat.retention import user_ref_hash
from apps.core.context import tenant_context
from apps.policies.services import erase_subject
from apps.security.keys import user_ref_keys
from apps.tenants.models import Tenant
from tests.fixtures.chat import IssuedKey
from tests.fixtures.processes import PRODUCTION_ENV, manage

pytestmark = pytest.mark.django_db

OLD = "ref-1:" + base64.b64encode(b"o" * 32).decode()
NEW = "ref-2:" + base64.b64encode(b"n" * 32).decode()
EMAIL = "Jane.Doe@Example.com"


@pytest.fixture(autouse=True)
def _fresh_keys() -> Iterator[None]:
    user_ref_keys.cache_clear()
    yield
    user_ref_keys.cache_clear()


def _keys(value: str) -> Any:
    """Settings as a restarted process sees them (the keys are read once per process)."""
    user_ref_keys.cache_clear()
    return override_settings(HUB_USER_REF_KEYS=value)


def _start(api_key: IssuedKey, user_ref: str) -> str:
    response = Client().post(
        "/api/v1/conversations", {"user_ref": user_ref}, content_type="application/json", **api_key.headers
    )
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def _stored_hashes(tenant: Tenant) -> dict[str, str]:
    with tenant_context(tenant):
        return {str(pk): h for pk, h in Conversation.objects.values_list("pk", "user_ref_hash")}


def _erase(tenant: Tenant, operator: Any) -> int:
    return erase_subject(tenant=tenant, email=EMAIL.lower(), actor=operator).counts["transcripts"]


def test_after_rotating_the_key_erasure_still_finds_conversations_hashed_with_the_old_key(
    api_key_a: IssuedKey, tenant_a: Tenant, operator: Any
) -> None:
    with _keys(OLD):
        before = _start(api_key_a, EMAIL)
    with _keys(f"{NEW},{OLD}"):  # rotated: the new key first, the old one kept for lookups
        after = _start(api_key_a, EMAIL)
        other = _start(api_key_a, "someone.else@example.com")
        hashes = _stored_hashes(tenant_a)
        assert hashes[before] != hashes[after]  # the new row is under the new key
        assert _erase(tenant_a, operator) == 2
    assert set(_stored_hashes(tenant_a)) == {other}


def test_rehash_lets_the_previous_key_go(api_key_a: IssuedKey, tenant_a: Tenant, operator: Any) -> None:
    with _keys(OLD):
        first = _start(api_key_a, EMAIL)
    with _keys(f"{NEW},{OLD}"):
        out = StringIO()
        call_command("rehash_user_refs", stdout=out)
        assert "tenant-a: 1 user reference hash(es) rewritten" in out.getvalue()
    with _keys(NEW):  # the old key is gone from the setting
        assert _stored_hashes(tenant_a)[first] == user_ref_hash(tenant_id=tenant_a.id, user_ref=EMAIL)
        assert _erase(tenant_a, operator) == 1


def test_changing_secret_key_no_longer_changes_the_hash_and_legacy_hashes_still_erase(
    api_key_a: IssuedKey, tenant_a: Tenant, operator: Any, settings: Any
) -> None:
    kept = _start(api_key_a, "+49 170 1234567")
    stored = _stored_hashes(tenant_a)[kept]
    with override_settings(SECRET_KEY="a-completely-different-secret-key-" + "x" * 40):
        assert user_ref_hash(tenant_id=tenant_a.id, user_ref="+49 170 1234567") == stored
        report = erase_subject(tenant=tenant_a, phone="+491701234567", actor=operator)
        assert report.counts["transcripts"] == 1

    # A conversation stored by the old code: hashed with SECRET_KEY (what the database holds after upgrading).
    legacy = _start(api_key_a, EMAIL)
    old_digest = hmac.new(
        settings.SECRET_KEY.encode(), f"{tenant_a.id}:{EMAIL.casefold()}".encode(), hashlib.sha256
    ).hexdigest()
    with tenant_context(tenant_a):
        Conversation.objects.filter(pk=legacy).update(user_ref_hash=old_digest)
        again = _start(api_key_a, EMAIL)
    assert _erase(tenant_a, operator) == 2  # the legacy row is found too
    assert legacy not in _stored_hashes(tenant_a) and again not in _stored_hashes(tenant_a)


def test_production_requires_the_user_reference_key() -> None:
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "HUB_USER_REF_KEYS"}
    missing = manage(env, "check")
    assert missing.returncode != 0 and "HUB_USER_REF_KEYS: is required in production" in missing.stderr
    malformed = manage({**PRODUCTION_ENV, "HUB_USER_REF_KEYS": "k1:tooshort"}, "check")
    assert malformed.returncode != 0 and "Setting HUB_USER_REF_KEYS: each entry must be" in malformed.stderr
