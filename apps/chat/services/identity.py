"""Verified end-user identity: who a channel's user is, vouched for by the customer's site or the platform.

A site proves a user's id either with `user_hash` = hex HMAC-SHA256(identity secret, user id) (the Intercom
style) or with a short-lived HS256 JWT signed with the same secret (`sub`, optional `email`/`phone`, `exp`,
`iat`, `aud` = the channel id). WhatsApp and SMS senders are verified by the platform (their phone number);
Slack and Teams users are authenticated by the workspace, with the e-mail its directory holds for its own
members (looked up by the ingest, services/channel_inbound.py).

The pure functions below check a proof; `identity_prove` is the one service, used when a conversation starts
and by `identify` mid-conversation. Every failure is the same `IdentityInvalid` with one message: a client
never learns which part of a proof failed (the reason is only a metric label for the operator).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import jwt
from django.utils.translation import gettext as _

from apps.chat import metrics_hooks
from apps.chat.models import Channel, ChannelKind, Conversation, IdentityMode
from apps.chat.principal import ChannelPrincipal
from apps.core.errors import ValidationFailed

JWT_ALGORITHMS = ("HS256",)  # pinned: never "none", never an asymmetric algorithm with the shared secret
JWT_MAX_LIFETIME_SECONDS = 3600  # exp - iat
JWT_LEEWAY_SECONDS = 60
MAX_TOKEN_CHARS = 4096
_HEX_64 = re.compile(r"^[0-9a-fA-F]{64}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
# Phone numbers verified by the platform itself: the sender id is the number.
PLATFORM_PHONE_KINDS = frozenset({ChannelKind.WHATSAPP.value, ChannelKind.SMS.value})
PLATFORM_USER_KINDS = frozenset({ChannelKind.SLACK.value, ChannelKind.TEAMS.value})


class IdentityInvalid(ValidationFailed):
    """A proof was sent and does not hold. `reason` is for metrics only, never shown to the client."""

    def __init__(self, reason: str, *, field: str) -> None:
        message = _("The identity proof is not valid.")
        super().__init__(message, {field: [message]})
        self.reason = reason


@dataclass(frozen=True)
class Identity:
    """A verified user: the id the site (or platform) vouches for and, when known, e-mail and phone,
    normalized (case-folded e-mail, E.164 phone) so they compare with the CRM's."""

    user_id: str
    email: str = ""
    phone: str = ""

    def as_json(self) -> str:
        return json.dumps({"user_id": self.user_id, "email": self.email, "phone": self.phone})

    @classmethod
    def from_json(cls, text: str | None) -> Identity | None:
        if not text:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        return cls(
            user_id=str(data.get("user_id") or ""),
            email=normalize_email(data.get("email")),
            phone=normalize_phone(data.get("phone")),
        )

    @property
    def has_contact(self) -> bool:
        return bool(self.email or self.phone)

    def matches(self, *, emails: set[str], phones: set[str]) -> bool:
        """True when the verified e-mail or phone is one of the record's (both sides normalized)."""
        return bool((self.email and self.email in emails) or (self.phone and self.phone in phones))


# --- normalization ----------------------------------------------------------------------------------------
def normalize_email(value: Any) -> str:
    text = str(value or "").strip().casefold()
    return text if _EMAIL.match(text) and len(text) <= 254 else ""


def normalize_phone(value: Any, *, international: bool = False) -> str:
    """E.164 ("+4915112345678"), or "" when the number is not clearly international.

    "+49 151 1234-567", "0049 151 ..." and "(+49) 151..." normalize; a national number ("0151 ...") does not
    (which country?), so it never matches. `international`: the value is known to be a full number without
    "+", as WhatsApp sends its sender ids.
    """
    text = re.sub(r"[\s\-().\u00a0/]", "", str(value or ""))
    if text.startswith("00"):
        text = "+" + text[2:]
    elif international and text.isdigit():
        text = "+" + text
    return text if _E164.match(text) else ""


