"""WhatsApp Cloud API (Meta): verify-token handshake, X-Hub-Signature-256, text messages in, /messages out.

Plain HTTP over the guarded `HttpSession`: Meta publishes no maintained Python SDK for the Cloud API (the
community wrappers pin old Graph versions and bring their own HTTP stacks), and the protocol is two calls.

The 24-hour customer service window: free-form text reaches a user only within 24 h of their last message.
Meta usually accepts such a send and reports the failure later as a `failed` status with error 131047;
some paths refuse it synchronously with the same code. Both come out as the word "window_closed"
(`ConnectorError.code` on send, `StatusUpdate.error` in a webhook) so the Django side can fall back to
`send_template`, which is allowed outside the window.

Agent replies after the window (issue 18): the account may name an approved template with one body parameter
(`agent_template`, `agent_template_language`); `send_agent_template` fills it with the reply's text, flattened
to what Meta accepts in a parameter (no newline or tab, no run of more than four spaces: error 132018).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import requests

from connectors.base import ConfigField
from connectors.errors import (
    AuthFailed,
    ConnectorError,
    RateLimited,
    UnexpectedResponse,
    VendorUnavailable,
)
from connectors.http import HttpSession, json_or_none, make_session, parse_retry_after
from connectors.messaging import (
    MAX_WEBHOOK_BYTES,
    Answer,
    ChannelAdapter,
    Inbound,
    KeyCache,
    PayloadInvalid,
    Sent,
    SignatureInvalid,
    StatusUpdate,
    WebhookEvents,
    clean_config,
    header,
)

SIGNATURE_HEADER = "X-Hub-Signature-256"
WINDOW_CLOSED = 131047
#: Graph error codes that mean "slow down", and how long to wait when no Retry-After comes with them:
#: 4 app call rate, 80007 business account rate, 130429 phone number throughput, 131056 same-recipient pair.
RATE_LIMIT_CODES: dict[int, tuple[float, str]] = {
    4: (60.0, "app"),
    80007: (60.0, "account"),
    130429: (1.0, "throughput"),
    131056: (6.0, "pair"),
}
#: Codes that say the credentials or their permissions are wrong: 0 AuthException, 10 permission denied,
#: 190 invalid/expired token (200-299 are permission errors too).
AUTH_CODES = frozenset({0, 10, 190})
#: The user cannot receive WhatsApp messages from us (not on WhatsApp, not in a test number's list).
RECIPIENT_CODES = frozenset({131026, 131030})
#: Statuses Meta reports for our outbound messages.
KNOWN_STATUSES = frozenset({"sent", "delivered", "read", "failed", "deleted", "warning"})
#: Longest text put in the agent template's one body parameter: the body (template text included) is capped
#: at 1024 characters, so a longer reply goes out as several templates.
TEMPLATE_PARAM_MAX = 900
_WHITESPACE = re.compile(r"\s+")


def template_params(text: str) -> list[str]:
    """`text` as template body parameters: newlines, tabs and runs of spaces become one space (Meta refuses
    them in a parameter), cut at spaces into pieces of at most TEMPLATE_PARAM_MAX characters."""
    flat = _WHITESPACE.sub(" ", text).strip()
    pieces: list[str] = []
    while len(flat) > TEMPLATE_PARAM_MAX:
        cut = flat.rfind(" ", 0, TEMPLATE_PARAM_MAX + 1)
        cut = cut if cut > TEMPLATE_PARAM_MAX // 3 else TEMPLATE_PARAM_MAX
        pieces.append(flat[:cut].strip())
        flat = flat[cut:].strip()
    if flat:
        pieces.append(flat)
    return pieces


def status_error(errors: Any) -> str:
    """The first error of a failed status as a short word or "code: title" ("" when there is none)."""
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], Mapping):
        return ""
    first = errors[0]
    if first.get("code") == WINDOW_CLOSED:
        return "window_closed"
    return f"{first.get('code', '?')}: {first.get('title') or first.get('message') or 'error'}"[:200]


class WhatsAppAdapter(ChannelAdapter):
    kind = "whatsapp"
    config_fields = (
        ConfigField("phone_number_id", "Phone number ID", required=True,
                    help="WhatsApp Manager > API Setup: the business phone number's ID (not the number)."),
        ConfigField("access_token", "Access token", required=True, secret=True,
                    help="A system user's permanent token with whatsapp_business_messaging."),
        ConfigField("app_secret", "App secret", required=True, secret=True,
                    help="App settings > Basic: signs every webhook (X-Hub-Signature-256)."),
        ConfigField("verify_token", "Verify token", required=True, secret=True,
                    help="Any random string; paste the same into the app's webhook settings."),
        ConfigField("api_base", "Graph API base URL", default="https://graph.facebook.com", url=True),
        ConfigField("api_version", "Graph API version", default="v21.0"),
        ConfigField("agent_template", "Template for late replies", default="",
                    help="An approved template with one body parameter ({{1}}): agents' replies after the "
                         "24-hour window are sent with it. Empty: such replies are held, not sent."),
        ConfigField("agent_template_language", "Template language", default="en",
                    help="The language code the template is approved in (en, en_US, de, ...)."),
    )  # fmt: skip
    #: Meta's limit for a text message body.
    max_text = 4096

    def __init__(
        self,
        *,
        config: Mapping[str, Any],
        session: HttpSession | None = None,
        key_cache: KeyCache | None = None,
    ) -> None:
        super().__init__(config=clean_config(self.kind, self.config_fields, config), session=session,
                         key_cache=key_cache)  # fmt: skip
        self.http: HttpSession = session or make_session()
        for f in self.config_fields:
            if f.secret:
                self.http.add_secret(str(self.config[f.name]))
        version = str(self.config["api_version"]).strip("/")
        self.graph = f"{str(self.config['api_base']).rstrip('/')}/{version}"

    # --- inbound ----------------------------------------------------------------------------------

    def handshake(
        self, *, method: str, query: Mapping[str, str], headers: Mapping[str, str]
    ) -> Answer | None:
        """Echo `hub.challenge` when `hub.verify_token` matches; every other GET is refused (403)."""
        if method.upper() != "GET":
            return None
        expected = str(self.config["verify_token"]).encode()
        given = str(query.get("hub.verify_token", "")).encode()
        challenge = str(query.get("hub.challenge", ""))
        if query.get("hub.mode") != "subscribe" or not hmac.compare_digest(given, expected):
            return Answer(403, b"verify token mismatch")
        if not challenge or len(challenge) > 256 or not challenge.isprintable():
            return Answer(400, b"bad challenge")
        return Answer(200, challenge.encode(), "text/plain; charset=utf-8")

    def verify(self, *, url: str, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Check X-Hub-Signature-256 over the raw bytes (Meta signs no timestamp: replays are de-duplicated
        by wamid on the Django side)."""
        given = header(headers, SIGNATURE_HEADER)
        if not given:
            raise SignatureInvalid("missing", f"no {SIGNATURE_HEADER} header")
        scheme, _, digest = given.strip().partition("=")
        if scheme != "sha256" or not digest:
            raise SignatureInvalid("mismatch", f"{SIGNATURE_HEADER} is not sha256=<hex>")
        expected = hmac.new(str(self.config["app_secret"]).encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), digest.lower().encode("utf-8", "replace")):
            raise SignatureInvalid("mismatch")

    def parse(self, *, headers: Mapping[str, str], body: bytes) -> WebhookEvents:
        """Text messages become `Inbound`, statuses `StatusUpdate`; media, echoes and other fields ignored."""
        if len(body) > MAX_WEBHOOK_BYTES:
            raise PayloadInvalid(f"body of {len(body)} bytes exceeds {MAX_WEBHOOK_BYTES}")
        try:
            event = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PayloadInvalid("body is not JSON") from exc
        if not isinstance(event, dict) or not isinstance(event.get("entry"), list):
            raise PayloadInvalid("not a WhatsApp webhook: no entry list")
        if event.get("object") != "whatsapp_business_account":
            return WebhookEvents(ignored=(f"unknown_event:{str(event.get('object'))[:40]}",))
        messages: list[Inbound] = []
        statuses: list[StatusUpdate] = []
        ignored: list[str] = []
        try:
            for entry in event["entry"]:
                for change in entry.get("changes") or ():
                    self._parse_change(change, messages, statuses, ignored)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise PayloadInvalid(f"unexpected WhatsApp event shape ({type(exc).__name__})") from exc
        return WebhookEvents(messages=tuple(messages), statuses=tuple(statuses), ignored=tuple(ignored))

    def _parse_change(
        self,
        change: Mapping[str, Any],
        messages: list[Inbound],
        statuses: list[StatusUpdate],
        ignored: list[str],
    ) -> None:
        field, value = change["field"], change["value"]
        if field == "smb_message_echoes":  # what the business sent from its own app, not the user
            ignored.extend("echo" for _ in value.get("message_echoes") or ())
            return
        if field != "messages":
            ignored.append(f"unknown_event:{str(field)[:40]}")
            return
        metadata = value["metadata"]
        phone_number_id = str(metadata["phone_number_id"])
        if phone_number_id != str(self.config["phone_number_id"]):
            # One app webhook serves every number of the app: this event belongs to another channel.
            ignored.append("other_phone_number")
            return
        own_number = str(metadata.get("display_phone_number") or "").lstrip("+")
        for message in value.get("messages") or ():
            kind, wa_id = str(message["type"]), str(message["from"])
            if not wa_id.isdigit():
                raise ValueError("sender is not a phone number")
            if wa_id == own_number:
                ignored.append("echo")
            elif kind != "text":
                ignored.append(f"unsupported:{kind[:40]}")
            else:
                messages.append(
                    Inbound(
                        platform_message_id=str(message["id"]),
                        sender=f"+{wa_id}",
                        conversation_key=f"+{wa_id}",
                        text=str(message["text"]["body"]),
                        sent_at=datetime.fromtimestamp(int(message["timestamp"]), UTC),
                        reply_ref={"phone_number_id": phone_number_id, "to": wa_id},
                        sender_verified=True,
                    )
                )
        for status in value.get("statuses") or ():
            name = str(status["status"])
            if name not in KNOWN_STATUSES:
                ignored.append(f"unknown_status:{name[:40]}")
                continue
            statuses.append(StatusUpdate(str(status["id"]), name, status_error(status.get("errors"))))
        for error in value.get("errors") or ():  # account-level problems, not tied to a message
            ignored.append(f"error:{error.get('code', '?')}")

    # --- outbound ---------------------------------------------------------------------------------

    def send(self, *, reply_ref: Mapping[str, str], text: str) -> Sent:
        """POST a text message; `ConnectorError(code="window_closed")` outside the 24-hour window."""
        if len(text) > self.max_text:
            raise ConnectorError(f"WhatsApp text is limited to {self.max_text} characters", code="too_long")
        return self._post_message(reply_ref, {"type": "text", "text": {"body": text, "preview_url": False}})

    def send_template(
        self, *, reply_ref: Mapping[str, str], template_name: str, language: str, params: Sequence[str] = ()
    ) -> Sent:
        """POST an approved template (allowed outside the 24-hour window); `params` fill the body's {{n}}."""
        template: dict[str, Any] = {"name": template_name, "language": {"code": language}}
        if params:
            template["components"] = [
                {"type": "body", "parameters": [{"type": "text", "text": str(p)} for p in params]}
            ]
        return self._post_message(reply_ref, {"type": "template", "template": template})

    def agent_template(self) -> tuple[str, str] | None:
        """The approved template for replies outside the window, as (name, language); None when not set."""
        name = str(self.config.get("agent_template") or "").strip()
        if not name:
            return None
        return name, str(self.config.get("agent_template_language") or "en").strip()

    def send_agent_template(self, *, reply_ref: Mapping[str, str], text: str) -> Sent:
        """Send `text` in the account's agent template (outside the 24-hour window); `ConnectorError` with
        code "no_template" when the account has none."""
        template = self.agent_template()
        if template is None:
            raise ConnectorError("No template for replies outside the 24-hour window", code="no_template")
        params = template_params(text)
        if not params:
            raise ConnectorError("A template parameter cannot be empty", code="empty")
        sent = [
            self.send_template(
                reply_ref=reply_ref, template_name=template[0], language=template[1], params=(p,)
            )
            for p in params
        ]
        return sent[0]

    def test(self) -> None:
        """Fetch the phone number's record with the token (proves token, version and number id)."""
        response = self._call("GET", f"{self.graph}/{self.config['phone_number_id']}")
        body = json_or_none(response)
        if not isinstance(body, Mapping) or "id" not in body:
            raise UnexpectedResponse("WhatsApp answered the phone number lookup without an id")

    def _post_message(self, reply_ref: Mapping[str, str], content: Mapping[str, Any]) -> Sent:
        to = str(reply_ref.get("to") or "").lstrip("+")
        if not to.isdigit():
            raise ConnectorError("WhatsApp reply_ref has no recipient phone number", code="invalid_recipient")
        number_id = str(reply_ref.get("phone_number_id") or self.config["phone_number_id"])
        payload = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, **content}
        response = self._call("POST", f"{self.graph}/{number_id}/messages", json=payload)
        body = json_or_none(response)
        if body is None:
            raise VendorUnavailable(f"WhatsApp answered the send with HTTP {response.status_code}, not JSON")
        try:
            message_id = body["messages"][0]["id"]
        except (KeyError, IndexError, TypeError) as exc:
            raise UnexpectedResponse("WhatsApp answered the send without messages[0].id") from exc
        return Sent(platform_message_id=str(message_id))

    def _call(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.config['access_token']}"}
        response = self.http.request(method, url, headers=headers, **kwargs)
        if response.status_code < 400:
            return response
        raise self._error(response)

    def _error(self, response: requests.Response) -> ConnectorError:
        """Map a Graph API error by its code first (Meta's advice), then by HTTP status."""
        status = response.status_code
        body = json_or_none(response)
        error = body.get("error") if isinstance(body, Mapping) else None
        if not isinstance(error, Mapping):
            if status == 429:
                retry = parse_retry_after(response.headers.get("Retry-After"))
                retry = 60.0 if retry is None else retry
                return RateLimited("WhatsApp rate limit (HTTP 429)", retry_after=retry, status=429)
            if status == 401:
                return AuthFailed("WhatsApp refused the access token (HTTP 401)", status=401)
            if status >= 500:
                return VendorUnavailable(f"WhatsApp answered HTTP {status}", status=status)
            return ConnectorError(f"WhatsApp answered HTTP {status}", status=status, code=f"http_{status}")
        code = error.get("code")
        data = error.get("error_data")
        details = data.get("details") if isinstance(data, Mapping) else ""
        text = self.http.redact(f"WhatsApp error {code}: {error.get('message', '')} {details or ''}")
        text = text.strip()[:300]
        if code in RATE_LIMIT_CODES:
            default, scope = RATE_LIMIT_CODES[code]
            retry = parse_retry_after(response.headers.get("Retry-After"))
            retry = default if retry is None else retry
            return RateLimited(text, retry_after=retry, scope=scope, status=status, code=str(code))
        if code == WINDOW_CLOSED:
            return ConnectorError(text, permanent=True, status=status, code="window_closed")
        if code in AUTH_CODES or (isinstance(code, int) and 200 <= code <= 299) or status == 401:
            return AuthFailed(text, status=status, code=str(code))
        if code in RECIPIENT_CODES:
            return ConnectorError(text, permanent=True, status=status, code="invalid_recipient")
        if status >= 500 or code in (1, 2, 131000):
            return VendorUnavailable(text, status=status, code=str(code))
        return ConnectorError(text, permanent=True, status=status, code=str(code))
