"""Twilio Programmable Messaging simulator: the 2010-04-01 Messages and Accounts resources with Basic auth
and Twilio's error bodies (codes 20003, 20429, 21211, 21614, 21610, 21617...), and webhooks signed like
Twilio's: X-Twilio-Signature = base64 HMAC-SHA1(auth token, the URL it called + sorted form fields)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from email.utils import formatdate
from typing import Any
from urllib.parse import urlencode

from connectors.channel_simulation import ChannelSimulator, Delivery
from connectors.simulation import SimRequest, SimResponse, json_response
from connectors.twilio.channel import MAX_BODY, sms_segments

ACCOUNT = r"/2010-04-01/Accounts/(?P<account>AC[0-9a-f]{32})"
E164 = re.compile(r"\+[1-9]\d{7,14}")


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """Twilio's webhook signature, computed independently of the twilio library (the adapter uses it)."""
    data = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


class TwilioSimulator(ChannelSimulator):
    vendor = "twilio"
    account_sid = "AC" + "5ec0" * 8
    auth_token = "7wilio5im" + "a1b2c3d4e5f60718293a4b"
    from_number = "+15005550006"
    payload_keys = ("sid",)
    messaging_service_sid = "MG" + "0d" * 16
    #: Numbers Twilio reports as landlines (21614) and users who texted STOP (21610).
    landlines: frozenset[str] = frozenset({"+15005550009"})
    opted_out: frozenset[str] = frozenset({"+15005550010"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._messages: dict[str, dict[str, Any]] = {}
        self.route("GET", ACCOUNT + r"\.json", self.account)
        self.route("POST", ACCOUNT + r"/Messages\.json", self.create_message)
        self.route("GET", ACCOUNT + r"/Messages/(?P<sid>[SM]M[0-9a-f]{32})\.json", self.fetch_message)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "api_base": self.base_url,
            "account_sid": self.account_sid,
            "auth_token": self.auth_token,
            "from_number": self.from_number,
            "messaging_service_sid": self.messaging_service_sid,
        }

    # --- errors, auth, limits -----------------------------------------------------------------------

    def twilio_error(self, status: int, code: int, message: str, **headers: str) -> SimResponse:
        body = {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
        return json_response(status, body, **headers)

    def error(self, status: int, message: str) -> SimResponse:
        if status == 404:
            return self.twilio_error(404, 20404, "The requested resource was not found")
        if status >= 500:
            return self.twilio_error(status, 20500, "Internal Server Error")
        return self.twilio_error(status, 21000 + status, message)

    def authenticate(self, request: SimRequest) -> SimResponse | None:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, password = "", ""
        valid = user == self.account_sid and password == self.auth_token and not self.token_revoked
        if scheme.lower() != "basic" or not valid:
            challenge = {"WWW-Authenticate": 'Basic realm="Twilio API"'}
            return self.twilio_error(401, 20003, "Authenticate", **challenge)
        if request.match is not None and request.match["account"] != user:
            return self.error(404, "")
        return None

    def rate_limited(self, request: SimRequest) -> SimResponse:
        return self.twilio_error(
            429, 20429, "Too Many Requests", **{"Retry-After": str(self.faults.rate_limit_retry_after)}
        )

    # --- REST resources -----------------------------------------------------------------------------

    def account(self, request: SimRequest) -> SimResponse:
        created = formatdate(1_500_000_000, usegmt=True).replace("GMT", "+0000")
        return json_response(
            200,
            {
                "sid": self.account_sid,
                "owner_account_sid": self.account_sid,
                "friendly_name": "Integration Hub Demo",
                "status": "active",
                "type": "Full",
                "date_created": created,
                "date_updated": created,
                "uri": f"/2010-04-01/Accounts/{self.account_sid}.json",
                "subresource_uris": {"messages": f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"},
            },
        )

    def create_message(self, request: SimRequest) -> SimResponse:
        form = request.form()
        to, sender = form.get("To", ""), form.get("From", "")
        service, body = form.get("MessagingServiceSid", ""), form.get("Body", "")
        if not to:
            return self.twilio_error(400, 21604, "A 'To' phone number is required.")
        if not E164.fullmatch(to):
            return self.twilio_error(400, 21211, f"Invalid 'To' Phone Number: {to[:20]}")
        if to in self.landlines:
            return self.twilio_error(400, 21614, f"'To' number {to} is not a valid mobile number")
        if to in self.opted_out:
            return self.twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")
        if not sender and not service:
            return self.twilio_error(400, 21603, "A 'From' phone number is required.")
        if sender and sender != self.from_number:
            return self.twilio_error(
                400,
                21606,
                f"The From phone number {sender[:20]} is not a valid, SMS-capable inbound phone number "
                "or short code for your account.",
            )
        if not body:
            return self.twilio_error(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY:
            too_long = "The concatenated message body exceeds the 1600 character limit."
            return self.twilio_error(400, 21617, too_long)
        now = formatdate(usegmt=True).replace("GMT", "+0000")
        sid = new_sid("SM")
        message: dict[str, Any] = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender or self.from_number,
            "messaging_service_sid": service or None,
            "num_media": "0",
            "num_segments": str(sms_segments(body)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if service else "queued",
            "to": to,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            "subresource_uris": {
                "media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media.json"
            },
        }
        self._messages[sid] = message
        callback = form.get("StatusCallback", "")
        self.record_sent(
            {
                "sid": sid,
                "to": to,
                "from": message["from"],
                "body": body,
                "messaging_service_sid": service or None,
                "status_callback": callback or None,
                "num_segments": int(message["num_segments"]),
            }
        )
        if self.auto_status and callback:
            self.later(
                lambda: self.deliver_status(sid, "sent", target_url=callback),
                lambda: self.deliver_status(sid, "delivered", target_url=callback),
            )
        return json_response(201, message)

    def fetch_message(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        message = self._messages.get(request.match["sid"])
        if message is None:
            return self.error(404, "")
        return json_response(200, message)

    # --- webhooks to the bot ------------------------------------------------------------------------

    def signed_post(self, url: str, params: Mapping[str, str]) -> Delivery:
        """POST `params` form-encoded to `url`, signed over exactly that URL, as Twilio does."""
        body = urlencode(params).encode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
            "X-Twilio-Signature": twilio_signature(self.auth_token, url, params),
        }
        return self.post(url, body, headers)

    def message_params(
        self,
        from_: str,
        text: str,
        *,
        to: str | None = None,
        media: int = 0,
        message_sid: str | None = None,
        opt_out: str = "",
    ) -> dict[str, str]:
        """The fields Twilio posts for an incoming SMS (MMS when `media` > 0)."""
        sid = message_sid or new_sid("MM" if media else "SM")
        params = {
            "ToCountry": "US",
            "ToState": "CA",
            "SmsMessageSid": sid,
            "NumMedia": str(media),
            "ToCity": "",
            "FromZip": "",
            "SmsSid": sid,
            "FromState": "",
            "SmsStatus": "received",
            "FromCity": "",
            "Body": text,
            "FromCountry": "DE",
            "To": to or self.from_number,
            "ToZip": "",
            "NumSegments": str(sms_segments(text)),
            "MessageSid": sid,
            "AccountSid": self.account_sid,
            "From": from_,
            "ApiVersion": "2010-04-01",
        }
        for i in range(media):
            params[f"MediaContentType{i}"] = "image/jpeg"
            media_path = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media/{new_sid('ME')}"
            params[f"MediaUrl{i}"] = "https://api.twilio.com" + media_path
        if opt_out:
            params["OptOutType"] = opt_out
        return params

    def deliver_message(
        self,
        target_url: str | None = None,
        from_: str = "+4915112345678",
        text: str = "Hallo",
        **options: Any,
    ) -> Delivery:
        """A user texts the Twilio number: Twilio POSTs the signed form to the number's webhook."""
        return self.signed_post(self.target(target_url), self.message_params(from_, text, **options))

    def deliver_status(
        self, message_sid: str, status: str, *, target_url: str | None = None, error_code: int | None = None
    ) -> Delivery:
        """Twilio reports on a message the bot sent (the StatusCallback given at create, or the webhook)."""
        message = self._messages.get(message_sid, {})
        params = {
            "SmsSid": message_sid,
            "SmsStatus": status,
            "MessageStatus": status,
            "To": message.get("to", ""),
            "MessageSid": message_sid,
            "AccountSid": self.account_sid,
            "From": message.get("from", self.from_number),
            "ApiVersion": "2010-04-01",
        }
        if message.get("messaging_service_sid"):
            params["MessagingServiceSid"] = message["messaging_service_sid"]
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        return self.signed_post(self.target(target_url), params)

    deliver_options = ("to", "media", "message_sid", "opt_out")

    def channel_admin(self, action: str, request: SimRequest, body: dict[str, Any]) -> SimResponse | None:
        if request.method != "POST":
            return super().channel_admin(action, request, body)
        if action == "status":
            delivery = self.deliver_status(
                body["sid"],
                body["status"],
                target_url=body.get("target_url"),
                error_code=body.get("error_code"),
            )
            return json_response(200, delivery.summary())
        return super().channel_admin(action, request, body)
