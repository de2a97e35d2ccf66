"""SMS via Twilio: X-Twilio-Signature checked by the `twilio` library's RequestValidator, form-encoded
messages and status callbacks in, replies by REST through `twilio.rest.Client` (empty TwiML in place).

The Twilio client talks through `GuardedTwilioHttp`, a `twilio.http.HttpClient` over our `HttpSession`
(Twilio's own suggestion for pointing the client elsewhere is a custom HTTP client): every call gets the
outbound guard, timeouts and redaction, and `api_base` (the simulator, a regional edge) replaces
https://api.twilio.com without changing the library.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http import HttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.messaging_response import MessagingResponse

from connectors.base import ConfigField
from connectors.errors import (
    AuthFailed,
    ConnectorError,
    InvalidConfig,
    RateLimited,
    UnexpectedResponse,
    VendorUnavailable,
)
from connectors.http import HttpSession, parse_retry_after
from connectors.messaging import (
    MAX_WEBHOOK_BYTES,
    Answer,
    CheckedConfigAdapter,
    Inbound,
    PayloadInvalid,
    Sent,
    SignatureInvalid,
    StatusUpdate,
    WebhookEvents,
    header,
)

SIGNATURE_HEADER = "X-Twilio-Signature"
TWILIO_API = "https://api.twilio.com"
#: Twilio refuses longer bodies (error 21617); the Django side splits longer replies.
MAX_BODY = 1600
AUTH_CODES = frozenset({20003, 20005})  # authenticate; account suspended/closed
RATE_LIMIT_CODES = frozenset({20429, 14107})  # too many requests; outbound SMS rate exceeded
RECIPIENT_CODES = frozenset({21211, 21614, 21612, 21408})  # invalid To; not mobile; unreachable; region
OPTED_OUT = 21610  # the user texted STOP: Twilio blocks every message until START
EMPTY_TWIML = str(MessagingResponse()).encode()

# GSM 03.38: the default alphabet (one septet each) and the extension table (escape + one septet each).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

logger = logging.getLogger("connectors.twilio")


def _pack(units: list[int], single: int, multi: int) -> int:
    """Parts needed for characters of `units` size each: one part up to `single`, else `multi` per part
    (a user data header takes the rest), never splitting a character (escape pair, surrogate pair)."""
    if sum(units) <= single:
        return 1
    parts, used = 1, 0
    for size in units:
        if used + size > multi:
            parts, used = parts + 1, 0
        used += size
    return parts


def sms_segments(text: str) -> int:
    """How many SMS parts `text` costs: GSM-7 160, or 153 per part once concatenated (extension
    characters take two septets); anything outside GSM-7 makes it UCS-2: 70, or 67 per part."""
    if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text):
        return _pack([2 if c in GSM7_EXTENSION else 1 for c in text], 160, 153)
    return _pack([2 if ord(c) > 0xFFFF else 1 for c in text], 70, 67)


class FormParams(dict[str, list[str]]):
    """A form body with repeated names kept, in the shape RequestValidator reads (Django's `getlist`)."""

    def getlist(self, name: str) -> list[str]:
        return self[name]

    def first(self, name: str, default: str = "") -> str:
        values = self.get(name)
        return values[0] if values else default


def parse_form(body: bytes) -> FormParams:
    """Decode an application/x-www-form-urlencoded body (UTF-8, as Twilio sends it)."""
    try:
        text = body.decode("utf-8")
        return FormParams(parse_qs(text, keep_blank_values=True, strict_parsing=bool(text)))
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadInvalid("body is not a UTF-8 form") from exc


class GuardedTwilioHttp(HttpClient):
    """The Twilio client's transport: our guarded session, and `api_base` instead of api.twilio.com."""

    def __init__(self, session: HttpSession, *, api_base: str = TWILIO_API) -> None:
        super().__init__(logger, is_async=False)
        self.session = session
        self.api_base = api_base.rstrip("/")
        #: The last raw answer: Twilio's exceptions drop the headers, Retry-After among them.
        self.last_headers: Mapping[str, str] = {}

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        if url.startswith(TWILIO_API + "/"):
            url = self.api_base + url[len(TWILIO_API) :]
        kwargs: dict[str, Any] = {"params": params, "headers": headers, "auth": auth}
        if headers and headers.get("Content-Type", "").endswith("json"):
            kwargs["json"] = data
        else:
            kwargs["data"] = data
        if timeout is not None:  # None would switch the session's default timeout off
            kwargs["timeout"] = timeout
        response = self.session.request(method.upper(), url, **kwargs)
        self.last_headers = dict(response.headers)
        return TwilioResponse(response.status_code, response.text, response.headers)


class TwilioSmsAdapter(CheckedConfigAdapter):
    kind = "sms"
    config_fields = (
        ConfigField("account_sid", "Account SID", required=True, help="Console > Account info: AC…"),
        ConfigField("auth_token", "Auth token", required=True, secret=True,
                    help="Signs every webhook (X-Twilio-Signature) and authenticates the REST API."),
        ConfigField("from_number", "From number (E.164)",
                    help="The Twilio number replies come from, e.g. +4930123456 (or a messaging service)."),
        ConfigField("messaging_service_sid", "Messaging service SID",
                    help="MG…: Twilio picks the sender from the service's pool."),
        ConfigField("api_base", "API base URL", default=TWILIO_API, url=True),
        ConfigField("status_callback_url", "Status callback URL",
                    help="Filled in by the hub: where Twilio reports delivery (sent, delivered, failed)."),
    )  # fmt: skip
    max_text = MAX_BODY

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not (self.config["from_number"] or self.config["messaging_service_sid"]):
            raise InvalidConfig("sms: a from number or a messaging service SID is required")
        self.transport = GuardedTwilioHttp(self.http, api_base=str(self.config["api_base"]))
        self.client = Client(
            str(self.config["account_sid"]),
            str(self.config["auth_token"]),
            http_client=self.transport,
        )
        # The client reads TWILIO_EDGE/TWILIO_REGION from the process environment and would rewrite the
        # host to api.<edge>.<region>.twilio.com: the channel's api_base decides alone.
        self.client.edge = self.client.region = None

    # --- inbound ----------------------------------------------------------------------------------

    def verify(self, *, url: str, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """RequestValidator over `url` (exactly what Twilio called) and the form fields; Twilio signs no
        timestamp, so replays are de-duplicated by MessageSid (status callbacks by sid + status)."""
        signature = header(headers, SIGNATURE_HEADER)
        if not signature:
            raise SignatureInvalid("missing", f"no {SIGNATURE_HEADER} header")
        try:
            params = parse_form(body)
        except PayloadInvalid as exc:
            raise SignatureInvalid("mismatch", "body is not a form Twilio signed") from exc
        if not RequestValidator(str(self.config["auth_token"])).validate(url, params, signature):
            raise SignatureInvalid("mismatch")

    def parse(self, *, headers: Mapping[str, str], body: bytes) -> WebhookEvents:
        """An incoming SMS becomes an `Inbound`, a status callback a `StatusUpdate`; both answered with
        empty TwiML (the reply goes by REST, through the outbox)."""
        if len(body) > MAX_WEBHOOK_BYTES:
            raise PayloadInvalid(f"body of {len(body)} bytes exceeds {MAX_WEBHOOK_BYTES}")
        form = parse_form(body)
        answer = Answer(200, EMPTY_TWIML, "text/xml; charset=utf-8")
        sid = form.first("MessageSid") or form.first("SmsSid")
        if not sid:
            raise PayloadInvalid("not a Twilio messaging webhook: no MessageSid")
        state = form.first("SmsStatus") or form.first("MessageStatus")
        if state != "received":
            if not form.first("MessageStatus"):
                return WebhookEvents(ignored=(f"unknown_event:{state[:40] or 'no status'}",), answer=answer)
            error = form.first("ErrorCode")
            if error and form.first("ErrorMessage"):
                error = f"{error}: {form.first('ErrorMessage')}"[:200]
            update = StatusUpdate(sid, form.first("MessageStatus"), error)
            return WebhookEvents(statuses=(update,), answer=answer)
        sender, to = form.first("From"), form.first("To")
        if not sender.startswith("+") or not sender[1:].isdigit():
            # WhatsApp/Messenger through Twilio ("whatsapp:+…"), or an alphanumeric sender: not this channel.
            kind = sender.partition(":")[0][:20] if ":" in sender else "alphanumeric"
            return WebhookEvents(ignored=(f"unsupported:sender:{kind}",), answer=answer)
        if sender in (self.config["from_number"], to) and sender:
            return WebhookEvents(ignored=("echo",), answer=answer)
        if form.first("OptOutType"):  # STOP/START/HELP: Twilio has answered it and blocks replies after STOP
            return WebhookEvents(ignored=(f"opt_out:{form.first('OptOutType').lower()[:20]}",), answer=answer)
        if form.first("NumMedia", "0") not in ("", "0"):
            return WebhookEvents(ignored=("unsupported:media",), answer=answer)
        text = form.first("Body")
        if not text.strip():
            return WebhookEvents(ignored=("empty",), answer=answer)
        inbound = Inbound(
            platform_message_id=sid,
            sender=sender,
            conversation_key=sender,
            text=text,
            reply_ref={"to": sender, "from": to},
            sender_verified=True,
        )
        return WebhookEvents(messages=(inbound,), answer=answer)

    # --- outbound ---------------------------------------------------------------------------------

    def send(self, *, reply_ref: Mapping[str, str], text: str) -> Sent:
        """Create a Message by REST; `Sent.segments` is what Twilio will bill (num_segments)."""
        if len(text) > self.max_text:
            raise ConnectorError(f"An SMS is limited to {self.max_text} characters", code="too_long")
        to = str(reply_ref.get("to") or "")
        if not to:
            raise ConnectorError("SMS reply_ref has no recipient", code="invalid_recipient")
        cfg = self.config
        options: dict[str, Any] = {}
        if cfg["messaging_service_sid"]:
            options["messaging_service_sid"] = cfg["messaging_service_sid"]
        sender = reply_ref.get("from") or cfg["from_number"]
        if sender:
            options["from_"] = sender
        if cfg["status_callback_url"]:
            options["status_callback"] = cfg["status_callback_url"]
        message = self._twilio(lambda: self.client.messages.create(to=to, body=text, **options))
        if not message.sid:
            raise UnexpectedResponse("Twilio answered the message create without a sid")
        try:
            segments = int(message.num_segments or 0) or sms_segments(text)
        except ValueError:
            segments = sms_segments(text)
        return Sent(platform_message_id=str(message.sid), segments=segments)

    def test(self) -> None:
        """Fetch the account with the SID and token (the console's "test" button)."""
        account = self._twilio(
            lambda: self.client.api.v2010.accounts(str(self.config["account_sid"])).fetch()
        )
        if not account.sid:
            raise UnexpectedResponse("Twilio answered the account fetch without a sid")
        if account.status and account.status != "active":
            raise AuthFailed(f"Twilio account is {account.status}", code="account_" + str(account.status))

    def _twilio(self, call: Any) -> Any:
        """Run one client call, turning Twilio's exceptions into typed connector errors."""
        try:
            return call()
        except (TwilioRestException, TwilioServiceException) as exc:
            raise self._error(exc) from None
        except TwilioException as exc:
            raise ConnectorError(self.http.redact(f"Twilio client error: {exc!r}")[:300]) from None
        except (ValueError, json.JSONDecodeError) as exc:  # a 2xx whose body is not JSON
            raise VendorUnavailable(
                f"Twilio answered with a body that is not JSON ({type(exc).__name__})"
            ) from None

    def _error(self, exc: TwilioRestException | TwilioServiceException) -> ConnectorError:
        status = int(exc.status or 0)
        code = exc.code if isinstance(exc.code, int) else None
        detail = exc.msg if isinstance(exc, TwilioRestException) else (exc.detail or exc.title)
        text = self.http.redact(f"Twilio error {code or status}: {detail}")[:300]
        if code in AUTH_CODES or status == 401:
            return AuthFailed(text, status=status, code=str(code or status))
        if code in RATE_LIMIT_CODES or status == 429:
            retry = parse_retry_after(self.transport.last_headers.get("Retry-After"))
            return RateLimited(text, retry_after=1.0 if retry is None else retry, status=status,
                               code=str(code or status))  # fmt: skip
        if code in RECIPIENT_CODES:
            return ConnectorError(text, permanent=True, status=status, code="invalid_recipient")
        if code == OPTED_OUT:
            return ConnectorError(text, permanent=True, status=status, code="opted_out")
        if status >= 500 or status == 0:
            return VendorUnavailable(text, status=status, code=str(code or status))
        return ConnectorError(text, permanent=True, status=status, code=str(code or status))
