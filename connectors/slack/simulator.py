"""Slack simulator: the Web API methods the hub calls (chat.postMessage, auth.test) and the Events API side,
delivering signed `event_callback`s and `url_verification`s to a webhook exactly as Slack does.

Web API behaviour copied from Slack: every method answers HTTP 200 with `{"ok": false, "error": …}` for
auth and argument errors (invalid_auth, not_authed, token_revoked, channel_not_found, not_in_channel,
no_text, msg_too_long), HTTP 429 `ratelimited` with `Retry-After` when rate limited. Tokens come as a bearer
header or a `token` form field. Events are signed "v0=" + HMAC-SHA256(signing secret, "v0:{ts}:{body}").
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from connectors.channel_simulation import PlatformAdmin
from connectors.simulation import SimRequest, SimResponse, json_response

MAX_TEXT = 40_000
_CHANNEL = re.compile(r"[CDG][A-Z0-9]{2,}")


class SlackSimulator(PlatformAdmin):
    vendor = "slack"
    scheme = "https"
    signing_secret = "8f742231b10e8888abcd99yyyzzz85a5"  # noqa: S105 - the demo app's signing secret
    bot_token = "xoxb-17-2024-simulatedbottoken"  # noqa: S105 - the demo workspace's bot token
    bot_user_id = "U0HUBBOT"
    bot_id = "B0HUBBOT"
    team_id = "T0SIMTEAM"
    api_app_id = "A0HUBAPP"
    payload_keys = ("message", "ts")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.messages: list[dict[str, Any]] = []
        #: Channels the bot was removed from: chat.postMessage answers `not_in_channel`.
        self.closed_channels: set[str] = set()
        self.revoked = False
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self.methods: dict[str, Callable[[dict[str, Any]], SimResponse]] = {
            "chat.postMessage": self.post_message,
            "auth.test": self.auth_test,
            "users.info": self.users_info,
            "api.test": lambda args: json_response(200, {"ok": True, "args": args}),
        }
        #: The workspace's members by user id, as users.info answers (the profile's e-mail only while the
        #: app has the users:read.email scope: `email_scope`).
        self.users: dict[str, dict[str, Any]] = {}
        self.email_scope = True
        self.add_user("U0SIMUSER1", name="alice", email="alice@example.com")
        self.route("POST", r"/api/(?P<method>[\w.]+)", self.api)
        self.route("GET", r"/api/(?P<method>[\w.]+)", self.api)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "api_base": f"{self.base_url}/api/",
            "signing_secret": self.signing_secret,
            "bot_token": self.bot_token,
            "bot_user_id": self.bot_user_id,
            "team_id": self.team_id,
        }

    # --- Web API ----------------------------------------------------------------------------------

    @staticmethod
    def arguments(request: SimRequest) -> dict[str, Any]:
        """Method arguments from the query, a form body or a JSON body, as Slack accepts them."""
        args: dict[str, Any] = dict(request.query)
        if request.body:
            if request.headers.get("content-type", "").startswith("application/json"):
                body = request.json()
                args.update(body if isinstance(body, dict) else {})
            else:
                args.update(request.form())
        return args

    def is_public(self, request: SimRequest) -> bool:
        return request.path == "/api/api.test"

    def authenticate(self, request: SimRequest) -> SimResponse | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            token = str(self.arguments(request).get("token") or "")
        if not token:
            return json_response(200, {"ok": False, "error": "not_authed"})
        if not hmac.compare_digest(token, self.bot_token):
            return json_response(200, {"ok": False, "error": "invalid_auth"})
        if self.revoked:
            return json_response(200, {"ok": False, "error": "token_revoked"})
        return None

    def rate_limited(self, request: SimRequest) -> SimResponse:
        retry_after = str(self.faults.rate_limit_retry_after)
        return json_response(429, {"ok": False, "error": "ratelimited"}, **{"Retry-After": retry_after})

    def error(self, status: int, message: str) -> SimResponse:
        code = {404: "unknown_method", 429: "ratelimited"}.get(status, "internal_error")
        return json_response(status, {"ok": False, "error": code, "warning": message})

    def expire_tokens(self) -> None:
        """Slack tokens do not expire on their own; this revokes the bot token (`token_revoked`)."""
        self.revoked = True

    def clear_faults(self) -> None:
        super().clear_faults()
        self.revoked = False

    def api(self, request: SimRequest) -> SimResponse:
        assert request.match is not None
        method = self.methods.get(request.match.group("method"))
        if method is None:
            return json_response(404, {"ok": False, "error": "unknown_method"})
        return method(self.arguments(request))

    def post_message(self, args: dict[str, Any]) -> SimResponse:
        channel = str(args.get("channel") or "")
        text = args.get("text")
        if not channel or not _CHANNEL.fullmatch(channel):
            return json_response(200, {"ok": False, "error": "channel_not_found"})
        if channel in self.closed_channels:
            return json_response(200, {"ok": False, "error": "not_in_channel"})
        if not text and not args.get("blocks"):
            return json_response(200, {"ok": False, "error": "no_text"})
        if len(str(text or "")) > MAX_TEXT:
            return json_response(200, {"ok": False, "error": "msg_too_long"})
        ts = self.new_ts()
        message = {
            "type": "message",
            "subtype": "bot_message",
            "text": str(text or ""),
            "ts": ts,
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.api_app_id,
            "team": self.team_id,
        }
        thread_ts = str(args.get("thread_ts") or "")
        if thread_ts:
            message["thread_ts"] = thread_ts
        with self._lock:
            self.messages.append({"channel": channel, "thread_ts": thread_ts or None, **message})
        return json_response(200, {"ok": True, "channel": channel, "ts": ts, "message": message})

    def auth_test(self, args: dict[str, Any]) -> SimResponse:
        return json_response(
            200,
            {
                "ok": True,
                "url": "https://hub-sim.slack.com/",
                "team": "Hub Simulator",
                "user": "hubbot",
                "team_id": self.team_id,
                "user_id": self.bot_user_id,
                "bot_id": self.bot_id,
                "is_enterprise_install": False,
            },
        )

    def add_user(
        self, user_id: str, *, name: str, email: str = "", team_id: str | None = None,
        email_confirmed: bool = True, is_bot: bool = False, deleted: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        """Put a member in the workspace (a Slack user object as users.info returns it)."""
        user = {
            "id": user_id,
            "team_id": team_id or self.team_id,
            "name": name,
            "real_name": name.title(),
            "deleted": deleted,
            "is_bot": is_bot,
            "is_email_confirmed": email_confirmed,
            "profile": {"real_name": name.title(), "display_name": name, "email": email},
        }
        with self._lock:
            self.users[user_id] = user
        return user

    def users_info(self, args: dict[str, Any]) -> SimResponse:
        with self._lock:
            user = self.users.get(str(args.get("user") or ""))
            user = json.loads(json.dumps(user)) if user is not None else None
        if user is None:
            return json_response(200, {"ok": False, "error": "user_not_found"})
        if not self.email_scope:
            user["profile"].pop("email", None)
        return json_response(200, {"ok": True, "user": user})

    def new_ts(self) -> str:
        return f"{int(time.time())}.{next(self._seq) % 1_000_000:06d}"

    def sent(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Messages the bot posted (to `channel`), oldest first."""
        with self._lock:
            return [dict(m) for m in self.messages if channel is None or m["channel"] == channel]

    # --- Events API -------------------------------------------------------------------------------

    def sign(self, body: bytes, *, timestamp: int | None = None, secret: str | None = None) -> dict[str, str]:
        """The headers Slack sends with `body`: request timestamp and v0 signature."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        key = (secret or self.signing_secret).encode()
        digest = hmac.new(key, b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
        return {
            "Content-Type": "application/json",
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": f"v0={digest}",
        }

    def message_event(
        self,
        *,
        user: str,
        channel: str,
        text: str,
        thread_ts: str | None = None,
        event_type: str = "message",
        channel_type: str = "channel",
        ts: str | None = None,
        event_id: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """An `event_callback` envelope as Slack builds it for a user's message (or `app_mention`)."""
        ts = ts or self.new_ts()
        event: dict[str, Any] = {
            "type": event_type,
            "user": user,
            "text": text,
            "ts": ts,
            "channel": channel,
            "event_ts": ts,
            "team": self.team_id,
            "client_msg_id": secrets.token_hex(16),
            "blocks": [{"type": "rich_text", "block_id": secrets.token_hex(3), "elements": []}],
            **extra,
        }
        if event_type == "message":
            event["channel_type"] = channel_type
        if thread_ts:
            event["thread_ts"] = thread_ts
        return {
            "token": "deprecated-verification-token",
            "team_id": self.team_id,
            "api_app_id": self.api_app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or "Ev" + secrets.token_hex(5).upper(),
            "event_time": int(float(ts)),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": "4-" + secrets.token_urlsafe(24),
        }

    def post(
        self,
        target_url: str,
        payload: Mapping[str, Any],
        *,
        retry_num: int = 0,
        verify: bool | str = True,
        timeout: float = 10.0,
    ) -> requests.Response:
        """POST `payload` signed as Slack does (with `X-Slack-Retry-Num` when `retry_num` > 0)."""
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = self.sign(body)
        if retry_num:
            headers |= {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
        return requests.post(target_url, data=body, headers=headers, timeout=timeout, verify=verify)

    def deliver_message(
        self,
        target_url: str,
        user: str,
        channel: str,
        text: str,
        thread_ts: str | None = None,
        **options: Any,
    ) -> requests.Response:
        """Deliver a user's message to the hub's webhook as a signed `event_callback`."""
        post_options = {k: options.pop(k) for k in ("retry_num", "verify", "timeout") if k in options}
        payload = self.message_event(user=user, channel=channel, text=text, thread_ts=thread_ts, **options)
        return self.post(target_url, payload, **post_options)

    def url_verification(self, target_url: str, **options: Any) -> requests.Response:
        """Send the `url_verification` challenge Slack sends when the Request URL is entered."""
        challenge = secrets.token_urlsafe(32)
        return self.post(target_url, {"token": "deprecated-verification-token", "challenge": challenge,
                                      "type": "url_verification"}, **options)  # fmt: skip

    def channel_admin(self, action: str, request: SimRequest, body: dict[str, Any]) -> SimResponse | None:
        if action == "messages":
            return json_response(200, {"messages": self.sent(request.query.get("channel"))})
        if action == "deliver" and request.method == "POST":
            target = self.target(body.pop("target_url", None))
            body.setdefault("verify", self.webhook_verify)
            response = self.deliver_message(target, body.pop("user"), body.pop("channel"), body.pop("text"),
                                            **body)  # fmt: skip
            return json_response(200, {"status": response.status_code, "body": response.text[:2000]})
        if action == "url_verification" and request.method == "POST":
            target = self.target(body.get("target_url"))
            response = self.url_verification(target, verify=body.get("verify", self.webhook_verify))
            return json_response(200, {"status": response.status_code, "body": response.text[:2000]})
        return super().channel_admin(action, request, body)
