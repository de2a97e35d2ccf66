"""Messaging platforms (WhatsApp, Slack, Teams, SMS): each channel kind's protocol, pure like the connectors.

An adapter, one small module per platform (connectors/<platform>/channel.py), does three things exactly as the
platform does them, and nothing else:

1. `verify` an inbound webhook (signature over the raw body, timestamp window, token claims) — or raise
   `SignatureInvalid`; `handshake` answers a platform's subscription check (WhatsApp's verify token, Slack's
   `url_verification`) before anything else;
2. `parse` the platform's event into `Inbound` messages, `StatusUpdate`s for our own outbound messages and
   `ignored` reasons (bot echoes, media we do not handle, unknown events) — or raise `PayloadInvalid`;
3. `send` a text through the platform's API — or raise a typed error from connectors/errors.py
   (`RateLimited` with `retry_after`, `AuthFailed` permanent, `VendorUnavailable` transient, ...).

The Django side (apps/chat) owns everything stateful: de-duplication by `Inbound.platform_message_id`, rate
limits, queueing the turn, delivering replies through the outbox with retries and a breaker per account.
Adapters hold no process-local state that matters: a cache they need (e.g. Teams' signing keys) is handed in.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol

from connectors.base import ConfigField
from connectors.errors import InvalidConfig
from connectors.http import HttpSession, make_session

#: Largest inbound webhook body any adapter accepts (platforms send a few KiB; refuse before parsing).
MAX_WEBHOOK_BYTES = 256 * 1024


class SignatureInvalid(Exception):
    """The request is not provably from the platform: missing/wrong signature, stale timestamp, bad token.

    `reason` is a short machine word for metrics ("missing", "mismatch", "stale", "audience", "issuer",
    "expired", "key"); the message never contains the secret or the expected signature.
    """

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or f"signature refused: {reason}")
        self.reason = reason


class PayloadInvalid(Exception):
    """The body is not an event of this platform (malformed, oversized, missing fields)."""


@dataclass(frozen=True)
class Inbound:
    """One user message from the platform, ready to become a turn of the chat pipeline."""

    #: The platform's id of this message or event (wamid, Slack event_id, Teams activity id, MessageSid): the
    #: de-duplication key, since platforms retry deliveries.
    platform_message_id: str
    #: Who wrote it, as the platform knows them: E.164 phone (WhatsApp, SMS), Slack user id, Teams user id.
    sender: str
    #: Where the conversation lives on the platform (phone, Slack channel + thread, Teams conversation id):
    #: messages with the same key belong to one hub conversation.
    conversation_key: str
    text: str
    sent_at: datetime | None = None
    #: What `send` needs to answer in place (Slack channel/thread_ts, Teams serviceUrl/conversation/activity,
    #: WhatsApp phone-number-id/to, Twilio to/from). Stored with the conversation for later (agent) messages.
    reply_ref: Mapping[str, str] = field(default_factory=dict)
    #: The platform's locale hint, if it sends one (Teams `locale`); "" when unknown.
    locale: str = ""
    #: The platform itself vouches for `sender` (WhatsApp/SMS phone numbers, Teams/Slack authenticated users).
    sender_verified: bool = False


@dataclass(frozen=True)
class StatusUpdate:
    """The platform's report on a message we sent (sent/delivered/read/failed)."""

    platform_message_id: str
    status: str
    error: str = ""


@dataclass(frozen=True)
class Answer:
    """What to answer the platform's HTTP request with, right away."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class WebhookEvents:
    """Everything one webhook request carried."""

    messages: tuple[Inbound, ...] = ()
    statuses: tuple[StatusUpdate, ...] = ()
    #: Why parts were skipped ("bot_message", "unsupported:image", "unknown_event:x"), for metrics.
    ignored: tuple[str, ...] = ()
    #: The immediate answer when the platform expects a specific one (Slack challenge, empty TwiML); else 200.
    answer: Answer | None = None


@dataclass(frozen=True)
class Sent:
    """A message the platform accepted."""

    platform_message_id: str
    #: Billing units the platform counts (SMS segments); 1 elsewhere.
    segments: int = 1


class KeyCache(Protocol):
    """A shared cache (Redis on the Django side) for public data an adapter fetches, e.g. signing keys."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any, timeout: int) -> None: ...


