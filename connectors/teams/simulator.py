"""Microsoft Teams / Bot Framework simulator: the OpenID metadata and JWKS the Bot Connector signs with, the
Entra ID token endpoint (client credentials) and the connector REST API (/v3/conversations/…/activities).

`deliver_message` POSTs a Teams message activity to a bot's endpoint with `Authorization: Bearer <JWT>`,
signed RS256 by the simulator's key exactly as the Bot Connector does (issuer https://api.botframework.com,
audience = the app id, `serviceurl` claim = the activity's serviceUrl = this simulator). The RSA key lives in
the state dir; `rotate_key` publishes a new one, as Microsoft does, so key refresh can be tested.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import itertools
import json
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.channel_simulation import PlatformAdmin
from connectors.simulation import SimRequest, SimResponse, json_response

ISSUER = "https://api.botframework.com"
SCOPE = "https://api.botframework.com/.default"
ENDORSEMENTS = ["msteams", "webchat", "directline", "emulator"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_b64(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class SigningKey:
    """One RSA signing key with its JWK (kid = x5t-like thumbprint of the public key)."""

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        self.private_key = private_key
        public = private_key.public_key()
        der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = _b64(hashlib.sha1(der).digest())  # noqa: S324 - a key id, as x5t is, not security
        numbers = public.public_numbers()
        self.jwk = {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": _int_b64(numbers.n),
            "e": _int_b64(numbers.e),
            "endorsements": list(ENDORSEMENTS),
        }

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        if path.exists():
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            assert isinstance(loaded, rsa.RSAPrivateKey)
            return cls(loaded)
        key = cls.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(key.pem())
        path.chmod(0o600)
        return key

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


class TeamsSimulator(PlatformAdmin):
    vendor = "teams"
    scheme = "https"
    app_id = "5c1e4a52-9f6b-4f4e-9d1e-1b0b7f00d017"
    app_password = "sim~teams~client~secret~0001"  # noqa: S105 - the demo bot's client secret
    tenant_id = "72f988bf-0000-4000-8000-0000000a1b2c"
    bot_name = "Hub Bot"
    payload_keys = ("id",)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tokens.ttl = 3599
        self.keys = [SigningKey.load_or_create(self.state_dir / "teams" / "signing-key.pem")]
        self.activities: list[dict[str, Any]] = []
        #: Conversations the bot was removed from: the connector answers 404 ConversationNotFound.
        self.missing_conversations: set[str] = set()
        self.metadata_requests = 0
        self.token_requests = 0
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self.route("GET", r"/v1/\.well-known/openidconfiguration", self.openid_metadata)
        self.route("GET", r"/v1/\.well-known/keys", self.jwks)
        self.route("POST", r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token", self.token_endpoint)
        self.route("GET", r"/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration", self.tenant_metadata)
        activities = r"/teams/v3/conversations/(?P<conversation>[^/]+)/activities(?:/(?P<reply_to>[^/]+))?"
        self.route("POST", activities, self.post_activity)
        members = r"/teams/v3/conversations/(?P<conversation>[^/]+)/members/(?P<member>[^/]+)"
        self.route("GET", members, self.get_member)
        #: The tenant's directory as the connector returns conversation members, by user id (the "29:" id
        #: and the aadObjectId both find a member, as in Teams).
        self.members: dict[str, dict[str, Any]] = {}
        self.add_member(
            user_id="29:1simUserAlice",
            aad_object_id="0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
            name="Alice Example",
            email="alice@example.com",
        )

    @property
    def bot_id(self) -> str:
        return f"28:{self.app_id}"

    @property
    def service_url(self) -> str:
        return f"{self.base_url}/teams/"

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "app_id": self.app_id,
            "app_password": self.app_password,
            "tenant_id": self.tenant_id,
            "openid_metadata_url": f"{self.base_url}/v1/.well-known/openidconfiguration",
            "token_url": f"{self.base_url}/botframework.com/oauth2/v2.0/token",
            "service_url": self.service_url,
            "allowed_service_hosts": self.host,
        }

    # --- identity: metadata, keys, tokens ---------------------------------------------------------

    def is_public(self, request: SimRequest) -> bool:
        return not request.path.startswith("/teams/v3/")

    def openid_metadata(self, request: SimRequest) -> SimResponse:
        with self._lock:
            self.metadata_requests += 1
        return json_response(
            200,
            {
                "issuer": ISSUER,
                "authorization_endpoint": "https://invalid.botframework.com",
                "jwks_uri": f"{self.base_url}/v1/.well-known/keys",
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            },
        )

    def jwks(self, request: SimRequest) -> SimResponse:
        return json_response(200, {"keys": [k.jwk for k in self.keys]})

    def tenant_metadata(self, request: SimRequest) -> SimResponse:
        """Entra ID's per-tenant OpenID configuration (MSAL reads token_endpoint from it)."""
        assert request.match is not None
        tenant = request.match.group("tenant")
        base = f"{self.base_url}/{tenant}"
        return json_response(
            200,
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "issuer": f"{base}/v2.0",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            },
        )

    def token_endpoint(self, request: SimRequest) -> SimResponse:
        """Client-credentials grant with Entra ID's error shapes (AADSTS codes)."""
        with self._lock:
            self.token_requests += 1
        form = request.form()
        if form.get("grant_type") != "client_credentials":
            return self._aad_error(400, "unsupported_grant_type", "AADSTS70003: unsupported grant type")
        if form.get("client_id") != self.app_id:
            unknown = form.get("client_id", "")[:40]
            message = f"AADSTS700016: Application with identifier '{unknown}' was not found in the directory."
            return self._aad_error(400, "unauthorized_client", message)
        if not hmac.compare_digest(form.get("client_secret", ""), self.app_password):
            return self._aad_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        if form.get("scope") != SCOPE:
            return self._aad_error(
                400, "invalid_scope", "AADSTS70011: The provided value for scope is invalid."
            )
        ttl = int(self.tokens.ttl)
        token = self.tokens.issue("eyJ0eXAiOiJKV1Qi.sim.")
        return json_response(
            200, {"token_type": "Bearer", "expires_in": ttl, "ext_expires_in": ttl, "access_token": token}
        )

    @staticmethod
    def _aad_error(status: int, error: str, description: str) -> SimResponse:
        trace = str(uuid.uuid4())
        return json_response(
            status,
            {
                "error": error,
                "error_description": f"{description} Trace ID: {trace}",
                "error_codes": [int(description[6:].split(":")[0])],
                "trace_id": trace,
                "correlation_id": str(uuid.uuid4()),
            },
        )

    # --- connector API ----------------------------------------------------------------------------

    def authenticate(self, request: SimRequest) -> SimResponse | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.tokens.state(token) == "valid":
            return None
        return json_response(401, {"message": "Authorization has been denied for this request."})

    def rate_limited(self, request: SimRequest) -> SimResponse:
        retry_after = str(self.faults.rate_limit_retry_after)
        return json_response(
            429,
            {"error": {"code": "TooManyRequests", "message": "Too many requests"}},
            **{"Retry-After": retry_after},
        )

    def error(self, status: int, message: str) -> SimResponse:
        code = {404: "NotFound", 400: "BadArgument"}.get(status, "ServiceError")
        return json_response(status, {"error": {"code": code, "message": message}})

    def post_activity(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        conversation = unquote(request.match.group("conversation"))
        reply_to = unquote(request.match.group("reply_to") or "")
        if conversation in self.missing_conversations:
            return json_response(
                404, {"error": {"code": "ConversationNotFound", "message": "Conversation not found."}}
            )
        activity = request.json_or_none()
        if not isinstance(activity, dict) or not activity.get("type"):
            return json_response(400, {"error": {"code": "BadArgument", "message": "Activity is missing"}})
        new_id = f"{int(time.time() * 1000)}{next(self._seq) % 1000:03d}"
        record = {
            "id": new_id,
            "conversation_id": conversation,
            "reply_to_id": reply_to or None,
            "type": activity.get("type"),
            "text": activity.get("text"),
            "activity": activity,
        }
        with self._lock:
            self.activities.append(record)
        return json_response(201, {"id": new_id})

    def add_member(
        self, *, user_id: str, aad_object_id: str, name: str, email: str = "", upn: str = "",
        tenant_id: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Put a user in the simulated directory (a TeamsChannelAccount, as GET .../members/{id} answers)."""
        member = {
            "id": user_id,
            "name": name,
            "aadObjectId": aad_object_id,
            "email": email,
            "userPrincipalName": upn or email,
            "tenantId": self.tenant_id if tenant_id is None else tenant_id,
            "userRole": "user",
        }
        with self._lock:
            self.members[user_id] = self.members[aad_object_id] = member
        return member

    def get_member(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        conversation = unquote(request.match.group("conversation"))
        with self._lock:
            member = self.members.get(unquote(request.match.group("member")))
        if conversation in self.missing_conversations:
            return json_response(
                404, {"error": {"code": "ConversationNotFound", "message": "Conversation not found."}}
            )
        if member is None:
            return json_response(404, {"error": {"code": "MemberNotFound", "message": "Member not found."}})
        return json_response(200, dict(member))

    def sent(self, conversation_id: str | None = None) -> list[dict[str, Any]]:
        """Activities the bot posted (to `conversation_id`), oldest first."""
        with self._lock:
            return [dict(a) for a in self.activities if conversation_id in (None, a["conversation_id"])]

    # --- the Bot Connector calling a bot ------------------------------------------------------------

    def rotate_key(self) -> str:
        """Publish a new signing key next to the old one and sign with it from now on; return its kid."""
        key = SigningKey.generate()
        with self._lock:
            self.keys.insert(0, key)
        return key.kid

    def token_for(
        self,
        service_url: str | None = None,
        *,
        key: SigningKey | None = None,
        headers: Mapping[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A Bot Connector JWT as it calls the bot; `claims` override or (None) remove standard ones."""
        now = int(time.time())
        body: dict[str, Any] = {
            "serviceurl": service_url or self.service_url,
            "nbf": now - 5,
            "exp": now + 3600,
            "iss": ISSUER,
            "aud": self.app_id,
        }
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        signer = key or self.keys[0]
        header = {"kid": signer.kid, "x5t": signer.kid, "typ": "JWT", **(headers or {})}
        return jwt.encode(body, signer.private_key, algorithm=header.pop("alg", "RS256"), headers=header)

    def message_activity(
        self,
        text: str,
        *,
        conversation_id: str = "a:1simPersonalChat",
        user_id: str = "29:1simUserAlice",
        aad_object_id: str | None = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        user_name: str = "Alice Example",
        locale: str = "en-US",
        channel_id: str = "msteams",
        conversation_type: str = "personal",
        mention_bot: bool = False,
        activity_type: str = "message",
        **extra: Any,
    ) -> dict[str, Any]:
        """A Teams message activity as the Bot Connector posts it to the bot's messaging endpoint."""
        now = dt.datetime.now(dt.UTC)
        sender: dict[str, Any] = {"id": user_id, "name": user_name}
        if aad_object_id:
            sender["aadObjectId"] = aad_object_id
        entities: list[dict[str, Any]] = [
            {
                "locale": locale,
                "country": locale[-2:],
                "platform": "Web",
                "timezone": "Europe/Berlin",
                "type": "clientInfo",
            }
        ]
        if mention_bot:
            tag = f"<at>{self.bot_name}</at>"
            text = f"{tag} {text}"
            entities.append(
                {"type": "mention", "text": tag, "mentioned": {"id": self.bot_id, "name": self.bot_name}}
            )
        activity = {
            "text": text,
            "textFormat": "plain",
            "type": activity_type,
            "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z",
            "localTimestamp": now.astimezone().isoformat(),
            "id": f"{int(time.time() * 1000)}{next(self._seq) % 1000:03d}",
            "channelId": channel_id,
            "serviceUrl": self.service_url,
            "from": sender,
            "conversation": {
                "conversationType": conversation_type,
                "tenantId": self.tenant_id,
                "id": conversation_id,
            },
            "recipient": {"id": self.bot_id, "name": self.bot_name},
            "entities": entities,
            "channelData": {"tenant": {"id": self.tenant_id}},
            "locale": locale,
            "localTimezone": "Europe/Berlin",
        }
        activity.update(extra)
        return activity

    def post(
        self,
        target_url: str,
        activity: Mapping[str, Any],
        *,
        token: str | None = None,
        verify: bool | str = True,
        timeout: float = 10.0,
    ) -> requests.Response:
        """POST `activity` to a bot endpoint as the Bot Connector does, with a fresh token unless given."""
        bearer = token or self.token_for(str(activity.get("serviceUrl") or self.service_url))
        headers = {
            "Authorization": f"Bearer {bearer}",
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Microsoft-SkypeBotApi (Microsoft-BotFramework 3.0)",
        }
        body = json.dumps(activity, ensure_ascii=False).encode()
        return requests.post(target_url, data=body, headers=headers, timeout=timeout, verify=verify)

    def deliver_message(self, target_url: str, text: str, **options: Any) -> requests.Response:
        """Deliver a user's Teams message to the bot's endpoint, signed like the Bot Connector."""
        post_options = {k: options.pop(k) for k in ("token", "verify", "timeout") if k in options}
        return self.post(target_url, self.message_activity(text, **options), **post_options)

    def channel_admin(self, action: str, request: SimRequest, body: dict[str, Any]) -> SimResponse | None:
        if action == "messages":
            return json_response(200, {"activities": self.sent(request.query.get("conversation_id"))})
        if action == "deliver" and request.method == "POST":
            target = self.target(body.pop("target_url", None))
            body.setdefault("verify", self.webhook_verify)
            response = self.deliver_message(target, body.pop("text"), **body)
            return json_response(200, {"status": response.status_code, "body": response.text[:2000]})
        if action == "rotate_key" and request.method == "POST":
            return json_response(200, {"kid": self.rotate_key()})
        return super().channel_admin(action, request, body)