# --- proofs (pure) ----------------------------------------------------------------------------------------
def user_hash(*, secret: str, user_id: str) -> str:
    """What the site computes: hex HMAC-SHA256 of the user id with the channel's identity secret."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def verify_user_hash(*, secret: str, user_id: str, provided: str) -> Identity:
    if not secret:
        raise IdentityInvalid("no_secret", field="user_hash")
    if not user_id:
        raise IdentityInvalid("no_user", field="user_hash")
    if not _HEX_64.match(provided or ""):
        raise IdentityInvalid("malformed", field="user_hash")
    # Constant time: the comparison must not tell how many leading characters were right.
    if not hmac.compare_digest(user_hash(secret=secret, user_id=user_id), provided.lower()):
        raise IdentityInvalid("signature", field="user_hash")
    return Identity(user_id=user_id)


def verify_identity_token(*, secret: str, token: str, audience: str, now: float | None = None) -> Identity:
    """The identity in a compact HS256 JWT: signature, `aud`, `exp` (≤ 1 h after `iat`, 60 s leeway)."""
    field = "identity_token"
    if not secret:
        raise IdentityInvalid("no_secret", field=field)
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise IdentityInvalid("malformed", field=field)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise IdentityInvalid("malformed", field=field) from None
    if header.get("alg") not in JWT_ALGORITHMS:
        raise IdentityInvalid("algorithm", field=field)
    options: Any = {"require": ["exp", "iat", "sub", "aud"], "verify_iat": True}
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=list(JWT_ALGORITHMS),
            audience=audience,
            leeway=JWT_LEEWAY_SECONDS,
            options=options,
        )
    except jwt.ExpiredSignatureError:
        raise IdentityInvalid("expired", field=field) from None
    except (jwt.InvalidAudienceError, jwt.MissingRequiredClaimError) as exc:
        reason = "audience" if isinstance(exc, jwt.InvalidAudienceError) else "claims"
        raise IdentityInvalid(reason, field=field) from None
    except jwt.InvalidSignatureError:
        raise IdentityInvalid("signature", field=field) from None
    except jwt.PyJWTError:
        raise IdentityInvalid("malformed", field=field) from None
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or not isinstance(iat, int | float):
        raise IdentityInvalid("claims", field=field)
    current = time.time() if now is None else now
    if exp - iat > JWT_MAX_LIFETIME_SECONDS or exp - current > JWT_MAX_LIFETIME_SECONDS + JWT_LEEWAY_SECONDS:
        raise IdentityInvalid("lifetime", field=field)
    if iat > current + JWT_LEEWAY_SECONDS:
        raise IdentityInvalid("claims", field=field)
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.strip() or len(subject) > 255:
        raise IdentityInvalid("claims", field=field)
    return Identity(
        user_id=subject.strip(),
        email=normalize_email(claims.get("email")),
        phone=normalize_phone(claims.get("phone")),
    )


def platform_identity(*, channel_kind: str, sender: str, email: str = "") -> Identity | None:
    """The identity a messaging platform vouches for (for the ingest of inbound messages).

    WhatsApp and SMS: the sender's phone number (WhatsApp's wa_id is the full number without "+").
    Slack and Teams: the workspace's user id and, when the platform's directory vouches for it, `email`
    (the adapter's `user_email`: the workspace's or tenant's own members only; docs/security.md).
    Other kinds: None (nothing vouched for).
    """
    if channel_kind in PLATFORM_PHONE_KINDS:
        phone = normalize_phone(sender, international=True)
        return Identity(user_id=phone, phone=phone) if phone else None
    if channel_kind in PLATFORM_USER_KINDS and sender:
        return Identity(user_id=f"{channel_kind}:{sender}", email=normalize_email(email))
    return None


def conversation_identity(conversation: Conversation) -> Identity | None:
    """The conversation's verified identity (decrypted here, only when an action needs it)."""
    if not conversation.identity_verified:
        return None
    return Identity.from_json(conversation.verified_identity)


# --- the service ------------------------------------------------------------------------------------------
def identity_prove(
    *, principal: ChannelPrincipal, user_ref: str, user_hash: str = "", identity_token: str = ""
) -> Identity | None:
    """Check the proof sent with a conversation (or `identify`): None without one (anonymous), the identity
    when it holds, IdentityInvalid (400) when it does not. Counted either way."""
    if not user_hash and not identity_token:
        return None
    channel = principal.channel
    field = "user_hash" if user_hash else "identity_token"
    row = (
        Channel.objects.filter(pk=channel.id, tenant_id=principal.tenant.id)
        .only("id", "tenant_id", "identity_mode", "identity_secret")
        .first()
    )
    mode = row.identity_mode if row is not None else IdentityMode.NONE
    try:
        if row is None or mode == IdentityMode.NONE:
            raise IdentityInvalid("mode", field=field)
        if user_hash and identity_token:
            raise IdentityInvalid("mode", field="identity_token")
        secret = row.identity_secret or ""
        if mode == IdentityMode.HMAC:
            if identity_token:
                raise IdentityInvalid("mode", field=field)
            identity = verify_user_hash(secret=secret, user_id=user_ref, provided=user_hash)
        else:
            if user_hash:
                raise IdentityInvalid("mode", field=field)
            identity = verify_identity_token(secret=secret, token=identity_token, audience=str(channel.id))
            if user_ref and user_ref != identity.user_id:
                raise IdentityInvalid("subject", field=field)
    except IdentityInvalid as exc:
        metrics_hooks.identity_proof(principal=principal, mode=str(mode), result=exc.reason)
        raise
    metrics_hooks.identity_proof(principal=principal, mode=str(mode), result="verified")
    return identity
