"""Slack (Events API in, Web API out) with slack-sdk: v0 signatures, threads as conversations, typed errors.

- `verify`: `X-Slack-Signature` = v0 HMAC-SHA256 of "v0:{timestamp}:{raw body}" with the signing secret,
  timestamp within 5 minutes of `now` (slack_sdk's `SignatureVerifier`, given our clock).
- `parse`: `url_verification` is answered with its challenge; `event_callback` user messages and
  `app_mention`s become `Inbound`s, everything else is ignored with a reason (bots, edits, files, joins).
- `send`: `WebClient.chat_postMessage`, the SDK unchanged except for its transport: `_GuardedWebClient`
  sends through our `HttpSession` (private-address guard, no redirects, timeouts, redaction), because the
  SDK's urllib transport would follow redirects and connect wherever DNS says.

One Slack message can reach us twice: as `message` and, when it mentions the bot, as `app_mention`, each with
its own `event_id`; retries repeat the `event_id`. So the de-duplication key is the message itself
("{channel}:{ts}"), which is the same in all three cases.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.request import Request

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.web import SlackResponse

from connectors.base import ConfigField
from connectors.errors import AuthFailed, ConnectorError, InvalidConfig, RateLimited, VendorUnavailable
from connectors.http import HttpSession, make_session, parse_retry_after
from connectors.messaging import (
    MAX_WEBHOOK_BYTES,
    Answer,
    ChannelAdapter,
    Inbound,
    PayloadInvalid,
    Sent,
    SignatureInvalid,
    WebhookEvents,
)

#: Slack refuses requests whose timestamp is further than this from its clock (and so do we).
TIMESTAMP_WINDOW = 5 * 60
AUTH_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive", "no_permission"}
)
UNAVAILABLE_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
_ERROR_CODE = re.compile(r"[a-z0-9_]{1,64}")
_FILE_SUBTYPES = frozenset({"file_share"})


def header(headers: Mapping[str, str], name: str) -> str:
    """A request header by case-insensitive name ("" when absent): Django, WSGI and tests spell them apart."""
    wanted = name.lower()
    return next((str(v) for k, v in headers.items() if k.lower() == wanted), "")


def is_retry(headers: Mapping[str, str]) -> bool:
    """Tell whether Slack re-delivers an event (`X-Slack-Retry-Num`), for metrics; de-dup still applies."""
    return header(headers, "X-Slack-Retry-Num").strip() not in ("", "0")


class _FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


class _GuardedWebClient(WebClient):
    """slack-sdk's WebClient, sending through the hub's guarded `HttpSession` instead of urllib.

    Overrides the one transport method (`_perform_urllib_http_request_internal`: a urllib `Request` in, a
    {status, headers, body} dict out); everything above it (argument encoding, `SlackResponse`, the
    `SlackApiError` on `ok: false`) is the SDK's own. Answers are returned for every status, as the SDK
    does after catching urllib's HTTPError, and with any known secret redacted before the SDK logs them.
    """

    def __init__(self, *, http: HttpSession, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.http = http

    def _perform_urllib_http_request_internal(self, url: str, req: Request) -> dict[str, Any]:
        data = req.data if isinstance(req.data, bytes) else None
        headers = {k: str(v) for k, v in req.header_items() if k.lower() != "content-length"}
        response = self.http.request(req.get_method(), url, data=data, headers=headers)
        return {
            "status": response.status_code,
            "headers": dict(response.headers),
            "body": self.http.redact(response.content.decode(response.encoding or "utf-8", "replace")),
        }


class SlackAdapter(ChannelAdapter):
    kind = "slack"
    config_fields = (
        ConfigField("signing_secret", "Signing secret", required=True, secret=True,
                    help="Basic Information > App Credentials > Signing Secret"),
        ConfigField("bot_token", "Bot token (xoxb-…)", required=True, secret=True,
                    help="OAuth & Permissions > Bot User OAuth Token; needs chat:write"),
        ConfigField("bot_user_id", "Bot user id (U…)",
                    help="Messages from this user are the bot's own; found by the test call when empty"),
        ConfigField("api_base", "Web API base URL", default="https://slack.com/api/", url=True),
    )  # fmt: skip
    #: Slack shows long messages badly and recommends at most 4,000 characters in `text` (it truncates at
    #: 40,000): longer replies go out as several messages in the same thread. Plain `text`, no blocks (whose
    #: sections cap at 3,000), so links and *bold* in mrkdwn still render.
    max_text: ClassVar[int] = 4000

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name in ("signing_secret", "bot_token"):
            if not str(self.config.get(name) or "").strip():
                raise InvalidConfig(f"slack: {name} is required")
        self.signing_secret = str(self.config["signing_secret"])
        self.bot_token = str(self.config["bot_token"])
        self.bot_user_id = str(self.config.get("bot_user_id") or "")
        self.api_base = str(self.config.get("api_base") or "https://slack.com/api/").rstrip("/") + "/"
        if self.session is not None:
            self.session.add_secret(self.signing_secret)
            self.session.add_secret(self.bot_token)

    # --- inbound ----------------------------------------------------------------------------------

    def verify(self, *, url: str, headers: Mapping[str, str], body: bytes, now: float) -> None:
        if len(body) > MAX_WEBHOOK_BYTES:
            raise PayloadInvalid(f"body of {len(body)} bytes exceeds {MAX_WEBHOOK_BYTES}")
        timestamp = header(headers, "X-Slack-Request-Timestamp").strip()
        signature = header(headers, "X-Slack-Signature").strip()
        if not timestamp or not signature:
            raise SignatureInvalid("missing", "X-Slack-Signature or X-Slack-Request-Timestamp is missing")
        if not timestamp.isdigit():
            raise SignatureInvalid("malformed", "X-Slack-Request-Timestamp is not a Unix time")
        if abs(now - int(timestamp)) > TIMESTAMP_WINDOW:
            raise SignatureInvalid("stale", "X-Slack-Request-Timestamp is more than 5 minutes away")
        verifier = SignatureVerifier(self.signing_secret, clock=_FixedClock(now))
        try:
            valid = verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
        except UnicodeDecodeError:  # the SDK hashes the body as text: not UTF-8 cannot be Slack's
            valid = False
        if not valid:
            raise SignatureInvalid("mismatch")

    def parse(self, *, headers: Mapping[str, str], body: bytes) -> WebhookEvents:
        if len(body) > MAX_WEBHOOK_BYTES:
            raise PayloadInvalid(f"body of {len(body)} bytes exceeds {MAX_WEBHOOK_BYTES}")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PayloadInvalid(f"not JSON: {type(exc).__name__}") from None
        if not isinstance(payload, dict):
            raise PayloadInvalid("not a JSON object")
        kind = payload.get("type")
        if kind == "url_verification":
            challenge = payload.get("challenge")
            if not isinstance(challenge, str) or not challenge:
                raise PayloadInvalid("url_verification without a challenge")
            answer = Answer(200, json.dumps({"challenge": challenge}).encode(), "application/json")
            return WebhookEvents(answer=answer)
        if kind != "event_callback":
            return WebhookEvents(ignored=(f"unknown_type:{_word(kind)}",))
        event = payload.get("event")
        if not isinstance(event, dict) or not isinstance(payload.get("event_id"), str):
            raise PayloadInvalid("event_callback without an event or event_id")
        message, reason = self._message(event)
        if message is None:
            return WebhookEvents(ignored=(reason,))
        return WebhookEvents(messages=(message,))

    def _message(self, event: dict[str, Any]) -> tuple[Inbound | None, str]:
        """The user message an event carries, or None and why it is skipped."""
        etype = event.get("type")
        if etype not in ("message", "app_mention"):
            return None, f"unknown_event:{_word(etype)}"
        subtype = event.get("subtype")
        user = event.get("user")
        if event.get("bot_id") or subtype == "bot_message" or (self.bot_user_id and user == self.bot_user_id):
            return None, "bot_message"
        if subtype in _FILE_SUBTYPES and not str(event.get("text") or "").strip():
            return None, "unsupported:file"
        if subtype and subtype not in _FILE_SUBTYPES:
            return None, f"subtype:{_word(subtype)}"
        fields = (user, event.get("channel"), event.get("ts"))
        if not all(isinstance(v, str) and v for v in fields):
            raise PayloadInvalid(f"{etype} event without user, channel or ts")
        user, channel, ts = (str(v) for v in fields)
        text = self._text(str(event.get("text") or ""))
        if not text:
            return None, "unsupported:file" if event.get("files") else "empty"
        thread_ts = event.get("thread_ts") if isinstance(event.get("thread_ts"), str) else ""
        if event.get("channel_type") == "im" and not thread_ts:
            # A direct message is one conversation, answered in place (threads are for busy channels).
            key, reply_thread = channel, ""
        else:
            key, reply_thread = f"{channel}:{thread_ts or ts}", thread_ts or ts
        try:
            sent_at: datetime | None = datetime.fromtimestamp(float(ts), tz=UTC)
        except ValueError:
            raise PayloadInvalid("event ts is not a Slack timestamp") from None
        inbound = Inbound(
            platform_message_id=f"{channel}:{ts}",
            sender=user,
            conversation_key=key,
            text=text,
            sent_at=sent_at,
            reply_ref={"channel": channel, "thread_ts": reply_thread},
            sender_verified=True,
        )
        return inbound, ""

    def _text(self, raw: str) -> str:
        """The message text without the bot's own mention, with Slack's three HTML entities decoded."""
        if self.bot_user_id:
            raw = re.sub(rf"<@{re.escape(self.bot_user_id)}(?:\|[^>]*)?>", " ", raw)
        raw = raw.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        return " ".join(raw.split())

    # --- outbound ---------------------------------------------------------------------------------

    def client(self) -> WebClient:
        """slack-sdk's WebClient for this account, sending through the guarded session."""
        if self.session is None:
            self.session = make_session()
            self.session.add_secret(self.signing_secret)
            self.session.add_secret(self.bot_token)
        # retry_handlers=[]: retries are the outbox's job, with its backoff and breaker.
        return _GuardedWebClient(http=self.session, token=self.bot_token, base_url=self.api_base,
                                 retry_handlers=[])  # fmt: skip

    def send(self, *, reply_ref: Mapping[str, str], text: str) -> Sent:
        channel = str(reply_ref.get("channel") or "")
        if not channel:
            raise ConnectorError("slack: reply_ref has no channel", permanent=True, code="no_channel")
        thread_ts = str(reply_ref.get("thread_ts") or "") or None
        response = self._call(
            "chat.postMessage", lambda c: c.chat_postMessage(channel=channel, text=text, thread_ts=thread_ts)
        )
        ts = response.get("ts")
        if not isinstance(ts, str) or not ts:
            raise VendorUnavailable("Slack chat.postMessage answered ok without a message ts")
        return Sent(platform_message_id=ts)

    def test(self) -> None:
        """auth.test with the bot token; learns the bot user id, refuses one that contradicts the config."""
        response = self._call("auth.test", lambda c: c.auth_test())
        user_id = str(response.get("user_id") or "")
        if self.bot_user_id and user_id and user_id != self.bot_user_id:
            raise InvalidConfig(f"slack: the bot token belongs to user {user_id}, not {self.bot_user_id}")
        self.bot_user_id = self.bot_user_id or user_id

    def user_email(self, *, sender: str, reply_ref: Mapping[str, str]) -> str:
        """`users.info` (needs the users:read.email scope for the e-mail): the address only for a human
        member of the workspace the app is installed in (`auth.test`'s team) whose e-mail Slack confirmed;
        a Slack Connect user from another organisation, a bot, a deactivated user: ""."""
        if not re.fullmatch(r"[UW][A-Z0-9]{2,}", sender or ""):
            return ""
        team = self._call("auth.test", lambda c: c.auth_test()).get("team_id")
        user = self._call("users.info", lambda c: c.users_info(user=sender)).get("user")
        if not isinstance(user, dict) or not team or user.get("team_id") != team:
            return ""
        if user.get("deleted") or user.get("is_bot") or user.get("is_email_confirmed") is not True:
            return ""
        profile = user.get("profile")
        email = profile.get("email") if isinstance(profile, dict) else None
        return email.strip() if isinstance(email, str) else ""

    def _call(self, method: str, call: Callable[[WebClient], SlackResponse]) -> SlackResponse:
        """One Web API call with this account's client; Slack's refusal as a typed `ConnectorError`."""
        error: ConnectorError
        try:
            return call(self.client())
        except SlackApiError as exc:
            error = self._error(method, exc)
        except SlackRequestError:
            error = InvalidConfig("slack: the Web API base URL is not an http(s) URL")
        raise error  # outside the except block: the SDK's error (it may quote the body) is not chained

    def _error(self, method: str, exc: SlackApiError) -> ConnectorError:
        """Map Slack's answer to a typed error; the message names the error code, never the body."""
        response = exc.response
        status = int(getattr(response, "status_code", 0) or 0)
        data = response.data if isinstance(response.data, dict) else {}
        raw = data.get("error")
        code = raw if isinstance(raw, str) and _ERROR_CODE.fullmatch(raw) else "unexpected_response"
        message = f"Slack {method} failed: {code} (HTTP {status})"
        if status == 429 or code == "ratelimited":
            headers = {k.lower(): str(v) for k, v in (response.headers or {}).items()}
            retry = parse_retry_after(headers.get("retry-after"))
            return RateLimited(message, retry_after=retry if retry is not None else 60.0,
                               scope=method, status=status, code="ratelimited")  # fmt: skip
        if code in AUTH_ERRORS or status in (401, 403):
            return AuthFailed(message, status=status, code=code)
        if status >= 500 or code in UNAVAILABLE_ERRORS or code == "unexpected_response":
            return VendorUnavailable(message, status=status, code=code)
        return ConnectorError(message, permanent=True, status=status, code=code)


def _word(value: Any) -> str:
    """A short, safe label of an untrusted value for metrics ("?" when it is not a plain word)."""
    text = str(value) if isinstance(value, str) else ""
    return text if re.fullmatch(r"[A-Za-z0-9_.:-]{1,40}", text) else "?"
