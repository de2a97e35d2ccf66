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


# --- issue 17: one channel of each kind, wired to the running platform simulators ----------------------
#: Demo channel name -> (channel kind, simulator name in connectors/simulators.py).
PLATFORM_DEMO = {
    "WhatsApp": (ChannelKind.WHATSAPP, "whatsapp"),
    "Slack": (ChannelKind.SLACK, "slack"),
    "Teams": (ChannelKind.TEAMS, "teams"),
    "SMS": (ChannelKind.SMS, "twilio"),
}
#: The sites allowed to embed the demo widget: the dev server itself (the console's live preview).
DEMO_ORIGINS = ["http://localhost:8000", "http://127.0.0.1:8000"]


def platform_demo_config(kind: str, description: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(settings, credentials) of the `kind` platform account that talks to the simulator described."""
    from apps.integrations.conf import connector_class

    settings_: dict[str, Any] = {}
    credentials: dict[str, str] = {}
    for field in connector_class(kind).config_schema:
        if field.name in description and description[field.name] not in (None, ""):
            if field.secret:
                credentials[field.name] = str(description[field.name])
            else:
                settings_[field.name] = description[field.name]
    return settings_, credentials


def _register_webhook(description: dict[str, Any], url: str) -> bool:
    """Point the simulator's webhook at the channel (its /__admin/webhook endpoint); False when it fails."""
    import ssl
    import urllib.request

    base = str(description.get("base_url") or "").rstrip("/")
    if not base:
        return False
    context = ssl.create_default_context(cafile=description.get("ca_bundle") or None)
    request = urllib.request.Request(  # noqa: S310 - the local simulator's https admin endpoint
        f"{base}/__admin/webhook",
        data=json.dumps({"url": url, "verify": False}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5, context=context):  # noqa: S310
            return True
    except OSError as exc:
        logger.warning("demo: could not register the simulator webhook: %s", type(exc).__name__)
        return False


def seed_demo_platform_channels(
    tenants: list[Any], *, simulators: dict[str, dict[str, Any]], register_webhooks: bool = True
) -> dict[str, list[dict[str, str]]]:
    """Per tenant: the web widget (key, origins) and a WhatsApp, Slack, Teams and SMS channel whose platform
    accounts are the running simulators (`simulators`: name -> describe()). Idempotent. The first tenant's
    channels get the simulators' webhooks, so a message triggered on a simulator reaches the hub."""
    from apps.chat.services.channel_setup import (
        channel_create_with_platform,
        channel_platform_set,
        channel_setup_update,
        channel_webhook_url,
        channel_widget_key_rotate,
    )

    result: dict[str, list[dict[str, str]]] = {}
    for index, tenant in enumerate(tenants):
        rows: list[dict[str, str]] = []
        web = Channel.objects.filter(tenant=tenant, name=DEMO_CHANNEL).first()
        if web is not None and web.kind == ChannelKind.WEB:
            if not web.widget_key:
                channel_widget_key_rotate(channel=web)
            channel_setup_update(channel=web, allowed_origins=DEMO_ORIGINS)
            rows.append({"channel": web.name, "kind": web.kind, "widget_key": web.widget_key or ""})
        for name, (kind, simulator) in PLATFORM_DEMO.items():
            description = simulators.get(simulator)
            if description is None:
                logger.warning("demo: simulator %s is not running; channel %s skipped", simulator, name)
                continue
            settings_, credentials = platform_demo_config(kind, description)
            platform = {"settings": settings_, "credentials": credentials}
            channel = Channel.objects.filter(tenant=tenant, name=name).first()
            if channel is None:
                channel = channel_create_with_platform(
                    tenant=tenant,
                    channel_data={"name": name, "kind": kind, "allowed_actions": Action.values},
                    platform=platform,
                )
            elif channel.kind == kind:
                channel_platform_set(channel=channel, settings_=settings_, credentials=credentials)
            else:
                continue  # a channel of that name the demo did not make: leave it alone
            webhook = channel_webhook_url(channel)
            if register_webhooks and index == 0:
                _register_webhook(description, webhook)
            rows.append({"channel": name, "kind": kind, "webhook_url": webhook})
        result[tenant.slug] = rows
    return result
