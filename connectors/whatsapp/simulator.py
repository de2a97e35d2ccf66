"""WhatsApp Cloud API simulator: the Graph API's /messages and phone-number endpoints with Meta's error
bodies, the 24-hour customer service window, templates, and webhooks signed like Meta's
(X-Hub-Signature-256 over the raw body, JSON with non-ASCII and "/" escaped as Meta does).

Templates are checked like Meta checks them: the name must exist in the language (132001), the body gets
exactly its number of parameters (132000), a parameter holds no newline, tab or run of more than four spaces
(132018), and the filled body stays within 1024 characters. A sent template is recorded with its filled
`text` and `params`, so a test reads what the customer saw."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlencode

from connectors.channel_simulation import ChannelSimulator, Delivery
from connectors.simulation import SimRequest, SimResponse, json_response

WINDOW_SECONDS = 24 * 3600
VERSION = r"/(?P<version>v\d+\.\d+)"
MAX_TEXT = 4096
#: Rate-limit policies (`inject(rate_limit={"policy": ...})`) and the Graph error code each answers with.
RATE_LIMIT_POLICIES: dict[str, tuple[int, str]] = {
    "": (130429, "(#130429) Rate limit hit"),
    "throughput": (130429, "(#130429) Rate limit hit"),
    "pair": (131056, "(#131056) (Business Account, Consumer Account) pair rate limit hit"),
    "app": (4, "(#4) Application request limit reached"),
    "account": (80007, "(#80007) Rate limit issues"),
}
#: The body text of each approved template ({{n}}: the n-th body parameter), what the customer reads.
TEMPLATE_BODIES = {
    "hello_world": "Welcome and congratulations!! This message demonstrates your ability to send a WhatsApp "
    "message notification from the Cloud API, hosted by Meta.",
    "agent_reply": "Our support team replied to your request: {{1}}",
}
MAX_TEMPLATE_BODY = 1024
_BAD_PARAM = re.compile(r"[\n\t]| {5,}")
WINDOW_DETAILS = (
    "Message failed to send because more than 24 hours have passed since the customer last replied to "
    "this number."
)


def meta_json(payload: Any) -> bytes:
    """Serialise like Meta's webhooks: compact, non-ASCII as \\uXXXX and "/" as "\\/" — re-serialising
    the parsed JSON does not give these bytes back, so only a check over the raw body passes."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/").encode()


def new_wamid() -> str:
    return "wamid." + base64.b64encode(b"\x15\x02\x00\x11\x18\x12" + secrets.token_bytes(18)).decode()


def template_params_of(template: Mapping[str, Any]) -> list[str]:
    """The text parameters of a template message's body component(s), in order."""
    return [
        str(p.get("text", ""))
        for c in template.get("components") or ()
        if isinstance(c, Mapping) and c.get("type") == "body"
        for p in c.get("parameters") or ()
        if isinstance(p, Mapping)
    ]


def fill_template(name: str, params: list[str]) -> str:
    """The body the customer reads: the template's text with {{n}} replaced by the n-th parameter."""
    body = TEMPLATE_BODIES.get(name, "")
    for number, value in enumerate(params, start=1):
        body = body.replace("{{" + str(number) + "}}", value)
    return body


