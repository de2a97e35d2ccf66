"""The demo channel and key: `seed_demo --json` prints a usable key per tenant, and re-seeding keeps it."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from apps.chat.demo import seed_demo_channels
from apps.chat.models import Action, ApiKey, Channel
from apps.chat.services.channels import api_key_hash, api_key_revoke
from apps.tenants.models import Tenant

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def demo_home(settings: Any, tmp_path: Path) -> Path:
    """Keep the demo key file of these tests out of the developer's HUB_HOME."""
    settings.HUB_HOME = tmp_path
    return tmp_path


def _works(key: str) -> bool:
    client = APIClient()
    response = client.post(
        "/api/v1/conversations", {"user_ref": "demo"}, format="json", HTTP_AUTHORIZATION=f"Bearer {key}"
    )
    return response.status_code == 201


def test_reseeding_keeps_the_key_and_replaces_a_revoked_one(
    tenant_a: Tenant, tenant_b: Tenant, demo_home: Path
) -> None:
    first = seed_demo_channels([tenant_a, tenant_b])
    key_a = first["tenant-a"][0]["key"]
    assert first["tenant-a"][0]["channel"] == "Website"
    assert _works(key_a) and _works(first["tenant-b"][0]["key"])
    channel = Channel.objects.get(tenant=tenant_a, name="Website")
    assert channel.allowed_actions == Action.values
    state_file = demo_home / "demo_api_keys.json"
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    assert seed_demo_channels([tenant_a, tenant_b]) == first  # idempotent: same channel, same key
    assert ApiKey.objects.filter(channel=channel).count() == 1
    api_key_revoke(key=ApiKey.objects.get(key_hash=api_key_hash(key_a)))
    renewed = seed_demo_channels([tenant_a])["tenant-a"][0]["key"]
    assert renewed != key_a
    assert _works(renewed) and not _works(key_a)
    state_file.unlink()  # state lost (another machine): a fresh key, the unknown old one revoked
    fresh = seed_demo_channels([tenant_a])["tenant-a"][0]["key"]
    assert fresh != renewed and _works(fresh) and not _works(renewed)


def test_seed_demo_json_lists_api_keys_per_tenant(regions: Any) -> None:
    out = io.StringIO()
    call_command("seed_demo", "--json", stdout=out)
    demo = json.loads(out.getvalue())
    for tenant in demo["tenants"]:
        assert [k["channel"] for k in tenant["api_keys"]] == ["Website"]
        assert _works(tenant["api_keys"][0]["key"])