class DictKeyCache:
    """An in-memory `KeyCache` for tests and the simulators (never used by the running hub)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def set(self, key: str, value: Any, timeout: int) -> None:
        self.data[key] = value


class ChannelAdapter(abc.ABC):
    """One messaging platform's protocol. Instances are cheap: one per channel account and call site."""

    #: The channel kind (apps.chat.models.ChannelKind value): "whatsapp", "slack", "teams", "sms".
    kind: ClassVar[str]
    #: The credentials and settings the console asks for (secrets are write-only there).
    config_fields: ClassVar[tuple[ConfigField, ...]]
    #: Longest text one `send` may carry; the Django side splits longer replies.
    max_text: ClassVar[int]

    def __init__(
        self,
        *,
        config: Mapping[str, Any],
        session: HttpSession | None = None,
        key_cache: KeyCache | None = None,
    ) -> None:
        self.config = dict(config)
        self.session = session
        self.key_cache: KeyCache = key_cache or DictKeyCache()

    def handshake(
        self, *, method: str, query: Mapping[str, str], headers: Mapping[str, str]
    ) -> Answer | None:
        """Answer a subscription check that comes before (or instead of) signed events; None if not one."""
        return None

    @abc.abstractmethod
    def verify(self, *, url: str, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Raise `SignatureInvalid` unless the request is the platform's (`url`: exactly what it called)."""

    @abc.abstractmethod
    def parse(self, *, headers: Mapping[str, str], body: bytes) -> WebhookEvents:
        """The events of a verified request; `PayloadInvalid` when it is not this platform's event."""

    @abc.abstractmethod
    def send(self, *, reply_ref: Mapping[str, str], text: str) -> Sent:
        """Deliver `text` (at most `max_text` characters) to `reply_ref`; typed errors on failure."""

    @abc.abstractmethod
    def test(self) -> None:
        """One cheap authenticated call (the console's "test" button); typed errors on failure."""

    def user_email(self, *, sender: str, reply_ref: Mapping[str, str]) -> str:
        """The e-mail address the platform's directory holds for `sender` (an `Inbound.sender`), when the
        platform vouches for it: a member of the account's own workspace or tenant, not a guest from another
        organisation. "" when it has none, does not vouch for it, or the platform has no directory (phone
        numbers are the identity there). Typed errors on failure; the caller treats them as "no e-mail"."""
        return ""


class CheckedConfigAdapter(ChannelAdapter):
    """An adapter whose config is checked at construction against its `config_fields` (`clean_config`:
    defaults applied, an unknown or missing setting refused) and whose calls go through `self.http`, the
    session given or a new guarded one, with every secret setting redacted from what it logs."""

    def __init__(
        self,
        *,
        config: Mapping[str, Any],
        session: HttpSession | None = None,
        key_cache: KeyCache | None = None,
    ) -> None:
        super().__init__(
            config=clean_config(self.kind, self.config_fields, config), session=session, key_cache=key_cache
        )
        self.http: HttpSession = session or make_session()
        for f in self.config_fields:
            if f.secret and self.config.get(f.name):
                self.http.add_secret(str(self.config[f.name]))


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Look a header up case-insensitively, whatever mapping the caller hands in."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def clean_config(kind: str, fields: Sequence[ConfigField], config: Mapping[str, Any]) -> dict[str, Any]:
    """Apply defaults; refuse an unknown setting or a missing required one, loudly, at construction."""
    unknown = sorted(set(config) - {f.name for f in fields})
    if unknown:
        raise InvalidConfig(f"{kind}: unknown setting(s): {', '.join(unknown)}")
    cleaned = {f.name: config.get(f.name, f.default) for f in fields}
    missing = [f.name for f in fields if f.required and cleaned[f.name] in (None, "")]
    if missing:
        raise InvalidConfig(f"{kind}: setting(s) {', '.join(missing)} required")
    return cleaned