class WhatsAppSimulator(ChannelSimulator):
    vendor = "whatsapp"
    app_secret = "wa-sim-app-secret-5f1c2e"  # noqa: S105 - demo app
    verify_token = "wa-sim-verify-token-8d3b"  # noqa: S105
    access_token = "EAAGsimWhatsAppSystemUserToken0001"  # noqa: S105
    phone_number_id = "106540352242922"
    display_phone_number = "15550783881"
    payload_keys = ("messages", "id")
    business_account_id = "102290129340398"
    #: Approved templates: name -> {language: number of body parameters}.
    templates: ClassVar[dict[str, dict[str, int]]] = {
        "hello_world": {"en_US": 0},
        "agent_reply": {"en": 1, "de": 1, "fr": 1, "es": 1, "ja": 1},
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: Refuse free-form text to users who have not written within 24 h, like Meta.
        self.enforce_window = True
        #: How a closed window shows: "webhook" (accepted, then a failed status with 131047 — what Meta
        #: usually does) or "sync" (the send itself answers 131047).
        self.window_failure = "webhook"
        self._last_inbound: dict[str, float] = {}
        self.route("GET", VERSION + r"/(?P<number>\d+)", self.phone_number)
        self.route("POST", VERSION + r"/(?P<number>\d+)/messages", self.messages)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "api_base": self.base_url,
            "app_secret": self.app_secret,
            "verify_token": self.verify_token,
            "access_token": self.access_token,
            "phone_number_id": self.phone_number_id,
            "display_phone_number": self.display_phone_number,
        }

    # --- Graph API errors, auth, limits -------------------------------------------------------------

    def graph_error(
        self,
        status: int,
        code: int,
        message: str,
        *,
        kind: str = "OAuthException",
        details: str = "",
        **extra: Any,
    ) -> SimResponse:
        error: dict[str, Any] = {"message": message, "type": kind, "code": code}
        if details:
            error["error_data"] = {"messaging_product": "whatsapp", "details": details}
        error |= extra
        error["fbtrace_id"] = base64.urlsafe_b64encode(secrets.token_bytes(12)).decode()
        return json_response(
            status,
            {"error": error},
            **{"WWW-Authenticate": 'OAuth "Facebook Platform"'} if status == 401 else {},
        )

    def error(self, status: int, message: str) -> SimResponse:
        if status >= 500:
            return self.graph_error(status, 2, "Service temporarily unavailable", details=message)
        if status == 404:
            return self.graph_error(400, 100, "Unknown path components", kind="GraphMethodException")
        return self.graph_error(status, 100, "(#100) Invalid parameter", details=message)

    def authenticate(self, request: SimRequest) -> SimResponse | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return self.graph_error(400, 104, "An access token is required to request this resource.")
        if token != self.access_token:
            return self.graph_error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if self.token_revoked:
            return self.graph_error(
                401, 190, "Error validating access token: Session has expired.", error_subcode=463
            )
        return None

    def rate_limited(self, request: SimRequest) -> SimResponse:
        code, message = RATE_LIMIT_POLICIES.get(self.faults.rate_limit_policy, RATE_LIMIT_POLICIES[""])
        response = self.graph_error(429, code, message, details="Too many messages sent; try again later.")
        response.headers["Retry-After"] = str(self.faults.rate_limit_retry_after)
        return response

    # --- Graph API ----------------------------------------------------------------------------------

    def _unknown_number(self, number: str) -> SimResponse:
        return self.graph_error(
            400,
            100,
            f"Unsupported post request. Object with ID '{number}' does not exist, cannot be loaded due to "
            "missing permissions, or does not support this operation.",
            kind="GraphMethodException",
            error_subcode=33,
        )

    def phone_number(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        number = request.match["number"]
        if number != self.phone_number_id:
            return self._unknown_number(number)
        return json_response(
            200,
            {
                "verified_name": "Integration Hub Demo",
                "code_verification_status": "VERIFIED",
                "display_phone_number": "+1 555-078-3881",
                "quality_rating": "GREEN",
                "platform_type": "CLOUD_API",
                "throughput": {"level": "STANDARD"},
                "id": self.phone_number_id,
            },
        )

    def messages(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        number = request.match["number"]
        if number != self.phone_number_id:
            return self._unknown_number(number)
        try:
            payload = request.json()
        except ValueError:
            return self.graph_error(400, 100, "(#100) Invalid JSON for postcard", details="Body is not JSON")
        if not isinstance(payload, dict) or payload.get("messaging_product") != "whatsapp":
            return self.graph_error(400, 100, "(#100) The parameter messaging_product is required.")
        raw_to = str(payload.get("to") or "")
        to = raw_to.lstrip("+")
        if not to.isdigit() or not 8 <= len(to) <= 15:
            return self.graph_error(400, 100, "(#100) Invalid parameter", details="Invalid 'to' phone number")
        kind = payload.get("type", "text")
        record: dict[str, Any] = {"to": to, "type": kind, "phone_number_id": number, "payload": payload}
        if kind == "text":
            body = (payload.get("text") or {}).get("body") if isinstance(payload.get("text"), dict) else None
            if not isinstance(body, str) or not body:
                return self.graph_error(400, 100, "(#100) The parameter text['body'] is required.")
            if len(body) > MAX_TEXT:
                return self.graph_error(
                    400, 100, "(#100) Param text['body'] must be at most 4096 characters long."
                )
            record["text"] = body
        elif kind == "template":
            problem = self._check_template(payload.get("template"))
            if problem is not None:
                return problem
            record["template"] = payload["template"]["name"]
            record["language"] = payload["template"]["language"]["code"]
            record["params"] = template_params_of(payload["template"])
            record["text"] = fill_template(record["template"], record["params"])
        else:
            return self.graph_error(
                400, 100, f"(#100) Param type '{kind}' is not supported by this simulator"
            )
        window_open = not self.enforce_window or self.window_open(to)
        if kind == "text" and not window_open and self.window_failure == "sync":
            return self.graph_error(400, 131047, "(#131047) Re-engagement message", details=WINDOW_DETAILS)
        wamid = new_wamid()
        record["id"] = wamid
        self.record_sent(record)
        target = self.webhook_url
        if self.auto_status and target:
            if kind == "text" and not window_open:
                errors = [self.window_error()]
                self.later(
                    lambda: self.deliver_status(wamid, "failed", to=to, errors=errors, target_url=target)
                )
            else:
                self.later(
                    lambda: self.deliver_status(wamid, "sent", to=to, target_url=target),
                    lambda: self.deliver_status(wamid, "delivered", to=to, target_url=target),
                )
        return json_response(
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": raw_to, "wa_id": to}],
                "messages": [{"id": wamid, "message_status": "accepted"}],
            },
        )

    def _check_template(self, template: Any) -> SimResponse | None:
        if not isinstance(template, dict) or not template.get("name"):
            return self.graph_error(400, 100, "(#100) The parameter template['name'] is required.")
        language = (
            (template.get("language") or {}).get("code")
            if isinstance(template.get("language"), dict)
            else None
        )
        expected = self.templates.get(str(template["name"]), {}).get(str(language))
        if expected is None:
            return self.graph_error(
                404,
                132001,
                "(#132001) Template name does not exist in the translation",
                details=f"template name ({template['name']}) does not exist in {language}",
            )
        params = template_params_of(template)
        given = len(params)
        if given != expected:
            return self.graph_error(
                400,
                132000,
                "(#132000) Number of parameters does not match the expected number of params",
                details=f"body: number of localizable_params ({given}) does not match the expected number "
                f"of params ({expected})",
            )
        if any(_BAD_PARAM.search(p) for p in params):
            return self.graph_error(
                400,
                132018,
                "(#132018) There was an issue with the parameters in your template.",
                details="Param text cannot have new-line/tab characters or more than 4 consecutive spaces",
            )
        if len(fill_template(str(template["name"]), params)) > MAX_TEMPLATE_BODY:
            return self.graph_error(
                400, 100, "(#100) Invalid parameter", details="Template body exceeds 1024 characters"
            )
        return None

    # --- the 24-hour window -------------------------------------------------------------------------

    def open_window(self, wa_id: str, *, at: float | None = None) -> None:
        """Record that the user wrote to the business (at `at`, default now)."""
        self._last_inbound[wa_id.lstrip("+")] = time.time() if at is None else at

    def close_window(self, wa_id: str, *, hours_ago: float = 25.0) -> None:
        """Record that the user last wrote `hours_ago` hours ago (default: the window has closed)."""
        self.open_window(wa_id, at=time.time() - hours_ago * 3600)

    def reset(self) -> None:
        super().reset()
        self._last_inbound.clear()

    def window_open(self, wa_id: str) -> bool:
        last = self._last_inbound.get(wa_id.lstrip("+"))
        return last is not None and time.time() - last < WINDOW_SECONDS

    @staticmethod
    def window_error() -> dict[str, Any]:
        return {
            "code": 131047,
            "title": "Re-engagement message",
            "message": "Re-engagement message",
            "error_data": {"details": WINDOW_DETAILS},
        }

    # --- webhooks to the bot ------------------------------------------------------------------------

    def sign(self, body: bytes) -> dict[str, str]:
        """The headers Meta sends with every event POST."""
        key = self.app_secret.encode()
        return {
            "Content-Type": "application/json",
            "User-Agent": "facebookexternalua",
            "X-Hub-Signature": "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest(),
            "X-Hub-Signature-256": "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest(),
        }

    def envelope(self, value: Mapping[str, Any], *, field: str = "messages") -> dict[str, Any]:
        return {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": self.business_account_id,
                    "changes": [
                        {
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": self.display_phone_number,
                                    "phone_number_id": self.phone_number_id,
                                },
                                **value,
                            },
                            "field": field,
                        }
                    ],
                }
            ],
        }

    def event(self, payload: Mapping[str, Any], target_url: str | None = None) -> Delivery:
        """Sign and POST one event payload to the webhook (or `target_url`)."""
        body = meta_json(payload)
        return self.post(self.target(target_url), body, self.sign(body))

    def message_payload(
        self,
        from_: str,
        text: str,
        *,
        kind: str = "text",
        name: str = "Erika Mustermann",
        message_id: str | None = None,
        timestamp: int | None = None,
    ) -> dict[str, Any]:
        """A realistic user message event (`kind` "image", "audio", "location"... for media)."""
        wa_id = from_.lstrip("+")
        message: dict[str, Any] = {
            "from": wa_id,
            "id": message_id or new_wamid(),
            "timestamp": str(int(time.time()) if timestamp is None else timestamp),
            "type": kind,
        }
        if kind == "text":
            message["text"] = {"body": text}
        elif kind == "location":
            message["location"] = {"latitude": 52.52, "longitude": 13.405, "name": text}
        else:
            message[kind] = {
                "id": str(secrets.randbelow(10**15)),
                "mime_type": "image/jpeg",
                "sha256": hashlib.sha256(text.encode()).hexdigest(),
                "caption": text,
            }
        contacts = [{"profile": {"name": name}, "wa_id": wa_id}]
        return self.envelope({"contacts": contacts, "messages": [message]})

    def deliver_message(
        self,
        target_url: str | None = None,
        from_: str = "+4915112345678",
        text: str = "Hallo",
        **options: Any,
    ) -> Delivery:
        """A user writes to the business: the window opens and Meta POSTs the signed event."""
        self.open_window(from_)
        return self.event(self.message_payload(from_, text, **options), target_url)

    def deliver_status(
        self,
        message_id: str,
        status: str,
        *,
        to: str = "",
        errors: list[dict[str, Any]] | None = None,
        target_url: str | None = None,
    ) -> Delivery:
        """Meta reports on a message the bot sent: sent, delivered, read or failed (with `errors`)."""
        entry: dict[str, Any] = {
            "id": message_id,
            "status": status,
            "timestamp": str(int(time.time())),
            "recipient_id": to,
        }
        if status in ("sent", "delivered"):
            entry["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "service"}
        if errors:
            entry["errors"] = errors
        return self.event(self.envelope({"statuses": [entry]}), target_url)

    def subscribe(
        self, target_url: str, *, verify_token: str | None = None, verify: bool | str = True
    ) -> bool:
        """Register `target_url` the way the app dashboard does: GET the verification request and keep the
        URL only when it echoes the challenge."""
        challenge = str(secrets.randbelow(10**9) + 10**9)
        query = {
            "hub.mode": "subscribe",
            "hub.challenge": challenge,
            "hub.verify_token": self.verify_token if verify_token is None else verify_token,
        }
        sep = "&" if "?" in target_url else "?"
        try:
            answer = self._http.get(
                target_url + sep + urlencode(query), timeout=10, verify=verify, allow_redirects=False
            )
        except Exception:
            return False
        if answer.status_code != 200 or answer.text != challenge:
            return False
        self.register_webhook(target_url, verify=verify)
        return True

    def channel_admin(self, action: str, method: str, body: Mapping[str, Any]) -> SimResponse | None:
        if method != "POST":
            return None
        if action == "deliver":
            options = {k: body[k] for k in ("kind", "name", "message_id") if k in body}
            delivery = self.deliver_message(
                body.get("target_url"),
                body.get("from", "+4915112345678"),
                body.get("text", "Hallo"),
                **options,
            )
            return json_response(200, delivery.summary())
        if action == "status":
            errors = [self.window_error()] if body.get("window_closed") else None
            delivery = self.deliver_status(
                body["id"],
                body["status"],
                to=body.get("to", ""),
                errors=errors,
                target_url=body.get("target_url"),
            )
            return json_response(200, delivery.summary())
        if action == "subscribe":
            return json_response(
                200, {"subscribed": self.subscribe(body["url"], verify=body.get("verify", True))}
            )
        if action == "window":
            if "hours_ago" in body:
                self.close_window(str(body["wa_id"]), hours_ago=float(body["hours_ago"]))
            elif body.get("open", True):
                self.open_window(str(body["wa_id"]))
            else:
                self._last_inbound.pop(str(body["wa_id"]).lstrip("+"), None)
            return json_response(200, {"ok": True})
        return None
