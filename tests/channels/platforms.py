"""Shared helpers of the channel tests: a platform channel wired to its simulator, and signed requests as each
platform builds them, for the Django test client (the simulators' own `deliver_message` for a live server)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.test import Client

from apps.chat.models import Channel, InboundEvent, InboundStatus
from apps.chat.services.channel_inbound import channel_inbound_process
from apps.core.context import tenant_context
from apps.integrations.conf import connector_class
from apps.integrations.models import Connection
from apps.integrations.services.connections import connection_create
from apps.integrations.services.outbox import outbox_relay
from connectors.simulation import Simulator
from connectors.twilio.simulator import twilio_signature
from connectors.whatsapp.simulator import meta_json

KINDS = ("whatsapp", "slack", "teams", "sms")
USER_PHONE = "+4915112345678"
SLACK_USER, SLACK_CHANNEL = "U0SIMUSER1", "C0SIMCHAN1"

CONFIG_KEYS = {
    "whatsapp": ("app_secret", "verify_token", "access_token", "phone_number_id", "api_base"),
    "slack": ("signing_secret", "bot_token", "bot_user_id", "api_base"),
    "teams": ("app_id", "app_password", "openid_metadata_url", "token_url", "allowed_service_hosts"),
    "sms": ("account_sid", "auth_token", "from_number", "api_base"),
}


def platform_connection(tenant: Any, kind: str, sim: Simulator, *, name: str = "") -> Connection:
    """The platform account as a connection, secrets as credentials (what the console's form saves)."""
    described = sim.describe()
    fields = connector_class(kind).config_schema
    secret = {f.name for f in fields if f.secret}
    config = {k: described[k] for k in CONFIG_KEYS[kind]}
    return connection_create(
        tenant=tenant,
        kind=kind,
        name=name or f"{kind} account",
        endpoint_region=tenant.region_code,
        settings={k: v for k, v in config.items() if k not in secret},
        credentials={k: v for k, v in config.items() if k in secret},
    )


@dataclass
class Wired:
    """A platform channel of a tenant, its account and its simulator."""

    kind: str
    sim: Any
    channel: Channel
    connection: Connection
    tenant: Any
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return f"/hooks/channels/{self.channel.id}/"


def wire(tenant: Any, kind: str, sim: Simulator, *, name: str = "") -> Wired:
    with tenant_context(tenant):
        connection = platform_connection(tenant, kind, sim, name=name)
    channel = Channel.objects.create(
        tenant=tenant,
        name=name or f"{kind} channel",
        kind=kind,
        default_locale="en",
        platform_connection_id=connection.pk,
    )
    return Wired(kind=kind, sim=sim, channel=channel, connection=connection, tenant=tenant)


@dataclass
class Signed:
    body: bytes
    headers: dict[str, str]
    content_type: str
    platform_message_id: str


def meta(headers: dict[str, str]) -> dict[str, Any]:
    return {
        "HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items() if k.lower() != "content-type"
    }


def post(client: Client, wired: Wired, signed: Signed, *, path: str | None = None) -> Any:
    return client.post(
        path or wired.path, data=signed.body, content_type=signed.content_type, **meta(signed.headers)
    )


def message(wired: Wired, text: str = "Hallo", *, message_id: str | None = None, **options: Any) -> Signed:
    """A user's text message to the channel, signed exactly as the platform signs it."""
    sim, kind = wired.sim, wired.kind
    if kind == "whatsapp":
        sim.open_window(USER_PHONE)
        payload = sim.message_payload(USER_PHONE, text, message_id=message_id, **options)
        body = meta_json(payload)
        mid = payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
        return Signed(body, sim.sign(body), "application/json", mid)
    if kind == "slack":
        event = sim.message_event(
            user=SLACK_USER, channel=SLACK_CHANNEL, text=text, event_id=message_id, **options
        )
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
        return Signed(body, sim.sign(body), "application/json", event["event_id"])
    if kind == "teams":
        activity = sim.message_activity(text, **options)
        if message_id:
            activity["id"] = message_id
        token = sim.token_for(activity["serviceUrl"])
        body = json.dumps(activity).encode()
        return Signed(body, {"Authorization": f"Bearer {token}"}, "application/json", activity["id"])
    params = sim.message_params(USER_PHONE, text, message_sid=message_id, **options)
    url = "http://testserver" + wired.path
    headers = {"X-Twilio-Signature": twilio_signature(sim.auth_token, url, params)}
    return Signed(
        urlencode(params).encode(), headers, "application/x-www-form-urlencoded", params["MessageSid"]
    )


def tampered(signed: Signed) -> Signed:
    """The same request with one byte of the body changed (the signature no longer matches)."""
    body = bytearray(signed.body)
    index = body.find(b"Hallo") if b"Hallo" in body else len(body) // 2
    body[index] = ord("J")
    return Signed(bytes(body), signed.headers, signed.content_type, signed.platform_message_id)


def sent_texts(wired: Wired) -> list[str]:
    """The texts the platform accepted from the bot, oldest first."""
    return [sent_text(wired.kind, m) for m in wired.sim.sent()]


def sent_text(kind: str, message: dict[str, Any]) -> str:
    if kind == "sms":
        return str(message.get("body") or message.get("Body") or "")
    return str(message.get("text") or "")


def wait_for(predicate: Any, *, seconds: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def process_all(wired: Wired) -> list[str]:
    """Run the worker's service on each of the channel's queued platform messages, in this process."""
    with tenant_context(wired.tenant):
        ids = list(
            InboundEvent.objects.filter(channel_id=wired.channel.id, status=InboundStatus.QUEUED).values_list(
                "pk", flat=True
            )
        )
        return [channel_inbound_process(event_id=pk) for pk in ids]


def relay(wired: Wired) -> int:
    """One outbox relay pass over the channel's platform account (replies to the simulator)."""
    with tenant_context(wired.tenant):
        return outbox_relay(connection_id=wired.connection.pk)
