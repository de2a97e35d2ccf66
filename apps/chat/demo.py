"""The demo chat channel and API key of each demo tenant, created by `seed_demo`. Idempotent.

A key's plaintext exists only when it is issued, so re-seeding could not print a stored one back. The demo
keeps each tenant's demo key in `$HUB_HOME/demo_api_keys.json` (mode 0600, dev only: seed_demo refuses
production settings) and prints it again while its hash still matches an active key; otherwise (new
database, revoked or deleted key) it issues a fresh random key and revokes the previous demo key.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from django.conf import settings

from apps.chat.models import Action, ApiKey, ApiKeyScope, Channel, ChannelKind
from apps.chat.selectors.channels import active_keys_q
from apps.chat.services.channels import (
    api_key_create,
    api_key_hash,
    api_key_revoke,
    channel_create,
    channel_update,
)
from apps.core.context import tenant_context
from apps.integrations.models import Connection
from apps.knowledge.models import KnowledgeBase

logger = logging.getLogger(__name__)

DEMO_CHANNEL = "Website"
DEMO_KEY = "demo"
# Demo connections able to take tickets and leads, in order of preference (apps.integrations.demo names them).
TICKET_KINDS = ("servicenow", "hubspot", "salesforce")
LEAD_KINDS = ("salesforce", "hubspot")


def _state_file() -> Path:
    return Path(settings.HUB_HOME) / "demo_api_keys.json"


def _read_state() -> dict[str, str]:
    try:
        data = json.loads(_state_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write_state(state: dict[str, str]) -> None:
    path = _state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=2)


def _references(tenant: Any) -> dict[str, Any]:
    """The demo knowledge base and the demo connections for tickets and leads, where they exist."""
    with tenant_context(tenant):
        kb = KnowledgeBase.objects.order_by("created_at").values_list("pk", flat=True).first()
        by_kind = dict(
            Connection.objects.filter(enabled=True).order_by("-created_at").values_list("kind", "pk")
        )
    return {
        "knowledge_base_id": kb,
        "ticket_connection_id": next((by_kind[k] for k in TICKET_KINDS if k in by_kind), None),
        "lead_connection_id": next((by_kind[k] for k in LEAD_KINDS if k in by_kind), None),
    }


def _ensure_channel(tenant: Any) -> Channel:
    references = _references(tenant)
    channel = Channel.objects.filter(tenant=tenant, name=DEMO_CHANNEL).first()
    if channel is None:
        return channel_create(
            tenant=tenant,
            name=DEMO_CHANNEL,
            kind=ChannelKind.WEB,
            allowed_actions=Action.values,
            **references,
        )
    return channel_update(channel=channel, changes={"allowed_actions": Action.values, **references})


def _ensure_key(channel: Channel, known: str | None) -> str:
    """The demo key's plaintext: the known one while it still authenticates, else a newly issued one."""
    active = ApiKey.objects.filter(active_keys_q(), channel=channel, name=DEMO_KEY)
    if known and active.filter(key_hash=api_key_hash(known)).exists():
        return known
    for stale in active:
        api_key_revoke(key=stale)
    _key, plaintext = api_key_create(
        channel=channel, name=DEMO_KEY, scopes=[ApiKeyScope.CHAT, ApiKeyScope.TRANSCRIPTS]
    )
    return plaintext


def seed_demo_channels(tenants: list[Any]) -> dict[str, list[dict[str, str]]]:
    """Per tenant slug: the demo channel and its usable API key, `[{"channel": ..., "key": ...}]`."""
    state = _read_state()
    result: dict[str, list[dict[str, str]]] = {}
    for tenant in tenants:
        channel = _ensure_channel(tenant)
        state[tenant.slug] = _ensure_key(channel, state.get(tenant.slug))
        result[tenant.slug] = [{"channel": channel.name, "key": state[tenant.slug]}]
    _write_state(state)
    logger.info("demo chat channels ready", extra={"tenants": sorted(result)})
    return result
