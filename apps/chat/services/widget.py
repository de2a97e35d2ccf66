"""The embeddable web widget: public widget keys, conversation tokens, browser locales and message push.

A site embeds a channel's public `widget_key` (never a secret API key); it only lets a browser start a
conversation. Each conversation then gets its own token, signed with django.core.signing and expiring, that
the widget keeps in sessionStorage (a cookie cannot be httpOnly across sites): it names one conversation of
one channel of one tenant, so a token of another tenant, channel or conversation finds nothing (404).

Push: every message a widget should see later (an assistant's reply, an agent's answer of issue 18) is
published on a Redis channel per conversation; an open stream (apps/chat/api/widget.py) relays it. Nothing is
kept in the process: any web process can serve any stream.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.core import signing
from django.utils.translation import gettext as _

from apps.chat.models import Channel, ChannelKind, Conversation, Message, Role
from apps.chat.principal import ChannelPrincipal, channel_principal, tenant_locales
from apps.chat.services import conversations as chat
from apps.core.context import TenantRef
from apps.core.errors import NotFound
from apps.integrations.resilience import redis_client
from apps.knowledge.selectors import normalize_locale

logger = logging.getLogger(__name__)

TOKEN_SALT = "chat.widget.conversation"  # noqa: S105 - a signing namespace, not a secret
_MAX_WIDGET_KEY = 64


class WidgetKeyInvalid(Exception):
    """No enabled web channel with this id has this widget key (unknown, rotated, or another channel's)."""


class WidgetForbidden(Exception):
    """The channel or its tenant is disabled."""


class WidgetTokenInvalid(NotFound):
    """The conversation token is forged, expired, or names another tenant's, channel's or conversation."""


@dataclass(frozen=True, slots=True)
class WidgetChannel:
    """A web channel found by its widget key, as the chat pipeline's principal plus what the widget needs."""

    principal: ChannelPrincipal
    allowed_origins: tuple[str, ...]
    locales: tuple[str, ...]  # the tenant's enabled locales (empty: any)


def _origins(channel: Channel) -> tuple[str, ...]:
    return tuple(str(o).rstrip("/") for o in (channel.allowed_origins or ()) if o)


def channel_origins(*, channel_id: Any) -> tuple[str, ...]:
    """The origins a web channel may be embedded on (CORS preflight: no key is sent then)."""
    try:
        pk = uuid.UUID(str(channel_id))
    except ValueError:
        return ()
    row = (
        Channel.objects.filter(pk=pk, kind=ChannelKind.WEB, enabled=True)
        .values_list("allowed_origins", flat=True)
        .first()
    )
    return tuple(str(o).rstrip("/") for o in (row or ()) if o)


def widget_channel(*, channel_id: Any, widget_key: str) -> WidgetChannel:
    """The web channel `channel_id` if `widget_key` is its current key; a principal like an API key's."""
    if not widget_key or len(widget_key) > _MAX_WIDGET_KEY:
        raise WidgetKeyInvalid
    try:
        pk = uuid.UUID(str(channel_id))
    except ValueError:
        raise WidgetKeyInvalid from None
    channel = (
        Channel.objects.select_related("tenant__home_region")
        .filter(pk=pk, kind=ChannelKind.WEB, widget_key=widget_key)
        .first()
    )
    if channel is None:
        raise WidgetKeyInvalid
    tenant = channel.tenant
    if not tenant.is_active:
        raise WidgetForbidden(_("This widget's tenant is suspended."))
    if not channel.enabled:
        raise WidgetForbidden(_("This widget's channel is disabled."))
    ref = TenantRef(id=tenant.id, slug=tenant.slug, region=tenant.region_code)
    # No API key: key_id 0 and the prefix "widget" (the audit label); the widget may only chat.
    principal = channel_principal(channel, ref, key_prefix="widget", locales=tenant_locales(tenant))
    return WidgetChannel(
        principal=principal,
        allowed_origins=_origins(channel),
        locales=tuple(tenant.enabled_locales or ()),
    )


def locale_choose(*, browser: Sequence[str], enabled: Sequence[str], default: str) -> str:
    """The conversation locale for the browser's languages (most preferred first): an enabled locale that
    matches exactly, else one of the same language, else the channel's default. No enabled list: any."""
    wanted = [normalize_locale(b) for b in browser if b and len(b) <= 35][:10]
    if not enabled:
        return wanted[0] if wanted else normalize_locale(default)
    normalized = [normalize_locale(e) for e in enabled]
    for want in wanted:
        if want in normalized:
            return want
        lang = want.split("-", 1)[0]
        for candidate in normalized:
            if candidate.split("-", 1)[0] == lang:
                return candidate
    return normalize_locale(default)


# --- conversation tokens ----------------------------------------------------------------------------------
def token_issue(*, principal: ChannelPrincipal, conversation_id: Any, visitor: str) -> str:
    """A token for one conversation of the widget's channel, expiring after HUB_WIDGET_TOKEN_MAX_AGE."""
    payload = {"t": str(principal.tenant.id), "ch": str(principal.channel.id), "c": str(conversation_id)}
    payload["v"] = visitor
    return signing.dumps(payload, salt=TOKEN_SALT, compress=False)


@dataclass(frozen=True, slots=True)
class WidgetToken:
    conversation_id: str
    visitor: str


def token_check(*, principal: ChannelPrincipal, token: str, conversation_id: Any) -> WidgetToken:
    """The token's conversation if it is valid, unexpired and names this tenant, channel and conversation."""
    if not token or len(token) > 1024:
        raise WidgetTokenInvalid("conversation not found")
    try:
        data = signing.loads(token, salt=TOKEN_SALT, max_age=settings.HUB_WIDGET_TOKEN_MAX_AGE)
    except signing.BadSignature:  # SignatureExpired is one
        raise WidgetTokenInvalid("conversation not found") from None
    if not isinstance(data, dict) or (
        data.get("t") != str(principal.tenant.id)
        or data.get("ch") != str(principal.channel.id)
        or data.get("c") != str(conversation_id)
    ):
        raise WidgetTokenInvalid("conversation not found")
    return WidgetToken(conversation_id=str(conversation_id), visitor=str(data.get("v", "")))


@dataclass(frozen=True, slots=True)
class Started:
    conversation: Conversation
    token: str
    visitor: str


def widget_conversation_start(
    *,
    widget: WidgetChannel,
    browser_locales: Sequence[str],
    user_id: str = "",
    user_hash: str = "",
    identity_token: str = "",
) -> Started:
    """Start a conversation for an anonymous visitor, in the tenant locale closest to the browser's.

    A proof of the user's identity (user_hash or identity_token, with user_id) is checked by the chat API's
    conversation start, as for any channel.
    """
    principal = widget.principal
    locale = locale_choose(
        browser=browser_locales, enabled=widget.locales, default=principal.channel.default_locale
    )
    visitor = uuid.uuid4().hex
    # The site's proof of a signed-in user goes to the chat API's own start (the identity service checks it:
    # verified, or 400 when it does not hold); without a proof the visitor is anonymous and any user id sent
    # is not trusted. Until issue 17's identity slice is merged, conversation_start takes no proof (ignored).
    proof = {
        name: value for name, value in (("user_hash", user_hash), ("identity_token", identity_token)) if value
    }
    if proof and "user_hash" not in inspect.signature(chat.conversation_start).parameters:
        proof = {}
    conversation = chat.conversation_start(
        principal=principal, user_ref=user_id if proof else "", locale=locale, metadata={}, **proof
    )
    token = token_issue(principal=principal, conversation_id=conversation.pk, visitor=visitor)
    return Started(conversation=conversation, token=token, visitor=visitor)


# --- push -------------------------------------------------------------------------------------------------
def _channel_name(conversation_id: Any) -> str:
    return f"{settings.CACHES['default']['KEY_PREFIX']}:widget:conversation:{conversation_id}"


def message_event(message: Message) -> dict[str, Any]:
    """What a widget sees of a message (stream events and `?after=` pages alike)."""
    return {
        "id": message.id,
        "role": message.role,
        "text": message.text,
        "citations": message.citations or [],
        "author": message.author,  # an agent's name as the ticketing system gives it (issue 18), else ""
        "created_at": message.created_at.isoformat() if message.created_at else None,
    }


def message_publish(*, conversation_id: Any, event: dict[str, Any]) -> bool:
    """Publish a conversation's new message to its open widget streams. Best effort: a widget that misses it
    (Redis down, no stream open) fetches it with `?after=` or on reconnect (Last-Event-ID)."""
    try:
        redis_client().publish(_channel_name(conversation_id), json.dumps(event, default=str))
    except (redis.ConnectionError, redis.TimeoutError):
        logger.warning("widget push unavailable", extra={"conversation_id": str(conversation_id)})
        return False
    return True


def message_add_and_publish(*, conversation: Conversation, text: str, role: str = Role.ASSISTANT) -> Message:
    """Store a later message of the conversation (an agent's answer) and push it to the open widget."""
    message = Message.objects.create(conversation=conversation, role=role, text=text)
    message_publish(conversation_id=conversation.pk, event=message_event(message))
    return message


class StreamLimit(Exception):
    """This process already serves HUB_WIDGET_STREAMS_PER_PROCESS streams."""


def _process_key() -> str:
    prefix = settings.CACHES["default"]["KEY_PREFIX"]
    return f"{prefix}:widget:streams:{socket.gethostname()}:{os.getpid()}"


@contextmanager
def stream_slot() -> Iterator[None]:
    """Hold one of this process's stream slots (a Redis sorted set: slots of a crashed stream expire)."""
    key, member, now = _process_key(), uuid.uuid4().hex, time.time()
    client = redis_client()
    lifetime = settings.HUB_WIDGET_STREAM_SECONDS + 30
    pipe = client.pipeline()
    pipe.zremrangebyscore(key, 0, now - lifetime)
    pipe.zadd(key, {member: now})
    pipe.zcard(key)
    pipe.expire(key, lifetime)
    count = pipe.execute()[2]
    if count > settings.HUB_WIDGET_STREAMS_PER_PROCESS:
        client.zrem(key, member)
        raise StreamLimit
    try:
        yield
    finally:
        with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
            client.zrem(key, member)  # else the slot expires by itself


def stream_subscribe(*, conversation_id: Any) -> Any:
    """A subscribed Redis pub/sub of the conversation's channel (the caller closes it)."""
    pubsub = redis_client().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(_channel_name(conversation_id))
    return pubsub
