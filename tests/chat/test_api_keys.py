"""API-key lifecycle: shown once, only a hash stored, revoke, rotation overlap, expiry; services and API (the
generic resource checks from tests/fixtures/api.py, and the keys' own)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import connection, connections, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.chat import auth
from apps.chat.models import ApiKey, Channel
from apps.chat.services.channels import api_key_create, api_key_revoke, api_key_rotate
from apps.core.context import tenant_context
from apps.core.errors import Conflict, ValidationFailed
from apps.tenants.models import Tenant
from tests.fixtures.api import CreateTests, ListTests, RetrieveTests
from tests.fixtures.chat import IssuedKey, issue_key

pytestmark = pytest.mark.django_db

CONVERSATIONS = "/api/v1/conversations"


def _row_text(key_id: int) -> str:
    """Every column of the key's row, as the database holds it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM chat_apikey WHERE id = %s", [key_id])
        return json.dumps(cursor.fetchone(), default=str)


def _start(client: APIClient, plaintext: str) -> int:
    response = client.post(
        CONVERSATIONS,
        {"user_ref": "u-1"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {plaintext}",
    )
    return response.status_code


@pytest.fixture
def later(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Move the clock forward (everything that asks django.utils.timezone.now sees the future)."""
    real_now = timezone.now

    def move(delta: timedelta) -> None:
        monkeypatch.setattr(timezone, "now", lambda: real_now() + delta)

    return move


# --- services ------------------------------------------------------------------------------------------
def test_create_returns_the_plaintext_once_and_stores_only_a_hash(
    tenant_a: Tenant, alice: Any, channel_a: Channel
) -> None:
    key, plaintext = api_key_create(channel=channel_a, name="Widget", scopes=["chat"], actor=alice)
    scheme, prefix_part, secret = plaintext.split("_", 2)
    assert scheme == "hub"
    assert key.prefix == f"hub_{prefix_part}"
    assert len(secret) >= 40
    row = _row_text(key.pk)
    assert secret not in row
    assert plaintext not in row
    assert key.key_hash in row and len(key.key_hash) == 64
    stored = ApiKey.objects.get(pk=key.pk)
    assert stored.scopes == ["chat"]
    assert stored.created_by == alice
    assert stored.tenant_id == tenant_a.pk
    with tenant_context(tenant_a):
        events = list(AuditEvent.objects.filter(action__startswith="api_key."))
    assert [e.action for e in events] == ["api_key.created"]
    assert events[0].changes["prefix"] == key.prefix
    assert secret not in json.dumps(events[0].changes)


def test_create_refuses_bad_input(channel_a: Channel) -> None:
    with pytest.raises(ValidationFailed) as info:
        api_key_create(
            channel=channel_a, name=" ", scopes=["chat", "admin"], expires_at=timezone.now() - timedelta(1)
        )
    assert set(info.value.errors) == {"name", "scopes", "expires_at"}
    assert "admin" in info.value.errors["scopes"][0]
    with pytest.raises(ValidationFailed) as info:
        api_key_create(channel=channel_a, name="k", scopes=[])
    assert info.value.errors == {"scopes": ["Choose at least one scope."]}
    assert ApiKey.objects.count() == 0


def test_viewer_may_not_create_revoke_or_rotate(bob: Any, api_key_a: IssuedKey) -> None:
    with pytest.raises(PermissionDenied):
        api_key_create(channel=api_key_a.key.channel, name="k", actor=bob)
    with pytest.raises(PermissionDenied):
        api_key_revoke(key=api_key_a.key, actor=bob)
    with pytest.raises(PermissionDenied):
        api_key_rotate(key=api_key_a.key, actor=bob)
    assert ApiKey.objects.filter(revoked_at__isnull=True).count() == 1


def test_revoke_is_immediate_even_with_the_cache_warm(
    tenant_a: Tenant, alice: Any, api_key_a: IssuedKey, api_client: APIClient
) -> None:
    assert _start(api_client, api_key_a.plaintext) == 201  # the lookup is now cached
    api_key_revoke(key=api_key_a.key, actor=alice)
    api_key_revoke(key=api_key_a.key, actor=alice)  # idempotent
    response = api_client.post(CONVERSATIONS, {}, content_type="application/json", **api_key_a.headers)
    assert response.status_code == 401
    assert response.json() == {"detail": "This API key has been revoked."}
    with tenant_context(tenant_a):
        assert AuditEvent.objects.filter(action="api_key.revoked").count() == 1


def test_expired_key_is_refused_even_with_the_cache_warm(
    channel_a: Channel, api_client: APIClient, later: Any
) -> None:
    issued = issue_key(channel_a, expires_at=timezone.now() + timedelta(hours=1))
    assert _start(api_client, issued.plaintext) == 201
    later(timedelta(hours=2))
    response = api_client.post(CONVERSATIONS, {}, content_type="application/json", **issued.headers)
    assert response.status_code == 401
    assert response.json() == {"detail": "This API key has expired."}
    assert response["WWW-Authenticate"] == "Bearer"


def test_rotation_overlap_both_keys_work_until_the_old_expires(
    tenant_a: Tenant, alice: Any, api_key_a: IssuedKey, api_client: APIClient, later: Any
) -> None:
    old = api_key_a
    assert _start(api_client, old.plaintext) == 201  # warm
    new_key, new_plaintext = api_key_rotate(key=old.key, overlap=timedelta(hours=6), actor=alice)
    assert new_key.pk != old.key.pk
    assert (new_key.name, new_key.scopes, new_key.expires_at) == (old.key.name, old.key.scopes, None)
    old.key.refresh_from_db()
    assert old.key.expires_at is not None
    assert timedelta(hours=5, minutes=59) < old.key.expires_at - timezone.now() <= timedelta(hours=6)
    assert _start(api_client, old.plaintext) == 201
    assert _start(api_client, new_plaintext) == 201
    later(timedelta(hours=7))
    assert _start(api_client, old.plaintext) == 401
    assert _start(api_client, new_plaintext) == 201
    with tenant_context(tenant_a):
        event = AuditEvent.objects.get(action="api_key.rotated")
    assert event.changes["successor_prefix"] == new_key.prefix
    assert event.changes["overlap_hours"] == 6
    assert new_plaintext.split("_", 2)[2] not in json.dumps(event.changes)


def test_rotate_keeps_a_later_expiry_and_refuses_dead_keys(alice: Any, channel_a: Channel) -> None:
    far = timezone.now() + timedelta(days=90)
    issued = issue_key(channel_a, expires_at=far)
    new_key, _plaintext = api_key_rotate(key=issued.key, overlap=timedelta(hours=1), actor=alice)
    assert new_key.expires_at == far
    with pytest.raises(ValidationFailed):
        api_key_rotate(key=new_key, overlap=timedelta(days=31), actor=alice)
    api_key_revoke(key=new_key, actor=alice)
    with pytest.raises(Conflict):
        api_key_rotate(key=new_key, actor=alice)


def test_zero_overlap_stops_the_old_key_now(alice: Any, api_key_a: IssuedKey, api_client: APIClient) -> None:
    _new, new_plaintext = api_key_rotate(key=api_key_a.key, overlap=timedelta(0), actor=alice)
    assert _start(api_client, api_key_a.plaintext) == 401
    assert _start(api_client, new_plaintext) == 201


# --- revocation under concurrency: a lookup that read the row before a change must not cache it after ----
class HeldLookup:
    """A real key lookup in another thread (its own database connection), held after its database read and
    before its cache fill: the window in which a revoke or rotation commits."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, key_hash: str) -> None:
        self.loaded, self.release = threading.Event(), threading.Event()
        self.entry: Any = None
        self.errors: list[BaseException] = []
        real_load = auth._load

        def load_then_wait(hash_: str) -> Any:
            entry = real_load(hash_)
            if threading.current_thread() is self.thread:
                self.loaded.set()
                self.release.wait(10)
            return entry

        monkeypatch.setattr(auth, "_load", load_then_wait)
        self.thread = threading.Thread(target=self._run, args=(key_hash,))
        self.thread.start()
        assert self.loaded.wait(10), "the lookup never read the row"

    def _run(self, key_hash: str) -> None:
        try:
            self.entry = auth.lookup(key_hash)
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            connections.close_all()

    def finish(self) -> Any:
        self.release.set()
        self.thread.join(10)
        assert not self.thread.is_alive() and not self.errors, self.errors
        return self.entry


@pytest.mark.django_db(transaction=True)
def test_a_lookup_racing_a_revoke_cannot_bring_the_key_back(
    alice: Any, api_key_a: IssuedKey, api_client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldLookup(monkeypatch, api_key_a.key.key_hash)  # has read the row: not revoked
    api_key_revoke(key=api_key_a.key, actor=alice)  # commits and drops the cache
    stale = held.finish()  # ...then the lookup tries to cache what it read
    assert stale is not None and stale.revoked is False, "the lookup did read the row before the revoke"
    assert cache.get(auth._cache_key(api_key_a.key.key_hash)) is None, "its fill was refused"
    response = api_client.post(CONVERSATIONS, {}, content_type="application/json", **api_key_a.headers)
    assert response.status_code == 401
    assert response.json() == {"detail": "This API key has been revoked."}


@pytest.mark.django_db(transaction=True)
def test_a_lookup_between_the_drop_and_the_commit_cannot_bring_the_key_back(
    alice: Any, api_key_a: IssuedKey, api_client: APIClient
) -> None:
    """A revoke inside a caller's transaction drops the cache before it commits: a lookup in that window reads
    the old row and caches it; the drop on commit must undo that."""
    result: list[Any] = []

    def lookup_elsewhere() -> None:
        try:
            result.append(auth.lookup(api_key_a.key.key_hash))
        finally:
            connections.close_all()

    with transaction.atomic():
        api_key_revoke(key=api_key_a.key, actor=alice)
        thread = threading.Thread(target=lookup_elsewhere)
        thread.start()
        thread.join(10)
        assert result and result[0].revoked is False  # the uncommitted revoke is invisible to it
    response = api_client.post(CONVERSATIONS, {}, content_type="application/json", **api_key_a.headers)
    assert response.status_code == 401


@pytest.mark.django_db(transaction=True)
def test_a_lookup_racing_a_rotation_keeps_the_old_key_only_until_its_expiry(
    alice: Any, api_key_a: IssuedKey, api_client: APIClient, monkeypatch: pytest.MonkeyPatch, later: Any
) -> None:
    held = HeldLookup(monkeypatch, api_key_a.key.key_hash)  # has read the row: no expiry
    _new_key, new_plaintext = api_key_rotate(key=api_key_a.key, overlap=timedelta(hours=1), actor=alice)
    assert held.finish().expires_at is None
    assert _start(api_client, api_key_a.plaintext) == 201  # within the overlap
    later(timedelta(hours=2))
    assert _start(api_client, api_key_a.plaintext) == 401
    assert _start(api_client, new_plaintext) == 201


class TestApiKeysAPI(ListTests, RetrieveTests, CreateTests):
    """A channel's keys: listed and created under the channel, read, revoked and rotated by id."""

    list_view = "channels-api:channel-key-list"
    detail_view = "channels-api:api-key-detail"
    actions = ("channels-api:api-key-revoke", "channels-api:api-key-rotate")
    viewer_reads = False
    instance_data = {"name": "test key", "state": "active"}
    create_data = {"name": "Widget", "scopes": ["chat"]}
    created = {**create_data, "state": "active", "created_by": "alice"}

    @pytest.fixture
    def instance(self, api_key_a: IssuedKey) -> ApiKey:
        return api_key_a.key

    def list_kwargs(self, instance: Any, tenant: Tenant) -> dict[str, Any]:
        return {"slug": tenant.slug, "id": instance.channel_id}

    # --- management API ------------------------------------------------------------------------------------
    def test_api_key_shown_only_in_the_create_response(
        self, alice_api: APIClient, channel_a: Channel, api_client: APIClient
    ) -> None:
        url = f"/api/v1/tenants/tenant-a/channels/{channel_a.pk}/keys/"
        response = alice_api.post(
            url, {"name": "Widget", "scopes": ["chat"]}, content_type="application/json"
        )
        assert response.status_code == 201, response.json()
        body = response.json()
        plaintext = body["key"]
        assert plaintext.startswith(body["prefix"] + "_")
        assert body["state"] == "active"
        assert body["created_by"] == "alice"
        assert _start(api_client, plaintext) == 201
        listed = alice_api.get(url).json()
        assert listed["count"] == 1
        detail = alice_api.get(f"/api/v1/tenants/tenant-a/api-keys/{body['id']}/").json()
        for shown in (listed, detail):
            assert plaintext not in json.dumps(shown)
        assert detail["last_used_at"] is not None

    def test_api_revoke_and_rotate(
        self, alice_api: APIClient, api_key_a: IssuedKey, api_client: APIClient
    ) -> None:
        base = f"/api/v1/tenants/tenant-a/api-keys/{api_key_a.key.pk}"
        response = alice_api.post(f"{base}/rotate/", {"overlap_hours": 1}, content_type="application/json")
        assert response.status_code == 201, response.json()
        rotated = response.json()
        assert rotated["previous"]["state"] == "expiring"
        assert rotated["key"]["key"].startswith("hub_")
        assert _start(api_client, rotated["key"]["key"]) == 201
        revoked = alice_api.post(f"{base}/revoke/").json()
        assert revoked["state"] == "revoked"
        assert _start(api_client, api_key_a.plaintext) == 401
        response = alice_api.post(f"{base}/rotate/", {}, content_type="application/json")
        assert response.status_code == 409
        states = alice_api.get(
            f"/api/v1/tenants/tenant-a/channels/{api_key_a.key.channel_id}/keys/", {"state": "revoked"}
        ).json()
        assert [k["id"] for k in states["results"]] == [api_key_a.key.pk]

    def test_api_key_bad_input_is_400(
        self, alice_api: APIClient, api_key_a: IssuedKey, channel_a: Channel
    ) -> None:
        url = f"/api/v1/tenants/tenant-a/channels/{channel_a.pk}/keys/"
        response = alice_api.post(
            url, {"name": "", "scopes": ["root"], "secret": "x"}, content_type="application/json"
        )
        assert response.status_code == 400
        assert response.json()["secret"] == ["Unknown field."]
        response = alice_api.post(url, {"name": "k", "scopes": ["root"]}, content_type="application/json")
        assert response.status_code == 400
        assert "scopes" in response.json()
        response = alice_api.post(
            url, {"name": "k", "expires_at": "2001-01-01T00:00:00Z"}, content_type="application/json"
        )
        assert response.json() == {"expires_at": ["The expiry must be in the future."]}
        rotate = f"/api/v1/tenants/tenant-a/api-keys/{api_key_a.key.pk}/rotate/"
        response = alice_api.post(rotate, {"overlap_hours": -1}, content_type="application/json")
        assert response.status_code == 400
        assert "overlap_hours" in response.json()
