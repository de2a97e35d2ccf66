"""Microsoft Teams (Bot Framework): Bot Connector JWTs checked against the OpenID keys, replies by REST.

Inbound, per the Bot Framework authentication spec: `Authorization: Bearer <JWT>` signed RS256/384/512 by a
key from the JWKS that the OpenID metadata names (cached in the shared `key_cache`, refreshed on an unknown
`kid` at most once a minute, so forged kids cannot make us hammer the metadata endpoint); issuer
https://api.botframework.com, audience = our app id, exp/nbf with 5 minutes of skew, the key endorsed for the
activity's channel, and the token's `serviceurl` claim equal to the activity's `serviceUrl` — whose host must
also be on the allow-list, since replies go there with our token.

Outbound: a client-credentials token (cached in `key_cache` until 5 minutes before expiry), then
POST {serviceUrl}/v3/conversations/{id}/activities/{replyToId} through the guarded session.

Why not the Bot Framework SDK's own code here (botframework-connector is used in the tests, against the
simulator): its `JwtTokenExtractor` is asynchronous, keeps the keys in a class-level (process-local) dict,
reads a class attribute for the metadata URL, fetches with plain `requests` (no private-address guard, follows
redirects), refreshes unknown kids at most hourly and takes no clock; `MicrosoftAppCredentials` builds an MSAL
app that first asks login.microsoftonline.com for instance discovery and caches tokens per process; the msrest
`ConnectorClient` opens its own session. The checks below are those of `ChannelValidation`, with PyJWT (what
the SDK uses underneath); the token request is the OAuth 2.0 client-credentials grant MSAL sends.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import jwt
import requests

from connectors.base import ConfigField
from connectors.errors import AuthFailed, ConnectorError, InvalidConfig, RateLimited, VendorUnavailable
from connectors.http import HttpSession, json_or_none, make_session, parse_retry_after
from connectors.messaging import (
    MAX_WEBHOOK_BYTES,
    ChannelAdapter,
    Inbound,
    PayloadInvalid,
    Sent,
    SignatureInvalid,
    WebhookEvents,
)

ISSUER = "https://api.botframework.com"
SCOPE = "https://api.botframework.com/.default"
OPENID_METADATA_URL = "https://login.botframework.com/v1/.well-known/openidconfiguration"
TOKEN_URL = "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token"  # noqa: S105 - a URL
TENANT_TOKEN_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"  # noqa: S105 - a URL
ALLOWED_SERVICE_HOSTS = "*.botframework.com,smba.trafficmanager.net"
ALGORITHMS = ("RS256", "RS384", "RS512")
#: Clock skew the Bot Framework SDKs allow on exp/nbf.
CLOCK_SKEW = 5 * 60
#: Keys are re-read at least daily (Microsoft rotates them), and at most once a minute on an unknown kid.
KEYS_MAX_AGE = 24 * 3600
KEYS_REFRESH_INTERVAL = 60
#: Token requests are made again this long before the token expires.
TOKEN_MARGIN = 5 * 60
_WORD = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def header(headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    return next((str(v) for k, v in headers.items() if k.lower() == wanted), "")


def _word(value: Any, default: str = "?") -> str:
    """A short, safe label of an untrusted value for metrics and error codes."""
    return value if isinstance(value, str) and _WORD.fullmatch(value) else default


def _object(parent: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


class TeamsAdapter(ChannelAdapter):
    kind = "teams"
    config_fields = (
        ConfigField("app_id", "Microsoft App ID", required=True,
                    help="The bot's Azure Bot registration > Configuration > Microsoft App ID"),
        ConfigField("app_password", "Client secret", required=True, secret=True),
        ConfigField("tenant_id", "Tenant id (single-tenant bots only)",
                    help="Tokens then come from this tenant's endpoint instead of botframework.com"),
        ConfigField("openid_metadata_url", "OpenID metadata URL", default=OPENID_METADATA_URL, url=True),
        ConfigField("token_url", "Token endpoint", default=TOKEN_URL, url=True),
        ConfigField("allowed_service_hosts", "Allowed serviceUrl hosts", default=ALLOWED_SERVICE_HOSTS,
                    help="Comma-separated host names, '*.' for subdomains: replies go only there"),
    )  # fmt: skip
    #: Teams refuses activities over ~28 KB; 6,000 characters stay below it as UTF-8 JSON even if every
    #: character took 4 bytes. The Django side splits longer replies.
    max_text: ClassVar[int] = 6000

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name in ("app_id", "app_password"):
            if not str(self.config.get(name) or "").strip():
                raise InvalidConfig(f"teams: {name} is required")
        self.app_id = str(self.config["app_id"]).strip()
        self.app_password = str(self.config["app_password"])
        self.tenant_id = str(self.config.get("tenant_id") or "").strip()
        self.metadata_url = str(self.config.get("openid_metadata_url") or OPENID_METADATA_URL)
        token_url = str(self.config.get("token_url") or TOKEN_URL)
        if self.tenant_id and token_url == TOKEN_URL:
            token_url = TENANT_TOKEN_URL.format(tenant=quote(self.tenant_id, safe=""))
        self.token_url = token_url
        hosts = str(self.config.get("allowed_service_hosts") or ALLOWED_SERVICE_HOSTS)
        self.allowed_hosts = tuple(h.strip().lower() for h in hosts.split(",") if h.strip())
        if self.session is not None:
            self.session.add_secret(self.app_password)

    @property
    def http(self) -> HttpSession:
        if self.session is None:
            self.session = make_session()
            self.session.add_secret(self.app_password)
        return self.session

    # --- inbound ----------------------------------------------------------------------------------

    def verify(self, *, url: str, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Refuse unless the Bot Connector signed a token for us and this activity's serviceUrl.

        Raises `VendorUnavailable` (not `SignatureInvalid`) when the signing keys cannot be fetched:
        the platform should retry later rather than be told the message is forged.
        """
        if len(body) > MAX_WEBHOOK_BYTES:
            raise PayloadInvalid(f"body of {len(body)} bytes exceeds {MAX_WEBHOOK_BYTES}")
        scheme, _, token = header(headers, "Authorization").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise SignatureInvalid("missing", "no Bearer token in the Authorization header")
        try:
            token_header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise SignatureInvalid("malformed", "the bearer token is not a JWT") from None
        alg, kid = token_header.get("alg"), token_header.get("kid")
        if alg not in ALGORITHMS:
            raise SignatureInvalid("algorithm", f"token algorithm {_word(alg)} is not allowed")
        if not isinstance(kid, str) or not kid:
            raise SignatureInvalid("key", "token names no signing key")
        activity = self._activity(body)
        jwk = self._signing_key(kid, now)
        if jwk is None:
            raise SignatureInvalid("key", "token signed by a key the Bot Framework does not publish")
        endorsements = jwk.get("endorsements")
        channel = activity.get("channelId")
        if isinstance(endorsements, list) and endorsements and channel not in endorsements:
            raise SignatureInvalid("endorsement", f"signing key not endorsed for channel {_word(channel)}")
        try:
            key = jwt.PyJWK(jwk).key
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.app_id,
                issuer=ISSUER,
                # exp/nbf are checked below against the caller's clock
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                         "require": ["exp", "iss", "aud"]},
            )  # fmt: skip
        except jwt.InvalidAudienceError:
            raise SignatureInvalid("audience", "token is for another bot") from None
        except jwt.InvalidIssuerError:
            raise SignatureInvalid("issuer", "token not issued by the Bot Framework") from None
        except jwt.InvalidSignatureError:
            raise SignatureInvalid("mismatch") from None
        except jwt.PyJWTError:
            raise SignatureInvalid("malformed", "token claims are missing or malformed") from None
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, int | float) or now > exp + CLOCK_SKEW:
            raise SignatureInvalid("expired", "token expired")
        if nbf is not None and (not isinstance(nbf, int | float) or now < nbf - CLOCK_SKEW):
            raise SignatureInvalid("expired", "token not valid yet")
        service_url = activity.get("serviceUrl")
        if not isinstance(service_url, str) or claims.get("serviceurl") != service_url:
            raise SignatureInvalid("service_url", "token was issued for another serviceUrl")
        if not self.service_url_allowed(service_url):
            raise SignatureInvalid("service_url", "serviceUrl host is not on the allow-list")

    def service_url_allowed(self, service_url: str) -> bool:
        """An https URL whose host matches `allowed_service_hosts` ('*.x' matches subdomains of x)."""
        try:
            parts = urlsplit(service_url)
            host = (parts.hostname or "").lower()
        except ValueError:
            return False
        if parts.scheme != "https" or not host:
            return False
        return any(fnmatch.fnmatchcase(host, pattern) for pattern in self.allowed_hosts)

    def _signing_key(self, kid: str, now: float) -> dict[str, Any] | None:
        """The JWK with `kid` from the cached key set, re-reading it when stale or (throttled) on a miss."""
        cache_key = f"teams:jwks:{_digest(self.metadata_url)}"
        entry = self.key_cache.get(cache_key)
        throttled = entry is not None and now - float(entry["checked_at"]) < KEYS_REFRESH_INTERVAL
        stale = entry is None or now - float(entry["fetched_at"]) > KEYS_MAX_AGE
        if not throttled and (stale or self._find(entry, kid) is None):
            entry = self._refresh_keys(cache_key, entry, now)
        if entry is None or not entry["keys"]:
            raise VendorUnavailable("Bot Framework signing keys are not available yet")
        return self._find(entry, kid)

    @staticmethod
    def _find(entry: Mapping[str, Any] | None, kid: str) -> dict[str, Any] | None:
        return next((dict(k) for k in (entry or {}).get("keys", ()) if k.get("kid") == kid), None)

    def _refresh_keys(self, cache_key: str, entry: Mapping[str, Any] | None, now: float) -> dict[str, Any]:
        # Mark the attempt first: concurrent requests and a failing endpoint are throttled alike.
        attempt = {"keys": [], "fetched_at": 0.0, **(entry or {}), "checked_at": now}
        self.key_cache.set(cache_key, attempt, KEYS_MAX_AGE)
        metadata = self._get_json(self.metadata_url, "OpenID metadata")
        jwks_uri = metadata.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri:
            raise VendorUnavailable("Bot Framework OpenID metadata has no jwks_uri")
        keys = self._get_json(jwks_uri, "signing keys").get("keys")
        if not isinstance(keys, list):
            raise VendorUnavailable("Bot Framework key set has no keys")
        usable = [k for k in keys if isinstance(k, dict) and k.get("kty") == "RSA" and k.get("kid")]
        fresh = {"keys": usable, "fetched_at": now, "checked_at": now}
        self.key_cache.set(cache_key, fresh, KEYS_MAX_AGE)
        return fresh

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        response = self.http.get(url, headers={"Accept": "application/json"})
        body = json_or_none(response)
        if response.status_code != 200 or not isinstance(body, dict):
            status = response.status_code
            raise VendorUnavailable(f"Bot Framework {what}: HTTP {status}", status=status)
        return body

    @staticmethod
    def _activity(body: bytes) -> dict[str, Any]:
        if len(body) > MAX_WEBHOOK_BYTES:
            raise PayloadInvalid(f"body of {len(body)} bytes exceeds {MAX_WEBHOOK_BYTES}")
        try:
            activity = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PayloadInvalid(f"not JSON: {type(exc).__name__}") from None
        if not isinstance(activity, dict) or not isinstance(activity.get("type"), str):
            raise PayloadInvalid("not a Bot Framework activity")
        return activity

    def parse(self, *, headers: Mapping[str, str], body: bytes) -> WebhookEvents:
        activity = self._activity(body)
        kind = activity["type"]
        if kind != "message":
            return WebhookEvents(ignored=(f"activity:{_word(kind)}",))
        sender, recipient, conversation = (
            _object(activity, k) for k in ("from", "recipient", "conversation")
        )
        if sender.get("role") == "bot" or (recipient.get("id") and sender.get("id") == recipient.get("id")):
            return WebhookEvents(ignored=("bot_message",))
        fields = (activity.get("id"), sender.get("id"), conversation.get("id"), activity.get("serviceUrl"))
        if not all(isinstance(v, str) and v for v in fields):
            raise PayloadInvalid("message activity without id, from.id, conversation.id or serviceUrl")
        activity_id, sender_id, conversation_id, service_url = (str(v) for v in fields)
        text = self._text(activity, str(recipient.get("id") or ""))
        if not text:
            reason = "unsupported:attachment" if activity.get("attachments") else "empty"
            return WebhookEvents(ignored=(reason,))
        aad = sender.get("aadObjectId")
        locale = activity.get("locale")
        message = Inbound(
            platform_message_id=activity_id,
            sender=aad if isinstance(aad, str) and aad else sender_id,
            conversation_key=conversation_id,
            text=text,
            sent_at=self._timestamp(activity.get("timestamp")),
            reply_ref={
                "service_url": service_url,
                "conversation_id": conversation_id,
                "activity_id": activity_id,
                "bot_id": str(recipient.get("id") or ""),
            },
            locale=locale if isinstance(locale, str) and len(locale) <= 35 else "",
            sender_verified=True,
        )
        return WebhookEvents(messages=(message,))

    @staticmethod
    def _text(activity: Mapping[str, Any], bot_id: str) -> str:
        """The text without the `<at>Bot</at>` mention(s) of this bot (Teams puts one in channel messages)."""
        text = activity.get("text")
        if not isinstance(text, str):
            return ""
        for entity in activity.get("entities") or ():
            if not isinstance(entity, dict) or entity.get("type") != "mention":
                continue
            mentioned = _object(entity, "mentioned")
            if bot_id and mentioned.get("id") == bot_id and isinstance(entity.get("text"), str):
                text = text.replace(entity["text"], " ")
        return " ".join(text.split())

    @staticmethod
    def _timestamp(value: Any) -> datetime | None:
        if not isinstance(value, str):
            return None
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None

    # --- outbound ---------------------------------------------------------------------------------

    def send(self, *, reply_ref: Mapping[str, str], text: str) -> Sent:
        service_url = str(reply_ref.get("service_url") or "")
        conversation_id = str(reply_ref.get("conversation_id") or "")
        activity_id = str(reply_ref.get("activity_id") or "")
        if not conversation_id or not self.service_url_allowed(service_url):
            raise ConnectorError("teams: reply_ref has no conversation or an unallowed serviceUrl",
                                 permanent=True, code="bad_reply_ref")  # fmt: skip
        url = f"{service_url.rstrip('/')}/v3/conversations/{quote(conversation_id, safe='')}/activities"
        activity: dict[str, Any] = {"type": "message", "text": text, "conversation": {"id": conversation_id}}
        if activity_id:
            url += "/" + quote(activity_id, safe="")
            activity["replyToId"] = activity_id
        if reply_ref.get("bot_id"):
            activity["from"] = {"id": str(reply_ref["bot_id"])}
        body = json.dumps(activity, ensure_ascii=False).encode()
        response = self._post_activity(url, body, fresh_token=False)
        if response.status_code in (401, 403):  # a revoked or rotated token: one more try with a new one
            response = self._post_activity(url, body, fresh_token=True)
        if response.status_code in (200, 201, 202):
            payload = json_or_none(response)
            sent_id = payload.get("id") if isinstance(payload, dict) else None
            return Sent(platform_message_id=str(sent_id or ""))
        raise self._error(response, "sending the reply")

    def _post_activity(self, url: str, body: bytes, *, fresh_token: bool) -> requests.Response:
        headers = {
            "Authorization": f"Bearer {self.token(fresh=fresh_token)}",
            "Content-Type": "application/json; charset=utf-8",
        }
        return self.http.post(url, data=body, headers=headers)

    def token(self, *, fresh: bool = False) -> str:
        """A Bot Connector access token (client credentials), shared through `key_cache` until near expiry."""
        cache_key = f"teams:token:{_digest(self.token_url, self.app_id, self.app_password)}"
        cached = None if fresh else self.key_cache.get(cache_key)
        if cached and float(cached["expires_at"]) - TOKEN_MARGIN > time.time():
            self.http.add_secret(str(cached["access_token"]))
            return str(cached["access_token"])
        response = self.http.post(
            self.token_url,
            data={"grant_type": "client_credentials", "client_id": self.app_id,
                  "client_secret": self.app_password, "scope": SCOPE},
            headers={"Accept": "application/json"},
        )  # fmt: skip
        payload = json_or_none(response)
        if response.status_code != 200:
            raise self._error(response, "the token request")
        token = payload.get("access_token") if isinstance(payload, dict) else None
        if not isinstance(token, str) or not token:
            raise VendorUnavailable("Teams token endpoint answered without an access_token")
        self.http.add_secret(token)
        try:
            expires_in = float(payload.get("expires_in") or 3600)
        except (TypeError, ValueError):
            expires_in = 3600.0
        self.key_cache.set(cache_key, {"access_token": token, "expires_at": time.time() + expires_in},
                           max(1, int(expires_in - TOKEN_MARGIN)))  # fmt: skip
        return token

    def test(self) -> None:
        """Request a new token: proves the app id and secret (the console's "test" button)."""
        self.token(fresh=True)

    def user_email(self, *, sender: str, reply_ref: Mapping[str, str]) -> str:
        """The conversation member's `email` (else a `userPrincipalName` shaped like one) from
        GET {serviceUrl}/v3/conversations/{id}/members/{user}: Entra ID's directory entry, so only for a
        member of the bot's own tenant (`tenant_id` set and equal to the member's `tenantId`). A
        multi-tenant bot, a guest from another tenant, an unallowed serviceUrl: ""."""
        service_url = str(reply_ref.get("service_url") or "")
        conversation_id = str(reply_ref.get("conversation_id") or "")
        if not (self.tenant_id and sender and conversation_id and self.service_url_allowed(service_url)):
            return ""
        url = (
            f"{service_url.rstrip('/')}/v3/conversations/{quote(conversation_id, safe='')}"
            f"/members/{quote(sender, safe='')}"
        )
        response = self.http.get(url, headers={"Authorization": f"Bearer {self.token()}"})
        if response.status_code == 404:
            return ""  # not (or no longer) a member of this conversation
        if response.status_code != 200:
            raise self._error(response, "reading the conversation member")
        member = json_or_none(response)
        if not isinstance(member, dict) or str(member.get("tenantId") or "") != self.tenant_id:
            return ""
        for name in ("email", "userPrincipalName"):
            value = member.get(name)
            if isinstance(value, str) and "@" in value:
                return value.strip()
        return ""

    @staticmethod
    def _error(response: requests.Response, what: str) -> ConnectorError:
        """Map an HTTP failure to a typed error naming the platform's error code, never its body."""
        status = response.status_code
        payload = json_or_none(response)
        code = "unexpected_response"
        if isinstance(payload, dict):
            error = payload.get("error")
            raw = error.get("code") if isinstance(error, dict) else error
            code = _word(raw, code)
        message = f"Teams {what} failed: {code} (HTTP {status})"
        if status == 429:
            retry = parse_retry_after(response.headers.get("Retry-After"))
            return RateLimited(message, retry_after=retry if retry is not None else 1.0, scope="teams",
                               status=status, code=code)  # fmt: skip
        if status in (401, 403) or code in ("invalid_client", "unauthorized_client"):
            return AuthFailed(message, status=status, code=code)
        if status >= 500 or status == 408:
            return VendorUnavailable(message, status=status, code=code)
        return ConnectorError(message, permanent=True, status=status, code=code)
